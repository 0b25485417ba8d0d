//! The OV2640 programming this driver uses: SVGA sensor timing, the DSP scaling the 800x600
//! window down to the output size, JPEG output. Written from the datasheet's register
//! descriptions; the values are computed from the resolution rather than copied from vendor
//! tables, so every write here has a stated reason.

use crate::regs::sensor::*;

/// Output sizes the DSP zoom can produce from the SVGA window (multiples of 4, at most 800x600).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    R160x120,
    R320x240,
    R352x288,
    R640x480,
    R800x600,
}

impl Resolution {
    pub const ALL: [Resolution; 5] = [
        Resolution::R160x120,
        Resolution::R320x240,
        Resolution::R352x288,
        Resolution::R640x480,
        Resolution::R800x600,
    ];

    pub const fn size(self) -> (u16, u16) {
        match self {
            Resolution::R160x120 => (160, 120),
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
}

/// The sensor window every resolution is scaled from.
pub const WINDOW: (u16, u16) = (800, 600);

/// Number of register writes in [`jpeg_sequence`].
pub const SEQUENCE_LEN: usize = 30;

/// Register writes (bank selects included) that put the sensor in JPEG mode at `res`.
/// `quality` is the JPEG quantisation scale QS: lower is finer and larger.
pub fn jpeg_sequence(res: Resolution, quality: u8) -> [(u8, u8); SEQUENCE_LEN] {
    let (w, h) = res.size();
    let (zw, zh) = (w / 4, h / 4);
    let (ww, wh) = WINDOW;
    [
        (BANK_SEL, BANK_SENSOR),
        (COM7, COM7_SVGA), // SVGA timing: 800x600 at up to 30 fps
        (CLKRC, 0x01),     // pixel clock = XVCLK / 2: slow enough for the FIFO write side
        (COM1, 0x0A),      // vertical window LSBs for SVGA
        (HREFST, 0x11),    // horizontal window start/end for SVGA
        (HREFEND, 0x43),
        (REG32, 0x09), // horizontal window LSBs
        (VSTRT, 0x00), // vertical window start/end for SVGA
        (VEND, 0x4B),
        (COM8, 0xC7), // automatic exposure, gain and banding filter
        (BANK_SEL, BANK_DSP),
        (R_BYPASS, 0x01), // bypass the DSP while it is reconfigured
        (RESET, RESET_DVP),
        (HSIZE8, (ww / 8) as u8), // the DSP's input size, in units of 8 pixels
        (VSIZE8, (wh / 8) as u8),
        (CTRL2, 0x3D),           // DCW, SDE, UV adjust/average, colour matrix on
        (CTRLI, 0x80),           // no pre-divider; LP_DP set as the zoom needs
        (HSIZE, (ww / 4) as u8), // the window again, in units of 4 pixels
        (VSIZE, (wh / 4) as u8),
        (XOFFL, 0x00),
        (YOFFL, 0x00),
        (
            VHYX,
            (((wh / 4) >> 8) as u8 & 1) << 7 | (((ww / 4) >> 8) as u8 & 1) << 3,
        ),
        (DSP_TEST, (((ww / 4) >> 9) as u8 & 1) << 7),
        (ZMOW, zw as u8), // output size in units of 4 pixels, bits [7:0]
        (ZMOH, zh as u8),
        (
            ZMHH,
            ((zw >> 8) as u8 & 0x03) | ((zh >> 8) as u8 & 0x01) << 2,
        ),
        (IMAGE_MODE, IMAGE_MODE_JPEG),
        (QS, quality),
        (RESET, 0x00), // release the DVP
        (R_BYPASS, 0x00),
    ]
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
            let seq = jpeg_sequence(r, 12);
            let get = |reg| seq.iter().rev().find(|(a, _)| *a == reg).unwrap().1;
            assert_eq!(output_size(get(ZMOW), get(ZMOH), get(ZMHH)), r.size());
        }
        assert_eq!(Resolution::parse("352x288"), Some(Resolution::R352x288));
        assert_eq!(Resolution::parse("353x288"), None);
        assert_eq!(Resolution::parse("junk"), None);
    }
}
