//! The driver's exact bus traffic, checked against embedded-hal-mock expectations.

use embedded_hal_mock::eh1::delay::{CheckedDelay, Transaction as D};
use embedded_hal_mock::eh1::digital::{Mock as Pin, State, Transaction as P};
use embedded_hal_mock::eh1::i2c::{Mock as I2cMock, Transaction as I};
use embedded_hal_mock::eh1::spi::{Mock as SpiMock, Transaction as S};
use svit_arducam::{ov2640, ArduCam, Config, Error, Resolution};

fn chip_write(reg: u8, val: u8) -> Vec<S<u8>> {
    vec![
        S::transaction_start(),
        S::write_vec(vec![reg | 0x80, val]),
        S::transaction_end(),
    ]
}

fn chip_read(reg: u8, val: u8) -> Vec<S<u8>> {
    vec![
        S::transaction_start(),
        S::write_vec(vec![reg]),
        S::read_vec(vec![val]),
        S::transaction_end(),
    ]
}

fn sensor_read(reg: u8, val: u8) -> Vec<I> {
    vec![I::write(0x30, vec![reg]), I::read(0x30, vec![val])]
}

#[test]
fn init_probes_spi_resets_the_sensor_and_programs_jpeg() {
    let spi: Vec<S<u8>> = [
        chip_write(0x07, 0x80), // CPLD reset, as the vendor does
        chip_write(0x07, 0x00),
        chip_write(0x00, 0x55),
        chip_read(0x00, 0x55),
        chip_write(0x00, 0xAA),
        chip_read(0x00, 0xAA),
        chip_read(0x40, 0x73),
        chip_write(0x01, 0x00),
    ]
    .concat();
    let mut i2c = vec![
        I::write(0x30, vec![0xFF, 0x01]),
        I::write(0x30, vec![0x12, 0x80]),
    ];
    i2c.extend(sensor_read(0x0A, 0x26));
    i2c.extend(sensor_read(0x0B, 0x42));
    let seq: Vec<_> = ov2640::jpeg_sequence(Resolution::R320x240, 12).collect();
    i2c.extend(seq.iter().map(|&(r, v)| I::write(0x30, vec![r, v])));
    // Spot-check values against the datasheet arithmetic, independently of the table code:
    // 320x240 output is ZMOW 80 (0x50), ZMOH 60 (0x3C); JPEG is IMAGE_MODE bit 4.
    for expect in [
        (0x5A, 0x50),
        (0x5B, 0x3C),
        (0x5C, 0x00),
        (0xDA, 0x10),
        (0xC0, 0x64),
    ] {
        assert!(seq.contains(&expect), "{expect:x?} missing");
    }
    let mut spi = SpiMock::new(&spi);
    let mut i2c = I2cMock::new(&i2c);
    let mut delay = CheckedDelay::new(&[
        D::delay_ms(100),
        D::delay_ms(100),
        D::delay_ms(100),
        D::delay_ms(1000),
    ]);
    let mut led = Pin::new(&[P::set(State::Low)]);
    let mut cam = ArduCam::new(
        spi.clone(),
        i2c.clone(),
        delay.clone(),
        led.clone(),
        Config::default(),
    );
    let info = cam.init().unwrap();
    assert_eq!(
        (info.arduchip_version, info.pidh, info.pidl),
        (0x73, 0x26, 0x42)
    );
    drop(cam.release());
    spi.done();
    i2c.done();
    delay.done();
    led.done();
}

