//! The V4L2 ioctls, with the structures laid out as `linux/videodev2.h` has them on 64-bit
//! Linux (the boards and the PC; the sizes are checked at compile time).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

use super::device::{Caps, Device, Filled, Format};
use crate::camera::SourceError;

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
struct FmtDesc {
    index: u32,
    kind: u32,
    flags: u32,
    description: [u8; 32],
    pixelformat: u32,
    mbus_code: u32,
    reserved: [u32; 3],
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
const _: () = assert!(std::mem::size_of::<FmtDesc>() == 64);
const _: () = assert!(std::mem::size_of::<Buffer>() == 88);
const _: () = assert!(std::mem::size_of::<StreamParm>() == 204);

/// `_IOC(dir, 'V', nr, size)` as the kernel's asm-generic ioctl.h builds it.
const fn ioc(dir: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | ((b'V' as u64) << 8) | nr
}
const W: u64 = 1;
const R: u64 = 2;
const QUERYCAP: u64 = ioc(R, 0, std::mem::size_of::<Capability>());
const ENUM_FMT: u64 = ioc(R | W, 2, std::mem::size_of::<FmtDesc>());
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
const BUF_FLAG_TIMESTAMP_MASK: u32 = 0xe000;
const BUF_FLAG_TIMESTAMP_MONOTONIC: u32 = 0x2000;
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

    fn dequeue(&mut self, timeout: Duration) -> io::Result<Option<Filled>> {
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
                        return Ok(None);
                    }
                    match self.wait_readable(left) {
                        Err(e) if e.kind() == io::ErrorKind::TimedOut => return Ok(None),
                        r => r?,
                    }
                }
                Err(e) => return Err(e),
            }
        }
        let len = self
            .maps
            .get(b.index as usize)
            .ok_or_else(|| io::Error::other("the driver returned an unknown buffer"))?
            .1;
        let monotonic = b.flags & BUF_FLAG_TIMESTAMP_MASK == BUF_FLAG_TIMESTAMP_MONOTONIC;
        let [sec, usec] = b.timestamp;
        Ok(Some(Filled {
            index: b.index,
            bytes: (b.bytesused as usize).min(len),
            timestamp_us: (monotonic && sec > 0).then(|| sec as u64 * 1_000_000 + usec as u64),
            corrupt: b.flags & BUF_FLAG_ERROR != 0,
        }))
    }

    fn data(&self, b: &Filled) -> &[u8] {
        match self.maps.get(b.index as usize) {
            // SAFETY: the mapping is `len` bytes long and `dequeue` capped `bytes` at it.
            Some(&(ptr, len)) => unsafe {
                std::slice::from_raw_parts(ptr as *const u8, b.bytes.min(len))
            },
            None => &[],
        }
    }

    fn requeue(&mut self, f: Filled) -> io::Result<()> {
        let mut b: Buffer = zeroed();
        b.index = f.index;
        b.kind = BUF_TYPE_VIDEO_CAPTURE;
        b.memory = MEMORY_MMAP;
        self.ioctl(QBUF, &mut b)
    }

    fn formats(&mut self) -> io::Result<Vec<u32>> {
        let mut out = Vec::new();
        for index in 0..64 {
            let mut d: FmtDesc = zeroed();
            d.index = index;
            d.kind = BUF_TYPE_VIDEO_CAPTURE;
            match self.ioctl(ENUM_FMT, &mut d) {
                Ok(()) => out.push(d.pixelformat),
                // EINVAL: past the last format.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

/// The request numbers and layouts as `linux/videodev2.h` gives them (printed by a C
/// program against the header, x86_64 and aarch64 alike).
#[test]
fn ioctls_match_the_kernel_header() {
    assert_eq!(
        [QUERYCAP, ENUM_FMT, S_FMT, REQBUFS, QUERYBUF, QBUF, DQBUF, STREAMON, STREAMOFF, S_PARM],
        [
            0x80685600, 0xc0405602, 0xc0d05605, 0xc0145608, 0xc0585609, 0xc058560f, 0xc0585611,
            0x40045612, 0x40045613, 0xc0cc5616
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
            offset_of!(FmtDesc, pixelformat),
        ],
        [24, 56, 64, 72, 8, 44]
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
