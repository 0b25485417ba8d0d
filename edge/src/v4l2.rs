//! `v4l:/dev/video0[,res=640x480,fps=30,format=mjpeg|yuyv]`: USB and CSI cameras through
//! Video4Linux2, memory-mapped streaming.
//!
//! `Device` is the hardware edge: `Kernel` speaks the V4L2 ioctls to a device node, `sim` (tests)
//! plays a camera. `V4lSource` negotiates the format (MJPEG if the camera offers it at the size
//! asked, else YUYV, which the capture thread converts to RGB as its decode step) and hands
//! frames to the pipeline.

use std::io;
use std::time::{Duration, Instant};

use crate::source::{now_us, Captured, FrameSource, Options, Pixels, SourceError};

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
    fn from_fourcc(f: u32) -> Option<Self> {
        [PixelFormat::Mjpeg, PixelFormat::Yuyv]
            .into_iter()
            .find(|p| p.fourcc() == f)
    }
}

fn fourcc_name(f: u32) -> String {
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

/// YUYV 4:2:2 (BT.601, limited range, as UVC cameras send it) -> interleaved RGB.
pub fn yuyv_to_rgb(
    src: &[u8],
    width: usize,
    height: usize,
    stride: usize,
    out: &mut Vec<u8>,
) -> Result<(), SourceError> {
    let stride = stride.max(width * 2);
    if width % 2 != 0 || src.len() < stride * (height - 1) + width * 2 {
        return Err(SourceError::Corrupt(format!(
            "{} bytes for a {width}x{height} YUYV frame",
            src.len()
        )));
    }
    out.clear();
    out.reserve(width * height * 3);
    // Fixed point, 8 fractional bits.
    let px = |y: i32, u: i32, v: i32, out: &mut Vec<u8>| {
        let c = 298 * (y - 16);
        out.push(((c + 409 * v + 128) >> 8).clamp(0, 255) as u8);
        out.push(((c - 100 * u - 208 * v + 128) >> 8).clamp(0, 255) as u8);
        out.push(((c + 516 * u + 128) >> 8).clamp(0, 255) as u8);
    };
    for row in src.chunks(stride).take(height) {
        for q in row[..width * 2].chunks_exact(4) {
            let (u, v) = (q[1] as i32 - 128, q[3] as i32 - 128);
            px(q[0] as i32, u, v, out);
            px(q[2] as i32, u, v, out);
        }
    }
    Ok(())
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
mod kernel {
    //! The V4L2 ioctls, with the structures laid out as `linux/videodev2.h` has them on 64-bit
    //! Linux (the boards and the PC; the sizes are checked at compile time).

    use std::fs::File;
    use std::io;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    use std::time::Duration;

    use super::{Caps, Device, Format};
    use crate::source::SourceError;

    #[repr(C)]
    struct Capability {
        driver: [u8; 16],
        card: [u8; 32],
        bus_info: [u8; 32],
        version: u32,
        capabilities: u32,
        device_caps: u32,
        reserved: [u32; 3],
    }

    #[repr(C)]
    #[derive(Clone, Copy)]
    struct PixFormat {
        width: u32,
        height: u32,
        pixelformat: u32,
        field: u32,
        bytesperline: u32,
        sizeimage: u32,
        colorspace: u32,
        private: u32,
        flags: u32,
        ycbcr_enc: u32,
        quantization: u32,
        xfer_func: u32,
    }

    #[repr(C)]
    union FormatUnion {
        pix: PixFormat,
        raw: [u8; 200],
        // The kernel's union holds pointers (v4l2_window): 8-byte aligned.
        _align: [u64; 25],
    }

    #[repr(C)]
    struct FormatMsg {
        kind: u32,
        fmt: FormatUnion,
    }

    #[repr(C)]
    struct RequestBuffers {
        count: u32,
        kind: u32,
        memory: u32,
        capabilities: u32,
        flags: u8,
        reserved: [u8; 3],
    }

    #[repr(C)]
    #[derive(Clone, Copy)]
    union BufferM {
        offset: u32,
        userptr: u64,
    }

    #[repr(C)]
    struct Buffer {
        index: u32,
        kind: u32,
        bytesused: u32,
        flags: u32,
        field: u32,
        timestamp: [i64; 2],
        timecode: [u32; 4],
        sequence: u32,
        memory: u32,
        m: BufferM,
        length: u32,
        reserved2: u32,
        request_fd: u32,
    }

    #[repr(C)]
    #[derive(Clone, Copy)]
    struct CaptureParm {
        capability: u32,
        capturemode: u32,
        numerator: u32,
        denominator: u32,
        extendedmode: u32,
        readbuffers: u32,
        reserved: [u32; 4],
    }

    #[repr(C)]
    union ParmUnion {
        capture: CaptureParm,
        raw: [u8; 200],
    }

    #[repr(C)]
    struct StreamParm {
        kind: u32,
        parm: ParmUnion,
    }

    const _: () = assert!(std::mem::size_of::<Capability>() == 104);
    const _: () = assert!(std::mem::size_of::<FormatMsg>() == 208);
    const _: () = assert!(std::mem::size_of::<RequestBuffers>() == 20);
    const _: () = assert!(std::mem::size_of::<Buffer>() == 88);
    const _: () = assert!(std::mem::size_of::<StreamParm>() == 204);

    /// `_IOC(dir, 'V', nr, size)` as the kernel's asm-generic ioctl.h builds it.
    const fn ioc(dir: u64, nr: u64, size: usize) -> u64 {
        (dir << 30) | ((size as u64) << 16) | ((b'V' as u64) << 8) | nr
    }
    const W: u64 = 1;
    const R: u64 = 2;
    const QUERYCAP: u64 = ioc(R, 0, std::mem::size_of::<Capability>());
    const S_FMT: u64 = ioc(R | W, 5, std::mem::size_of::<FormatMsg>());
    const REQBUFS: u64 = ioc(R | W, 8, std::mem::size_of::<RequestBuffers>());
    const QUERYBUF: u64 = ioc(R | W, 9, std::mem::size_of::<Buffer>());
    const QBUF: u64 = ioc(R | W, 15, std::mem::size_of::<Buffer>());
    const DQBUF: u64 = ioc(R | W, 17, std::mem::size_of::<Buffer>());
    const STREAMON: u64 = ioc(W, 18, 4);
    const STREAMOFF: u64 = ioc(W, 19, 4);
    const S_PARM: u64 = ioc(R | W, 22, std::mem::size_of::<StreamParm>());

    const BUF_TYPE_VIDEO_CAPTURE: u32 = 1;
    const MEMORY_MMAP: u32 = 1;
    const FIELD_NONE: u32 = 1;
    const CAP_VIDEO_CAPTURE: u32 = 0x1;
    const CAP_STREAMING: u32 = 0x0400_0000;
    const CAP_DEVICE_CAPS: u32 = 0x8000_0000;
    const BUF_FLAG_ERROR: u32 = 0x40;
    const CAP_TIMEPERFRAME: u32 = 0x1000;

    pub struct Kernel {
        file: File,
        maps: Vec<(*mut libc::c_void, usize)>,
        streaming: bool,
    }

    // The mappings belong to this device only and are used from one thread at a time.
    unsafe impl Send for Kernel {}

    impl Kernel {
        pub fn open(path: &str) -> Result<Self, SourceError> {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(path)
                .map_err(|e| match e.kind() {
                    io::ErrorKind::NotFound => SourceError::Missing(format!(
                        "{path} (no such device: is the camera plugged in? `ls /dev/video*` \
                         lists the nodes)"
                    )),
                    io::ErrorKind::PermissionDenied => SourceError::Config(format!(
                        "no permission to open {path}: add the user to the `video` group \
                         (sudo usermod -aG video $USER) and log in again"
                    )),
                    _ => SourceError::Io {
                        path: path.into(),
                        source: e,
                    },
                })?;
            Ok(Kernel {
                file,
                maps: Vec::new(),
                streaming: false,
            })
        }

        fn ioctl<T>(&self, req: u64, arg: &mut T) -> io::Result<()> {
            loop {
                // SAFETY: `arg` is the structure this request reads and writes.
                let r = unsafe {
                    libc::ioctl(
                        self.file.as_raw_fd(),
                        req as _,
                        arg as *mut T as *mut libc::c_void,
                    )
                };
                if r != -1 {
                    return Ok(());
                }
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }

        fn wait_readable(&self, timeout: Duration) -> io::Result<()> {
            let mut p = libc::pollfd {
                fd: self.file.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let r = unsafe { libc::poll(&mut p, 1, timeout.as_millis() as i32) };
            match r {
                0 => Err(io::ErrorKind::TimedOut.into()),
                r if r < 0 => Err(io::Error::last_os_error()),
                _ => Ok(()),
            }
        }
    }

    fn zeroed<T>() -> T {
        // SAFETY: plain C structures, for which all-zero is the kernel's "unset".
        unsafe { std::mem::zeroed() }
    }

    fn text(b: &[u8]) -> String {
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        String::from_utf8_lossy(&b[..end]).into_owned()
    }

    impl Device for Kernel {
        fn caps(&mut self) -> io::Result<Caps> {
            let mut c: Capability = zeroed();
            self.ioctl(QUERYCAP, &mut c)?;
            let caps = if c.capabilities & CAP_DEVICE_CAPS != 0 {
                c.device_caps
            } else {
                c.capabilities
            };
            Ok(Caps {
                card: text(&c.card),
                capture: caps & CAP_VIDEO_CAPTURE != 0,
                streaming: caps & CAP_STREAMING != 0,
            })
        }

        fn set_format(&mut self, want: Format) -> io::Result<Format> {
            let mut f: FormatMsg = zeroed();
            f.kind = BUF_TYPE_VIDEO_CAPTURE;
            let mut pix: PixFormat = zeroed();
            pix.width = want.width;
            pix.height = want.height;
            pix.pixelformat = want.fourcc;
            pix.field = FIELD_NONE;
            f.fmt.pix = pix;
            self.ioctl(S_FMT, &mut f)?;
            // SAFETY: the driver filled the `pix` member for a video capture type.
            let p = unsafe { f.fmt.pix };
            Ok(Format {
                width: p.width,
                height: p.height,
                fourcc: p.pixelformat,
                stride: p.bytesperline,
            })
        }

        fn set_fps(&mut self, fps: u32) -> io::Result<Option<f64>> {
            let mut s: StreamParm = zeroed();
            s.kind = BUF_TYPE_VIDEO_CAPTURE;
            // Writing a Copy union member is safe; the capture one is used for this type.
            s.parm.capture.numerator = 1;
            s.parm.capture.denominator = fps;
            match self.ioctl(S_PARM, &mut s) {
                Ok(()) => {
                    // SAFETY: the driver filled the capture member for a capture type.
                    let c = unsafe { &s.parm.capture };
                    Ok((c.capability & CAP_TIMEPERFRAME != 0 && c.numerator > 0)
                        .then(|| c.denominator as f64 / c.numerator as f64))
                }
                // Some drivers (many CSI bridges) have no rate control: run at theirs.
                Err(e) if e.raw_os_error() == Some(libc::ENOTTY) => Ok(None),
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(None),
                Err(e) => Err(e),
            }
        }

        fn start(&mut self, buffers: u32) -> io::Result<()> {
            let mut rb: RequestBuffers = zeroed();
            rb.count = buffers;
            rb.kind = BUF_TYPE_VIDEO_CAPTURE;
            rb.memory = MEMORY_MMAP;
            self.ioctl(REQBUFS, &mut rb)?;
            if rb.count == 0 {
                return Err(io::Error::other("the driver gave no buffers"));
            }
            for index in 0..rb.count {
                let mut b: Buffer = zeroed();
                b.index = index;
                b.kind = BUF_TYPE_VIDEO_CAPTURE;
                b.memory = MEMORY_MMAP;
                self.ioctl(QUERYBUF, &mut b)?;
                let len = b.length as usize;
                // SAFETY: maps the buffer the driver just described, read-only, shared.
                let ptr = unsafe {
                    libc::mmap(
                        std::ptr::null_mut(),
                        len,
                        libc::PROT_READ,
                        libc::MAP_SHARED,
                        self.file.as_raw_fd(),
                        b.m.offset as libc::off_t,
                    )
                };
                if ptr == libc::MAP_FAILED {
                    return Err(io::Error::last_os_error());
                }
                self.maps.push((ptr, len));
                self.ioctl(QBUF, &mut b)?;
            }
            let mut kind = BUF_TYPE_VIDEO_CAPTURE as i32;
            self.ioctl(STREAMON, &mut kind)?;
            self.streaming = true;
            Ok(())
        }

        fn next_frame(&mut self, out: &mut Vec<u8>, timeout: Duration) -> io::Result<()> {
            let deadline = std::time::Instant::now() + timeout;
            let mut b: Buffer = zeroed();
            loop {
                b.kind = BUF_TYPE_VIDEO_CAPTURE;
                b.memory = MEMORY_MMAP;
                match self.ioctl(DQBUF, &mut b) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        let left = deadline.saturating_duration_since(std::time::Instant::now());
                        if left.is_zero() {
                            return Err(io::ErrorKind::TimedOut.into());
                        }
                        self.wait_readable(left)?;
                    }
                    Err(e) => return Err(e),
                }
            }
            let (ptr, len) = *self
                .maps
                .get(b.index as usize)
                .ok_or_else(|| io::Error::other("the driver returned an unknown buffer"))?;
            let used = (b.bytesused as usize).min(len);
            out.clear();
            // SAFETY: the mapping is `len` bytes long and the driver filled `used` of them.
            out.extend_from_slice(unsafe { std::slice::from_raw_parts(ptr as *const u8, used) });
            let corrupt = b.flags & BUF_FLAG_ERROR != 0;
            self.ioctl(QBUF, &mut b)?;
            if corrupt {
                return Err(io::Error::other("the driver flagged the frame as corrupt"));
            }
            Ok(())
        }
    }

    /// The request numbers and layouts as `linux/videodev2.h` gives them (printed by a C
    /// program against the header, x86_64 and aarch64 alike).
    #[test]
    fn ioctls_match_the_kernel_header() {
        assert_eq!(
            [QUERYCAP, S_FMT, REQBUFS, QUERYBUF, QBUF, DQBUF, STREAMON, STREAMOFF, S_PARM],
            [
                0x80685600, 0xc0d05605, 0xc0145608, 0xc0585609, 0xc058560f, 0xc0585611, 0x40045612,
                0x40045613, 0xc0cc5616
            ]
        );
        use std::mem::offset_of;
        assert_eq!(
            [
                offset_of!(Buffer, timestamp),
                offset_of!(Buffer, sequence),
                offset_of!(Buffer, m),
                offset_of!(Buffer, length),
                offset_of!(FormatMsg, fmt),
            ],
            [24, 56, 64, 72, 8]
        );
    }

    impl Drop for Kernel {
        fn drop(&mut self) {
            if self.streaming {
                let mut kind = BUF_TYPE_VIDEO_CAPTURE as i32;
                let _ = self.ioctl(STREAMOFF, &mut kind);
            }
            for &(ptr, len) in &self.maps {
                // SAFETY: unmaps what `start` mapped, once.
                unsafe { libc::munmap(ptr, len) };
            }
        }
    }
}

#[cfg(test)]
pub mod sim {
    //! A camera for the tests: offers some formats at one size and serves synthetic scenes.

    use super::*;

    pub struct SimCamera {
        pub offers: Vec<PixelFormat>,
        pub size: (u32, u32),
        pub capture: bool,
        pub fmt: Option<Format>,
        pub started: bool,
        pub frames: u64,
        /// Frames after this many never come (a camera that stalls).
        pub stall_after: Option<u64>,
    }

    impl SimCamera {
        pub fn new(offers: &[PixelFormat]) -> Self {
            SimCamera {
                offers: offers.to_vec(),
                size: (320, 240),
                capture: true,
                fmt: None,
                started: false,
                frames: 0,
                stall_after: None,
            }
        }

        /// The scene a frame shows, as RGB.
        pub fn scene(&self, n: u64) -> Vec<u8> {
            let (w, h) = self.size;
            let cfg = svit_scenes::SceneConfig {
                width: w as usize,
                height: h as usize,
                ..svit_scenes::SceneConfig::square(w as usize)
            };
            svit_scenes::generate(&cfg, 77, n).rgb
        }
    }

    impl Device for SimCamera {
        fn caps(&mut self) -> io::Result<Caps> {
            Ok(Caps {
                card: "Sim Camera".into(),
                capture: self.capture,
                streaming: true,
            })
        }
        fn set_format(&mut self, want: Format) -> io::Result<Format> {
            // As drivers do: the nearest they have (here: their one size, their first format).
            let pixel = PixelFormat::from_fourcc(want.fourcc)
                .filter(|p| self.offers.contains(p))
                .or(self.offers.first().copied());
            let fourcc = pixel.map_or(u32::from_le_bytes(*b"GREY"), PixelFormat::fourcc);
            let f = Format {
                width: self.size.0,
                height: self.size.1,
                fourcc,
                stride: self.size.0 * 2 + 64, // padded rows, as some drivers have
            };
            self.fmt = Some(f);
            Ok(f)
        }
        fn set_fps(&mut self, fps: u32) -> io::Result<Option<f64>> {
            Ok(Some(fps.min(30) as f64))
        }
        fn start(&mut self, _buffers: u32) -> io::Result<()> {
            self.started = true;
            Ok(())
        }
        fn next_frame(&mut self, out: &mut Vec<u8>, _timeout: Duration) -> io::Result<()> {
            if self.stall_after.is_some_and(|n| self.frames >= n) {
                return Err(io::ErrorKind::TimedOut.into());
            }
            let rgb = self.scene(self.frames);
            self.frames += 1;
            let f = self.fmt.ok_or_else(|| io::Error::other("no format set"))?;
            let (w, h) = (f.width as usize, f.height as usize);
            out.clear();
            match PixelFormat::from_fourcc(f.fourcc) {
                Some(PixelFormat::Mjpeg) => {
                    *out = crate::pipeline::encode_jpeg(&rgb, w, h, 95).map_err(io::Error::other)?
                }
                Some(PixelFormat::Yuyv) => {
                    for y in 0..h {
                        for x in (0..w).step_by(2) {
                            let p = |x: usize| {
                                let i = (y * w + x) * 3;
                                let (r, g, b) =
                                    (rgb[i] as f32, rgb[i + 1] as f32, rgb[i + 2] as f32);
                                let yy = 16.0 + 0.257 * r + 0.504 * g + 0.098 * b;
                                let u = 128.0 - 0.148 * r - 0.291 * g + 0.439 * b;
                                let v = 128.0 + 0.439 * r - 0.368 * g - 0.071 * b;
                                (yy, u, v)
                            };
                            let (y0, u0, v0) = p(x);
                            let (y1, u1, v1) = p(x + 1);
                            out.extend(
                                [y0, (u0 + u1) / 2.0, y1, (v0 + v1) / 2.0].map(|v| v.round() as u8),
                            );
                        }
                        out.resize((y + 1) * f.stride as usize, 0);
                    }
                }
                None => return Err(io::Error::other("unsupported format")),
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::sim::SimCamera;
    use super::*;
    use crate::source::to_rgb;

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
