//! A simulated V4L2 camera, as a UVC driver behaves (`--camera sim-v4l`, and the tests): it
//! offers some formats at one size and produces a frame every period in real time into the
//! buffers queued to it, oldest first, each stamped with CLOCK_MONOTONIC. With every buffer
//! full (nobody dequeued) new frames are lost, so a slow reader finds old frames waiting, as
//! with a real camera. It can stall, and be unplugged (every call fails with ENODEV).

use std::cell::OnceCell;
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::device::{monotonic_us, Caps, Device, Filled, Format, PixelFormat};

pub struct SimCamera {
    pub offers: Vec<PixelFormat>,
    pub size: (u32, u32),
    pub capture: bool,
    pub fmt: Option<Format>,
    /// Frames per second the camera runs at, whatever is asked.
    pub fps: f64,
    /// Frames produced so far (also those lost for want of a free buffer).
    pub frames: u64,
    /// Frames after this many never come (a camera that stalls).
    pub stall_after: Option<u64>,
    /// Set: the device is gone (USB unplugged). A device that saw it stays dead after a
    /// replug, as an open file of a removed node does; a new one must be opened.
    pub unplugged: Arc<AtomicBool>,
    dead: bool,
    /// Per buffer: the frame it holds, encoded when first read (a real camera's frames cost
    /// the reader nothing; encoding them all would make the simulation the bottleneck).
    buffers: Vec<(u64, OnceCell<Vec<u8>>)>,
    /// Buffers the driver may fill, in order.
    free: VecDeque<u32>,
    /// Filled buffers with their capture time, oldest first.
    filled: VecDeque<(u32, u64)>,
    /// When the next frame is due (µs, CLOCK_MONOTONIC); 0 until streaming.
    next_due: u64,
}

impl SimCamera {
    pub fn new(offers: &[PixelFormat]) -> Self {
        SimCamera {
            offers: offers.to_vec(),
            size: (320, 240),
            capture: true,
            fmt: None,
            fps: 200.0,
            frames: 0,
            stall_after: None,
            unplugged: Arc::default(),
            dead: false,
            buffers: Vec::new(),
            free: VecDeque::new(),
            filled: VecDeque::new(),
            next_due: 0,
        }
    }

    /// The scene frame `n` shows, as RGB.
    pub fn scene(&self, n: u64) -> Vec<u8> {
        let (w, h) = self.size;
        let cfg = svit_scenes::SceneConfig {
            width: w as usize,
            height: h as usize,
            ..svit_scenes::SceneConfig::square(w as usize)
        };
        svit_scenes::generate(&cfg, 77, n).rgb
    }

    fn check(&mut self) -> io::Result<()> {
        self.dead |= self.unplugged.load(Ordering::Relaxed);
        if self.dead {
            return Err(io::Error::from_raw_os_error(libc::ENODEV));
        }
        Ok(())
    }

    fn period_us(&self) -> u64 {
        (1e6 / self.fps.max(0.1)) as u64
    }

    /// Produces the frames due by now into free buffers; frames with no free buffer are lost.
    fn run_until(&mut self, now: u64) {
        while self.next_due <= now {
            if self.stall_after.is_some_and(|n| self.frames >= n) {
                return;
            }
            let (n, at) = (self.frames, self.next_due);
            self.frames += 1;
            self.next_due += self.period_us();
            if let Some(i) = self.free.pop_front() {
                self.buffers[i as usize] = (n, OnceCell::new());
                self.filled.push_back((i, at));
            }
        }
    }

