//! The camera style: what a board's camera sees rather than a flat generated backdrop.
//!
//! Backgrounds with natural-image statistics (dead leaves, multi-scale noise, textures, clutter
//! at all scales), a printed sheet's perspective, then the camera itself: exposure, white
//! balance, vignetting, defocus and motion blur, sensor noise and JPEG. Nothing here draws a
//! shape of a class: leaves and clutter are elongated (rectangles and ellipses narrower than any
//! square's aspect of 0.6) or irregular, so a scene's annotations stay complete.

use crate::plain::gradient_background;
use crate::rng::Rng;
use crate::shapes::vivid;

/// A background with natural-image statistics, in linear [0, 1] RGB.
pub(crate) fn background(rng: &mut Rng, w: usize, h: usize, rgb: &mut [f32]) {
    match rng.int(0, 3) {
        0 => dead_leaves(rng, w, h, rgb),
        1 => fbm(rng, w, h, rgb),
        2 => weave(rng, w, h, rgb),
        _ => gradient_background(rng, w, h, rgb),
    }
    if rng.f32() < 0.25 {
        for px in rgb.chunks_exact_mut(3) {
            let l = 0.3 * px[0] + 0.59 * px[1] + 0.11 * px[2];
            px.fill(l);
        }
    }
}

/// A muted colour, as most of the world is: a grey pulled a little towards a hue.
fn muted(rng: &mut Rng) -> [f32; 3] {
    let grey = rng.range(0.05, 0.95);
    let tint = vivid(rng);
    let s = rng.range(0.0, 0.45);
    tint.map(|c| grey * (1.0 - s) + c * grey * s * 1.4)
}

/// Occluding leaves of power-law sizes, painted one over another (the dead-leaves model).
fn dead_leaves(rng: &mut Rng, w: usize, h: usize, rgb: &mut [f32]) {
    let base = muted(rng);
    for px in rgb.chunks_exact_mut(3) {
        px.copy_from_slice(&base);
    }
    let (rmin, rmax) = (2.0f32, w.max(h) as f32 * 0.6);
    for _ in 0..rng.int(200, 600) {
        // Density ~ r^-2 (1/r uniform): leaves of every size, enough large ones to cover.
        let t = rng.f32();
        let r = 1.0 / (t / rmax + (1.0 - t) / rmin);
        let (cx, cy) = (rng.range(-r, w as f32 + r), rng.range(-r, h as f32 + r));
        let aspect = rng.range(0.12, 0.5);
        let angle = rng.range(0.0, std::f32::consts::TAU);
        let ellipse = rng.f32() < 0.5;
        let col = muted(rng);
        let shade = rng.range(-0.15, 0.15);
        let (s, c) = angle.sin_cos();
        fill_box(w, h, cx, cy, r, |x, y| {
            let (dx, dy) = (x - cx, y - cy);
            let u = (c * dx + s * dy) / r;
            let v = (-s * dx + c * dy) / (r * aspect);
            let inside = if ellipse {
                u * u + v * v <= 1.0
            } else {
                u.abs() <= 1.0 && v.abs() <= 1.0
            };
            inside.then(|| col.map(|ch| (ch + shade * u).clamp(0.0, 1.0)))
        })(rgb);
    }
}

/// Calls `f` for every pixel centre within `reach` of `(cx, cy)`; paints what it returns.
fn fill_box(
    w: usize,
    h: usize,
    cx: f32,
    cy: f32,
    reach: f32,
    f: impl Fn(f32, f32) -> Option<[f32; 3]>,
) -> impl FnOnce(&mut [f32]) {
    move |rgb: &mut [f32]| {
        let x0 = (cx - reach).floor().max(0.0) as usize;
        let y0 = (cy - reach).floor().max(0.0) as usize;
        let x1 = ((cx + reach).ceil().max(0.0) as usize).min(w);
        let y1 = ((cy + reach).ceil().max(0.0) as usize).min(h);
        for y in y0..y1 {
            for x in x0..x1 {
                if let Some(col) = f(x as f32 + 0.5, y as f32 + 0.5) {
                    let i = (y * w + x) * 3;
                    rgb[i..i + 3].copy_from_slice(&col);
                }
            }
        }
    }
}

