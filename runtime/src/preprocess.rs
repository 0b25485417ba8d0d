//! Frame -> model input: bilinear resize to the square input and per-channel normalisation,
//! written into a reused buffer.

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
    let scale: [f32; 3] = std::array::from_fn(|c| 1.0 / (255.0 * std[c]));
    let bias: [f32; 3] = std::array::from_fn(|c| -mean[c] / std[c]);
    let plane = size * size;
    let (r_out, rest) = out.split_at_mut(plane);
    let (g_out, b_out) = rest.split_at_mut(plane);
    if w == size && h == size {
        for (i, px) in rgb.chunks_exact(3).enumerate().take(plane) {
            r_out[i] = px[0] as f32 * scale[0] + bias[0];
            g_out[i] = px[1] as f32 * scale[1] + bias[1];
            b_out[i] = px[2] as f32 * scale[2] + bias[2];
        }
        return;
    }
    // Bilinear taps per output column, computed once per frame rather than per pixel.
    let sx = w as f32 / size as f32;
    let cols: Vec<(usize, usize, f32)> = (0..size)
        .map(|x| {
            let fx = ((x as f32 + 0.5) * sx - 0.5).clamp(0.0, (w - 1) as f32);
            let x0 = fx as usize;
            (3 * x0, 3 * (x0 + 1).min(w - 1), fx.fract())
        })
        .collect();
    let sy = h as f32 / size as f32;
    // Two passes per output row: blend the two source rows once (vertical), then two taps per
    // channel from that blended row (horizontal); half the work of four taps per pixel.
    let mut blended = vec![0f32; w * 3];
    for y in 0..size {
        let fy = ((y as f32 + 0.5) * sy - 0.5).clamp(0.0, (h - 1) as f32);
        let (y0, wy) = (fy as usize, fy.fract());
        let y1 = (y0 + 1).min(h - 1);
        let row0 = &rgb[y0 * w * 3..(y0 + 1) * w * 3];
        let row1 = &rgb[y1 * w * 3..(y1 + 1) * w * 3];
        for ((d, &a), &b) in blended.iter_mut().zip(row0).zip(row1) {
            let a = a as f32;
            *d = a + (b as f32 - a) * wy;
        }
        let span = y * size..(y + 1) * size;
        let rows = r_out[span.clone()]
            .iter_mut()
            .zip(&mut g_out[span.clone()])
            .zip(&mut b_out[span]);
        for (((r, g), b), &(x0, x1, wx)) in rows.zip(&cols) {
            let (p0, p1) = (&blended[x0..x0 + 3], &blended[x1..x1 + 3]);
            let tap = |c: usize| p0[c] + (p1[c] - p0[c]) * wx;
            *r = tap(0) * scale[0] + bias[0];
            *g = tap(1) * scale[1] + bias[1];
            *b = tap(2) * scale[2] + bias[2];
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

    #[test]
    fn resizing_matches_the_bilinear_formula() {
        let (w, h, size) = (7, 5, 4);
        let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i * 37 % 251) as u8).collect();
        let mut out = Vec::new();
        resize_normalise(&rgb, w, h, size, [0.0; 3], [1.0; 3], &mut out);
        let (sx, sy) = (w as f32 / size as f32, h as f32 / size as f32);
        for c in 0..3 {
            for y in 0..size {
                for x in 0..size {
                    let fx = ((x as f32 + 0.5) * sx - 0.5).clamp(0.0, (w - 1) as f32);
                    let fy = ((y as f32 + 0.5) * sy - 0.5).clamp(0.0, (h - 1) as f32);
                    let (x0, y0) = (fx as usize, fy as usize);
                    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
                    let (wx, wy) = (fx.fract(), fy.fract());
                    let p = |xx: usize, yy: usize| rgb[(yy * w + xx) * 3 + c] as f32 / 255.0;
                    let want = p(x0, y0) * (1.0 - wx) * (1.0 - wy)
                        + p(x1, y0) * wx * (1.0 - wy)
                        + p(x0, y1) * (1.0 - wx) * wy
                        + p(x1, y1) * wx * wy;
                    let got = out[c * size * size + y * size + x];
                    assert!((got - want).abs() < 1e-5, "{c} {y} {x}: {got} vs {want}");
                }
            }
        }
    }
}

/// The PNG and JPEG files directly in `dir`, sorted by name (image folders used as a camera or
/// as calibration data).
pub fn image_files(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut v: Vec<std::path::PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(
                p.extension()
                    .and_then(|e| e.to_str())
                    .map(str::to_ascii_lowercase)
                    .as_deref(),
                Some("jpg" | "jpeg" | "png")
            )
        })
        .collect();
    v.sort();
    Ok(v)
}