#[test]
fn a_broken_spi_link_is_reported_before_touching_the_sensor() {
    let spi: Vec<S<u8>> = [
        chip_write(0x07, 0x80),
        chip_write(0x07, 0x00),
        chip_write(0x00, 0x55),
        chip_read(0x00, 0xFF),
    ]
    .concat();
    let mut spi = SpiMock::new(&spi);
    let mut i2c = I2cMock::new(&[]);
    let mut led = Pin::new(&[P::set(State::Low)]);
    let mut delay = CheckedDelay::new(&[D::delay_ms(100), D::delay_ms(100)]);
    let mut cam = ArduCam::new(
        spi.clone(),
        i2c.clone(),
        delay.clone(),
        led.clone(),
        Config::default(),
    );
    let err = cam.init().unwrap_err();
    assert_eq!(
        err,
        Error::SpiTest {
            wrote: 0x55,
            read: 0xFF
        }
    );
    assert!(err.to_string().contains("SPI wiring"));
    spi.done();
    delay.done();
    i2c.done();
    led.done();
}

#[test]
fn capture_waits_for_done_reads_the_fifo_in_bursts_and_returns_the_jpeg() {
    // SOI, a fill byte and a TEM marker, EOI: the smallest well-formed marker walk of 7 bytes.
    let jpeg = [0xFF, 0xD8, 0xFF, 0xFF, 0x01, 0xFF, 0xD9];
    // FIFO: one leading junk byte, the JPEG, two bytes of padding = 10 bytes.
    let fifo: Vec<u8> = [&[0x00][..], &jpeg, &[0, 0]].concat();
    let spi: Vec<S<u8>> = [
        chip_write(0x04, 0x31), // clear done, reset write and read pointers
        chip_write(0x04, 0x02), // start
        chip_read(0x41, 0x00),  // not yet
        chip_read(0x41, 0x08),  // done
        chip_read(0x42, 10),
        chip_read(0x43, 0),
        chip_read(0x44, 0),
        vec![
            S::transaction_start(),
            S::write_vec(vec![0x3C]),
            S::read_vec(fifo[..4].to_vec()),
            S::transaction_end(),
            S::transaction_start(),
            S::write_vec(vec![0x3C]),
            S::read_vec(fifo[4..8].to_vec()),
            S::transaction_end(),
            S::transaction_start(),
            S::write_vec(vec![0x3C]),
            S::read_vec(fifo[8..].to_vec()),
            S::transaction_end(),
        ],
        chip_write(0x04, 0x01),
    ]
    .concat();
    let mut spi = SpiMock::new(&spi);
    let mut i2c = I2cMock::new(&[]);
    let mut delay = CheckedDelay::new(&[D::delay_ms(1)]);
    let mut led = Pin::new(&[P::set(State::High), P::set(State::Low)]);
    let cfg = Config {
        burst_chunk: 4,
        ..Config::default()
    };
    let mut cam = ArduCam::new(spi.clone(), i2c.clone(), delay.clone(), led.clone(), cfg);
    let mut buf = [0u8; 64];
    assert_eq!(cam.capture(&mut buf).unwrap(), &jpeg);
    spi.done();
    i2c.done();
    delay.done();
    led.done();
}

#[test]
fn capture_times_out_and_turns_the_led_off() {
    let mut spi: Vec<S<u8>> = [chip_write(0x04, 0x31), chip_write(0x04, 0x02)].concat();
    for _ in 0..=3 {
        spi.extend(chip_read(0x41, 0x00));
    }
    let mut spi = SpiMock::new(&spi);
    let mut i2c = I2cMock::new(&[]);
    let mut delay = CheckedDelay::new(&[D::delay_ms(1), D::delay_ms(1), D::delay_ms(1)]);
    let mut led = Pin::new(&[P::set(State::High), P::set(State::Low)]);
    let cfg = Config {
        capture_timeout_ms: 3,
        ..Config::default()
    };
    let mut cam = ArduCam::new(spi.clone(), i2c.clone(), delay.clone(), led.clone(), cfg);
    let mut buf = [0u8; 16];
    assert_eq!(
        cam.capture(&mut buf).unwrap_err(),
        Error::CaptureTimeout { ms: 3 }
    );
    spi.done();
    i2c.done();
    delay.done();
    led.done();
}