/// Value noise on a `cell`-pixel grid, bilinearly interpolated, in [-1, 1].
struct ValueNoise {
    grid: Vec<f32>,
    gw: usize,
    cell: f32,
}

impl ValueNoise {
    fn new(rng: &mut Rng, w: usize, h: usize, cell: f32) -> Self {
        let gw = (w as f32 / cell) as usize + 2;
        let gh = (h as f32 / cell) as usize + 2;
        let grid = (0..gw * gh).map(|_| rng.range(-1.0, 1.0)).collect();
        ValueNoise { grid, gw, cell }
    }
    fn at(&self, x: f32, y: f32) -> f32 {
        let (gx, gy) = (x / self.cell, y / self.cell);
        let (ix, iy) = (gx as usize, gy as usize);
        let (fx, fy) = (gx.fract(), gy.fract());
        // Smoothstep: no visible grid creases.
        let (fx, fy) = (fx * fx * (3.0 - 2.0 * fx), fy * fy * (3.0 - 2.0 * fy));
        let g = |i: usize, j: usize| self.grid[j * self.gw + i];
        g(ix, iy) * (1.0 - fx) * (1.0 - fy)
            + g(ix + 1, iy) * fx * (1.0 - fy)
            + g(ix, iy + 1) * (1.0 - fx) * fy
            + g(ix + 1, iy + 1) * fx * fy
    }
}

/// Multi-scale noise with a 1/f spectrum, two muted colours mixed by it.
fn fbm(rng: &mut Rng, w: usize, h: usize, rgb: &mut [f32]) {
    let (a, b) = (muted(rng), muted(rng));
    let octaves: Vec<ValueNoise> = (0..6)
        .map(|o| ValueNoise::new(rng, w, h, 128.0 / (1 << o) as f32))
        .collect();
    let contrast = rng.range(0.3, 1.0);
    for y in 0..h {
        for x in 0..w {
            let (fx, fy) = (x as f32, y as f32);
            let n: f32 = octaves
                .iter()
                .enumerate()
                .map(|(o, v)| v.at(fx, fy) / (1 << o) as f32)
                .sum();
            let t = (0.5 + 0.5 * n * contrast).clamp(0.0, 1.0);
            let i = (y * w + x) * 3;
            for ch in 0..3 {
                rgb[i + ch] = a[ch] * (1.0 - t) + b[ch] * t;
            }
        }
    }
}

/// Stripes bent by noise: wood grain, fabric, a keyboard's rows.
fn weave(rng: &mut Rng, w: usize, h: usize, rgb: &mut [f32]) {
    let (a, b) = (muted(rng), muted(rng));
    let cell = rng.range(16.0, 96.0);
    let warp = ValueNoise::new(rng, w, h, cell);
    let period = rng.range(3.0, 24.0);
    let bend = rng.range(0.0, 12.0);
    let (s, c) = rng.range(0.0, std::f32::consts::PI).sin_cos();
    let cross = rng.f32() < 0.4;
    for y in 0..h {
        for x in 0..w {
            let (fx, fy) = (x as f32, y as f32);
            let d = warp.at(fx, fy) * bend;
            let mut t = 0.5 + 0.5 * ((c * fx + s * fy + d) / period * std::f32::consts::TAU).sin();
            if cross {
                t = 0.5 * t
                    + 0.25 * (1.0 + ((-s * fx + c * fy) / period * std::f32::consts::TAU).sin());
            }
            let i = (y * w + x) * 3;
            for ch in 0..3 {
                rgb[i + ch] = a[ch] * (1.0 - t) + b[ch] * t;
            }
        }
    }
}

