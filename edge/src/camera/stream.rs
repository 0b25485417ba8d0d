//! Cameras that V4L2 cannot reach, as a stream of JPEG frames (MJPEG) from another program:
//! `exec:COMMAND` runs it and reads its standard output (`exec-raw:FORMAT,WxH:COMMAND` for raw
//! frames of a stated format and size) (restarted with backoff when it
//! exits, saying why: its exit status and the last lines of its standard error), `stdin`
//! reads ours, `pipe:PATH` a named pipe (reopened for the next writer). A reader thread splits
//! the stream into frames with the project's JPEG marker scanner and keeps only the newest, so
//! a producer faster than inference never makes frames stale; garbage between frames and
//! frames over `MAX_FRAME` are skipped and counted, and memory stays bounded.
//!
//! Recipes (README): `exec:rpicam-vid -t 0 --codec mjpeg --width 640 --height 480
//! --framerate 15 -o -` (Pi camera modules), `exec:gst-launch-1.0 -q nvarguscamerasrc ! ... !
//! jpegenc ! fdsink` (Jetson CSI), `exec:ffmpeg -rtsp_transport tcp -i rtsp://... -c:v mjpeg
//! -f mjpeg -` (IP cameras).

use std::collections::VecDeque;
use std::io::{BufRead, Read};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use svit_arducam::jpeg;

use super::{now_us, Captured, FrameSource, Pixels, SourceError};

/// The largest frame taken from a stream; a frame growing past it is skipped (garbage, or a
/// producer sending something else).
pub const MAX_FRAME: usize = 8 << 20;

/// Lines of a producer's standard error kept to say why it stopped.
const STDERR_LINES: usize = 8;

/// How frames follow each other in a stream.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Framing {
    /// JPEG images back to back (MJPEG), found by their markers.
    Jpeg,
    /// Raw frames of a stated format and size, back to back.
    Raw {
        format: RawFormat,
        width: usize,
        height: usize,
    },
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RawFormat {
    Yuyv,
    Uyvy,
    Rgb24,
}

impl Framing {
    /// `yuyv,640x480` (also `uyvy`, `rgb24`): the raw framing `exec-raw:` takes.
    pub fn parse_raw(spec: &str) -> Result<Self, SourceError> {
        let bad = || {
            SourceError::Config(format!(
                "{spec:?} is not FORMAT,WIDTHxHEIGHT (format yuyv, uyvy or rgb24; e.g. yuyv,640x480)"
            ))
        };
        let (f, size) = spec.split_once(',').ok_or_else(bad)?;
        let format = match f {
            "yuyv" => RawFormat::Yuyv,
            "uyvy" => RawFormat::Uyvy,
            "rgb24" => RawFormat::Rgb24,
            _ => return Err(bad()),
        };
        let (width, height) = size
            .split_once('x')
            .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
            .ok_or_else(bad)?;
        let len = Framing::Raw {
            format,
            width,
            height,
        }
        .frame_len();
        if width == 0 || height == 0 || width % 2 != 0 || len > MAX_FRAME {
            return Err(SourceError::Config(format!(
                "{width}x{height}: raw frames need an even width and at most {MAX_FRAME} bytes"
            )));
        }
        Ok(Framing::Raw {
            format,
            width,
            height,
        })
    }

    fn frame_len(&self) -> usize {
        match *self {
            Framing::Jpeg => 0,
            Framing::Raw {
                format: RawFormat::Rgb24,
                width,
                height,
            } => width * height * 3,
            Framing::Raw { width, height, .. } => width * height * 2,
        }
    }

    fn pixels(&self, data: Vec<u8>) -> Pixels {
        use crate::codec::Packing;
        match *self {
            Framing::Jpeg => Pixels::Jpeg(data),
            Framing::Raw {
                format: RawFormat::Rgb24,
                width,
                height,
            } => Pixels::Rgb {
                data,
                width,
                height,
            },
            Framing::Raw {
                format,
                width,
                height,
            } => Pixels::Yuv422 {
                data,
                width,
                height,
                stride: width * 2,
                packing: if format == RawFormat::Yuyv {
                    Packing::Yuyv
                } else {
                    Packing::Uyvy
                },
            },
        }
    }
}

#[derive(Default)]
struct Slot {
    /// The newest complete frame and when its last byte arrived.
    frame: Option<(Vec<u8>, u64)>,
    /// Frames received so far.
    received: u64,
    /// Bytes skipped: garbage, or frames over `MAX_FRAME`.
    skipped_bytes: u64,
    /// Why no frame comes now (the producer's last exit), for errors.
    status: Option<String>,
    /// The stream ended for good (stdin closed): the camera is gone.
    ended: Option<String>,
}

