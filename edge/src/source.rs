//! Camera sources behind one trait. Each yields captured frames (RGB or JPEG bytes); decoding
//! is a separate, timed step of the capture thread.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use thiserror::Error;

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
    Corrupt(String),
    /// The camera answered but the frame is lost (timeout, corrupt FIFO, bus error).
    #[error("camera error: {0}")]
    Camera(String),
    #[error("{0}")]
    Config(String),
}

pub enum Pixels {
    Rgb {
        data: Vec<u8>,
        width: usize,
        height: usize,
    },
    Jpeg(Vec<u8>),
    /// YUYV 4:2:2 rows of `stride` bytes (V4L2 cameras without MJPEG).
    Yuyv {
        data: Vec<u8>,
        width: usize,
        height: usize,
        stride: usize,
    },
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

pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Decodes a captured frame to interleaved RGB.
pub fn to_rgb(p: Pixels) -> Result<(Vec<u8>, usize, usize), SourceError> {
    match p {
        Pixels::Rgb {
            data,
            width,
            height,
        } => Ok((data, width, height)),
        Pixels::Jpeg(bytes) => {
            let img = image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg)
                .map_err(|e| SourceError::Corrupt(e.to_string()))?
                .to_rgb8();
            let (w, h) = (img.width() as usize, img.height() as usize);
            Ok((img.into_raw(), w, h))
        }
        Pixels::Yuyv {
            data,
            width,
            height,
            stride,
        } => Ok((
            crate::v4l2::yuyv_to_rgb(&data, width, height, stride)?,
            width,
            height,
        )),
    }
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

/// Synthetic scenes (the training generator on another seed).
pub struct Synthetic {
    cfg: svit_scenes::SceneConfig,
    seed: u64,
    index: u64,
    pacer: Pacer,
}

impl Synthetic {
    pub fn new(size: usize, seed: u64, fps: Option<f32>) -> Self {
        Synthetic {
            cfg: svit_scenes::SceneConfig::square(size),
            seed,
            index: 0,
            pacer: Pacer::new(fps),
        }
    }
}

impl FrameSource for Synthetic {
    fn describe(&self) -> String {
        format!(
            "synthetic scenes {}x{} seed {}",
            self.cfg.width, self.cfg.height, self.seed
        )
    }
    fn capture(&mut self) -> Result<Captured, SourceError> {
        self.pacer.wait();
        let t = Instant::now();
        let s = svit_scenes::generate(&self.cfg, self.seed, self.index);
        self.index += 1;
        Ok(Captured {
            pixels: Pixels::Rgb {
                data: s.rgb,
                width: s.width,
                height: s.height,
            },
            capture_us: now_us(),
            capture_time: t.elapsed(),
        })
    }
}

/// A file, or a folder of images played in name order, looping.
pub struct Files {
    files: Vec<PathBuf>,
    index: usize,
    pacer: Pacer,
}

impl Files {
    pub fn open(path: &Path, fps: Option<f32>) -> Result<Self, SourceError> {
        let io = |source| SourceError::Io {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                SourceError::Missing(path.display().to_string())
            } else {
                io(e)
            }
        })?;
        let files = if meta.is_dir() {
            svit_runtime::preprocess::image_files(path).map_err(io)?
        } else {
            vec![path.to_path_buf()]
        };
        if files.is_empty() {
            return Err(SourceError::Config(format!(
                "{}: no .jpg, .jpeg or .png files",
                path.display()
            )));
        }
        Ok(Files {
            files,
            index: 0,
            pacer: Pacer::new(fps),
        })
    }
}

impl FrameSource for Files {
    fn describe(&self) -> String {
        format!("{} image file(s), looping", self.files.len())
    }
    fn capture(&mut self) -> Result<Captured, SourceError> {
        self.pacer.wait();
        let t = Instant::now();
        let path = &self.files[self.index % self.files.len()];
        self.index += 1;
        let bytes = std::fs::read(path).map_err(|source| SourceError::Io {
            path: path.clone(),
            source,
        })?;
        let pixels = if bytes.starts_with(&[0xFF, 0xD8]) {
            Pixels::Jpeg(bytes)
        } else {
            let img = image::load_from_memory(&bytes)
                .map_err(|e| SourceError::Corrupt(format!("{}: {e}", path.display())))?
                .to_rgb8();
            let (width, height) = (img.width() as usize, img.height() as usize);
            Pixels::Rgb {
                data: img.into_raw(),
                width,
                height,
            }
        };
        Ok(Captured {
            pixels,
            capture_us: now_us(),
            capture_time: t.elapsed(),
        })
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
        Some(("file", path)) => Ok(Box::new(Files::open(Path::new(path), fps)?)),
        None if spec == "sim-arducam" => crate::arducam::open_sim("", fps),
        Some(("sim-arducam", opts)) => crate::arducam::open_sim(opts, fps),
        #[cfg(target_os = "linux")]
        None if spec == "arducam" => crate::arducam::open_linux("", fps),
        #[cfg(target_os = "linux")]
        Some(("arducam", opts)) => crate::arducam::open_linux(opts, fps),
        #[cfg(target_os = "linux")]
        None if spec == "v4l" => crate::v4l2::open("", fps),
        #[cfg(target_os = "linux")]
        Some(("v4l", opts)) => crate::v4l2::open(opts, fps),
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
    fn synthetic_frames_differ_and_have_the_size_asked() {
        let mut s = Synthetic::new(64, 1, None);
        let a = to_rgb(s.capture().unwrap().pixels).unwrap();
        let b = to_rgb(s.capture().unwrap().pixels).unwrap();
        assert_eq!((a.1, a.2), (64, 64));
        assert_ne!(a.0, b.0);
    }

    #[test]
    fn missing_and_corrupt_files_are_named() {
        assert!(
            matches!(open("file:/nonexistent/cam", 64, None), Err(SourceError::Missing(p)) if p.contains("nonexistent"))
        );
        assert!(matches!(open("usb", 64, None), Err(SourceError::Config(_))));
        assert!(matches!(
            to_rgb(Pixels::Jpeg(vec![0xFF, 0xD8, 1, 2, 3])),
            Err(SourceError::Corrupt(_))
        ));
    }
}
