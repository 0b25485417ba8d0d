//! The driver against the simulated module: a whole init + capture cycle through register files
//! that behave like the hardware's, and the faults a real camera has.

use embedded_hal::i2c::I2c;
use svit_arducam::sim::{Faults, SimArduCam, SimDriver};
use svit_arducam::{Config, Error, Resolution};

/// A stand-in "JPEG" carrying its size, so the test sees what the sensor was asked for.
fn fake_jpeg(w: u16, h: u16) -> Vec<u8> {
    // SOI, a comment holding the size, a scan of filler, EOI.
    let mut v = vec![0xFF, 0xD8, 0xFF, 0xFE, 0x00, 0x06];
    v.extend(w.to_le_bytes());
    v.extend(h.to_le_bytes());
    v.extend([0xFF, 0xDA, 0x00, 0x02]);
    v.extend(std::iter::repeat_n(0x11, 4992));
    v.extend([0xFF, 0xD9]);
    v
}

fn driver(sim: &SimArduCam, cfg: Config) -> SimDriver {
    sim.driver(cfg)
}

#[test]
fn every_resolution_comes_out_at_the_size_asked() {
    for res in Resolution::ALL {
        let sim = SimArduCam::new(Box::new(fake_jpeg));
        let mut cam = driver(
            &sim,
            Config {
                resolution: res,
                ..Config::default()
            },
        );
        cam.init().unwrap();
        assert_eq!(sim.state().jpeg_blocker(res), None, "{res:?}");
        assert_eq!(sim.state().jpeg_output(), Some(res.size()), "{res:?}");
        let mut buf = vec![0u8; 16 * 1024];
        let jpeg = cam.capture(&mut buf).unwrap();
        let (w, h) = res.size();
        assert_eq!(jpeg.len(), 5008);
        assert_eq!(
            &jpeg[6..10],
            &[w.to_le_bytes(), h.to_le_bytes()].concat()[..]
        );
        assert!(!sim.state().led_on, "LED left on after capture");
        assert_eq!(sim.state().led_toggles, 2);
    }
}

#[test]
fn without_init_the_sensor_streams_no_jpeg() {
    let sim = SimArduCam::new(Box::new(fake_jpeg));
    let mut cam = driver(&sim, Config::default());
    let mut buf = vec![0u8; 256 * 1024];
    assert!(matches!(
        cam.capture(&mut buf),
        Err(Error::NoJpeg { soi: false, .. })
    ));
}

#[test]
fn a_register_off_the_vendors_value_stops_jpeg_as_on_a_real_module() {
    let sim = SimArduCam::new(Box::new(fake_jpeg));
    let mut cam = driver(&sim, Config::default());
    cam.init().unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    assert!(cam.capture(&mut buf).is_ok());
    // The DVP pixel-clock divider back at its power-on value (automatic), as the driver
    // before the vendor's tables left it.
    let mut i2c = sim.i2c();
    i2c.write(0x30, &[0xFF, 0x00]).unwrap();
    i2c.write(0x30, &[0xD3, 0x82]).unwrap();
    assert_eq!(
        sim.state().jpeg_blocker(Resolution::R320x240),
        Some((0, 0xD3, 0x82, 0x7F))
    );
    assert!(matches!(cam.capture(&mut buf), Err(Error::NoJpeg { .. })));
}

#[test]
fn skipping_the_reset_delay_is_caught_by_the_simulator() {
    // The simulated sensor NACKs for 1 ms after a soft reset, as the datasheet allows.
    let sim = SimArduCam::new(Box::new(fake_jpeg));
    let mut i2c = sim.i2c();
    i2c.write(0x30, &[0xFF, 0x01]).unwrap();
    i2c.write(0x30, &[0x12, 0x80]).unwrap();
    assert!(i2c.write(0x30, &[0x0A]).is_err());
}

#[test]
fn stalls_corrupt_frames_and_small_buffers_are_errors_and_the_next_frame_works() {
    let sim = SimArduCam::new(Box::new(fake_jpeg));
    sim.state().faults = Faults {
        stall_every: Some(2),
        corrupt_every: Some(3),
    };
    let mut cam = driver(
        &sim,
        Config {
            capture_timeout_ms: 50,
            ..Config::default()
        },
    );
    cam.init().unwrap();
    let mut buf = vec![0u8; 16 * 1024];
    assert!(cam.capture(&mut buf).is_ok()); // 1
    assert_eq!(
        cam.capture(&mut buf).unwrap_err(),
        Error::CaptureTimeout { ms: 50 }
    ); // 2
    assert!(matches!(
        cam.capture(&mut buf).unwrap_err(),
        Error::NoJpeg {
            soi: true,
            eoi: false,
            ..
        }
    )); // 3
    assert!(cam.capture(&mut buf).is_err()); // 4 stalls again
    assert!(cam.capture(&mut buf).is_ok()); // 5
    assert!(cam.capture(&mut buf).is_err()); // 6 stalls
    let mut small = [0u8; 100];
    assert_eq!(
        cam.capture(&mut small).unwrap_err(), // 7
        Error::FrameTooLarge {
            len: 5008,
            capacity: 100
        }
    );
    assert_eq!(sim.state().captures(), 7);
    assert!(!sim.state().led_on);
}

#[test]
fn wrong_sensor_is_named() {
    let sim = SimArduCam::new(Box::new(fake_jpeg));
    sim.state().pid = (0x77, 0x21);
    let mut cam = driver(&sim, Config::default());
    let err = cam.init().unwrap_err();
    assert_eq!(
        err,
        Error::ChipId {
            pidh: 0x77,
            pidl: 0x21
        }
    );
    assert!(err.to_string().contains("not an OV2640"));
}
