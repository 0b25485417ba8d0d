//! Deterministic synthetic scenes: shapes of a fixed set of classes, with exact boxes and
//! instance masks, on cluttered backgrounds with distractors that belong to no class.
//!
//! The same `(seed, index)` always gives the same scene on every platform: the generator uses
//! its own integer RNG and no floating-point function whose result could differ between libms
//! in a way that moves a mask pixel (only `sin`/`cos`/`atan2`/`sqrt` of moderate arguments,
//! which every libm we target rounds correctly enough for binary masks).
//!
//! Two styles: `Plain`, the flat backdrops the first demo models learned on, and `Camera`
//! (`camera.rs`), what a board's camera sees: natural-image backgrounds, a printed sheet at an
//! angle, blur, noise, JPEG, and scenes with no shape at all.

mod camera;
pub mod sheet;

/// The object classes, in label order.
pub const CLASSES: [&str; 6] = ["circle", "square", "triangle", "star", "ring", "cross"];

/// Small, fast, portable RNG (SplitMix64).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.f32()
    }
    /// Uniform integer in [lo, hi] (inclusive).
    pub fn int(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = self.f32().max(1e-7);
        let u2 = self.f32();
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }
}

/// What the generator draws.
#[derive(Clone, Debug)]
pub struct SceneConfig {
    pub width: usize,
    pub height: usize,
    pub min_objects: usize,
    pub max_objects: usize,
    /// Object size (longest side of its unrotated frame) in pixels.
    pub min_size: f32,
    pub max_size: f32,
    /// An object less visible than this after occlusion makes the layout be drawn again.
    pub min_visible: f32,
    pub style: Style,
    /// Camera style: the fraction of scenes with no object at all (hard negatives).
    pub empty_fraction: f32,
}

/// What the scenes look like around the shapes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Style {
    /// Smooth gradients with low-frequency clutter (the first demo models' data).
    #[default]
    Plain,
    /// Natural-image backgrounds, perspective, camera blur, noise and JPEG, empty scenes.
    Camera,
}

impl SceneConfig {
    pub fn square(size: usize) -> Self {
        SceneConfig {
            width: size,
            height: size,
            min_objects: 1,
            max_objects: 10,
            min_size: (size as f32 * 0.07).max(10.0),
            max_size: size as f32 * 0.45,
            min_visible: 0.45,
            style: Style::Plain,
            empty_fraction: 0.0,
        }
    }

    /// `square` in the camera style, one scene in eight empty.
    pub fn camera(size: usize) -> Self {
        SceneConfig {
            style: Style::Camera,
            empty_fraction: 0.125,
            ..Self::square(size)
        }
    }

    pub fn with_style(size: usize, style: Style) -> Self {
        match style {
            Style::Plain => Self::square(size),
            Style::Camera => Self::camera(size),
        }
    }
}

/// One annotated object: its class, visible box and visible mask.
#[derive(Clone, Debug)]
pub struct Object {
    pub class: usize,
    /// `[x, y, w, h]` in pixels, tight around the visible mask (COCO convention).
    pub bbox: [f32; 4],
    /// Row-major, `width * height`, 1 where the object is visible.
    pub mask: Vec<u8>,
    pub area: usize,
}

#[derive(Clone, Debug)]
pub struct Scene {
    pub width: usize,
    pub height: usize,
    /// Interleaved RGB, row-major.
    pub rgb: Vec<u8>,
    pub objects: Vec<Object>,
}

/// One shape where it lies: class, centre, size, angle, colour and texture.
pub(crate) struct Placed {
    class: usize,
    cx: f32,
    cy: f32,
    half: f32,
    aspect: f32,
    angle: f32,
    colour: [f32; 3],
    texture: u8,
    tex_freq: f32,
}

