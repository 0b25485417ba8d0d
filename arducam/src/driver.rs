//! The driver: owns the SPI device (ArduChip), the I2C bus (OV2640), a delay and a status LED.

use core::fmt;

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::OutputPin;
use embedded_hal::i2c::I2c;
use embedded_hal::spi::{Operation, SpiDevice};

use crate::ov2640::{self, Resolution};
use crate::regs::{chip, sensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub resolution: Resolution,
    /// JPEG quantisation scale (OV2640 QS): lower is finer. 12 is a good default.
    pub quality: u8,
    /// How long to wait for the capture-done flag.
    pub capture_timeout_ms: u32,
    /// Bytes per SPI burst transaction (Linux spidev refuses more than its `bufsiz`, 4096 by
    /// default).
    pub burst_chunk: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            resolution: Resolution::R320x240,
            quality: 12,
            capture_timeout_ms: 1000,
            burst_chunk: 4096,
        }
    }
}

/// What `init` found on the bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChipInfo {
    pub arduchip_version: u8,
    pub pidh: u8,
    pub pidl: u8,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Error<S, I, P> {
    Spi(S),
    I2c(I),
    Led(P),
    /// The ArduChip test register did not read back what was written: wiring, SPI mode or power.
    SpiTest {
        wrote: u8,
        read: u8,
    },
    /// The sensor on I2C 0x30 is not an OV2640.
    ChipId {
        pidh: u8,
        pidl: u8,
    },
    /// The capture-done flag did not come up in time.
    CaptureTimeout {
        ms: u32,
    },
    /// The FIFO length register reads an impossible value.
    FifoLength {
        len: u32,
    },
    /// The frame does not fit the caller's buffer.
    FrameTooLarge {
        len: usize,
        capacity: usize,
    },
    /// The FIFO held no complete JPEG (start FF D8 and end FF D9).
    NoJpeg {
        len: usize,
        soi: bool,
        eoi: bool,
    },
}

impl<S: fmt::Debug, I: fmt::Debug, P: fmt::Debug> fmt::Display for Error<S, I, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Spi(e) => write!(f, "SPI (ArduChip) error: {e:?}"),
            Error::I2c(e) => write!(f, "I2C (OV2640 at 0x30) error: {e:?}"),
            Error::Led(e) => write!(f, "status LED pin error: {e:?}"),
            Error::SpiTest { wrote, read } => write!(
                f,
                "ArduChip test register read back {read:#04x} after writing {wrote:#04x}: \
                 check the SPI wiring (MOSI/MISO/SCK/CS), SPI mode 0 and the camera's power"
            ),
            Error::ChipId { pidh, pidl } => write!(
                f,
                "sensor id {pidh:#04x}{pidl:02x} is not an OV2640 (0x264x): wrong camera module \
                 or I2C wiring"
            ),
            Error::CaptureTimeout { ms } => write!(f, "no frame captured within {ms} ms"),
            Error::FifoLength { len } => write!(f, "FIFO length {len} is out of range"),
            Error::FrameTooLarge { len, capacity } => {
                write!(
                    f,
                    "frame of {len} bytes does not fit the {capacity}-byte buffer"
                )
            }
            Error::NoJpeg { len, soi, eoi } => write!(
                f,
                "FIFO ({len} bytes) holds no complete JPEG (start marker {}, end marker {})",
                if *soi { "found" } else { "missing" },
                if *eoi { "found" } else { "missing" }
            ),
        }
    }
}

impl<S: fmt::Debug, I: fmt::Debug, P: fmt::Debug> core::error::Error for Error<S, I, P> {}

pub struct ArduCam<SPI, I2C, D, LED> {
    spi: SPI,
    i2c: I2C,
    delay: D,
    led: LED,
    config: Config,
}

type Res<T, SPI, I2C, LED> = Result<
    T,
    Error<
        <SPI as embedded_hal::spi::ErrorType>::Error,
        <I2C as embedded_hal::i2c::ErrorType>::Error,
        <LED as embedded_hal::digital::ErrorType>::Error,
    >,
>;

