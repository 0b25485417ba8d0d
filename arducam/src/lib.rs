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
pub mod jpeg;
pub mod ov2640;
pub mod regs;
#[cfg(feature = "sim")]
pub mod sim;

pub use driver::{ArduCam, ChipInfo, Config, Error};
pub use ov2640::Resolution;
