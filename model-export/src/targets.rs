//! Training samples and the CenterNet/YOLACT targets built from them.

use svit_runtime::ModelConfig;

/// ImageNet statistics, as DeiT was trained with (so `--init` weights see familiar inputs).
pub const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// One image at the model's input size with its instances.
#[derive(Clone, Debug)]
pub struct Sample {
    pub size: usize,
    pub rgb: Vec<u8>,
    pub objects: Vec<svit_scenes::Object>,
}

impl Sample {
    pub fn from_scene(s: svit_scenes::Scene) -> Self {
        debug_assert_eq!(s.width, s.height);
        Sample {
            size: s.width,
            rgb: s.rgb,
            objects: s.objects,
        }
    }
}

/// Normalised CHW floats, appended to `out`.
pub fn normalise_into(rgb: &[u8], size: usize, out: &mut Vec<f32>) {
    for c in 0..3 {
        out.extend((0..size * size).map(|i| (rgb[i * 3 + c] as f32 / 255.0 - MEAN[c]) / STD[c]));
    }
}

/// Everything the losses need for one batch, as flat host arrays.
#[derive(Default)]
pub struct Targets {
    pub images: Vec<f32>,
    /// (B, G8*G8, classes) Gaussian heatmaps.
    pub heat: Vec<f32>,
    /// Per object: flat index `b * G8*G8 + cell` of its centre cell.
    pub centre_idx: Vec<u32>,
    /// Per object: offset x, y in cells, log w, log h in cells.
    pub boxes: Vec<f32>,
    /// Per object: its image in the batch.
    pub obj_img: Vec<u32>,
    /// Per object: (G4*G4) mask at stride 4 and the crop weight for it.
    pub masks: Vec<f32>,
    pub mask_w: Vec<f32>,
    /// (B, G8*G8) the class covering most of each stride-8 cell (`classes` = background when
    /// no object covers half of it): the auxiliary semantic loss's labels.
    pub seg: Vec<u32>,
}

impl Targets {
    pub fn objects(&self) -> usize {
        self.obj_img.len()
    }
}

pub fn build(cfg: &ModelConfig, batch: &[Sample]) -> Targets {
    let s = cfg.image_size;
    let (g8, g4) = (s / 8, s / 4);
    let nc = cfg.num_classes;
    let mut t = Targets::default();
    t.heat = vec![0f32; batch.len() * g8 * g8 * nc];
    for (b, sample) in batch.iter().enumerate() {
        assert_eq!(
            sample.size, s,
            "samples are resized to the model input before batching"
        );
        normalise_into(&sample.rgb, s, &mut t.images);
        t.seg.extend(cell_classes(sample, g8, nc));
        for o in &sample.objects {
            let [x, y, w, h] = o.bbox;
            if w < 1.0 || h < 1.0 || o.class >= nc {
                continue;
            }
            let (cx, cy) = ((x + w / 2.0) / 8.0, (y + h / 2.0) / 8.0);
            let (ci, cj) = ((cx as usize).min(g8 - 1), (cy as usize).min(g8 - 1));
            let (sx, sy) = ((w / 8.0 / 6.0).max(0.4), (h / 8.0 / 6.0).max(0.4));
            let heat = &mut t.heat[b * g8 * g8 * nc..(b + 1) * g8 * g8 * nc];
            for gy in 0..g8 {
                for gx in 0..g8 {
                    let dx = gx as f32 - ci as f32;
                    let dy = gy as f32 - cj as f32;
                    let v = (-(dx * dx) / (2.0 * sx * sx) - (dy * dy) / (2.0 * sy * sy)).exp();
                    let cell = &mut heat[(gy * g8 + gx) * nc + o.class];
                    if v > 1e-4 {
                        *cell = cell.max(v);
                    }
                }
            }
            t.centre_idx.push((b * g8 * g8 + cj * g8 + ci) as u32);
            t.boxes.extend([
                cx - ci as f32,
                cy - cj as f32,
                (w / 8.0).ln(),
                (h / 8.0).ln(),
            ]);
            t.obj_img.push(b as u32);
            // Mask at stride 4: a cell is inside when at least half of its pixels are.
            let (bx0, by0) = (
                (x / 4.0).floor() as isize - 1,
                (y / 4.0).floor() as isize - 1,
            );
            let (bx1, by1) = (
                ((x + w) / 4.0).ceil() as isize + 1,
                ((y + h) / 4.0).ceil() as isize + 1,
            );
            for gy in 0..g4 {
                for gx in 0..g4 {
                    let mut n = 0;
                    for yy in gy * 4..gy * 4 + 4 {
                        for xx in gx * 4..gx * 4 + 4 {
                            n += o.mask[yy * s + xx] as usize;
                        }
                    }
                    t.masks.push(if n >= 8 { 1.0 } else { 0.0 });
                    let inside = (gx as isize) >= bx0
                        && (gx as isize) < bx1
                        && (gy as isize) >= by0
                        && (gy as isize) < by1;
                    t.mask_w.push(inside as u8 as f32);
                }
            }
        }
    }
    t
}

