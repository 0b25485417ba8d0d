//! What every camera source is: the `FrameSource` trait, its captured frames and errors, the
//! pacing of software cameras and the `key=value` options of `--camera`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::codec::{CodecError, Pixels};

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
    /// The camera is gone for good (unplugged longer than allowed): the run ends with an
    /// error, so a service manager restarts it.
    #[error("camera lost: {0}")]
    Gone(String),
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
