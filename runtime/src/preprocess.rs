//! Frame -> model input: bilinear resize to the square input and per-channel normalisation,
//! written into a reused buffer (no allocation once it has grown to size).

/// Interleaved RGB `w x h` -> CHW floats `3 x size x size` in `out` (cleared first).
pub fn resize_normalise(
    rgb: &[u8],
    w: usize,
    h: usize,
    size: usize,
    mean: [f32; 3],
    std: [f32; 3],
    out: &mut Vec<f32>,
) {
    out.clear();
    out.resize(3 * size * size, 0.0);
    let (sx, sy) = (w as f32 / size as f32, h as f32 / size as f32);
    let scale: [f32; 3] = std::array::from_fn(|c| 1.0 / (255.0 * std[c]));
    let bias: [f32; 3] = std::array::from_fn(|c| -mean[c] / std[c]);
    for y in 0..size {
        let fy = ((y as f32 + 0.5) * sy - 0.5).clamp(0.0, (h - 1) as f32);
        let (y0, wy) = (fy as usize, fy.fract());
        let y1 = (y0 + 1).min(h - 1);
        for x in 0..size {
            let fx = ((x as f32 + 0.5) * sx - 0.5).clamp(0.0, (w - 1) as f32);
            let (x0, wx) = (fx as usize, fx.fract());
            let x1 = (x0 + 1).min(w - 1);
            for c in 0..3 {
                let p = |xx: usize, yy: usize| rgb[(yy * w + xx) * 3 + c] as f32;
                let v = p(x0, y0) * (1.0 - wx) * (1.0 - wy)
                    + p(x1, y0) * wx * (1.0 - wy)
                    + p(x0, y1) * (1.0 - wx) * wy
                    + p(x1, y1) * wx * wy;
                out[c * size * size + y * size + x] = v * scale[c] + bias[c];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_plain_normalisation() {
        let rgb: Vec<u8> = (0..4 * 4 * 3).map(|i| (i * 5) as u8).collect();
        let mut out = Vec::new();
        resize_normalise(&rgb, 4, 4, 4, [0.5; 3], [0.25; 3], &mut out);
        for c in 0..3 {
            for i in 0..16 {
                let want = (rgb[i * 3 + c] as f32 / 255.0 - 0.5) / 0.25;
                assert!((out[c * 16 + i] - want).abs() < 1e-5);
            }
        }
    }
}
