//! Frame -> model input: bilinear resize to the square input and per-channel normalisation,
//! written into a reused buffer in the order the embed stage reads it.

/// Where value (channel, y, x) of a `3 x size x size` input goes in a flat buffer:
/// `c * plane + rows[y] + cols[x]`. Plain CHW is one layout; the embed stage's patch rows are
/// another, and writing pixels there during preprocessing (on the board's capture thread)
/// spares the inference thread the transposes that would otherwise cut the image into patches.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    plane: usize,
    rows: Vec<usize>,
    cols: Vec<usize>,
    /// Stretches of x whose values are adjacent in the buffer, as (first x, length): rows are
    /// written a stretch at a time.
    runs: Vec<(usize, usize)>,
    /// The length every run has, where they all have the same.
    run_len: Option<usize>,
}

impl Layout {
    fn new(plane: usize, rows: Vec<usize>, cols: Vec<usize>) -> Layout {
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for x in 0..cols.len() {
            match runs.last_mut() {
                Some((x0, n)) if cols[*x0] + *n == cols[x] => *n += 1,
                _ => runs.push((x, 1)),
            }
        }
        let run_len = runs
            .first()
            .map(|r| r.1)
            .filter(|&n| runs.iter().all(|r| r.1 == n));
        Layout {
            plane,
            rows,
            cols,
            runs,
            run_len,
        }
    }

    /// Channel planes of row-major pixels, as an ONNX image tensor (1, 3, size, size).
    pub fn chw(size: usize) -> Layout {
        Layout::new(
            size * size,
            (0..size).map(|y| y * size).collect(),
            (0..size).collect(),
        )
    }

    /// Rows of `3 x patch x patch` values (channel, py, px), one per `patch`-pixel square,
    /// ordered as a quad tree `levels` deep: the squares of one token of the coarsest grid come
    /// together, the four children of each 2x2 merge next to each other in (dy, dx) order. Then
    /// every 2x2 merge of the hMLP stem is a plain reshape of the previous stage's rows.
    /// `levels` 0 is row-major patches.
    pub fn patches(size: usize, patch: usize, levels: usize) -> Layout {
        let (row_len, per_token) = (3 * patch * patch, 1 << (2 * levels));
        let tokens_per_row = (size / patch) >> levels;
        // The row of square (gy, gx) is separable: f(gy) + g(gx), each a sum over the
        // bits of the coordinate, the x bit of every level counting 1 and the y bit 2.
        let digit = |v: usize, weight: usize| {
            (0..levels)
                .map(|l| (v >> l & 1) * weight * (1 << (2 * l)))
                .sum::<usize>()
        };
        let along = |v: usize, token_stride: usize, weight: usize| {
            let g = v / patch;
            let square = (g >> levels) * token_stride * per_token + digit(g, weight);
            square * row_len
        };
        Layout::new(
            patch * patch,
            (0..size)
                .map(|y| along(y, tokens_per_row, 2) + y % patch * patch)
                .collect(),
            (0..size).map(|x| along(x, 1, 1) + x % patch).collect(),
        )
    }

    /// Writes image row `y`, given as its three channel rows, into `out`.
    fn put_row(&self, y: usize, channels: [&[f32]; 3], out: &mut [f32]) {
        for (c, src) in channels.into_iter().enumerate() {
            let base = c * self.plane + self.rows[y];
            // Runs of one known length are copied as fixed-size moves: a memcpy call per
            // 4-value run of the hMLP stem's patches doubled the time of preprocessing.
            match self.run_len {
                Some(4) => self.put_runs::<4>(base, src, out),
                Some(16) => self.put_runs::<16>(base, src, out),
                _ => {
                    for &(x, n) in &self.runs {
                        let at = base + self.cols[x];
                        out[at..at + n].copy_from_slice(&src[x..x + n]);
                    }
                }
            }
        }
    }

    fn put_runs<const N: usize>(&self, base: usize, src: &[f32], out: &mut [f32]) {
        for (chunk, &(x, _)) in src.chunks_exact(N).zip(&self.runs) {
            let at = base + self.cols[x];
            out[at..at + N].copy_from_slice(chunk);
        }
    }

    /// `chw` (3 x size x size, row-major planes) rewritten in this layout into `out`.
    pub fn from_chw(&self, chw: &[f32], out: &mut Vec<f32>) {
        let size = self.cols.len();
        out.clear();
        out.resize(3 * size * size, 0.0);
        let plane = |c: usize| &chw[c * size * size..(c + 1) * size * size];
        for y in 0..size {
            let row = |c: usize| &plane(c)[y * size..(y + 1) * size];
            self.put_row(y, [row(0), row(1), row(2)], out);
        }
    }
}

