//! The ArduCAM Mini 2MP Plus as a frame source: the `svit-arducam` driver over linux-embedded-hal
//! on a board (`arducam:...`), or over the simulated module on any machine (`sim-arducam:...`).

use std::time::Instant;

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::OutputPin;
use embedded_hal::i2c::I2c;
use embedded_hal::spi::SpiDevice;
use svit_arducam::sim::{Faults, SimArduCam};
use svit_arducam::{ArduCam, Config, Resolution};

use super::{now_us, Captured, FrameSource, Options, Pacer, Pixels, SourceError};

/// The largest JPEG accepted: an 800x600 frame at the finest quality stays well below this.
const FRAME_BUFFER: usize = 1 << 20;

pub struct ArducamSource<SPI, I2C, D, LED> {
    cam: ArduCam<SPI, I2C, D, LED>,
    buf: Vec<u8>,
    what: String,
    pacer: Pacer,
}

impl<SPI, I2C, D, LED> ArducamSource<SPI, I2C, D, LED>
where
    SPI: SpiDevice,
    I2C: I2c,
    D: DelayNs,
    LED: OutputPin,
{
    /// Initialises the camera (SPI probe, sensor id, JPEG mode) or says what is wrong.
    pub fn start(
        mut cam: ArduCam<SPI, I2C, D, LED>,
        what: String,
        fps: Option<f32>,
    ) -> Result<Self, SourceError> {
        let info = cam
            .init()
            .map_err(|e| SourceError::Config(format!("{what}: {e}")))?;
        let (w, h) = cam.config().resolution.size();
        tracing::info!(
            "{what}: ArduChip version {:#04x}, OV2640 id {:#04x}{:02x}, JPEG {w}x{h}",
            info.arduchip_version,
            info.pidh,
            info.pidl
        );
        Ok(ArducamSource {
            cam,
            buf: vec![0; FRAME_BUFFER],
            what,
            pacer: Pacer::new(fps),
        })
    }
}

impl<SPI, I2C, D, LED> FrameSource for ArducamSource<SPI, I2C, D, LED>
where
    SPI: SpiDevice + Send,
    I2C: I2c + Send,
    D: DelayNs + Send,
    LED: OutputPin + Send,
{
    fn describe(&self) -> String {
        let (w, h) = self.cam.config().resolution.size();
        format!("{} ({w}x{h} JPEG)", self.what)
    }

    fn capture(&mut self) -> Result<Captured, SourceError> {
        self.pacer.wait();
        let t = Instant::now();
        let jpeg = self
            .cam
            .capture(&mut self.buf)
            .map_err(|e| SourceError::Camera(format!("{}: {e}", self.what)))?;
        Ok(Captured {
            pixels: Pixels::Jpeg(jpeg.to_vec()),
            capture_us: now_us(),
            capture_time: t.elapsed(),
        })
    }
}

/// The driver's configuration from the camera options.
impl Options<'_> {
    fn config(&self, capture_timeout_ms: u32) -> Result<Config, SourceError> {
        let resolution = match self.get("res") {
            None => Resolution::R320x240,
            Some(r) => Resolution::parse(r).ok_or_else(|| {
                let all: Vec<String> = Resolution::ALL
                    .iter()
                    .map(|r| format!("{}x{}", r.size().0, r.size().1))
                    .collect();
                SourceError::Config(format!(
                    "resolution {r} not supported: use one of {}",
                    all.join(", ")
                ))
            })?,
        };
        Ok(Config {
            resolution,
            quality: self.number("quality")?.unwrap_or(12),
            capture_timeout_ms,
            ..Config::default()
        })
    }
}

/// Distinct scenes the simulated module cycles through.
const SIM_FRAMES: usize = 16;

