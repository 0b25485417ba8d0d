//! `--camera synthetic`: the training scene generator on another seed; `synthetic:sheet`: a
//! camera looking at the printed target sheet (`svit-export targets`), moving slowly.

use std::time::Instant;

use super::{now_us, Captured, FrameSource, Pacer, Pixels, SourceError};

/// Synthetic scenes (the training generator on another seed).
pub struct Synthetic {
    cfg: svit_scenes::SceneConfig,
    /// The target sheet instead of training scenes.
    sheet: bool,
    seed: u64,
    index: u64,
    pacer: Pacer,
}

impl Synthetic {
    pub fn new(size: usize, seed: u64, fps: Option<f32>) -> Self {
        Synthetic {
            sheet: false,
            cfg: svit_scenes::SceneConfig::square(size),
            seed,
            index: 0,
            pacer: Pacer::new(fps),
        }
    }
}

impl Synthetic {
    pub fn sheet(size: usize, seed: u64, fps: Option<f32>) -> Self {
        Synthetic {
            sheet: true,
            ..Self::new(size, seed, fps)
        }
    }
}

impl FrameSource for Synthetic {
    fn describe(&self) -> String {
        let what = if self.sheet {
            "the target sheet"
        } else {
            "synthetic scenes"
        };
        format!(
            "{what} {}x{} seed {}",
            self.cfg.width, self.cfg.height, self.seed
        )
    }
    fn capture(&mut self) -> Result<Captured, SourceError> {
        self.pacer.wait();
        let t = Instant::now();
        let (w, h) = (self.cfg.width, self.cfg.height);
        let data = if self.sheet {
            svit_scenes::sheet::camera_frame(w, self.seed, self.index)
        } else {
            svit_scenes::generate(&self.cfg, self.seed, self.index).rgb
        };
        self.index += 1;
        Ok(Captured {
            pixels: Pixels::Rgb {
                data,
                width: w,
                height: h,
            },
            capture_us: now_us(),
            capture_time: t.elapsed(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::to_rgb;

    #[test]
    fn synthetic_frames_differ_and_have_the_size_asked() {
        let mut s = Synthetic::new(64, 1, None);
        let a = to_rgb(s.capture().unwrap().pixels).unwrap();
        let b = to_rgb(s.capture().unwrap().pixels).unwrap();
        assert_eq!((a.1, a.2), (64, 64));
        assert_ne!(a.0, b.0);
        let mut s = open_sheet();
        let a = to_rgb(s.capture().unwrap().pixels).unwrap();
        let b = to_rgb(s.capture().unwrap().pixels).unwrap();
        assert_eq!((a.1, a.2), (64, 64));
        assert_ne!(a.0, b.0, "the sheet moves");
    }

    fn open_sheet() -> Box<dyn FrameSource> {
        crate::camera::open("synthetic:sheet", 64, None).unwrap()
    }
}
