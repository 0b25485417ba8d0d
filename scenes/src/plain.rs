//! The plain style around the shapes: smooth gradients with low-frequency clutter, and lines and
//! dots that are no class.

use crate::rng::Rng;
use crate::shapes::vivid;

pub(crate) fn gradient_background(rng: &mut Rng, w: usize, h: usize, rgb: &mut [f32]) {
    let a = vivid(rng).map(|c| c * 0.6 + 0.1);
    let b = vivid(rng).map(|c| c * 0.6 + 0.1);
    let dir = rng.range(0.0, std::f32::consts::TAU);
    let (ds, dc) = dir.sin_cos();
    // Low-frequency value noise on a coarse grid, bilinearly interpolated: clutter.
    let cell = rng.int(16, 48);
    let gw = w / cell + 2;
    let gh = h / cell + 2;
    let grid: Vec<f32> = (0..gw * gh).map(|_| rng.range(-0.15, 0.15)).collect();
    for y in 0..h {
        for x in 0..w {
            let t =
                ((x as f32 / w as f32 - 0.5) * dc + (y as f32 / h as f32 - 0.5) * ds + 0.7) / 1.4;
            let (gx, gy) = (x as f32 / cell as f32, y as f32 / cell as f32);
            let (ix, iy) = (gx as usize, gy as usize);
            let (fx, fy) = (gx.fract(), gy.fract());
            let g = |i: usize, j: usize| grid[j * gw + i];
            let n = g(ix, iy) * (1.0 - fx) * (1.0 - fy)
                + g(ix + 1, iy) * fx * (1.0 - fy)
                + g(ix, iy + 1) * (1.0 - fx) * fy
                + g(ix + 1, iy + 1) * fx * fy;
            for ch in 0..3 {
                rgb[(y * w + x) * 3 + ch] = a[ch] * (1.0 - t) + b[ch] * t + n;
            }
        }
    }
}

/// Lines and dots that are no class: drawn only on background pixels, so masks stay exact.
pub(crate) fn distractors(rng: &mut Rng, w: usize, h: usize, rgb: &mut [f32], owner: &[u8]) {
    let paint = |x: i64, y: i64, col: [f32; 3], rgb: &mut [f32]| {
        if x >= 0 && y >= 0 && (x as usize) < w && (y as usize) < h {
            let idx = y as usize * w + x as usize;
            if owner[idx] == u8::MAX {
                rgb[idx * 3..idx * 3 + 3].copy_from_slice(&col);
            }
        }
    };
    for _ in 0..rng.int(2, 8) {
        let col = vivid(rng);
        let (x0, y0) = (rng.range(0.0, w as f32), rng.range(0.0, h as f32));
        let ang = rng.range(0.0, std::f32::consts::TAU);
        let len = rng.range(0.1, 0.6) * w as f32;
        let thick = rng.int(1, 2) as i64;
        let steps = len as usize;
        for i in 0..steps {
            let t = i as f32;
            let (x, y) = (x0 + t * ang.cos(), y0 + t * ang.sin());
            for d in 0..thick {
                paint(x as i64 + d, y as i64, col, rgb);
            }
        }
    }
    for _ in 0..rng.int(5, 30) {
        let col = vivid(rng);
        let (x, y) = (rng.int(0, w - 1) as i64, rng.int(0, h - 1) as i64);
        let r = rng.int(0, 2) as i64;
        for dy in -r..=r {
            for dx in -r..=r {
                paint(x + dx, y + dy, col, rgb);
            }
        }
    }
}
