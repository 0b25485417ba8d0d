//! `v4l:/dev/video0[,res=640x480,fps=30,format=mjpeg|yuyv]`: USB and CSI cameras through
//! Video4Linux2, memory-mapped streaming.
//!
//! `Device` is the hardware edge: `Kernel` speaks the V4L2 ioctls to a device node, `sim` (tests)
//! plays a camera. `V4lSource` negotiates the format (MJPEG if the camera offers it at the size
//! asked, else YUYV, which the capture thread converts to RGB as its decode step) and hands
//! frames to the pipeline.

use std::io;
use std::time::{Duration, Instant};

use super::{now_us, Captured, FrameSource, Options, Pixels, SourceError};
use device::fourcc_name;
pub use device::{Device, Format, PixelFormat};

mod device;

pub struct V4lSource<D> {
    dev: D,
    fmt: Format,
    pixel: PixelFormat,
    what: String,
}

impl<D: Device> V4lSource<D> {
    /// Checks the device, negotiates size, format and rate, and starts streaming.
    pub fn start(
        mut dev: D,
        path: &str,
        opts: &Options,
        fallback_fps: Option<f32>,
    ) -> Result<Self, SourceError> {
        let err = |what: &str, e: io::Error| SourceError::Camera(format!("{path}: {what}: {e}"));
        let caps = dev.caps().map_err(|e| err("not a V4L2 device", e))?;
        if !caps.capture || !caps.streaming {
            return Err(SourceError::Config(format!(
                "{path} ({}) is not a streaming video capture device (a codec or metadata node?); \
                 `v4l2-ctl --list-devices` shows which node is the camera",
                caps.card
            )));
        }
        let (width, height) = match opts.get("res") {
            None => (640, 480),
            Some(r) => r
                .split_once('x')
                .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
                .ok_or_else(|| SourceError::Config(format!("res={r} is not WIDTHxHEIGHT")))?,
        };
        let wanted: Vec<PixelFormat> = match opts.get("format") {
            None => vec![PixelFormat::Mjpeg, PixelFormat::Yuyv],
            Some("mjpeg") => vec![PixelFormat::Mjpeg],
            Some("yuyv") => vec![PixelFormat::Yuyv],
            Some(f) => {
                return Err(SourceError::Config(format!(
                    "format={f}: use mjpeg or yuyv"
                )))
            }
        };
        let mut offered = Vec::new();
        let mut chosen = None;
        for p in wanted {
            let want = Format {
                width,
                height,
                fourcc: p.fourcc(),
                stride: 0,
            };
            let got = dev
                .set_format(want)
                .map_err(|e| err("setting the format", e))?;
            if got.fourcc == p.fourcc() {
                chosen = Some((p, got));
                break;
            }
            offered.push(fourcc_name(got.fourcc));
        }
        let (pixel, fmt) = chosen.ok_or_else(|| {
            SourceError::Config(format!(
                "{path} ({}) offers neither MJPEG nor YUYV (the driver answered {}); \
                 `v4l2-ctl -d {path} --list-formats-ext` lists what it has",
                caps.card,
                offered.join(", ")
            ))
        })?;
        let fps = opts
            .number::<u32>("fps")?
            .or(fallback_fps.map(|f| f.round().max(1.0) as u32))
            .unwrap_or(30);
        let rate = dev
            .set_fps(fps)
            .map_err(|e| err("setting the frame rate", e))?;
        dev.start(4).map_err(|e| err("starting the stream", e))?;
        let what = format!(
            "{} on {path}, {}x{} {:?} at {}",
            caps.card,
            fmt.width,
            fmt.height,
            pixel,
            rate.map_or("the driver's rate".into(), |r| format!("{r:.1} fps"))
        );
        Ok(V4lSource {
            dev,
            fmt,
            pixel,
            what,
        })
    }
}

impl<D: Device> FrameSource for V4lSource<D> {
    fn describe(&self) -> String {
        self.what.clone()
    }

    fn capture(&mut self) -> Result<Captured, SourceError> {
        let t = Instant::now();
        let mut data = Vec::new();
        self.dev
            .next_frame(&mut data, Duration::from_secs(2))
            .map_err(|e| match e.kind() {
                io::ErrorKind::TimedOut => SourceError::Camera("no frame within 2 s".into()),
                _ => SourceError::Camera(e.to_string()),
            })?;
        let pixels = match self.pixel {
            PixelFormat::Mjpeg => Pixels::Jpeg(data),
            PixelFormat::Yuyv => Pixels::Yuyv {
                data,
                width: self.fmt.width as usize,
                height: self.fmt.height as usize,
                stride: self.fmt.stride as usize,
            },
        };
        Ok(Captured {
            pixels,
            capture_us: now_us(),
            capture_time: t.elapsed(),
        })
    }
}

