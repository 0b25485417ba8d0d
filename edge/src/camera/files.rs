//! `--camera file:PATH`: an image, a folder of images, or an MJPEG video, looping.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{now_us, Captured, FrameSource, Pacer, Pixels, SourceError};
use crate::codec::jpeg_frames;

/// A missing file is a missing camera; other failures name the file.
fn file_error(path: &Path, e: std::io::Error) -> SourceError {
    match e.kind() {
        std::io::ErrorKind::NotFound => SourceError::Missing(path.display().to_string()),
        _ => SourceError::Io {
            path: path.to_path_buf(),
            source: e,
        },
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
        let io = |e| file_error(path, e);
        let meta = std::fs::metadata(path).map_err(io)?;
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

/// A video of JPEG frames (`.mjpeg`/`.mjpg`, as `ffmpeg -i in.mp4 -c:v mjpeg -f mjpeg out.mjpeg`
/// writes it), played in order, looping.
pub struct MjpegFile {
    path: PathBuf,
    data: Vec<u8>,
    frames: Vec<std::ops::Range<usize>>,
    index: usize,
    pacer: Pacer,
}

/// Files larger than this are refused rather than read into memory.
const MAX_VIDEO: u64 = 512 << 20;

impl MjpegFile {
    pub fn open(path: &Path, fps: Option<f32>) -> Result<Self, SourceError> {
        let io = |e| file_error(path, e);
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len > MAX_VIDEO {
            return Err(SourceError::Config(format!(
                "{}: {len} bytes is more than the {MAX_VIDEO} a video source reads; cut it \
                 shorter or extract frames into a folder",
                path.display()
            )));
        }
        let data = std::fs::read(path).map_err(io)?;
        let frames = jpeg_frames(&data);
        if frames.is_empty() {
            return Err(SourceError::Config(format!(
                "{}: no complete JPEG frame in it (is it MJPEG?)",
                path.display()
            )));
        }
        Ok(MjpegFile {
            path: path.to_path_buf(),
            data,
            frames,
            index: 0,
            pacer: Pacer::new(fps),
        })
    }
}

impl FrameSource for MjpegFile {
    fn describe(&self) -> String {
        format!(
            "{} ({} JPEG frames), looping",
            self.path.display(),
            self.frames.len()
        )
    }
    fn capture(&mut self) -> Result<Captured, SourceError> {
        self.pacer.wait();
        let t = Instant::now();
        let r = self.frames[self.index % self.frames.len()].clone();
        self.index += 1;
        Ok(Captured {
            pixels: Pixels::Jpeg(self.data[r].to_vec()),
            capture_us: now_us(),
            capture_time: t.elapsed(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::open;
    use crate::codec::{test_jpeg, to_rgb};

    #[test]
    fn mjpeg_video_files_play_their_frames_in_a_loop() {
        let jpegs: Vec<Vec<u8>> = (0..3).map(|i| test_jpeg(9, i)).collect();
        let mut video = b"junk".to_vec();
        for j in &jpegs {
            video.extend(j);
        }
        let dir = std::env::temp_dir().join(format!("svit-mjpeg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("clip.mjpeg");
        std::fs::write(&path, &video).unwrap();
        let mut src = open(&format!("file:{}", path.display()), 64, None).unwrap();
        assert!(src.describe().contains("3 JPEG frames"));
        let decoded: Vec<_> = (0..4)
            .map(|_| to_rgb(src.capture().unwrap().pixels).unwrap())
            .collect();
        assert_eq!(decoded[0].0, decoded[3].0, "loops back to the first frame");
        assert_ne!(decoded[0].0, decoded[1].0);
        std::fs::write(&path, b"no frames here").unwrap();
        let e = open(&format!("file:{}", path.display()), 64, None)
            .err()
            .unwrap();
        assert!(e.to_string().contains("no complete JPEG frame"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
