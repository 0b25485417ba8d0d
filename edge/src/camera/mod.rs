//! Camera sources behind one trait. Each yields captured frames (RGB, JPEG or YUYV bytes);
//! decoding is a separate, timed step of the capture thread (`codec`).
//!
//! `synthetic` (scenes), `files` (images and MJPEG videos), `arducam` (the ArduCAM driver on
//! linux-embedded-hal or the simulated module), `v4l2` (USB and CSI cameras).

pub mod arducam;
pub mod files;
mod source;
pub mod stream;
pub mod synthetic;
pub mod v4l2;

use std::path::Path;

pub use crate::codec::Pixels;
pub use source::{Captured, FrameSource, Options, Pacer, SourceError};
pub use svit_protocol::clock::now_us;

use files::{Files, MjpegFile};
use stream::{Framing, StreamSource};
use synthetic::Synthetic;

fn is_video(path: &str) -> bool {
    let ext = Path::new(path).extension().and_then(|e| e.to_str());
    matches!(
        ext.map(str::to_ascii_lowercase).as_deref(),
        Some("mjpeg" | "mjpg")
    )
}

/// Parses `--camera`: `synthetic`, `synthetic:sheet`, `file:PATH`, `sim-arducam[:OPTS]`, `arducam[:OPTS]`,
/// `v4l[:PATH,OPTS]`, `sim-v4l[:OPTS]`, `exec:COMMAND`, `stdin`, `pipe:PATH`.
/// `fps` paces the cameras that would otherwise run as fast as they can.
pub fn open(
    spec: &str,
    size: usize,
    fps: Option<f32>,
) -> Result<Box<dyn FrameSource>, SourceError> {
    match spec.split_once(':') {
        None if spec == "synthetic" => Ok(Box::new(Synthetic::new(size, 424_242, fps))),
        Some(("synthetic", "sheet")) => Ok(Box::new(Synthetic::sheet(size, 424_242, fps))),
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
        None if spec == "sim-v4l" => v4l2::open_sim("", fps),
        Some(("sim-v4l", opts)) => v4l2::open_sim(opts, fps),
        Some(("exec", command)) => Ok(Box::new(StreamSource::exec(command, Framing::Jpeg)?)),
        Some(("exec-raw", rest)) => {
            let (framing, command) = rest.split_once(':').ok_or_else(|| {
                SourceError::Config("exec-raw:FORMAT,WxH:COMMAND, e.g. exec-raw:yuyv,640x480:...".into())
            })?;
            Ok(Box::new(StreamSource::exec(command, Framing::parse_raw(framing)?)?))
        }
        None if spec == "stdin" => Ok(Box::new(StreamSource::stdin()?)),
        Some(("pipe", path)) => Ok(Box::new(StreamSource::pipe(path)?)),
        _ => Err(SourceError::Config(format!(
            "unknown camera {spec:?}: use synthetic, synthetic:sheet, file:PATH, sim-arducam[:OPTS], \
             arducam[:spi=..,i2c=..,led=..], v4l[:/dev/videoN,res=WxH,fps=N,format=mjpeg|yuyv|uyvy], \
             sim-v4l[:OPTS], exec:COMMAND (a program writing JPEG frames), \
             exec-raw:FORMAT,WxH:COMMAND, stdin or pipe:PATH"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::CodecError;

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
