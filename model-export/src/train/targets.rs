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
    let mut t = Targets {
        heat: vec![0f32; batch.len() * g8 * g8 * nc],
        ..Default::default()
    };
    for (b, sample) in batch.iter().enumerate() {
        assert_eq!(
            sample.size, s,
            "samples are resized to the model input before batching"
        );
        normalise_into(&sample.rgb, s, &mut t.images);
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
}