/// Opens `v4l:PATH[,OPTS]`.
#[cfg(target_os = "linux")]
pub fn open(spec: &str, fps: Option<f32>) -> Result<Box<dyn FrameSource>, SourceError> {
    let (path, rest) = match spec.split_once(',') {
        Some((p, r)) if !p.contains('=') => (p, r),
        _ if !spec.contains('=') && !spec.is_empty() => (spec, ""),
        _ => ("/dev/video0", spec),
    };
    let opts = Options::parse(rest, &["res", "fps", "format"])?;
    let dev = kernel::Kernel::open(path)?;
    Ok(Box::new(V4lSource::start(dev, path, &opts, fps)?))
}

#[cfg(target_os = "linux")]
mod kernel;
#[cfg(test)]
pub mod sim;

#[cfg(test)]
mod tests {
    use super::sim::SimCamera;
    use super::*;
    use crate::codec::{to_rgb, yuyv_to_rgb};

    fn opts(s: &str) -> Options<'_> {
        Options::parse(s, &["res", "fps", "format"]).unwrap()
    }

    fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (*x as f64 - *y as f64).abs())
            .sum::<f64>()
            / a.len() as f64
    }

    #[test]
    fn mjpeg_is_preferred_and_decodes_to_the_scene() {
        let cam = SimCamera::new(&[PixelFormat::Yuyv, PixelFormat::Mjpeg]);
        let want = cam.scene(0);
        let mut src = V4lSource::start(cam, "/dev/video7", &opts(""), None).unwrap();
        assert!(
            src.describe().contains("320x240 Mjpeg"),
            "{}",
            src.describe()
        );
        let (rgb, w, h) = to_rgb(src.capture().unwrap().pixels).unwrap();
        assert_eq!((w, h), (320, 240));
        assert!(mean_abs_diff(&rgb, &want) < 6.0);
    }

    #[test]
    fn yuyv_with_padded_rows_converts_to_the_scene() {
        let cam = SimCamera::new(&[PixelFormat::Yuyv]);
        let want = cam.scene(0);
        let mut src = V4lSource::start(cam, "/dev/video7", &opts("res=640x480"), None).unwrap();
        assert!(src.describe().contains("Yuyv"));
        let (rgb, w, h) = to_rgb(src.capture().unwrap().pixels).unwrap();
        assert_eq!((w, h), (320, 240), "the driver's size, not the one asked");
        // Chroma is shared by pixel pairs: edges blur, the rest matches closely.
        assert!(
            mean_abs_diff(&rgb, &want) < 6.0,
            "{}",
            mean_abs_diff(&rgb, &want)
        );
    }

    #[test]
    fn unusable_devices_and_options_are_named() {
        let grey = SimCamera::new(&[]);
        let e = V4lSource::start(grey, "/dev/video3", &opts(""), None)
            .err()
            .unwrap();
        assert!(
            e.to_string().contains("neither MJPEG nor YUYV") && e.to_string().contains("GREY"),
            "{e}"
        );
        let mut meta = SimCamera::new(&[PixelFormat::Mjpeg]);
        meta.capture = false;
        let e = V4lSource::start(meta, "/dev/video1", &opts(""), None)
            .err()
            .unwrap();
        assert!(
            e.to_string().contains("/dev/video1")
                && e.to_string().contains("not a streaming video capture"),
            "{e}"
        );
        let cam = SimCamera::new(&[PixelFormat::Mjpeg]);
        let e = V4lSource::start(cam, "/dev/video0", &opts("format=h264"), None)
            .err()
            .unwrap();
        assert!(e.to_string().contains("format=h264"), "{e}");
        let bad = yuyv_to_rgb(&[0; 10], 4, 4, 8, &mut Vec::new()).unwrap_err();
        assert!(bad.to_string().contains("YUYV"), "{bad}");
    }

    #[test]
    fn a_stalled_camera_times_out_and_recovers() {
        let mut cam = SimCamera::new(&[PixelFormat::Mjpeg]);
        cam.stall_after = Some(1);
        let mut src = V4lSource::start(cam, "/dev/video0", &opts(""), None).unwrap();
        assert!(src.capture().is_ok());
        let e = src.capture().err().unwrap();
        assert!(e.to_string().contains("no frame within 2 s"), "{e}");
        src.dev.stall_after = None;
        assert!(src.capture().is_ok());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_missing_node_is_named() {
        let e = open("/dev/video99,res=640x480", None).err().unwrap();
        assert!(
            e.to_string().contains("/dev/video99") && e.to_string().contains("plugged in"),
            "{e}"
        );
        let e = open("/dev/null", None).err().unwrap();
        assert!(
            e.to_string().contains("/dev/null") && e.to_string().contains("not a V4L2 device"),
            "{e}"
        );
    }
}