/// Clutter at all scales on background pixels only (so masks stay exact): lines from hairlines
/// to bars, short dashes in rows like print, specks.
pub(crate) fn clutter(rng: &mut Rng, w: usize, h: usize, rgb: &mut [f32], owner: &[u8]) {
    let paint = |x: f32, y: f32, col: [f32; 3], rgb: &mut [f32]| {
        if x >= 0.0 && y >= 0.0 && (x as usize) < w && (y as usize) < h {
            let idx = y as usize * w + x as usize;
            if owner[idx] == u8::MAX {
                rgb[idx * 3..idx * 3 + 3].copy_from_slice(&col);
            }
        }
    };
    for _ in 0..rng.int(0, 12) {
        let col = if rng.f32() < 0.5 {
            muted(rng)
        } else {
            vivid(rng)
        };
        let (x0, y0) = (rng.range(0.0, w as f32), rng.range(0.0, h as f32));
        let (s, c) = rng.range(0.0, std::f32::consts::TAU).sin_cos();
        let len = rng.range(0.05, 1.0) * w as f32;
        let thick = (rng.range(0.0, 1.0).powi(3) * 8.0).max(1.0);
        for i in 0..len as usize {
            let t = i as f32;
            for d in 0..thick as usize {
                let o = d as f32 - thick / 2.0;
                paint(x0 + t * c - o * s, y0 + t * s + o * c, col, rgb);
            }
        }
    }
    if rng.f32() < 0.3 {
        // Rows of dashes, as text reads from a distance.
        let col = muted(rng).map(|c| c * 0.4);
        let size = rng.range(2.0, 5.0);
        let (x0, y0) = (
            rng.range(0.0, w as f32 * 0.6),
            rng.range(0.0, h as f32 * 0.7),
        );
        for row in 0..rng.int(1, 6) {
            let mut x = x0;
            let y = y0 + row as f32 * size * 2.2;
            while x < (x0 + w as f32 * 0.4).min(w as f32) {
                let len = rng.range(size * 1.5, size * 6.0);
                for dx in 0..len as usize {
                    for dy in 0..size as usize {
                        paint(x + dx as f32, y + dy as f32, col, rgb);
                    }
                }
                x += len + size;
            }
        }
    }
    for _ in 0..rng.int(0, 40) {
        let col = muted(rng);
        let (x, y) = (rng.range(0.0, w as f32), rng.range(0.0, h as f32));
        let r = rng.int(0, 1) as i32;
        for dy in -r..=r {
            for dx in -r..=r {
                paint(x + dx as f32, y + dy as f32, col, rgb);
            }
        }
    }
}

/// The scene as a sheet seen at an angle: `rgb` and `owner` are warped by a homography that
/// puts the image's corners at jittered points; what lies outside the sheet shows `table`.
/// Returns false, leaving both untouched, when an object would lose too much of itself.
pub(crate) fn perspective(
    rng: &mut Rng,
    w: usize,
    h: usize,
    rgb: &mut [f32],
    owner: &mut [u8],
    table: &[f32],
) -> bool {
    let (fw, fh) = (w as f32, h as f32);
    let scale = rng.range(0.75, 1.05);
    let jitter = 0.12 * fw;
    let (mx, my) = (fw * (1.0 - scale) / 2.0, fh * (1.0 - scale) / 2.0);
    let mut corner = |x: f32, y: f32| {
        [
            x + rng.range(-jitter, jitter),
            y + rng.range(-jitter, jitter),
        ]
    };
    let quad = [
        corner(mx, my),
        corner(fw - mx, my),
        corner(fw - mx, fh - my),
        corner(mx, fh - my),
    ];
    let mut out_rgb = table.to_vec();
    let mut out_owner = vec![u8::MAX; owner.len()];
    if !warp(&quad, w, h, |o, uv| {
        if let Some((u, v)) = uv {
            let s = (v * fh) as usize * w + (u * fw) as usize;
            out_owner[o] = owner[s];
            out_rgb[o * 3..o * 3 + 3].copy_from_slice(&rgb[s * 3..s * 3 + 3]);
        }
    }) {
        return false;
    }
    // Every object must keep most of itself at the sheet's scale, or the warp is not used.
    let area = quad_area(&quad) / (fw * fh);
    let count = |m: &[u8], i: u8| m.iter().filter(|&&o| o == i).count() as f32;
    let n = owner.iter().filter(|&&o| o != u8::MAX).max().copied();
    let ok = (0..n.map_or(0, |n| n as usize + 1)).all(|i| {
        let (before, after) = (count(owner, i as u8), count(&out_owner, i as u8));
        before == 0.0 || (after >= 12.0 && after >= 0.45 * before * area)
    });
    if ok {
        rgb.copy_from_slice(&out_rgb);
        owner.copy_from_slice(&out_owner);
    }
    ok
}