#[derive(Default)]
struct Shared {
    slot: Mutex<Slot>,
    ready: Condvar,
    stop: AtomicBool,
    /// The running producer's process id (0: none), to stop it with the source.
    child: AtomicU32,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Slot> {
        // A poisoned slot still holds frames: a panicked reader must not take capture down.
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, frame: Vec<u8>) {
        let mut s = self.lock();
        s.received += 1;
        // A frame capture has not taken yet is replaced: the newest wins.
        s.frame = Some((frame, now_us()));
        s.status = None;
        self.ready.notify_all();
    }
}

/// Splits a byte stream into frames, publishing each complete one. Returns at the end of the
/// stream, or when the source stops.
fn split(r: impl Read, shared: &Shared, framing: Framing) -> std::io::Result<()> {
    match framing {
        Framing::Jpeg => split_jpeg(r, shared),
        raw => split_raw(r, shared, raw.frame_len()),
    }
}

/// Raw frames of `len` bytes each.
fn split_raw(mut r: impl Read, shared: &Shared, len: usize) -> std::io::Result<()> {
    let mut frame = vec![0u8; len];
    while !shared.stop.load(Ordering::Relaxed) {
        match r.read_exact(&mut frame) {
            Ok(()) => shared.publish(frame.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn split_jpeg(mut r: impl Read, shared: &Shared) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(256 << 10);
    let mut chunk = vec![0u8; 64 << 10];
    while !shared.stop.load(Ordering::Relaxed) {
        let n = match r.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut consumed = 0;
        let mut newest = None;
        for r in jpeg::images(&buf) {
            consumed = r.end;
            newest = Some(r);
        }
        if let Some(r) = newest {
            shared.publish(buf[r].to_vec());
        }
        // Bytes before the next start marker are not a frame.
        let start = buf[consumed..]
            .windows(2)
            .position(|w| w == [0xFF, 0xD8])
            .map_or(buf.len().saturating_sub(1).max(consumed), |p| consumed + p);
        let garbage = start - consumed;
        buf.drain(..start);
        let mut skipped = garbage;
        if buf.len() > MAX_FRAME {
            // The frame at the front grew too large: drop it, keeping a frame begun after it.
            let next = buf
                .windows(2)
                .rposition(|w| w == [0xFF, 0xD8])
                .filter(|&p| p > 0)
                .unwrap_or(buf.len());
            skipped += next;
            buf.drain(..next);
        }
        if skipped > 0 {
            shared.lock().skipped_bytes += skipped as u64;
        }
    }
    Ok(())
}

pub struct StreamSource {
    shared: Arc<Shared>,
    framing: Framing,
    what: String,
}

impl StreamSource {
    /// `exec:COMMAND`: runs `sh -c COMMAND` and reads its standard output, again after it
    /// exits (backoff 0.5 s doubling to 10 s; back to 0.5 s after a run of 10 s or more).
    pub fn exec(command: &str, framing: Framing) -> Result<Self, SourceError> {
        if command.trim().is_empty() {
            return Err(SourceError::Config(
                "exec: needs a command, e.g. exec:rpicam-vid -t 0 --codec mjpeg -o -".into(),
            ));
        }
        let shared = Arc::<Shared>::default();
        let (sh, cmd) = (shared.clone(), command.to_string());
        std::thread::Builder::new()
            .name("exec-camera".into())
            .spawn(move || run_producer(&cmd, &sh, framing))
            .map_err(|e| SourceError::Camera(format!("starting the reader: {e}")))?;
        Ok(StreamSource {
            shared,
            framing,
            what: format!("{} from `{command}`", describe(framing)),
        })
    }

    /// `stdin`: our standard input; when it ends, the camera is gone.
    pub fn stdin() -> Result<Self, SourceError> {
        Self::reader("standard input", || Ok(std::io::stdin().lock()), false)
    }

    /// `pipe:PATH`: a named pipe, opened again for each writer.
    pub fn pipe(path: &str) -> Result<Self, SourceError> {
        let meta = std::fs::metadata(path).map_err(|e| {
            SourceError::Missing(format!("{path} ({e}; make one with `mkfifo {path}`)"))
        })?;
        if meta.is_dir() {
            return Err(SourceError::Config(format!(
                "{path} is a folder: use file:{path}"
            )));
        }
        let p = path.to_string();
        Self::reader(
            &format!("pipe {path}"),
            move || std::fs::File::open(&p),
            true,
        )
    }

    fn reader<R: Read, F>(what: &str, open: F, again: bool) -> Result<Self, SourceError>
    where
        F: Fn() -> std::io::Result<R> + Send + 'static,
    {
        let shared = Arc::<Shared>::default();
        let (sh, name) = (shared.clone(), what.to_string());
        std::thread::Builder::new()
            .name("stream-camera".into())
            .spawn(move || loop {
                let res = open().and_then(|r| split(r, &sh, Framing::Jpeg));
                let why = match res {
                    Ok(()) => format!("{name} ended"),
                    Err(e) => format!("{name}: {e}"),
                };
                if sh.stop.load(Ordering::Relaxed) {
                    return;
                }
                if !again {
                    sh.lock().ended = Some(why);
                    sh.ready.notify_all();
                    return;
                }
                sh.lock().status = Some(why);
                std::thread::sleep(Duration::from_millis(100));
            })
            .map_err(|e| SourceError::Camera(format!("starting the reader: {e}")))?;
        Ok(StreamSource {
            shared,
            framing: Framing::Jpeg,
            what: format!("JPEG frames from {what}"),
        })
    }
}

fn describe(framing: Framing) -> String {
    match framing {
        Framing::Jpeg => "JPEG frames".into(),
        Framing::Raw {
            format,
            width,
            height,
        } => format!("raw {format:?} {width}x{height} frames"),
    }
}

/// Runs the producer again and again until the source stops.
fn run_producer(command: &str, shared: &Shared, framing: Framing) {
    let mut backoff = Duration::from_millis(500);
    while !shared.stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let why = match spawn(command) {
            Ok(mut child) => {
                shared.child.store(child.id(), Ordering::Relaxed);
                let tail = child.stderr.take().map(keep_tail);
                let read = child.stdout.take().map(|o| split(o, shared, framing));
                let _ = child.kill();
                let status = child.wait();
                shared.child.store(0, Ordering::Relaxed);
                let lines = tail
                    .and_then(|t| t.join().ok())
                    .map(|l| Vec::from(l).join(" | "))
                    .unwrap_or_default();
                let mut why = match status {
                    Ok(s) => format!("`{command}` exited ({s})"),
                    Err(e) => format!("`{command}`: {e}"),
                };
                if let Some(Err(e)) = read {
                    why += &format!(", reading it: {e}");
                }
                if !lines.is_empty() {
                    why += &format!("; it said: {lines}");
                }
                why
            }
            Err(e) => format!("`{command}` could not be started: {e}"),
        };
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        if started.elapsed() >= Duration::from_secs(10) {
            backoff = Duration::from_millis(500);
        }
        tracing::warn!("{why}; starting it again in {backoff:?}");
        shared.lock().status = Some(why);
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

fn spawn(command: &str) -> std::io::Result<Child> {
    Command::new("sh")
        .args(["-c", command])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
}

/// Reads a producer's standard error to its end, keeping the last lines.
fn keep_tail(err: impl Read + Send + 'static) -> std::thread::JoinHandle<VecDeque<String>> {
    std::thread::spawn(move || {
        let mut tail = VecDeque::new();
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            if tail.len() == STDERR_LINES {
                tail.pop_front();
            }
            // Long lines (progress bars) are cut: this is for a log line.
            tail.push_back(line.chars().take(200).collect());
        }
        tail
    })
}

impl FrameSource for StreamSource {
    fn describe(&self) -> String {
        self.what.clone()
    }

    fn capture(&mut self) -> Result<Captured, SourceError> {
        let t = Instant::now();
        let deadline = t + Duration::from_secs(2);
        let mut s = self.shared.lock();
        loop {
            if let Some((data, capture_us)) = s.frame.take() {
                return Ok(Captured {
                    pixels: self.framing.pixels(data),
                    capture_us,
                    capture_time: t.elapsed(),
                });
            }
            if let Some(why) = &s.ended {
                return Err(SourceError::Gone(why.clone()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let why = s.status.clone().unwrap_or_else(|| "nothing arrived".into());
                return Err(SourceError::Camera(format!(
                    "no frame within 2 s from {}: {why}",
                    self.what
                )));
            }
            s = self
                .shared
                .ready
                .wait_timeout(s, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

impl Drop for StreamSource {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let pid = self.shared.child.load(Ordering::Relaxed);
        if pid != 0 {
            // SAFETY: signals the producer this source started (its pid, still its child).
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{test_jpeg, to_rgb};

    fn jpeg(i: u64) -> Vec<u8> {
        test_jpeg(5, i)
    }

    /// Delivers `data` in small reads, as a pipe does.
    struct Trickle(Vec<u8>, usize);
    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(997).min(self.0.len() - self.1);
            buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
            self.1 += n;
            Ok(n)
        }
    }

    #[test]
    fn a_stream_is_split_into_its_frames_skipping_garbage_and_oversized_ones() {
        let mut data = b"boot noise".to_vec();
        data.extend(jpeg(1));
        // A start marker with no end, larger than the cap: skipped, memory stays bounded.
        data.extend([0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02]);
        data.extend(std::iter::repeat_n(0x11u8, MAX_FRAME + 10));
        data.extend(jpeg(2));
        let shared = Shared::default();
        split(Trickle(data, 0), &shared, Framing::Jpeg).unwrap();
        let s = shared.lock();
        assert_eq!(s.received, 2, "two complete frames");
        assert!(s.skipped_bytes >= MAX_FRAME as u64, "{}", s.skipped_bytes);
        let (last, _) = s.frame.as_ref().unwrap();
        assert_eq!(last, &jpeg(2), "the newest frame is kept");
    }

    fn jpeg_file(dir: &std::path::Path) -> std::path::PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let p = dir.join("frame.jpg");
        std::fs::write(&p, jpeg(3)).unwrap();
        p
    }

    #[test]
    fn a_producer_that_exits_is_started_again_and_frames_continue() {
        let dir = std::env::temp_dir().join(format!("svit-exec-{}", std::process::id()));
        let f = jpeg_file(&dir);
        // One frame, then the producer dies with a message.
        let cmd = format!("cat {}; echo 'sensor lost' >&2; exit 3", f.display());
        let mut src = StreamSource::exec(&cmd, Framing::Jpeg).unwrap();
        let first = src.capture().unwrap();
        assert!(matches!(first.pixels, Pixels::Jpeg(ref j) if j == &jpeg(3)));
        // The next frame comes from the restarted producer (after its backoff).
        let again = src.capture().unwrap();
        assert_eq!(to_rgb(again.pixels).unwrap().1, 64);
        let status = src.shared.lock().status.clone().unwrap_or_default();
        assert!(
            status.is_empty()
                || (status.contains("exit status: 3") && status.contains("sensor lost")),
            "{status}"
        );
        drop(src);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_command_that_does_not_exist_is_named_with_its_stderr() {
        let mut src = StreamSource::exec("no-such-camera-tool --mjpeg", Framing::Jpeg).unwrap();
        let e = src.capture().err().unwrap().to_string();
        assert!(
            e.contains("no-such-camera-tool") && e.contains("not found"),
            "the error names the command and what the shell said: {e}"
        );
        assert!(StreamSource::exec("  ", Framing::Jpeg).is_err());
    }

    #[test]
    fn a_named_pipe_is_read_and_a_missing_one_named() {
        let dir = std::env::temp_dir().join(format!("svit-pipe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("cam");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let mut src = StreamSource::pipe(fifo.to_str().unwrap()).unwrap();
        let writer = {
            let (fifo, frame) = (fifo.clone(), jpeg(4));
            std::thread::spawn(move || std::fs::write(fifo, frame).unwrap())
        };
        let c = src.capture().unwrap();
        assert!(matches!(c.pixels, Pixels::Jpeg(ref j) if j == &jpeg(4)));
        writer.join().unwrap();
        drop(src);
        let e = StreamSource::pipe(dir.join("nothing").to_str().unwrap())
            .err()
            .unwrap();
        assert!(e.to_string().contains("mkfifo"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[cfg(test)]
mod raw_tests {
    use super::*;
    use crate::codec::to_rgb;

    #[test]
    fn raw_frames_of_a_stated_size_are_read_and_bad_specs_named() {
        let f = Framing::parse_raw("uyvy,4x2").unwrap();
        // Two frames of 4x2 UYVY (16 bytes each), then a torn third.
        let mut data = [128u8, 16, 128, 16].repeat(4);
        data.extend([128u8, 235, 128, 235].repeat(4));
        data.extend([1, 2, 3]);
        let shared = Shared::default();
        split(std::io::Cursor::new(data), &shared, f).unwrap();
        let (frame, _) = shared.lock().frame.take().unwrap();
        assert_eq!(shared.lock().received, 2);
        let (rgb, w, h) = to_rgb(f.pixels(frame)).unwrap();
        assert_eq!((w, h), (4, 2));
        assert!(rgb.iter().all(|&v| v == 255), "Y 235 is white: {rgb:?}");
        for bad in ["yuyv", "bayer,640x480", "yuyv,641x480", "rgb24,99999x99999"] {
            assert!(Framing::parse_raw(bad).is_err(), "{bad}");
        }
    }
}