/// Scene `index` of the stream started by `seed`.
pub fn generate(cfg: &SceneConfig, seed: u64, index: u64) -> Scene {
    let mut rng = Rng::new(seed.wrapping_mul(0x1000_0000_01B3).wrapping_add(index));
    let (w, h) = (cfg.width, cfg.height);
    let mut rgb = vec![0f32; w * h * 3];
    let camera = cfg.style == Style::Camera;
    if camera {
        camera::background(&mut rng, w, h, &mut rgb);
    } else {
        gradient_background(&mut rng, w, h, &mut rgb);
    }
    let empty = camera && rng.f32() < cfg.empty_fraction;

    // Draw layouts until every object is visible enough; bounded so a tiny canvas cannot spin.
    let mut owner = vec![u8::MAX; w * h];
    let mut placed = Vec::new();
    for attempt in 0..if empty { 0 } else { 50 } {
        let n = rng.int(cfg.min_objects, cfg.max_objects.max(cfg.min_objects));
        let n = if attempt > 25 { n.div_ceil(2) } else { n };
        placed = (0..n).map(|_| place(&mut rng, cfg)).collect::<Vec<_>>();
        owner.fill(u8::MAX);
        for (i, p) in placed.iter().enumerate() {
            raster(p, w, h, |idx| owner[idx] = i as u8);
        }
        let ok = placed.iter().enumerate().all(|(i, p)| {
            let mut full = 0usize;
            raster(p, w, h, |_| full += 1);
            let vis = owner.iter().filter(|&&o| o as usize == i).count();
            full > 0 && vis as f32 >= cfg.min_visible * full as f32 && vis >= 12
        });
        if ok {
            break;
        }
        if attempt == 49 {
            placed.truncate(1);
            owner.fill(u8::MAX);
            raster(&placed[0], w, h, |idx| owner[idx] = 0);
        }
    }

    for (i, p) in placed.iter().enumerate() {
        for y in 0..h {
            for x in 0..w {
                let idx = y * w + x;
                if owner[idx] as usize == i {
                    rgb[idx * 3..idx * 3 + 3].copy_from_slice(&p.colour_at(x, y));
                }
            }
        }
    }
    if camera {
        camera::clutter(&mut rng, w, h, &mut rgb, &owner);
        if rng.f32() < 0.35 {
            let mut table = vec![0f32; w * h * 3];
            camera::background(&mut rng, w, h, &mut table);
            camera::perspective(&mut rng, w, h, &mut rgb, &mut owner, &table);
        }
    } else {
        distractors(&mut rng, w, h, &mut rgb, &owner);
    }

    let objects = placed
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let mask: Vec<u8> = owner.iter().map(|&o| (o as usize == i) as u8).collect();
            let area = mask.iter().filter(|&&m| m == 1).count();
            if area == 0 {
                return None;
            }
            Some(Object {
                class: p.class,
                bbox: mask_bbox(&mask, w, h),
                mask,
                area,
            })
        })
        .collect();

    let rgb = if camera {
        camera::camera(&mut rng, w, h, rgb)
    } else {
        let noise = rng.range(0.0, 0.04);
        rgb.iter()
            .map(|&v| ((v + noise * rng.normal()).clamp(0.0, 1.0) * 255.0).round() as u8)
            .collect()
    };
    Scene {
        width: w,
        height: h,
        rgb,
        objects,
    }
}

/// Tight `[x, y, w, h]` of the non-zero pixels of a row-major mask.
pub fn mask_bbox(mask: &[u8], w: usize, h: usize) -> [f32; 4] {
    let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
    for y in 0..h {
        for x in 0..w {
            if mask[y * w + x] != 0 {
                x0 = x0.min(x);
                y0 = y0.min(y);
                x1 = x1.max(x + 1);
                y1 = y1.max(y + 1);
            }
        }
    }
    if x1 <= x0 {
        return [0.0; 4];
    }
    [x0 as f32, y0 as f32, (x1 - x0) as f32, (y1 - y0) as f32]
}

impl Placed {
    /// Its colour at the pixel's centre (textured), meaningful inside it.
    fn colour_at(&self, x: usize, y: usize) -> [f32; 3] {
        let (s, c) = self.angle.sin_cos();
        let (dx, dy) = (x as f32 + 0.5 - self.cx, y as f32 + 0.5 - self.cy);
        let u = (c * dx + s * dy) / self.half;
        let v = (-s * dx + c * dy) / self.half;
        let shade = texture(self.texture, self.tex_freq, u, v);
        self.colour.map(|ch| (ch * shade).clamp(0.0, 1.0))
    }
}

