//! A camera for the tests: offers some formats at one size and serves synthetic scenes.

use std::io;
use std::time::Duration;

use super::device::{Caps, Device, Format, PixelFormat};

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
                *out = crate::codec::encode_jpeg(&rgb, w, h, 95).map_err(io::Error::other)?
            }
            Some(PixelFormat::Yuyv) => {
                for y in 0..h {
                    for x in (0..w).step_by(2) {
                        let p = |x: usize| {
                            let i = (y * w + x) * 3;
                            let (r, g, b) = (rgb[i] as f32, rgb[i + 1] as f32, rgb[i + 2] as f32);
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