impl<SPI, I2C, D, LED> ArduCam<SPI, I2C, D, LED>
where
    SPI: SpiDevice,
    I2C: I2c,
    D: DelayNs,
    LED: OutputPin,
{
    /// Takes the bus handles; touches no hardware until [`ArduCam::init`].
    pub fn new(spi: SPI, i2c: I2C, delay: D, led: LED, config: Config) -> Self {
        ArduCam {
            spi,
            i2c,
            delay,
            led,
            config,
        }
    }

    /// Gives the bus handles back.
    pub fn release(self) -> (SPI, I2C, D, LED) {
        (self.spi, self.i2c, self.delay, self.led)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Checks the SPI link and the sensor id, resets the sensor and puts it in JPEG mode.
    pub fn init(&mut self) -> Res<ChipInfo, SPI, I2C, LED> {
        self.led.set_low().map_err(Error::Led)?;
        // Reset the ArduChip (CPLD) as the vendor does, 100 ms each way.
        self.write_chip(chip::CPLD_RESET, chip::CPLD_RESET_ON)?;
        self.delay.delay_ms(100);
        self.write_chip(chip::CPLD_RESET, 0)?;
        self.delay.delay_ms(100);
        for probe in [0x55, 0xAA] {
            self.write_chip(chip::TEST, probe)?;
            let read = self.read_chip(chip::TEST)?;
            if read != probe {
                return Err(Error::SpiTest { wrote: probe, read });
            }
        }
        let arduchip_version = self.read_chip(chip::VERSION)?;

        self.write_sensor(sensor::BANK_SEL, sensor::BANK_SENSOR)?;
        self.write_sensor(sensor::COM7, sensor::COM7_SRST)?;
        // The datasheet asks for 1 ms after a soft reset before the next SCCB access; give it
        // more, registers settle slowly on some modules.
        self.delay.delay_ms(100);
        let pidh = self.read_sensor(sensor::PIDH)?;
        let pidl = self.read_sensor(sensor::PIDL)?;
        if pidh != sensor::PID || pidl & 0xF0 != 0x40 {
            return Err(Error::ChipId { pidh, pidl });
        }
        for (reg, val) in ov2640::jpeg_sequence(self.config.resolution, self.config.quality) {
            self.write_sensor(reg, val)?;
        }
        // The vendor waits a second before the first capture: auto exposure and white balance
        // need a few frames before the picture is usable.
        self.delay.delay_ms(1000);
        self.write_chip(chip::CAPTURE_CTRL, 0)?;
        Ok(ChipInfo {
            arduchip_version,
            pidh,
            pidl,
        })
    }

    /// Captures one frame into `buf` and returns the JPEG inside it (no allocation). The LED is
    /// on while the camera works.
    pub fn capture<'b>(&mut self, buf: &'b mut [u8]) -> Res<&'b [u8], SPI, I2C, LED> {
        self.led.set_high().map_err(Error::Led)?;
        let res = self.capture_inner(buf);
        // Turn the LED off even when the capture failed, but report the capture's error first.
        let off = self.led.set_low().map_err(Error::Led);
        let (start, end) = res?;
        off?;
        Ok(&buf[start..end])
    }

    fn capture_inner(&mut self, buf: &mut [u8]) -> Res<(usize, usize), SPI, I2C, LED> {
        self.write_chip(
            chip::FIFO_CTRL,
            chip::FIFO_CLEAR_DONE | chip::FIFO_RESET_WRITE | chip::FIFO_RESET_READ,
        )?;
        self.write_chip(chip::FIFO_CTRL, chip::FIFO_START)?;
        let mut waited = 0;
        while self.read_chip(chip::STATUS)? & chip::STATUS_CAPTURE_DONE == 0 {
            if waited >= self.config.capture_timeout_ms {
                return Err(Error::CaptureTimeout { ms: waited });
            }
            self.delay.delay_ms(1);
            waited += 1;
        }
        let mut len = 0u32;
        for (i, reg) in chip::FIFO_SIZE.into_iter().enumerate() {
            len |= (self.read_chip(reg)? as u32) << (8 * i);
        }
        let len = len & chip::MAX_FIFO;
        if len == 0 || len == chip::MAX_FIFO {
            return Err(Error::FifoLength { len });
        }
        let len = len as usize;
        if len > buf.len() {
            // Drop the frame so the next capture starts clean.
            self.write_chip(chip::FIFO_CTRL, chip::FIFO_CLEAR_DONE)?;
            return Err(Error::FrameTooLarge {
                len,
                capacity: buf.len(),
            });
        }
        for chunk in buf[..len].chunks_mut(self.config.burst_chunk.max(1)) {
            self.spi
                .transaction(&mut [
                    Operation::Write(&[chip::BURST_READ]),
                    Operation::Read(chunk),
                ])
                .map_err(Error::Spi)?;
        }
        self.write_chip(chip::FIFO_CTRL, chip::FIFO_CLEAR_DONE)?;
        crate::jpeg::first_image(&buf[..len])
            .map(|r| (r.start, r.end))
            .map_err(|i| Error::NoJpeg {
                len,
                soi: i.soi,
                eoi: i.eoi,
            })
    }

    fn write_chip(&mut self, reg: u8, val: u8) -> Res<(), SPI, I2C, LED> {
        self.spi
            .write(&[reg | chip::WRITE, val])
            .map_err(Error::Spi)
    }

    fn read_chip(&mut self, reg: u8) -> Res<u8, SPI, I2C, LED> {
        let mut v = [0u8];
        self.spi
            .transaction(&mut [
                Operation::Write(&[reg & !chip::WRITE]),
                Operation::Read(&mut v),
            ])
            .map_err(Error::Spi)?;
        Ok(v[0])
    }

    fn write_sensor(&mut self, reg: u8, val: u8) -> Res<(), SPI, I2C, LED> {
        self.i2c
            .write(sensor::ADDRESS, &[reg, val])
            .map_err(Error::I2c)
    }

    /// SCCB has no repeated start: set the register address, stop, then read.
    fn read_sensor(&mut self, reg: u8) -> Res<u8, SPI, I2C, LED> {
        let mut v = [0u8];
        self.i2c
            .write(sensor::ADDRESS, &[reg])
            .map_err(Error::I2c)?;
        self.i2c.read(sensor::ADDRESS, &mut v).map_err(Error::I2c)?;
        Ok(v[0])
    }
}