    fn encode(&self, n: u64) -> io::Result<Vec<u8>> {
        if self.unplugged.load(Ordering::Relaxed) {
            return Ok(Vec::new());
        }
        let rgb = self.scene(n);
        let f = self.fmt.ok_or_else(|| io::Error::other("no format set"))?;
        let (w, h) = (f.width as usize, f.height as usize);
        let mut out = Vec::new();
        let pixel = PixelFormat::from_fourcc(f.fourcc);
        match pixel {
            Some(PixelFormat::Mjpeg) => {
                out = crate::codec::encode_jpeg(&rgb, w, h, 95).map_err(io::Error::other)?
            }
            Some(p @ (PixelFormat::Yuyv | PixelFormat::Uyvy)) => {
                for y in 0..h {
                    for x in (0..w).step_by(2) {
                        let yuv = |x: usize| {
                            let i = (y * w + x) * 3;
                            let (r, g, b) = (rgb[i] as f32, rgb[i + 1] as f32, rgb[i + 2] as f32);
                            let yy = 16.0 + 0.257 * r + 0.504 * g + 0.098 * b;
                            let u = 128.0 - 0.148 * r - 0.291 * g + 0.439 * b;
                            let v = 128.0 + 0.439 * r - 0.368 * g - 0.071 * b;
                            (yy, u, v)
                        };
                        let (y0, u0, v0) = yuv(x);
                        let (y1, u1, v1) = yuv(x + 1);
                        let (u, v) = ((u0 + u1) / 2.0, (v0 + v1) / 2.0);
                        let q = if p == PixelFormat::Yuyv {
                            [y0, u, y1, v]
                        } else {
                            [u, y0, v, y1]
                        };
                        out.extend(q.map(|c| c.round() as u8));
                    }
                    out.resize((y + 1) * f.stride as usize, 0);
                }
            }
            None => return Err(io::Error::other("unsupported format")),
        }
        Ok(out)
    }
}

impl Device for SimCamera {
    fn caps(&mut self) -> io::Result<Caps> {
        self.check()?;
        Ok(Caps {
            card: "Sim Camera".into(),
            capture: self.capture,
            streaming: true,
        })
    }

    fn formats(&mut self) -> io::Result<Vec<u32>> {
        self.check()?;
        let mut v: Vec<u32> = self.offers.iter().map(|p| p.fourcc()).collect();
        if v.is_empty() {
            v.push(u32::from_le_bytes(*b"GREY"));
        }
        Ok(v)
    }

    fn set_format(&mut self, want: Format) -> io::Result<Format> {
        self.check()?;
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

    fn set_fps(&mut self, _fps: u32) -> io::Result<Option<f64>> {
        self.check()?;
        Ok(Some(self.fps))
    }

    fn start(&mut self, buffers: u32) -> io::Result<()> {
        self.check()?;
        self.buffers = (0..buffers).map(|_| (0, OnceCell::new())).collect();
        self.free = (0..buffers).collect();
        self.filled.clear();
        // The first frame comes one period after streaming starts.
        self.next_due = monotonic_us() + self.period_us();
        Ok(())
    }

    fn dequeue(&mut self, timeout: Duration) -> io::Result<Option<Filled>> {
        let deadline = monotonic_us() + timeout.as_micros() as u64;
        loop {
            self.check()?;
            let now = monotonic_us();
            self.run_until(now);
            if let Some((index, at)) = self.filled.pop_front() {
                return Ok(Some(Filled {
                    index,
                    bytes: usize::MAX, // known once encoded; `data` gives the whole frame
                    timestamp_us: Some(at),
                    corrupt: false,
                }));
            }
            if now >= deadline {
                return Ok(None);
            }
            let until = self.next_due.min(deadline).max(now + 100);
            std::thread::sleep(Duration::from_micros((until - now).min(20_000)));
        }
    }

    fn data(&self, b: &Filled) -> &[u8] {
        match self.buffers.get(b.index as usize) {
            Some((n, cell)) => cell.get_or_init(|| self.encode(*n).unwrap_or_default()),
            None => &[],
        }
    }

    fn requeue(&mut self, b: Filled) -> io::Result<()> {
        self.check()?;
        self.free.push_back(b.index);
        Ok(())
    }
}
