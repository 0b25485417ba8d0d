//! The six shapes: where one lies (`Placed`), which pixels it covers (`raster`, `inside`) and
//! how it is coloured (`vivid`, `texture`).

use crate::rng::Rng;

/// One shape where it lies: class, centre, size, angle, colour and texture.
pub(crate) struct Placed {
    pub(crate) class: usize,
    pub(crate) cx: f32,
    pub(crate) cy: f32,
    pub(crate) half: f32,
    pub(crate) aspect: f32,
    pub(crate) angle: f32,
    pub(crate) colour: [f32; 3],
    pub(crate) texture: u8,
    pub(crate) tex_freq: f32,
}

impl Placed {
    /// Its colour at the pixel's centre (textured), meaningful inside it.
    pub(crate) fn colour_at(&self, x: usize, y: usize) -> [f32; 3] {
        let (s, c) = self.angle.sin_cos();
        let (dx, dy) = (x as f32 + 0.5 - self.cx, y as f32 + 0.5 - self.cy);
        let u = (c * dx + s * dy) / self.half;
        let v = (-s * dx + c * dy) / self.half;
        let shade = texture(self.texture, self.tex_freq, u, v);
        self.colour.map(|ch| (ch * shade).clamp(0.0, 1.0))
    }
}

pub(crate) fn vivid(rng: &mut Rng) -> [f32; 3] {
    let hue = rng.f32() * 6.0;
    let sat = rng.range(0.5, 1.0);
    let val = rng.range(0.55, 1.0);
    let f = hue.fract();
    let (p, q, t) = (
        val * (1.0 - sat),
        val * (1.0 - sat * f),
        val * (1.0 - sat * (1.0 - f)),
    );
    match hue as u32 {
        0 => [val, t, p],
        1 => [q, val, p],
        2 => [p, val, t],
        3 => [p, q, val],
        4 => [t, p, val],
        _ => [val, p, q],
    }
}

fn texture(kind: u8, freq: f32, u: f32, v: f32) -> f32 {
    match kind {
        0 => 1.0,
        1 => 0.75 + 0.25 * (u * freq * std::f32::consts::PI).sin().signum(),
        2 => {
            let a = ((u + 2.0) * freq).floor() as i32 + ((v + 2.0) * freq).floor() as i32;
            if a % 2 == 0 {
                1.0
            } else {
                0.65
            }
        }
        _ => 0.7 + 0.3 * (0.5 - 0.5 * v),
    }
}

/// Whether unit-frame point `(u, v)` lies inside shape `class`.
fn inside(class: usize, aspect: f32, u: f32, v: f32) -> bool {
    let r = (u * u + v * v).sqrt();
    match class {
        0 => r <= 1.0,
        1 => u.abs() <= 1.0 && v.abs() <= aspect,
        2 => {
            // Triangle with vertices (0,-1), (0.866,0.5), (-0.866,0.5).
            v <= 0.5 && v >= -1.0 + 1.732 * u.abs()
        }
        3 => {
            let t = v.atan2(u);
            let spike = (0.5 + 0.5 * (5.0 * t).cos()).powi(2);
            r <= 0.42 + 0.58 * spike
        }
        4 => (0.55..=1.0).contains(&r),
        _ => (u.abs() <= 0.3 && v.abs() <= 1.0) || (v.abs() <= 0.3 && u.abs() <= 1.0),
    }
}

/// Calls `f(pixel_index)` for every pixel whose centre lies inside the placed shape.
pub(crate) fn raster(p: &Placed, w: usize, h: usize, mut f: impl FnMut(usize)) {
    let (s, c) = p.angle.sin_cos();
    let reach = p.half * 1.5;
    let x0 = (p.cx - reach).floor().max(0.0) as usize;
    let y0 = (p.cy - reach).floor().max(0.0) as usize;
    let x1 = ((p.cx + reach).ceil().max(0.0) as usize).min(w);
    let y1 = ((p.cy + reach).ceil().max(0.0) as usize).min(h);
    for y in y0..y1 {
        for x in x0..x1 {
            let (dx, dy) = (x as f32 + 0.5 - p.cx, y as f32 + 0.5 - p.cy);
            let u = (c * dx + s * dy) / p.half;
            let v = (-s * dx + c * dy) / p.half;
            if inside(p.class, p.aspect, u, v) {
                f(y * w + x);
            }
        }
    }
}
