//! Camera sources behind one trait. Each yields captured frames (RGB, JPEG or YUYV bytes);
//! decoding is a separate, timed step of the capture thread (`codec`).
//!
//! `synthetic` (scenes), `files` (images and MJPEG videos), `arducam` (the ArduCAM driver on
//! linux-embedded-hal or the simulated module), `v4l2` (USB and CSI cameras).

pub mod arducam;
pub mod files;
pub mod synthetic;
pub mod v4l2;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use thiserror::Error;

pub use crate::codec::Pixels;
pub use svit_protocol::clock::now_us;

use crate::codec::CodecError;
use files::{Files, MjpegFile};
use synthetic::Synthetic;

#[derive(Debug, Error)]
pub enum SourceError {
    #[error("camera {0} not found")]
    Missing(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("frame could not be decoded: {0}")]
    Decode(#[from] CodecError),
    #[error("corrupt frame: {0}")]
    Corrupt(String),
    /// The camera answered but the frame is lost (timeout, corrupt FIFO, bus error).
    #[error("camera error: {0}")]
    Camera(String),
    #[error("{0}")]
    Config(String),
}

pub struct Captured {
    pub pixels: Pixels,
    /// Microseconds since the Unix epoch at capture.
    pub capture_us: u64,
    pub capture_time: Duration,
}

pub trait FrameSource: Send {
    fn describe(&self) -> String;
    fn capture(&mut self) -> Result<Captured, SourceError>;
}

/// Holds a software camera to a frame rate, as a real sensor would be.
pub struct Pacer {
    period: Option<Duration>,
    next: Instant,
}

impl Pacer {
    pub fn new(fps: Option<f32>) -> Self {
        Pacer {
            period: fps
                .filter(|f| *f > 0.0)
                .map(|f| Duration::from_secs_f32(1.0 / f)),
            next: Instant::now(),
        }
    }
    pub fn wait(&mut self) {
        if let Some(p) = self.period {
            let now = Instant::now();
            if self.next > now {
                std::thread::sleep(self.next - now);
            }
            self.next = self.next.max(now) + p;
        }
    }
}

/// `key=value,key=value` camera options, checked against the keys a camera knows.
pub struct Options<'a>(Vec<(&'a str, &'a str)>);

impl<'a> Options<'a> {
    pub fn parse(spec: &'a str, known: &[&str]) -> Result<Self, SourceError> {
        let mut v = Vec::new();
        for part in spec.split(',').filter(|p| !p.is_empty()) {
            let (k, val) = part.split_once('=').ok_or_else(|| {
                SourceError::Config(format!("camera option {part:?} is not key=value"))
            })?;
            if !known.contains(&k) {
                return Err(SourceError::Config(format!(
                    "unknown camera option {k:?} (known: {})",
                    known.join(", ")
                )));
            }
            v.push((k, val));
        }
        Ok(Options(v))
    }
    pub fn get(&self, k: &str) -> Option<&'a str> {
        self.0
            .iter()
            .rev()
            .find(|(key, _)| *key == k)
            .map(|(_, v)| *v)
    }
    pub fn number<T: std::str::FromStr>(&self, k: &str) -> Result<Option<T>, SourceError> {
        self.get(k)
            .map(|v| {
                v.parse().map_err(|_| {
                    SourceError::Config(format!("camera option {k}={v} is not a number"))
                })
            })
            .transpose()
    }
}

fn is_video(path: &str) -> bool {
    let ext = Path::new(path).extension().and_then(|e| e.to_str());
    matches!(
        ext.map(str::to_ascii_lowercase).as_deref(),
        Some("mjpeg" | "mjpg")
    )
}

/// Parses `--camera`: `synthetic`, `file:PATH`, `sim-arducam[:OPTS]`, `arducam[:OPTS]`,
/// `v4l[:PATH,OPTS]`.
/// `fps` paces the cameras that would otherwise run as fast as they can.
pub fn open(
    spec: &str,
    size: usize,
    fps: Option<f32>,
) -> Result<Box<dyn FrameSource>, SourceError> {
    match spec.split_once(':') {
        None if spec == "synthetic" => Ok(Box::new(Synthetic::new(size, 424_242, fps))),
        Some(("file", path)) if is_video(path) => {
            Ok(Box::new(MjpegFile::open(Path::new(path), fps)?))
        }
        Some(("file", path)) => Ok(Box::new(Files::open(Path::new(path), fps)?)),
        None if spec == "sim-arducam" => arducam::open_sim("", fps),
        Some(("sim-arducam", opts)) => arducam::open_sim(opts, fps),
        #[cfg(target_os = "linux")]
        None if spec == "arducam" => arducam::open_linux("", fps),
        #[cfg(target_os = "linux")]
        Some(("arducam", opts)) => arducam::open_linux(opts, fps),
        #[cfg(target_os = "linux")]
        None if spec == "v4l" => v4l2::open("", fps),
        #[cfg(target_os = "linux")]
        Some(("v4l", opts)) => v4l2::open(opts, fps),
        _ => Err(SourceError::Config(format!(
            "unknown camera {spec:?}: use synthetic, file:PATH, sim-arducam[:OPTS], \
             arducam[:spi=..,i2c=..,led=..] or v4l[:/dev/videoN,res=WxH,fps=N,format=mjpeg|yuyv]"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_corrupt_files_are_named() {
        assert!(
            matches!(open("file:/nonexistent/cam", 64, None), Err(SourceError::Missing(p)) if p.contains("nonexistent"))
        );
        assert!(matches!(open("usb", 64, None), Err(SourceError::Config(_))));
        assert!(matches!(
            crate::codec::to_rgb(Pixels::Jpeg(vec![0xFF, 0xD8, 1, 2, 3])),
            Err(CodecError::Jpeg(_))
        ));
    }
}