/// Interleaved RGB `w x h` -> floats `3 x size x size` in `layout`, in `out` (cleared first).
pub fn resize_normalise(
    rgb: &[u8],
    w: usize,
    h: usize,
    layout: &Layout,
    mean: [f32; 3],
    std: [f32; 3],
    out: &mut Vec<f32>,
) {
    let size = layout.cols.len();
    out.clear();
    out.resize(3 * size * size, 0.0);
    let scale: [f32; 3] = std::array::from_fn(|c| 1.0 / (255.0 * std[c]));
    let bias: [f32; 3] = std::array::from_fn(|c| -mean[c] / std[c]);
    // One output row at a time, as three channel rows, then into the layout.
    let mut line = vec![0f32; 3 * size];
    let mut put = |y: usize, line: &[f32]| {
        let (r, rest) = line.split_at(size);
        let (g, b) = rest.split_at(size);
        layout.put_row(y, [r, g, b], out);
    };
    if w == size && h == size {
        for (y, row) in rgb.chunks_exact(3 * size).enumerate().take(size) {
            let px = row
                .chunks_exact(3)
                .map(|p| [p[0] as f32, p[1] as f32, p[2] as f32]);
            normalise_row(&mut line, scale, bias, px);
            put(y, &line);
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
        let px = cols.iter().map(|&(x0, x1, wx)| {
            let (p0, p1) = (&blended[x0..x0 + 3], &blended[x1..x1 + 3]);
            std::array::from_fn(|c| p0[c] + (p1[c] - p0[c]) * wx)
        });
        normalise_row(&mut line, scale, bias, px);
        put(y, &line);
    }
}

/// `line` (three channel rows) from the pixels of one output row, normalised.
fn normalise_row(
    line: &mut [f32],
    scale: [f32; 3],
    bias: [f32; 3],
    px: impl Iterator<Item = [f32; 3]>,
) {
    let size = line.len() / 3;
    let (r, rest) = line.split_at_mut(size);
    let (g, b) = rest.split_at_mut(size);
    for (v, ((r, g), b)) in px.zip(r.iter_mut().zip(g).zip(b)) {
        *r = v[0] * scale[0] + bias[0];
        *g = v[1] * scale[1] + bias[1];
        *b = v[2] * scale[2] + bias[2];
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The patch layout equals what the stem computes by reshape and transpose: row-major
    /// patches, then `levels` times a 2x2 merge that concatenates (dy, dx) neighbours.
    #[test]
    fn patch_layout_is_patchify_then_merges() {
        // Runs of 2 (the general copy), 4 and 16 (the fixed-size ones).
        for (size, patch, levels) in [(16, 2, 2), (32, 4, 2), (32, 16, 0)] {
            check_patch_layout(size, patch, levels);
        }
    }

    fn check_patch_layout(size: usize, patch: usize, levels: usize) {
        let chw: Vec<f32> = (0..3 * size * size).map(|i| i as f32).collect();
        let mut g = size / patch;
        let mut rows: Vec<Vec<f32>> = (0..g * g)
            .map(|r| {
                let (gy, gx) = (r / g, r % g);
                let mut v = Vec::new();
                for c in 0..3 {
                    for py in 0..patch {
                        for px in 0..patch {
                            let (y, x) = (gy * patch + py, gx * patch + px);
                            v.push(chw[c * size * size + y * size + x]);
                        }
                    }
                }
                v
            })
            .collect();
        for _ in 0..levels {
            let h = g / 2;
            rows = (0..h * h)
                .map(|r| {
                    let (yy, xx) = (r / h, r % h);
                    let at =
                        |dy: usize, dx: usize| rows[(2 * yy + dy) * g + 2 * xx + dx].as_slice();
                    [at(0, 0), at(0, 1), at(1, 0), at(1, 1)].concat()
                })
                .collect();
            g = h;
        }
        let mut got = Vec::new();
        Layout::patches(size, patch, levels).from_chw(&chw, &mut got);
        assert_eq!(got, rows.concat());
        Layout::chw(size).from_chw(&chw, &mut got);
        assert_eq!(got, chw);
    }

    #[test]
    fn resizing_writes_through_the_layout() {
        let (w, h, size) = (9, 7, 8);
        let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i * 37 % 251) as u8).collect();
        let (mut chw, mut direct, mut moved) = (Vec::new(), Vec::new(), Vec::new());
        let patches = Layout::patches(size, 4, 1);
        resize_normalise(&rgb, w, h, &Layout::chw(size), [0.4; 3], [0.2; 3], &mut chw);
        resize_normalise(&rgb, w, h, &patches, [0.4; 3], [0.2; 3], &mut direct);
        patches.from_chw(&chw, &mut moved);
        assert_eq!(direct, moved);
    }

    #[test]
    fn same_size_is_plain_normalisation() {
        let rgb: Vec<u8> = (0..4 * 4 * 3).map(|i| (i * 5) as u8).collect();
        let mut out = Vec::new();
        resize_normalise(&rgb, 4, 4, &Layout::chw(4), [0.5; 3], [0.25; 3], &mut out);
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
        resize_normalise(&rgb, w, h, &Layout::chw(size), [0.0; 3], [1.0; 3], &mut out);
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