/// `sim-arducam[:res=WxH,stall-every=N,corrupt-every=N,trace=FILE]`: the simulated module
/// serving JPEGs of synthetic scenes, through the real driver. `trace` writes every I2C register
/// write of the driver's init, in order, one `RR VV` line each (hex), bank selects included.
pub fn open_sim(opts: &str, fps: Option<f32>) -> Result<Box<dyn FrameSource>, SourceError> {
    let o = Options::parse(
        opts,
        &["res", "quality", "stall-every", "corrupt-every", "trace"],
    )?;
    let cfg = o.config(200)?;
    // A sensor makes its JPEGs in hardware; rendering and encoding a scene per capture would
    // take CPU from the pipeline being measured. So the first SIM_FRAMES scenes at the current
    // resolution are rendered once and then cycled.
    let mut index = 0usize;
    let mut rendered: ((u16, u16), Vec<Vec<u8>>) = ((0, 0), Vec::new());
    let sim = SimArduCam::new(Box::new(move |w, h| {
        if rendered.0 != (w, h) {
            rendered = ((w, h), Vec::new());
        }
        let frames = &mut rendered.1;
        if frames.len() < SIM_FRAMES {
            let scene_cfg = svit_scenes::SceneConfig {
                width: w as usize,
                height: h as usize,
                ..svit_scenes::SceneConfig::square(w as usize)
            };
            let s = svit_scenes::generate(&scene_cfg, 515_151, frames.len() as u64);
            let jpeg = crate::codec::encode_jpeg(&s.rgb, s.width, s.height, 90).unwrap_or_default();
            frames.push(jpeg);
            return frames[frames.len() - 1].clone();
        }
        let jpeg = frames[index % SIM_FRAMES].clone();
        index += 1;
        jpeg
    }));
    {
        let mut st = sim.state();
        st.real_time = true;
        st.frame_ns = 10_000_000; // exposure + readout of a small frame
        st.faults = Faults {
            stall_every: o.number("stall-every")?,
            corrupt_every: o.number("corrupt-every")?,
        };
    }
    let source = ArducamSource::start(sim.driver(cfg), "simulated ArduCAM".into(), fps)?;
    if let Some(path) = o.get("trace") {
        let lines: String = sim
            .state()
            .trace
            .iter()
            .map(|(r, v)| format!("{r:02X} {v:02X}\n"))
            .collect();
        std::fs::write(path, lines)
            .map_err(|e| SourceError::Config(format!("trace={path}: {e}")))?;
    }
    Ok(Box::new(source))
}

/// `arducam[:spi=/dev/spidev0.0,i2c=/dev/i2c-1,led=GPIO22,res=WxH]` on a Linux board (the
/// default I2C bus is the header's: 1 on a Pi, 7 on a Jetson Orin).
#[cfg(target_os = "linux")]
pub fn open_linux(opts: &str, fps: Option<f32>) -> Result<Box<dyn FrameSource>, SourceError> {
    use linux_embedded_hal::{spidev, Delay, I2cdev, SpidevDevice};

    let o = Options::parse(opts, &["spi", "i2c", "led", "res", "quality"])?;
    let cfg = o.config(1000)?;
    let spi_path = o.get("spi").unwrap_or("/dev/spidev0.0");
    let i2c_path = o
        .get("i2c")
        .unwrap_or_else(|| crate::board::header_i2c(&crate::board::model()));
    for node in [
        crate::nodes::Node::spi(spi_path),
        crate::nodes::Node::i2c(i2c_path),
    ] {
        node.check().map_err(SourceError::Config)?;
    }
    let mut spi = SpidevDevice::open(spi_path)
        .map_err(|e| SourceError::Config(format!("opening {spi_path}: {e}")))?;
    let spi_opts = spidev::SpidevOptions::new()
        .bits_per_word(8)
        .max_speed_hz(8_000_000)
        .mode(spidev::SpiModeFlags::SPI_MODE_0)
        .build();
    spi.configure(&spi_opts)
        .map_err(|e| SourceError::Config(format!("configuring {spi_path} (mode 0, 8 MHz): {e}")))?;
    let i2c = I2cdev::new(i2c_path)
        .map_err(|e| SourceError::Config(format!("opening {i2c_path}: {e}")))?;
    let led = match o.get("led") {
        None | Some("none") => Led::None,
        Some(name) => Led::Line(gpio_line(name)?),
    };
    Ok(Box::new(ArducamSource::start(
        ArduCam::new(spi, i2c, Delay, led, cfg),
        format!("ArduCAM on {spi_path} + {i2c_path}"),
        fps,
    )?))
}

