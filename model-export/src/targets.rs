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
    /// Per regressing cell: its flat index, as `centre_idx`.
    pub reg_idx: Vec<u32>,
    /// Per regressing cell: offset x, y from the cell to its object's centre in cells, log w,
    /// log h in cells.
    pub boxes: Vec<f32>,
    /// Per regressing cell: its weight (the object's target heat there; 1 at the centre).
    pub reg_w: Vec<f32>,
    /// Per object: its image in the batch.
    pub obj_img: Vec<u32>,
    /// Per object: (G4*G4) mask at stride 4 and the crop weight for it.
    pub masks: Vec<f32>,
    pub mask_w: Vec<f32>,
}

impl Targets {
    pub fn objects(&self) -> usize {
        self.obj_img.len()
    }
}

/// Targets for a batch. `reg_heat` chooses the cells that regress a box: 0, only each object's
/// centre cell (CenterNet); above 0, also every cell inside the box whose target heat for the
/// object is at least that, weighted by it, a cell inside two boxes taking the smaller object
/// (TTFNet, which trains boxes from many more samples per object).
pub fn build(cfg: &ModelConfig, batch: &[Sample], reg_heat: f32) -> Targets {
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
        // Per cell: the smallest object regressing there, (area, target, weight).
        let mut reg: Vec<Option<(usize, [f32; 4], f32)>> = vec![None; g8 * g8];
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
            let (lw, lh) = ((w / 8.0).ln(), (h / 8.0).ln());
            if reg_heat <= 0.0 {
                t.reg_idx.push((b * g8 * g8 + cj * g8 + ci) as u32);
                t.boxes.extend([cx - ci as f32, cy - cj as f32, lw, lh]);
                t.reg_w.push(1.0);
            } else {
                let cells = |lo: f32, len: f32| {
                    (lo / 8.0).floor().max(0.0) as usize
                        ..((lo + len) / 8.0).ceil().min(g8 as f32) as usize
                };
                for gy in cells(y, h) {
                    for gx in cells(x, w) {
                        let (dx, dy) = (gx as f32 - ci as f32, gy as f32 - cj as f32);
                        let v = (-(dx * dx) / (2.0 * sx * sx) - (dy * dy) / (2.0 * sy * sy)).exp();
                        let slot = &mut reg[gy * g8 + gx];
                        if v >= reg_heat && slot.map_or(true, |(area, _, _)| o.area < area) {
                            let target = [cx - gx as f32, cy - gy as f32, lw, lh];
                            *slot = Some((o.area, target, v));
                        }
                    }
                }
            }
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
        for (cell, r) in reg.iter().enumerate() {
            if let Some((_, target, v)) = r {
                t.reg_idx.push((b * g8 * g8 + cell) as u32);
                t.boxes.extend(target);
                t.reg_w.push(*v);
            }
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_put_a_peak_at_each_centre() {
        let cfg = ModelConfig::demo(svit_scenes::CLASSES.len());
        let scene = svit_scenes::generate(&svit_scenes::SceneConfig::square(256), 5, 0);
        let n = scene.objects.len();
        let t = build(&cfg, &[Sample::from_scene(scene.clone())], 0.0);
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
    fn cells_around_a_centre_regress_the_same_box() {
        let cfg = ModelConfig::demo(svit_scenes::CLASSES.len());
        let scene = svit_scenes::generate(&svit_scenes::SceneConfig::square(256), 5, 3);
        let sample = Sample::from_scene(scene.clone());
        let centre_only = build(&cfg, &[sample.clone()], 0.0);
        assert_eq!(centre_only.reg_idx, centre_only.centre_idx);
        let t = build(&cfg, &[sample], 0.3);
        assert!(
            t.reg_w.len() > scene.objects.len(),
            "{} cells",
            t.reg_w.len()
        );
        let mut cells = t.reg_idx.clone();
        cells.sort();
        cells.dedup();
        assert_eq!(cells.len(), t.reg_idx.len(), "a cell regresses one box");
        for (k, &cell) in t.reg_idx.iter().enumerate() {
            let (gx, gy) = ((cell % 32) as f32, (cell / 32) as f32);
            let b = &t.boxes[4 * k..4 * k + 4];
            let (cx, cy) = ((gx + b[0]) * 8.0, (gy + b[1]) * 8.0);
            let (w, h) = (b[2].exp() * 8.0, b[3].exp() * 8.0);
            let o = scene.objects.iter().find(|o| {
                let [x, y, ow, oh] = o.bbox;
                (x + ow / 2.0 - cx).abs() < 1e-3
                    && (y + oh / 2.0 - cy).abs() < 1e-3
                    && (ow - w).abs() < 1e-2
                    && (oh - h).abs() < 1e-2
            });
            let o = o.unwrap_or_else(|| panic!("cell {cell} regresses no object's box"));
            let [x, y, ow, oh] = o.bbox;
            assert!(
                gx * 8.0 < x + ow && gx * 8.0 + 8.0 > x && gy * 8.0 < y + oh && gy * 8.0 + 8.0 > y
            );
            assert!((0.3..=1.0).contains(&t.reg_w[k]));
        }
    }
}
