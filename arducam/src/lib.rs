//! ArduCAM Mini 2MP Plus driver: an OV2640 sensor configured over I2C (SCCB) and an ArduChip
//! whose FIFO holds the captured JPEG, read over SPI. Generic over embedded-hal 1.0 (`SpiDevice`,
//! `I2c`, `DelayNs`, an `OutputPin` status LED), `no_std`, no allocation: `capture` fills a buffer
//! the caller owns.
//!
//! ```text
//! new(spi, i2c, delay, led, config) -> init() -> capture(&mut buf) ... -> release()
//! ```
//!
//! `sim` (feature) is a simulated module behind the same traits: an ArduChip register file and
//! FIFO that serves JPEGs, an OV2640 register file with banks, soft reset and id, so the driver
//! and everything above it run on a machine without the hardware.
#![cfg_attr(not(feature = "std"), no_std)]

mod driver;
pub mod ov2640;
pub mod regs;
#[cfg(feature = "sim")]
pub mod sim;

pub use driver::{ArduCam, ChipInfo, Config, Error};
pub use ov2640::Resolution;

/// Start and end (exclusive) of the first complete JPEG in `data`: from the FF D8 start marker
/// to the first FF D9 end marker after it. Entropy-coded data stuffs every FF with 00, so FF D9
/// inside it cannot be mistaken for the end. `Err((soi_found, eoi_found))` otherwise.
pub fn find_jpeg(data: &[u8]) -> Result<(usize, usize), (bool, bool)> {
    let soi = data.windows(2).position(|w| w == [0xFF, 0xD8]);
    let Some(start) = soi else {
        return Err((false, false));
    };
    match data[start + 2..].windows(2).position(|w| w == [0xFF, 0xD9]) {
        Some(e) => Ok((start, start + 2 + e + 2)),
        None => Err((true, false)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jpeg_is_found_between_markers_with_junk_around() {
        let d = [0x00, 0xFF, 0xD8, 1, 0xFF, 0x00, 2, 0xFF, 0xD9, 0, 0];
        assert_eq!(find_jpeg(&d), Ok((1, 9)));
        assert_eq!(find_jpeg(&[1, 2, 3]), Err((false, false)));
        assert_eq!(find_jpeg(&[0xFF, 0xD8, 1, 2]), Err((true, false)));
        // A lone FF D8 FF D9 is the smallest "complete" stream; the decoder judges the rest.
        assert_eq!(find_jpeg(&[0xFF, 0xD8, 0xFF, 0xD9]), Ok((0, 4)));
    }
}
