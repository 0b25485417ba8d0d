//! Register map. ArduChip addresses from the ArduCAM Mini 2MP Plus datasheet; OV2640 addresses
//! and bit meanings from the OmniVision OV2640 datasheet (register banks selected by 0xFF).

/// ArduChip, over SPI (mode 0). A write sends `addr | WRITE` then the value; a read sends `addr`
/// and clocks one byte back.
pub mod chip {
    pub const WRITE: u8 = 0x80;
    /// Scratch register: what is written reads back when the SPI link works.
    pub const TEST: u8 = 0x00;
    /// Frames per capture command minus one (0 = one frame).
    pub const CAPTURE_CTRL: u8 = 0x01;
    pub const FIFO_CTRL: u8 = 0x04;
    /// CPLD reset: write `CPLD_RESET_ON`, then 0.
    pub const CPLD_RESET: u8 = 0x07;
    pub const CPLD_RESET_ON: u8 = 0x80;
    pub const FIFO_CLEAR_DONE: u8 = 0x01;
    pub const FIFO_START: u8 = 0x02;
    pub const FIFO_RESET_WRITE: u8 = 0x10;
    pub const FIFO_RESET_READ: u8 = 0x20;
    /// Burst FIFO read: after this command byte every clocked byte is the next FIFO byte.
    pub const BURST_READ: u8 = 0x3C;
    pub const SINGLE_READ: u8 = 0x3D;
    pub const VERSION: u8 = 0x40;
    pub const STATUS: u8 = 0x41;
    pub const STATUS_CAPTURE_DONE: u8 = 0x08;
    /// FIFO length, little-endian over three registers (23 bits).
    pub const FIFO_SIZE: [u8; 3] = [0x42, 0x43, 0x44];
    /// The Mini 2MP Plus FIFO is 8 MB.
    pub const MAX_FIFO: u32 = 0x7F_FFFF;
}

/// OV2640 over SCCB (I2C-compatible), 7-bit address 0x30.
pub mod sensor {
    pub const ADDRESS: u8 = 0x30;
    pub const BANK_SEL: u8 = 0xFF;
    pub const BANK_DSP: u8 = 0x00;
    pub const BANK_SENSOR: u8 = 0x01;

    // Sensor bank.
    pub const PIDH: u8 = 0x0A;
    pub const PIDL: u8 = 0x0B;
    /// Product id high byte; the low byte is 0x4x depending on the revision.
    pub const PID: u8 = 0x26;
    pub const COM1: u8 = 0x03;
    pub const CLKRC: u8 = 0x11;
    pub const COM7: u8 = 0x12;
    pub const COM7_SRST: u8 = 0x80;
    pub const COM7_SVGA: u8 = 0x40;
    pub const COM8: u8 = 0x13;
    pub const HREFST: u8 = 0x17;
    pub const HREFEND: u8 = 0x18;
    pub const VSTRT: u8 = 0x19;
    pub const VEND: u8 = 0x1A;
    pub const REG32: u8 = 0x32;

    // DSP bank.
    pub const R_BYPASS: u8 = 0x05;
    pub const QS: u8 = 0x44;
    pub const CTRLI: u8 = 0x50;
    pub const HSIZE: u8 = 0x51;
    pub const VSIZE: u8 = 0x52;
    pub const XOFFL: u8 = 0x53;
    pub const YOFFL: u8 = 0x54;
    pub const VHYX: u8 = 0x55;
    pub const DSP_TEST: u8 = 0x57;
    pub const ZMOW: u8 = 0x5A;
    pub const ZMOH: u8 = 0x5B;
    pub const ZMHH: u8 = 0x5C;
    pub const CTRL2: u8 = 0x86;
    pub const HSIZE8: u8 = 0xC0;
    pub const VSIZE8: u8 = 0xC1;
    pub const R_DVP_SP: u8 = 0xD3;
    pub const IMAGE_MODE: u8 = 0xDA;
    pub const IMAGE_MODE_JPEG: u8 = 0x10;
    pub const RESET: u8 = 0xE0;
    pub const RESET_DVP: u8 = 0x04;
}
