//! `v4l:/dev/video0[,res=640x480,fps=30,format=mjpeg|yuyv|uyvy,gone=30]`: USB and CSI cameras
//! through Video4Linux2, memory-mapped streaming; `sim-v4l[:res=WxH,fps=N,format=...]` the same
//! code on a simulated camera.
//!
//! `Device` is the hardware edge: `Kernel` speaks the V4L2 ioctls to a device node, `sim` plays
//! a camera. `V4lSource` picks the format from those the driver lists (MJPEG, else YUYV, else
//! UYVY; the YUV ones are converted to RGB as the capture thread's decode step) and always
//! hands on the newest frame: it drains the driver's queue, keeps the last buffer and gives the
//! older ones back, and stamps the frame with the buffer's own capture time. An unplugged
//! camera is reopened with backoff; gone longer than `gone` seconds, the source fails for good
//! and `svit-edge` exits non-zero, so systemd restarts it.

use std::io;
use std::time::{Duration, Instant};

use super::{now_us, Captured, FrameSource, Options, Pixels, SourceError};
use crate::codec::Packing;
use device::{fourcc_name, monotonic_us};
pub use device::{Device, Filled, Format, PixelFormat};

mod device;

/// Buffers asked of the driver: one being filled while one is read, and slack.
const BUFFERS: u32 = 4;

/// The options `v4l:` and `sim-v4l:` take.
pub const OPTIONS: [&str; 4] = ["res", "fps", "format", "gone"];

/// What the user asked for, kept to negotiate again after a reopen.
#[derive(Clone)]
struct Wanted {
    path: String,
    width: u32,
    height: u32,
    formats: Vec<PixelFormat>,
    fps: u32,
    /// How long the camera may be gone before the source gives up.
    gone: Duration,
}

impl Wanted {
    fn parse(path: &str, opts: &Options, fallback_fps: Option<f32>) -> Result<Self, SourceError> {
        let (width, height) = match opts.get("res") {
            None => (640, 480),
            Some(r) => r
                .split_once('x')
                .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
                .ok_or_else(|| SourceError::Config(format!("res={r} is not WIDTHxHEIGHT")))?,
        };
        let formats = match opts.get("format") {
            None => PixelFormat::ALL.to_vec(),
            Some(f) => vec![PixelFormat::parse(f).ok_or_else(|| {
                SourceError::Config(format!("format={f}: use mjpeg, yuyv or uyvy"))
            })?],
        };
        let fps = opts
            .number::<u32>("fps")?
            .or(fallback_fps.map(|f| f.round().max(1.0) as u32))
            .unwrap_or(30);
        let gone = Duration::from_secs_f64(opts.number::<f64>("gone")?.unwrap_or(30.0).max(0.0));
        Ok(Wanted {
            path: path.into(),
            width,
            height,
            formats,
            fps,
            gone,
        })
    }
}

/// Opens the device again after it went away.
pub type Reopen<D> = Box<dyn FnMut() -> Result<D, SourceError> + Send>;

pub struct V4lSource<D> {
    dev: D,
    wanted: Wanted,
    /// The camera's frame period, µs (the rate the driver set, else the one asked).
    period_us: u64,
    fmt: Format,
    pixel: PixelFormat,
    what: String,
    reopen: Option<Reopen<D>>,
    /// Since when the camera has been gone (unplugged), while it is.
    gone_since: Option<Instant>,
}