/// Per stride-8 cell, the class whose visible pixels cover at least half of it, else `nc`.
fn cell_classes(sample: &Sample, g8: usize, nc: usize) -> Vec<u32> {
    let s = sample.size;
    let cell = s / g8;
    let mut counts = vec![0u32; g8 * g8 * nc];
    for o in sample.objects.iter().filter(|o| o.class < nc) {
        for (i, _) in o.mask.iter().enumerate().filter(|(_, &m)| m != 0) {
            let (x, y) = (i % s, i / s);
            counts[((y / cell) * g8 + x / cell) * nc + o.class] += 1;
        }
    }
    counts
        .chunks(nc)
        .map(|c| match c.iter().enumerate().max_by_key(|(_, &n)| n) {
            Some((k, &n)) if 2 * n as usize >= cell * cell => k as u32,
            _ => nc as u32,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_put_a_peak_at_each_centre() {
        let cfg = ModelConfig::demo(svit_scenes::CLASSES.len());
        let scene = svit_scenes::generate(&svit_scenes::SceneConfig::square(256), 5, 0);
        let n = scene.objects.len();
        let t = build(&cfg, &[Sample::from_scene(scene.clone())]);
        assert_eq!(t.objects(), n);
        assert_eq!(t.images.len(), 3 * 256 * 256);
        for (k, o) in scene.objects.iter().enumerate() {
            let cell = t.centre_idx[k] as usize;
            assert_eq!(t.heat[cell * cfg.num_classes + o.class], 1.0);
            let [ox, oy, lw, lh] = [
                t.boxes[4 * k],
                t.boxes[4 * k + 1],
                t.boxes[4 * k + 2],
                t.boxes[4 * k + 3],
            ];
            assert!((0.0..1.0).contains(&ox) && (0.0..1.0).contains(&oy));
            assert!(
                (lw.exp() * 8.0 - o.bbox[2]).abs() < 1e-3
                    && (lh.exp() * 8.0 - o.bbox[3]).abs() < 1e-3
            );
            let m = &t.masks[k * 64 * 64..(k + 1) * 64 * 64];
            let w = &t.mask_w[k * 64 * 64..(k + 1) * 64 * 64];
            assert!(
                m.iter().zip(w).all(|(m, w)| *m == 0.0 || *w == 1.0),
                "mask outside its crop"
            );
        }
    }

    #[test]
    fn cells_take_the_class_covering_half_of_them() {
        let cfg = ModelConfig::demo(svit_scenes::CLASSES.len());
        let s = 256;
        // Two rectangles: class 2 on x 10..50, y 20..61; class 4 on x 60..64, y 0..256 (a
        // strip half a cell wide).
        let rect = |class, x0: usize, x1: usize, y0: usize, y1: usize| {
            let mut mask = vec![0u8; s * s];
            for y in y0..y1 {
                mask[y * s + x0..y * s + x1].fill(1);
            }
            let area = (x1 - x0) * (y1 - y0);
            svit_scenes::Object {
                class,
                bbox: [x0 as f32, y0 as f32, (x1 - x0) as f32, (y1 - y0) as f32],
                mask,
                area,
            }
        };
        let sample = Sample {
            size: s,
            rgb: vec![0; s * s * 3],
            objects: vec![rect(2, 10, 50, 20, 61), rect(4, 60, 64, 0, 256)],
        };
        let t = build(&cfg, &[sample]);
        let bg = cfg.num_classes as u32;
        let cover =
            |lo: usize, hi: usize, c: usize| hi.min(c * 8 + 8).saturating_sub(lo.max(c * 8));
        for cy in 0..32 {
            for cx in 0..32 {
                let want = if cover(10, 50, cx) * cover(20, 61, cy) >= 32 {
                    2
                } else if cover(60, 64, cx) * 8 >= 32 {
                    4
                } else {
                    bg
                };
                assert_eq!(t.seg[cy * 32 + cx], want, "cell ({cx}, {cy})");
            }
        }
        assert!(t.seg.contains(&2) && t.seg.contains(&4));
    }
}
