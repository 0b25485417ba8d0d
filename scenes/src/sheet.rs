//! The printable target sheet: the six shapes as the generator draws them (colours, textures,
//! aspect), two of each, laid out on a 180 x 240 mm area that fits A4 and Letter; and the
//! synthetic camera's view of it (`camera_frame`): the sheet under perspective, lighting, blur
//! and noise over a procedural background, moving slowly.

use crate::camera;
use crate::rng::Rng;
use crate::shapes::{raster, Placed};

/// The printed area, millimetres.
pub const WIDTH_MM: f32 = 180.0;
pub const HEIGHT_MM: f32 = 240.0;
/// Longest side of each shape's frame, millimetres.
pub const SHAPE_MM: f32 = 50.0;

/// The twelve shapes, in millimetres on the sheet (3 columns, 4 rows).
fn layout() -> Vec<Placed> {
    // Colours the model saw most (vivid), each texture, turned a little.
    const COLOURS: [[f32; 3]; 6] = [
        [0.90, 0.15, 0.15],
        [0.15, 0.45, 0.90],
        [0.10, 0.70, 0.25],
        [0.95, 0.60, 0.10],
        [0.60, 0.20, 0.80],
        [0.05, 0.65, 0.70],
    ];
    (0..12)
        .map(|i| {
            let (col, row) = (i % 3, i / 3);
            let class = i % 6;
            let second = i >= 6;
            Placed {
                class,
                cx: 30.0 + 60.0 * col as f32,
                cy: 30.0 + 60.0 * row as f32,
                half: SHAPE_MM / 2.0,
                aspect: if second { 0.7 } else { 1.0 },
                angle: if second { 0.35 } else { 0.0 },
                colour: COLOURS[(class + second as usize * 3) % 6],
                texture: (i % 4) as u8,
                tex_freq: 3.0,
            }
        })
        .collect()
}

/// The sheet's printed area as RGB at `px_per_mm`, white paper: (pixels, width, height).
pub fn render(px_per_mm: f32) -> (Vec<u8>, usize, usize) {
    let (w, h) = (
        (WIDTH_MM * px_per_mm).round() as usize,
        (HEIGHT_MM * px_per_mm).round() as usize,
    );
    let mut rgb = vec![1f32; w * h * 3];
    for mut p in layout() {
        p.cx *= px_per_mm;
        p.cy *= px_per_mm;
        p.half *= px_per_mm;
        raster(&p, w, h, |idx| {
            let (x, y) = (idx % w, idx / w);
            rgb[idx * 3..idx * 3 + 3].copy_from_slice(&p.colour_at(x, y));
        });
    }
    let out = rgb.iter().map(|v| (v * 255.0).round() as u8).collect();
    (out, w, h)
}

/// Frame `index` of a camera looking at the printed sheet, `size` x `size`: the sheet (about
/// half the picture's height) drifts and tilts slowly over a procedural background, with the
/// camera's exposure, blur and noise of scene `seed`.
pub fn camera_frame(size: usize, seed: u64, index: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut rgb = vec![0f32; size * size * 3];
    camera::background(&mut rng, size, size, &mut rgb);
    let px_per_mm = size as f32 * 0.6 / HEIGHT_MM;
    let (sheet, sw, sh) = render(px_per_mm);
    // A slow drift: one cycle every ~20 s at 10 fps.
    let t = index as f32 * 0.03;
    let (fs, sz) = (size as f32, size as f32);
    let (cx, cy) = (
        0.5 * fs + 0.12 * fs * t.sin(),
        0.5 * sz + 0.08 * sz * (0.7 * t).cos(),
    );
    let (hw, hh) = (sw as f32 / 2.0, sh as f32 / 2.0);
    let (s, c) = (0.15 * (0.5 * t).sin()).sin_cos();
    let tilt = 0.12 * (0.3 * t).sin();
    let corner = |x: f32, y: f32| {
        // Rotate, then shrink one side: the sheet leans away.
        let k = 1.0 - tilt * (y / hh);
        [cx + k * (c * x - s * y), cy + s * x + c * y]
    };
    let quad = [
        corner(-hw, -hh),
        corner(hw, -hh),
        corner(hw, hh),
        corner(-hw, hh),
    ];
    camera::warp(&quad, size, size, |o, uv| {
        if let Some((u, v)) = uv {
            let (x, y) = ((u * sw as f32) as usize, (v * sh as f32) as usize);
            let i = (y.min(sh - 1) * sw + x.min(sw - 1)) * 3;
            for ch in 0..3 {
                rgb[o * 3 + ch] = sheet[i + ch] as f32 / 255.0 * 0.9;
            }
        }
    });
    camera::camera(&mut rng, size, size, rgb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sheet_holds_every_class_on_white_paper() {
        let (rgb, w, h) = render(2.0);
        assert_eq!((w, h), (360, 480));
        let white = rgb
            .chunks(3)
            .filter(|p| p.iter().all(|&v| v == 255))
            .count();
        let frac = white as f32 / (w * h) as f32;
        assert!((0.5..0.9).contains(&frac), "paper fraction {frac}");
        let classes: std::collections::BTreeSet<usize> = layout().iter().map(|p| p.class).collect();
        assert_eq!(classes.len(), crate::CLASSES.len());
    }

    #[test]
    fn the_camera_view_moves_slowly() {
        let a = camera_frame(96, 3, 0);
        let b = camera_frame(96, 3, 1);
        let c = camera_frame(96, 3, 100);
        let diff = |x: &[u8], y: &[u8]| {
            x.iter()
                .zip(y)
                .map(|(p, q)| (*p as i32 - *q as i32).unsigned_abs() as u64)
                .sum::<u64>()
                / x.len() as u64
        };
        assert!(
            diff(&a, &b) < diff(&a, &c),
            "neighbouring frames are closer than distant ones"
        );
    }
}