/// Checks the device, picks the format from those it offers, sets size and rate, and starts
/// streaming; returns the format and a description.
fn negotiate<D: Device>(
    dev: &mut D,
    w: &Wanted,
) -> Result<(Format, PixelFormat, u64, String), SourceError> {
    let path = &w.path;
    let err = |what: &str, e: io::Error| SourceError::Camera(format!("{path}: {what}: {e}"));
    let caps = dev.caps().map_err(|e| err("not a V4L2 device", e))?;
    if !caps.capture || !caps.streaming {
        return Err(SourceError::Config(format!(
            "{path} ({}) is not a streaming video capture device (a codec or metadata node?); \
             `v4l2-ctl --list-devices` shows which node is the camera",
            caps.card
        )));
    }
    let offered = dev.formats().map_err(|e| err("listing its formats", e))?;
    let pixel = w
        .formats
        .iter()
        .copied()
        .find(|p| offered.contains(&p.fourcc()))
        .ok_or_else(|| {
            let names: Vec<String> = offered.iter().map(|&f| fourcc_name(f)).collect();
            let asked: Vec<String> = w.formats.iter().map(|p| format!("{p:?}")).collect();
            SourceError::Config(format!(
                "{path} ({}) offers {} but not {}; `v4l2-ctl -d {path} --list-formats-ext` \
                 lists them (a Pi camera module gives raw Bayer here: use `exec:rpicam-vid ...`, \
                 see the README)",
                caps.card,
                names.join(", "),
                asked.join(" or ")
            ))
        })?;
    let want = Format {
        width: w.width,
        height: w.height,
        fourcc: pixel.fourcc(),
        stride: 0,
    };
    let fmt = dev
        .set_format(want)
        .map_err(|e| err("setting the format", e))?;
    if fmt.fourcc != pixel.fourcc() {
        return Err(SourceError::Config(format!(
            "{path}: the driver lists {pixel:?} but set {}",
            fourcc_name(fmt.fourcc)
        )));
    }
    let rate = dev
        .set_fps(w.fps)
        .map_err(|e| err("setting the frame rate", e))?;
    dev.start(BUFFERS)
        .map_err(|e| err("starting the stream", e))?;
    let what = format!(
        "{} on {path}, {}x{} {:?} at {}",
        caps.card,
        fmt.width,
        fmt.height,
        pixel,
        rate.map_or("the driver's rate".into(), |r| format!("{r:.1} fps"))
    );
    let period_us = (1e6 / rate.unwrap_or(w.fps as f64).max(0.1)) as u64;
    Ok((fmt, pixel, period_us, what))
}

fn is_gone(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENODEV)
}

impl<D: Device> V4lSource<D> {
    /// Negotiates with `dev` and starts streaming.
    pub fn start(
        mut dev: D,
        path: &str,
        opts: &Options,
        fallback_fps: Option<f32>,
    ) -> Result<Self, SourceError> {
        let wanted = Wanted::parse(path, opts, fallback_fps)?;
        let (fmt, pixel, period_us, what) = negotiate(&mut dev, &wanted)?;
        Ok(V4lSource {
            dev,
            wanted,
            period_us,
            fmt,
            pixel,
            what,
            reopen: None,
            gone_since: None,
        })
    }

    /// Reopens the device with `reopen` when it goes away (an unplugged USB camera).
    pub fn reopening(mut self, reopen: Reopen<D>) -> Self {
        self.reopen = Some(reopen);
        self
    }

    /// The device is gone: tries to open it again; past the `gone` limit, fails for good.
    fn recover(&mut self, cause: &io::Error) -> SourceError {
        let since = *self.gone_since.get_or_insert_with(Instant::now);
        let path = self.wanted.path.clone();
        let Some(reopen) = self.reopen.as_mut() else {
            return SourceError::Gone(format!("{path}: {cause}"));
        };
        let back = reopen().and_then(|mut dev| {
            let (fmt, pixel, period_us, what) = negotiate(&mut dev, &self.wanted)?;
            Ok((dev, fmt, pixel, period_us, what))
        });
        match back {
            Ok((dev, fmt, pixel, period_us, what)) => {
                tracing::warn!(
                    "{path} is back after {:.1} s: {what}",
                    since.elapsed().as_secs_f64()
                );
                (self.dev, self.fmt, self.pixel, self.period_us, self.what) =
                    (dev, fmt, pixel, period_us, what);
                self.gone_since = None;
                SourceError::Camera(format!("{path} reopened"))
            }
            Err(e) if since.elapsed() >= self.wanted.gone => SourceError::Gone(format!(
                "{path} has been gone for {:.0} s ({cause}; reopening: {e}): is the camera \
                 plugged in?",
                since.elapsed().as_secs_f64()
            )),
            Err(e) => SourceError::Camera(format!("{path} is gone ({cause}); reopening: {e}")),
        }
    }

