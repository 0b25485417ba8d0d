//! The OV2640 programming this driver uses: ArduCAM's own JPEG sequence for the Mini 2MP Plus
//! (`tables.rs`, from the vendor's header), the output size's table, and the JPEG quality on
//! top. `jpeg_sequence` is the whole list of writes after the soft reset, as static slices: no
//! allocation.

use crate::regs::sensor::*;

pub mod tables;

/// Output sizes of the vendor's tables on the SVGA window (the larger ones need UXGA timing
/// and more FIFO time per frame than a model of 256x256 input gains from).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    R160x120,
    R176x144,
    R320x240,
    R352x288,
    R640x480,
    R800x600,
}

impl Resolution {
    pub const ALL: [Resolution; 6] = [
        Resolution::R160x120,
        Resolution::R176x144,
        Resolution::R320x240,
        Resolution::R352x288,
        Resolution::R640x480,
        Resolution::R800x600,
    ];

    pub const fn size(self) -> (u16, u16) {
        match self {
            Resolution::R160x120 => (160, 120),
            Resolution::R176x144 => (176, 144),
            Resolution::R320x240 => (320, 240),
            Resolution::R352x288 => (352, 288),
            Resolution::R640x480 => (640, 480),
            Resolution::R800x600 => (800, 600),
        }
    }

    /// `"320x240"` -> `R320x240`.
    pub fn parse(s: &str) -> Option<Resolution> {
        Self::ALL.into_iter().find(|r| {
            let (w, h) = r.size();
            let (a, b) = match s.split_once('x') {
                Some(p) => p,
                None => return false,
            };
            a.parse::<u16>() == Ok(w) && b.parse::<u16>() == Ok(h)
        })
    }

    /// The vendor's table for this size.
    pub const fn table(self) -> &'static [(u8, u8)] {
        match self {
            Resolution::R160x120 => &tables::SIZE_160X120,
            Resolution::R176x144 => &tables::SIZE_176X144,
            Resolution::R320x240 => &tables::SIZE_320X240,
            Resolution::R352x288 => &tables::SIZE_352X288,
            Resolution::R640x480 => &tables::SIZE_640X480,
            Resolution::R800x600 => &tables::SIZE_800X600,
        }
    }
}

/// COM10 (sensor bank): output signal polarities; the vendor clears it before the size table.
const COM10: u8 = 0x15;

/// Every write after the soft reset that puts the sensor in JPEG mode at `res`, bank selects
/// included, in ArduCAM's order (`InitCAM`: JPEG_INIT, YUV422, JPEG, COM10 = 0, the size's
/// table), then the JPEG quantisation scale `quality` (lower is finer and larger; the sensor's
/// default, which the vendor keeps, is 12).
pub fn jpeg_sequence(res: Resolution, quality: u8) -> impl Iterator<Item = (u8, u8)> {
    tables::JPEG_INIT
        .iter()
        .chain(&tables::YUV422)
        .chain(&tables::JPEG)
        .chain(&[(BANK_SEL, BANK_SENSOR), (COM10, 0x00)])
        .chain(res.table())
        .copied()
        .chain([(BANK_SEL, BANK_DSP), (QS, quality)])
}

/// The output size the DSP registers describe (what the simulator reads back).
pub fn output_size(zmow: u8, zmoh: u8, zmhh: u8) -> (u16, u16) {
    let w = (zmow as u16 | ((zmhh & 0x03) as u16) << 8) * 4;
    let h = (zmoh as u16 | (((zmhh >> 2) & 0x01) as u16) << 8) * 4;
    (w, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zoom_registers_encode_every_resolution() {
        for r in Resolution::ALL {
            let seq: Vec<_> = jpeg_sequence(r, 12).collect();
            let get = |reg| seq.iter().rev().find(|(a, _)| *a == reg).unwrap().1;
            assert_eq!(output_size(get(ZMOW), get(ZMOH), get(ZMHH)), r.size());
        }
        assert_eq!(Resolution::parse("352x288"), Some(Resolution::R352x288));
        assert_eq!(Resolution::parse("353x288"), None);
        assert_eq!(Resolution::parse("junk"), None);
    }
}
