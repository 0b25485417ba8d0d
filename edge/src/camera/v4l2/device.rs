//! What a V4L2 capture device is to the source: the `Device` trait (the hardware edge, spoken
//! by `kernel` to a device node and played by `sim` in tests) and the formats it deals in.

use std::io;
use std::time::Duration;

/// The pixel formats the source takes, in order of preference: MJPEG (least bandwidth, the
/// UVC cameras' high resolutions), then the packed YUV 4:2:2 orders (YUYV from USB cameras,
/// UYVY from Jetson YUV sensors and HDMI bridges).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PixelFormat {
    Mjpeg,
    Yuyv,
    Uyvy,
}

impl PixelFormat {
    pub const ALL: [PixelFormat; 3] = [PixelFormat::Mjpeg, PixelFormat::Yuyv, PixelFormat::Uyvy];

    pub fn fourcc(self) -> u32 {
        u32::from_le_bytes(match self {
            PixelFormat::Mjpeg => *b"MJPG",
            PixelFormat::Yuyv => *b"YUYV",
            PixelFormat::Uyvy => *b"UYVY",
        })
    }

    pub fn from_fourcc(f: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.fourcc() == f)
    }

    /// `mjpeg`, `yuyv` or `uyvy` (the `format=` option).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|p| format!("{p:?}").eq_ignore_ascii_case(s))
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

/// A buffer the driver filled, taken off its queue (give it back with `Device::requeue`).
#[derive(Debug)]
pub struct Filled {
    pub index: u32,
    pub bytes: usize,
    /// When the frame was captured, µs of CLOCK_MONOTONIC (`monotonic_us`), if the driver
    /// stamps its buffers so.
    pub timestamp_us: Option<u64>,
    /// The driver flagged the frame as corrupt.
    pub corrupt: bool,
}

/// A V4L2 capture device: the calls the source makes, as the kernel's ioctls do them. The
/// driver fills its queued buffers in order and holds them until they are dequeued; a camera
/// that runs faster than they are taken waits with full buffers (the oldest frames).
pub trait Device: Send {
    fn caps(&mut self) -> io::Result<Caps>;
    /// The fourccs the driver offers (`VIDIOC_ENUM_FMT`).
    fn formats(&mut self) -> io::Result<Vec<u32>>;
    /// Asks for a format; returns the one the driver chose.
    fn set_format(&mut self, want: Format) -> io::Result<Format>;
    /// Asks for a frame rate; returns the one the driver chose, if it says.
    fn set_fps(&mut self, fps: u32) -> io::Result<Option<f64>>;
    /// Allocates `buffers`, queues them and starts streaming.
    fn start(&mut self, buffers: u32) -> io::Result<()>;
    /// The oldest filled buffer, waiting up to `timeout` for one (`Duration::ZERO`: only one
    /// already filled); `None` when none came.
    fn dequeue(&mut self, timeout: Duration) -> io::Result<Option<Filled>>;
    /// The bytes of a dequeued buffer.
    fn data(&self, b: &Filled) -> &[u8];
    /// Gives a buffer back to the driver to fill.
    fn requeue(&mut self, b: Filled) -> io::Result<()>;
}

/// CLOCK_MONOTONIC in µs: the clock V4L2 stamps buffers with.
pub fn monotonic_us() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes one timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1000
}