    /// The newest frame: waits for a filled buffer, takes every other already filled and gives
    /// the older ones back. A driver whose buffers were all full dropped the frames since, so
    /// what it held can be several periods old: then the next frame (at most a period away,
    /// now that buffers are free again) is taken instead.
    fn newest(&mut self) -> io::Result<Option<Filled>> {
        let Some(mut newest) = self.dev.dequeue(Duration::from_secs(2))? else {
            return Ok(None);
        };
        while let Some(b) = self.dev.dequeue(Duration::ZERO)? {
            self.dev.requeue(std::mem::replace(&mut newest, b))?;
        }
        let age = |b: &Filled| b.timestamp_us.map(|t| monotonic_us().saturating_sub(t));
        if age(&newest).is_some_and(|a| a > self.period_us * 3 / 2) {
            let wait = Duration::from_micros(self.period_us * 2);
            if let Some(b) = self.dev.dequeue(wait)? {
                self.dev.requeue(std::mem::replace(&mut newest, b))?;
            }
        }
        Ok(Some(newest))
    }
}

impl<D: Device> FrameSource for V4lSource<D> {
    fn describe(&self) -> String {
        self.what.clone()
    }

    fn capture(&mut self) -> Result<Captured, SourceError> {
        let t = Instant::now();
        let b = match self.newest() {
            Ok(Some(b)) => b,
            Ok(None) => return Err(SourceError::Camera("no frame within 2 s".into())),
            Err(e) if is_gone(&e) => return Err(self.recover(&e)),
            Err(e) => return Err(SourceError::Camera(e.to_string())),
        };
        let data = self.dev.data(&b).to_vec();
        let (stamp, corrupt) = (b.timestamp_us, b.corrupt);
        match self.dev.requeue(b) {
            Err(e) if is_gone(&e) => return Err(self.recover(&e)),
            r => r.map_err(|e| SourceError::Camera(e.to_string()))?,
        }
        if corrupt {
            return Err(SourceError::Camera(
                "the driver flagged the frame as corrupt".into(),
            ));
        }
        // The buffer's capture time, moved from CLOCK_MONOTONIC to the wire's clock.
        let now = now_us();
        let capture_us = stamp.map_or(now, |s| {
            now.saturating_sub(monotonic_us().saturating_sub(s))
        });
        let packing = match self.pixel {
            PixelFormat::Mjpeg => None,
            PixelFormat::Yuyv => Some(Packing::Yuyv),
            PixelFormat::Uyvy => Some(Packing::Uyvy),
        };
        let pixels = match packing {
            None => Pixels::Jpeg(data),
            Some(packing) => Pixels::Yuv422 {
                data,
                width: self.fmt.width as usize,
                height: self.fmt.height as usize,
                stride: self.fmt.stride as usize,
                packing,
            },
        };
        Ok(Captured {
            pixels,
            capture_us,
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
    let opts = Options::parse(rest, &OPTIONS)?;
    let dev = kernel::Kernel::open(path)?;
    let node = path.to_string();
    let src = V4lSource::start(dev, path, &opts, fps)?
        .reopening(Box::new(move || kernel::Kernel::open(&node)));
    Ok(Box::new(src))
}

/// Opens `sim-v4l[:OPTS]`: the simulated camera through the same source code. It offers the
/// `format` asked (default MJPEG and YUYV) at `res` (default 640x480), at `fps` (default 30).
pub fn open_sim(spec: &str, fps: Option<f32>) -> Result<Box<dyn FrameSource>, SourceError> {
    let opts = Options::parse(spec, &OPTIONS)?;
    let wanted = Wanted::parse("sim-v4l", &opts, fps)?;
    let offers = match opts.get("format") {
        Some(_) => wanted.formats.clone(),
        None => vec![PixelFormat::Mjpeg, PixelFormat::Yuyv],
    };
    let mut cam = sim::SimCamera::new(&offers);
    cam.size = (wanted.width, wanted.height);
    cam.fps = wanted.fps as f64;
    Ok(Box::new(V4lSource::start(cam, "sim-v4l", &opts, fps)?))
}

#[cfg(target_os = "linux")]
mod kernel;
pub mod sim;

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::sim::SimCamera;
    use super::*;
    use crate::codec::{to_rgb, yuv422_to_rgb};

    fn opts(s: &str) -> Options<'_> {
        Options::parse(s, &OPTIONS).unwrap()
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
    fn yuyv_and_uyvy_with_padded_rows_convert_to_the_scene() {
        for p in [PixelFormat::Yuyv, PixelFormat::Uyvy] {
            let cam = SimCamera::new(&[p]);
            let want = cam.scene(0);
            let mut src = V4lSource::start(cam, "/dev/video7", &opts("res=640x480"), None).unwrap();
            assert!(src.describe().contains(&format!("{p:?}")));
            let (rgb, w, h) = to_rgb(src.capture().unwrap().pixels).unwrap();
            assert_eq!((w, h), (320, 240), "the driver's size, not the one asked");
            // Chroma is shared by pixel pairs: edges blur, the rest matches closely.
            let d = mean_abs_diff(&rgb, &want);
            assert!(d < 6.0, "{p:?}: {d}");
        }
    }

    #[test]
    fn unusable_devices_and_options_are_named() {
        let grey = SimCamera::new(&[]);
        let e = V4lSource::start(grey, "/dev/video3", &opts(""), None)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("offers GREY") && e.contains("Mjpeg or Yuyv or Uyvy"),
            "the error lists what the camera offers: {e}"
        );
        let only_yuyv = SimCamera::new(&[PixelFormat::Yuyv]);
        let e = V4lSource::start(only_yuyv, "/dev/video3", &opts("format=mjpeg"), None)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("offers YUYV but not Mjpeg"), "{e}");
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
        let bad = yuv422_to_rgb(&[0; 10], 4, 4, 8, Packing::Yuyv, &mut Vec::new()).unwrap_err();
        assert!(bad.to_string().contains("Yuyv"), "{bad}");
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

    /// A camera faster than its reader fills every buffer; the source takes the newest frame
    /// (not the oldest the driver holds), with the buffer's own capture time.
    #[test]
    fn the_newest_frame_is_taken_with_its_capture_time() {
        let mut cam = SimCamera::new(&[PixelFormat::Mjpeg]);
        cam.fps = 50.0;
        let mut src = V4lSource::start(cam, "/dev/video0", &opts(""), None).unwrap();
        src.capture().unwrap();
        // Busy for 10 periods: the driver fills its 4 buffers and loses the rest.
        std::thread::sleep(Duration::from_millis(200));
        let before = now_us();
        let c = src.capture().unwrap();
        let age_ms = before.saturating_sub(c.capture_us) as f64 / 1000.0;
        assert!(
            age_ms < 45.0,
            "the newest buffer is at most about one period (20 ms) old, not 4: {age_ms} ms"
        );
        assert!(c.capture_us <= now_us(), "a capture time in the past");
        // The buffers taken back from the newest one are requeued: streaming goes on.
        for _ in 0..5 {
            src.capture().unwrap();
        }
    }

    #[test]
    fn an_unplugged_camera_is_reopened_and_given_up_on_after_its_time() {
        let cam = SimCamera::new(&[PixelFormat::Mjpeg]);
        let plug = cam.unplugged.clone();
        let spare = plug.clone();
        let mut src = V4lSource::start(cam, "/dev/video0", &opts("gone=0.3"), None)
            .unwrap()
            .reopening(Box::new(move || {
                if spare.load(Ordering::Relaxed) {
                    return Err(SourceError::Missing("/dev/video0".into()));
                }
                let mut c = SimCamera::new(&[PixelFormat::Mjpeg]);
                c.unplugged = spare.clone();
                Ok(c)
            }));
        src.capture().unwrap();
        plug.store(true, Ordering::Relaxed);
        let e = src.capture().err().unwrap();
        assert!(
            matches!(e, SourceError::Camera(_)) && e.to_string().contains("gone"),
            "{e}"
        );
        // Replugged within the time: the next capture reopens it and frames come again.
        plug.store(false, Ordering::Relaxed);
        let e = src.capture().err().unwrap();
        assert!(e.to_string().contains("reopened"), "{e}");
        src.capture().unwrap();
        // Unplugged for longer than `gone`: the source fails for good, naming the device.
        plug.store(true, Ordering::Relaxed);
        let _ = src.capture();
        std::thread::sleep(Duration::from_millis(400));
        let e = src.capture().err().unwrap();
        assert!(
            matches!(e, SourceError::Gone(_)) && e.to_string().contains("/dev/video0"),
            "{e}"
        );
    }

    #[test]
    fn the_simulated_camera_runs_through_the_source() {
        let mut src = open_sim("res=160x120,fps=60,format=uyvy", None).unwrap();
        assert!(
            src.describe().contains("160x120 Uyvy"),
            "{}",
            src.describe()
        );
        let (_, w, h) = to_rgb(src.capture().unwrap().pixels).unwrap();
        assert_eq!((w, h), (160, 120));
        assert!(open_sim("format=bayer", None).is_err());
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