/// For every pixel of a `w` x `h` picture, `f(index, Some((u, v)))` with its point on the unit
/// square that the homography onto `quad` maps there, or `None` outside the quad. False when
/// the quad is degenerate.
pub(crate) fn warp(
    quad: &[[f32; 2]; 4],
    w: usize,
    h: usize,
    mut f: impl FnMut(usize, Option<(f32, f32)>),
) -> bool {
    let Some(inv) = invert(&square_to_quad(quad)) else {
        return false;
    };
    for y in 0..h {
        for x in 0..w {
            let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
            let d = inv[6] * px + inv[7] * py + inv[8];
            let (u, v) = (
                (inv[0] * px + inv[1] * py + inv[2]) / d,
                (inv[3] * px + inv[4] * py + inv[5]) / d,
            );
            let inside = d > 0.0 && (0.0..1.0).contains(&u) && (0.0..1.0).contains(&v);
            f(y * w + x, inside.then_some((u, v)));
        }
    }
    true
}

/// The homography taking the unit square's corners (0,0), (1,0), (1,1), (0,1) to `q`
/// (Heckbert, "Fundamentals of Texture Mapping", 1989), row-major 3x3.
fn square_to_quad(q: &[[f32; 2]; 4]) -> [f32; 9] {
    let [[x0, y0], [x1, y1], [x2, y2], [x3, y3]] = *q;
    let (sx, sy) = (x0 - x1 + x2 - x3, y0 - y1 + y2 - y3);
    let (dx1, dx2, dy1, dy2) = (x1 - x2, x3 - x2, y1 - y2, y3 - y2);
    let den = dx1 * dy2 - dx2 * dy1;
    let g = (sx * dy2 - dx2 * sy) / den;
    let hh = (dx1 * sy - sx * dy1) / den;
    [
        x1 - x0 + g * x1,
        x3 - x0 + hh * x3,
        x0,
        y1 - y0 + g * y1,
        y3 - y0 + hh * y3,
        y0,
        g,
        hh,
        1.0,
    ]
}

fn invert(m: &[f32; 9]) -> Option<[f32; 9]> {
    let [a, b, c, d, e, f, g, h, i] = *m;
    let det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g);
    if !det.is_finite() || det.abs() < 1e-9 {
        return None;
    }
    Some(
        [
            e * i - f * h,
            c * h - b * i,
            b * f - c * e,
            f * g - d * i,
            a * i - c * g,
            c * d - a * f,
            d * h - e * g,
            b * g - a * h,
            a * e - b * d,
        ]
        .map(|v| v / det),
    )
}

fn quad_area(q: &[[f32; 2]; 4]) -> f32 {
    let mut s = 0.0;
    for i in 0..4 {
        let ([x0, y0], [x1, y1]) = (q[i], q[(i + 1) % 4]);
        s += x0 * y1 - x1 * y0;
    }
    s.abs() / 2.0
}

/// The camera between the world and the model: exposure, contrast, white balance, vignetting,
/// defocus and motion blur, then sensor noise; returns 8-bit RGB, JPEG-compressed or not.
pub(crate) fn camera(rng: &mut Rng, w: usize, h: usize, mut rgb: Vec<f32>) -> Vec<u8> {
    let gain = rng.range(0.6, 1.4);
    let contrast = rng.range(0.7, 1.2);
    let wb = [rng.range(0.85, 1.15), 1.0, rng.range(0.85, 1.15)];
    let vignette = rng.range(0.0, 0.45);
    let (cx, cy, r2) = (w as f32 / 2.0, h as f32 / 2.0, (w * w + h * h) as f32 / 4.0);
    for y in 0..h {
        for x in 0..w {
            let d2 = ((x as f32 - cx).powi(2) + (y as f32 - cy).powi(2)) / r2;
            let fall = 1.0 - vignette * d2;
            let i = (y * w + x) * 3;
            for ch in 0..3 {
                let v = (rgb[i + ch] - 0.5) * contrast + 0.5;
                rgb[i + ch] = v * gain * wb[ch] * fall;
            }
        }
    }
    let defocus = rng.int(0, 2);
    for _ in 0..2 {
        box_blur(&mut rgb, w, h, defocus);
    }
    if rng.f32() < 0.25 {
        motion_blur(&mut rgb, w, h, rng.range(2.0, 6.0), rng.range(0.0, 3.15));
    }
    let read = rng.range(0.0, 0.035);
    let shot = rng.range(0.0, 0.03);
    let mut out: Vec<u8> = rgb
        .iter()
        .map(|&v| {
            let v = v.clamp(0.0, 1.0);
            let n = (read + shot * v.sqrt()) * rng.normal();
            ((v + n).clamp(0.0, 1.0) * 255.0).round() as u8
        })
        .collect();
    if rng.f32() < 0.7 {
        let quality = rng.int(35, 95) as u8;
        if let Some(jpeg) = jpeg_round_trip(&out, w, h, quality) {
            out = jpeg;
        }
    }
    out
}

