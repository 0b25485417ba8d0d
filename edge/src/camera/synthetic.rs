//! `--camera synthetic`: the training scene generator on another seed.

use std::time::Instant;

use super::{now_us, Captured, FrameSource, Pacer, Pixels, SourceError};

/// Synthetic scenes (the training generator on another seed).
pub struct Synthetic {
    cfg: svit_scenes::SceneConfig,
    seed: u64,
    index: u64,
    pacer: Pacer,
}

impl Synthetic {
    pub fn new(size: usize, seed: u64, fps: Option<f32>) -> Self {
        Synthetic {
            cfg: svit_scenes::SceneConfig::square(size),
            seed,
            index: 0,
            pacer: Pacer::new(fps),
        }
    }
}

impl FrameSource for Synthetic {
    fn describe(&self) -> String {
        format!(
            "synthetic scenes {}x{} seed {}",
            self.cfg.width, self.cfg.height, self.seed
        )
    }
    fn capture(&mut self) -> Result<Captured, SourceError> {
        self.pacer.wait();
        let t = Instant::now();
        let s = svit_scenes::generate(&self.cfg, self.seed, self.index);
        self.index += 1;
        Ok(Captured {
            pixels: Pixels::Rgb {
                data: s.rgb,
                width: s.width,
                height: s.height,
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
    }
}
