//! What a V4L2 capture device is to the source: the `Device` trait (the hardware edge, spoken
//! by `kernel` to a device node and played by `sim` in tests) and the formats it deals in.

use std::io;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PixelFormat {
    Mjpeg,
    Yuyv,
}

impl PixelFormat {
    pub fn fourcc(self) -> u32 {
        u32::from_le_bytes(match self {
            PixelFormat::Mjpeg => *b"MJPG",
            PixelFormat::Yuyv => *b"YUYV",
        })
    }
    #[cfg(test)]
    pub(super) fn from_fourcc(f: u32) -> Option<Self> {
        [PixelFormat::Mjpeg, PixelFormat::Yuyv]
            .into_iter()
            .find(|p| p.fourcc() == f)
    }
}

pub(super) fn fourcc_name(f: u32) -> String {
    f.to_le_bytes()
        .iter()
        .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
        .collect()
}

/// What the driver says it is.
pub struct Caps {
    pub card: String,
    pub capture: bool,
    pub streaming: bool,
}

/// A format as asked, or as the driver set it (drivers round the size to what they have).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Format {
    pub width: u32,
    pub height: u32,
    pub fourcc: u32,
    /// Bytes per row (YUYV rows may be padded).
    pub stride: u32,
}

/// A V4L2 capture device.
pub trait Device: Send {
    fn caps(&mut self) -> io::Result<Caps>;
    /// Asks for a format; returns the one the driver chose.
    fn set_format(&mut self, want: Format) -> io::Result<Format>;
    /// Asks for a frame rate; returns the one the driver chose, if it says.
    fn set_fps(&mut self, fps: u32) -> io::Result<Option<f64>>;
    /// Allocates `buffers`, queues them and starts streaming.
    fn start(&mut self, buffers: u32) -> io::Result<()>;
    /// Copies the next filled buffer into `out` (`TimedOut` after `timeout`) and requeues it.
    fn next_frame(&mut self, out: &mut Vec<u8>, timeout: Duration) -> io::Result<()>;
}