/// Names the missing device node or the group the user lacks, before a library's bare errno.
#[cfg(target_os = "linux")]
/// Finds a GPIO line by its name on any gpiochip (the Pi 5 moved the header to another chip,
/// so numbers are not portable) and claims it as an output, low.
#[cfg(target_os = "linux")]
fn gpio_line(name: &str) -> Result<linux_embedded_hal::CdevPin, SourceError> {
    use linux_embedded_hal::gpio_cdev::{chips, LineRequestFlags};
    let perm = |e: &dyn std::fmt::Display| {
        SourceError::Config(format!(
            "GPIO line {name}: {e} (the user needs the `gpio` group: sudo usermod -aG gpio $USER)"
        ))
    };
    let chips = chips().map_err(|e| perm(&e))?;
    let mut seen = 0;
    for chip in chips {
        let chip = chip.map_err(|e| perm(&e))?;
        seen += 1;
        for line in chip.lines() {
            let info = line.info().map_err(|e| perm(&e))?;
            if info.name() == Some(name) {
                let handle = line
                    .request(LineRequestFlags::OUTPUT, 0, "svit-edge")
                    .map_err(|e| perm(&e))?;
                return linux_embedded_hal::CdevPin::new(handle).map_err(|e| perm(&e));
            }
        }
    }
    Err(SourceError::Config(format!(
        "no GPIO line named {name} on {seen} gpiochip(s) (`gpioinfo` lists the names; \
         use led=none to run without the LED)"
    )))
}

/// The status LED is optional.
#[cfg(target_os = "linux")]
pub enum Led {
    Line(linux_embedded_hal::CdevPin),
    None,
}

#[cfg(target_os = "linux")]
impl embedded_hal::digital::ErrorType for Led {
    type Error = linux_embedded_hal::CdevPinError;
}

#[cfg(target_os = "linux")]
impl OutputPin for Led {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        match self {
            Led::Line(p) => p.set_low(),
            Led::None => Ok(()),
        }
    }
    fn set_high(&mut self) -> Result<(), Self::Error> {
        match self {
            Led::Line(p) => p.set_high(),
            Led::None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::to_rgb;

    #[test]
    fn simulated_arducam_frames_decode_at_the_resolution_asked() {
        let mut cam = open_sim("res=352x288", None).unwrap();
        assert!(cam.describe().contains("352x288"));
        for _ in 0..2 {
            let (rgb, w, h) = to_rgb(cam.capture().unwrap().pixels).unwrap();
            assert_eq!((w, h, rgb.len()), (352, 288, 352 * 288 * 3));
        }
    }

    #[test]
    fn corrupt_and_stalled_frames_are_errors_and_the_camera_goes_on() {
        let mut cam = open_sim("stall-every=2,corrupt-every=3", None).unwrap();
        let results: Vec<_> = (0..4)
            .map(|_| cam.capture().and_then(|c| Ok(to_rgb(c.pixels)?)))
            .collect();
        assert!(results[0].is_ok());
        assert!(
            matches!(&results[1], Err(SourceError::Camera(m)) if m.contains("no frame captured"))
        );
        assert!(
            matches!(&results[2], Err(SourceError::Camera(m)) if m.contains("no complete JPEG"))
        );
        assert!(results[3].is_err()); // stall again
        assert!(cam.capture().is_ok()); // 5
    }

    #[test]
    fn bad_options_are_named() {
        for (spec, needle) in [
            ("res=123x45", "not supported"),
            ("zoom=2", "unknown camera option"),
            ("stall-every=x", "not a number"),
            ("res", "not key=value"),
        ] {
            let err = open_sim(spec, None).err().unwrap().to_string();
            assert!(err.contains(needle), "{spec}: {err}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn missing_device_nodes_say_what_to_enable() {
        let err = open_linux("spi=/dev/spidev-none.0", None)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("/dev/spidev-none.0") && err.contains("enable SPI"),
            "{err}"
        );
    }
}