/// Separable box blur of radius `r` (0: none), edges clamped.
fn box_blur(rgb: &mut [f32], w: usize, h: usize, r: usize) {
    if r == 0 {
        return;
    }
    let mut tmp = vec![0f32; rgb.len()];
    blur_pass(rgb, &mut tmp, w, h, r, true);
    blur_pass(&tmp, rgb, w, h, r, false);
}

fn blur_pass(from: &[f32], to: &mut [f32], w: usize, h: usize, r: usize, horizontal: bool) {
    let n = (2 * r + 1) as f32;
    for y in 0..h {
        for x in 0..w {
            for ch in 0..3 {
                let mut s = 0.0;
                for k in 0..=2 * r {
                    let (sx, sy) = if horizontal {
                        ((x + k).saturating_sub(r).min(w - 1), y)
                    } else {
                        (x, (y + k).saturating_sub(r).min(h - 1))
                    };
                    s += from[(sy * w + sx) * 3 + ch];
                }
                to[(y * w + x) * 3 + ch] = s / n;
            }
        }
    }
}

/// Averages `len` pixels along `angle`: the camera or the sheet moved during exposure.
fn motion_blur(rgb: &mut [f32], w: usize, h: usize, len: f32, angle: f32) {
    let src = rgb.to_vec();
    let (s, c) = angle.sin_cos();
    let taps = len.ceil() as usize + 1;
    for y in 0..h {
        for x in 0..w {
            let mut acc = [0f32; 3];
            for k in 0..taps {
                let t = k as f32 / (taps - 1) as f32 * len - len / 2.0;
                let sx = (x as f32 + t * c).round().clamp(0.0, (w - 1) as f32) as usize;
                let sy = (y as f32 + t * s).round().clamp(0.0, (h - 1) as f32) as usize;
                for ch in 0..3 {
                    acc[ch] += src[(sy * w + sx) * 3 + ch];
                }
            }
            let i = (y * w + x) * 3;
            for ch in 0..3 {
                rgb[i + ch] = acc[ch] / taps as f32;
            }
        }
    }
}

fn jpeg_round_trip(rgb: &[u8], w: usize, h: usize, quality: u8) -> Option<Vec<u8>> {
    use image::ImageEncoder;
    let mut buf = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, quality)
        .write_image(rgb, w as u32, h as u32, image::ExtendedColorType::Rgb8)
        .ok()?;
    let img = image::load_from_memory_with_format(&buf, image::ImageFormat::Jpeg).ok()?;
    Some(img.to_rgb8().into_raw())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn homography_maps_the_corners_and_inverts() {
        let q = [[10.0, 5.0], [90.0, 12.0], [80.0, 95.0], [3.0, 70.0]];
        let m = square_to_quad(&q);
        let inv = invert(&m).unwrap();
        for (i, (u, v)) in [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]
            .into_iter()
            .enumerate()
        {
            let d = m[6] * u + m[7] * v + m[8];
            let (x, y) = (
                (m[0] * u + m[1] * v + m[2]) / d,
                (m[3] * u + m[4] * v + m[5]) / d,
            );
            assert!((x - q[i][0]).abs() < 1e-3 && (y - q[i][1]).abs() < 1e-3);
            let e = inv[6] * x + inv[7] * y + inv[8];
            let (bu, bv) = (
                (inv[0] * x + inv[1] * y + inv[2]) / e,
                (inv[3] * x + inv[4] * y + inv[5]) / e,
            );
            assert!((bu - u).abs() < 1e-4 && (bv - v).abs() < 1e-4, "{bu} {bv}");
        }
    }
}
