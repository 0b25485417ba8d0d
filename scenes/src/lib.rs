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
mod plain;
mod rng;
mod shapes;
pub mod sheet;

pub use rng::Rng;
use shapes::{raster, vivid, Placed};

/// The object classes, in label order.
pub const CLASSES: [&str; 6] = ["circle", "square", "triangle", "star", "ring", "cross"];

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

/// Scene `index` of the stream started by `seed`.
pub fn generate(cfg: &SceneConfig, seed: u64, index: u64) -> Scene {
    let mut rng = Rng::new(seed.wrapping_mul(0x1000_0000_01B3).wrapping_add(index));
    let (w, h) = (cfg.width, cfg.height);
    let mut rgb = vec![0f32; w * h * 3];
    let camera = cfg.style == Style::Camera;
    if camera {
        camera::background(&mut rng, w, h, &mut rgb);
    } else {
        plain::gradient_background(&mut rng, w, h, &mut rgb);
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
        plain::distractors(&mut rng, w, h, &mut rgb, &owner);
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