fn place(rng: &mut Rng, cfg: &SceneConfig) -> Placed {
    // Log-uniform size so small objects are as common as large ones.
    let size = (cfg.min_size.ln() + rng.f32() * (cfg.max_size.ln() - cfg.min_size.ln())).exp();
    let half = size / 2.0;
    let margin = half * 0.3;
    Placed {
        class: rng.int(0, CLASSES.len() - 1),
        cx: rng.range(margin, cfg.width as f32 - margin),
        cy: rng.range(margin, cfg.height as f32 - margin),
        half,
        aspect: rng.range(0.6, 1.0),
        angle: rng.range(0.0, std::f32::consts::TAU),
        colour: vivid(rng),
        texture: rng.int(0, 3) as u8,
        tex_freq: rng.range(2.0, 6.0),
    }
}

fn vivid(rng: &mut Rng) -> [f32; 3] {
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
fn raster(p: &Placed, w: usize, h: usize, mut f: impl FnMut(usize)) {
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

fn gradient_background(rng: &mut Rng, w: usize, h: usize, rgb: &mut [f32]) {
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
fn distractors(rng: &mut Rng, w: usize, h: usize, rgb: &mut [f32], owner: &[u8]) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_seed_dependent() {
        let cfg = SceneConfig::square(128);
        let a = generate(&cfg, 7, 3);
        let b = generate(&cfg, 7, 3);
        let c = generate(&cfg, 8, 3);
        assert_eq!(a.rgb, b.rgb);
        assert_eq!(a.objects.len(), b.objects.len());
        assert_ne!(a.rgb, c.rgb);
    }

    #[test]
    fn masks_are_exact_and_disjoint() {
        let cfg = SceneConfig::square(160);
        for i in 0..40 {
            let s = generate(&cfg, 1, i);
            assert!(!s.objects.is_empty() && s.objects.len() <= cfg.max_objects);
            let mut cover = vec![0u8; 160 * 160];
            for o in &s.objects {
                assert!(o.class < CLASSES.len());
                assert_eq!(o.area, o.mask.iter().map(|&m| m as usize).sum::<usize>());
                let [x, y, bw, bh] = o.bbox;
                assert!(bw > 0.0 && bh > 0.0 && x + bw <= 160.0 && y + bh <= 160.0);
                for (c, m) in cover.iter_mut().zip(&o.mask) {
                    *c += m;
                }
            }
            assert!(
                cover.iter().all(|&c| c <= 1),
                "instance masks overlap in scene {i}"
            );
        }
    }

    #[test]
    fn all_classes_and_sizes_appear() {
        let cfg = SceneConfig::square(256);
        let mut seen = [0usize; CLASSES.len()];
        let (mut small, mut large) = (0, 0);
        for i in 0..60 {
            for o in generate(&cfg, 3, i).objects {
                seen[o.class] += 1;
                if o.area < 32 * 32 {
                    small += 1;
                }
                if o.area > 64 * 64 {
                    large += 1;
                }
            }
        }
        assert!(seen.iter().all(|&n| n > 5), "{seen:?}");
        assert!(small > 10 && large > 10, "small {small} large {large}");
    }

    #[test]
    fn camera_scenes_keep_exact_masks_and_include_empty_ones() {
        let cfg = SceneConfig::camera(128);
        let (mut empty, mut objects) = (0, 0);
        for i in 0..64 {
            let s = generate(&cfg, 11, i);
            assert_eq!(
                s.rgb,
                generate(&cfg, 11, i).rgb,
                "scene {i} is not deterministic"
            );
            empty += s.objects.is_empty() as usize;
            let mut cover = vec![0u8; 128 * 128];
            for o in &s.objects {
                objects += 1;
                assert_eq!(o.area, o.mask.iter().map(|&m| m as usize).sum::<usize>());
                assert!(o.area >= 12, "scene {i}: an object of {} pixels", o.area);
                assert_eq!(o.bbox, mask_bbox(&o.mask, 128, 128));
                for (c, m) in cover.iter_mut().zip(&o.mask) {
                    *c += m;
                }
            }
            assert!(cover.iter().all(|&c| c <= 1), "masks overlap in scene {i}");
        }
        // One in eight is asked for: 8 expected of 64.
        assert!((2..=16).contains(&empty), "{empty} empty scenes of 64");
        assert!(objects > 150, "{objects} objects in 64 scenes");
        let plain = generate(&SceneConfig::square(128), 11, 0);
        assert_ne!(plain.rgb, generate(&cfg, 11, 0).rgb);
    }
}
