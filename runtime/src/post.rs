//! Head outputs -> detections: CenterNet peaks on the stride-8 heatmap, boxes from offsets and
//! log sizes, class-wise NMS, YOLACT masks (prototypes . coefficients) cropped to the box.

use crate::error::RunError;
use crate::ModelConfig;

pub struct HeadOutputs<'a> {
    /// (4N, classes) logits.
    pub heat: &'a [f32],
    /// (4N, 4): offset x, y (cells), log w, log h (cells).
    pub boxes: &'a [f32],
    /// (4N, P).
    pub coef: &'a [f32],
    /// (16N, P) on the stride-4 grid.
    pub protos: &'a [f32],
}

/// An instance mask: probabilities (0..=255) on a grid cell window, compact enough for the wire.
#[derive(Clone, Debug, PartialEq)]
pub struct Mask {
    /// Window origin and size in grid cells.
    pub x0: usize,
    pub y0: usize,
    pub w: usize,
    pub h: usize,
    /// Size of one cell in image pixels (x, y).
    pub cell: [f32; 2],
    pub probs: Vec<u8>,
}

impl Mask {
    /// Binary row-major mask of an image `width x height`, bilinear between cell centres.
    pub fn rasterize(&self, width: usize, height: usize, bbox: [f32; 4]) -> Vec<u8> {
        let mut out = vec![0u8; width * height];
        if self.w == 0 || self.h == 0 {
            return out;
        }
        let x_lo = bbox[0].floor().max(0.0) as usize;
        let y_lo = bbox[1].floor().max(0.0) as usize;
        let x_hi = (bbox[2].ceil().max(0.0) as usize).min(width);
        let y_hi = (bbox[3].ceil().max(0.0) as usize).min(height);
        for y in y_lo..y_hi {
            let gy = ((y as f32 + 0.5) / self.cell[1] - 0.5 - self.y0 as f32)
                .clamp(0.0, (self.h - 1) as f32);
            let (iy, wy) = (gy as usize, gy.fract());
            let iy1 = (iy + 1).min(self.h - 1);
            for x in x_lo..x_hi {
                let gx = ((x as f32 + 0.5) / self.cell[0] - 0.5 - self.x0 as f32)
                    .clamp(0.0, (self.w - 1) as f32);
                let (ix, wx) = (gx as usize, gx.fract());
                let ix1 = (ix + 1).min(self.w - 1);
                let p = |a: usize, b: usize| self.probs[b * self.w + a] as f32;
                let v = p(ix, iy) * (1.0 - wx) * (1.0 - wy)
                    + p(ix1, iy) * wx * (1.0 - wy)
                    + p(ix, iy1) * (1.0 - wx) * wy
                    + p(ix1, iy1) * wx * wy;
                out[y * width + x] = (v >= 127.5) as u8;
            }
        }
        out
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Detection {
    pub class: usize,
    pub score: f32,
    /// `[x0, y0, x1, y1]` in pixels of the frame.
    pub bbox: [f32; 4],
    pub mask: Mask,
}

impl Detection {
    pub(crate) fn rescale(&mut self, sx: f32, sy: f32) {
        self.bbox = [
            self.bbox[0] * sx,
            self.bbox[1] * sy,
            self.bbox[2] * sx,
            self.bbox[3] * sy,
        ];
        self.mask.cell = [self.mask.cell[0] * sx, self.mask.cell[1] * sy];
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

pub const NMS_IOU: f32 = 0.7;

pub fn decode(
    cfg: &ModelConfig,
    h: &HeadOutputs,
    score_threshold: f32,
    max_det: usize,
) -> Result<Vec<Detection>, RunError> {
    let (g8, g4, nc, np) = (
        cfg.grid() * 2,
        cfg.grid() * 4,
        cfg.num_classes,
        cfg.num_protos,
    );
    let s = cfg.image_size as f32;
    if [h.heat, h.boxes, h.coef]
        .iter()
        .any(|v| v.iter().any(|x| !x.is_finite()))
    {
        return Err(RunError::NonFinite {
            stage: "head".into(),
        });
    }
    // Peaks: a cell is a candidate where its score is the maximum of its 3x3 neighbourhood.
    let mut cands: Vec<(f32, usize, usize)> = Vec::new(); // (score, cell, class)
    for cell in 0..g8 * g8 {
        let (cx, cy) = ((cell % g8) as isize, (cell / g8) as isize);
        for k in 0..nc {
            let v = h.heat[cell * nc + k];
            if sigmoid(v) < score_threshold {
                continue;
            }
            let mut peak = true;
            'n: for dy in -1..=1isize {
                for dx in -1..=1isize {
                    let (nx, ny) = (cx + dx, cy + dy);
                    if (dx, dy) == (0, 0)
                        || nx < 0
                        || ny < 0
                        || nx >= g8 as isize
                        || ny >= g8 as isize
                    {
                        continue;
                    }
                    let nv = h.heat[(ny as usize * g8 + nx as usize) * nc + k];
                    // Ties go to the earlier cell so a flat plateau yields one peak.
                    if nv > v || (nv == v && (ny as usize * g8 + nx as usize) < cell) {
                        peak = false;
                        break 'n;
                    }
                }
            }
            if peak {
                cands.push((sigmoid(v), cell, k));
            }
        }
    }
    cands.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut dets: Vec<Detection> = Vec::new();
    for (score, cell, class) in cands {
        if dets.len() >= max_det {
            break;
        }
        let b = &h.boxes[cell * 4..cell * 4 + 4];
        let (i, j) = ((cell % g8) as f32, (cell / g8) as f32);
        let (cx, cy) = ((i + b[0]) * 8.0, (j + b[1]) * 8.0);
        let (w, hh) = (
            b[2].clamp(-8.0, 8.0).exp() * 8.0,
            b[3].clamp(-8.0, 8.0).exp() * 8.0,
        );
        let bbox = [
            (cx - w / 2.0).clamp(0.0, s),
            (cy - hh / 2.0).clamp(0.0, s),
            (cx + w / 2.0).clamp(0.0, s),
            (cy + hh / 2.0).clamp(0.0, s),
        ];
        if bbox[2] - bbox[0] < 1.0 || bbox[3] - bbox[1] < 1.0 {
            continue;
        }
        if dets
            .iter()
            .any(|d| d.class == class && iou(&d.bbox, &bbox) > NMS_IOU)
        {
            continue;
        }
        let coef = &h.coef[cell * np..(cell + 1) * np];
        let mask = mask_for(h.protos, coef, &bbox, g4, np);
        dets.push(Detection {
            class,
            score,
            bbox,
            mask,
        });
    }
    Ok(dets)
}

fn mask_for(protos: &[f32], coef: &[f32], bbox: &[f32; 4], g4: usize, np: usize) -> Mask {
    // The stride-4 cells the box touches, plus one cell of margin for interpolation.
    let x0 = ((bbox[0] / 4.0).floor() as usize).saturating_sub(1);
    let y0 = ((bbox[1] / 4.0).floor() as usize).saturating_sub(1);
    let x1 = ((bbox[2] / 4.0).ceil() as usize + 1).min(g4);
    let y1 = ((bbox[3] / 4.0).ceil() as usize + 1).min(g4);
    let (w, h) = (x1.saturating_sub(x0), y1.saturating_sub(y0));
    let mut probs = Vec::with_capacity(w * h);
    for y in y0..y1 {
        for x in x0..x1 {
            let p = &protos[(y * g4 + x) * np..(y * g4 + x + 1) * np];
            let z: f32 = p.iter().zip(coef).map(|(a, b)| a * b).sum();
            let v = if z.is_finite() { sigmoid(z) } else { 0.0 };
            probs.push((v * 255.0).round() as u8);
        }
    }
    Mask {
        x0,
        y0,
        w,
        h,
        cell: [4.0, 4.0],
        probs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ModelConfig {
        ModelConfig {
            image_size: 64,
            num_classes: 2,
            num_protos: 1,
            ..ModelConfig::demo(2)
        }
    }

    #[test]
    fn one_peak_one_box_and_mask() {
        let c = cfg(); // g8 = 8, g4 = 16
        let mut heat = vec![-9.0f32; 64 * 2];
        heat[(3 * 8 + 2) * 2 + 1] = 3.0; // cell (2,3), class 1
        heat[(3 * 8 + 3) * 2 + 1] = 1.0; // neighbour: suppressed
        let mut boxes = vec![0.0f32; 64 * 4];
        boxes[(3 * 8 + 2) * 4..(3 * 8 + 2) * 4 + 4].copy_from_slice(&[
            0.5,
            0.5,
            1.0f32.ln() + 1.0,
            0.0,
        ]);
        let coef = vec![1.0f32; 64];
        let protos = vec![5.0f32; 256];
        let h = HeadOutputs {
            heat: &heat,
            boxes: &boxes,
            coef: &coef,
            protos: &protos,
        };
        let d = decode(&c, &h, 0.3, 100).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].class, 1);
        let w = 1f32.exp() * 8.0;
        assert!(
            (d[0].bbox[0] - (20.0 - w / 2.0)).abs() < 1e-4 && (d[0].bbox[1] - 24.0).abs() < 1e-4
        );
        let m = d[0].mask.rasterize(64, 64, d[0].bbox);
        let area: usize = m.iter().map(|&v| v as usize).sum();
        assert!(area > 0 && area <= ((d[0].bbox[2] - d[0].bbox[0]).ceil() * 9.0) as usize);
    }

    #[test]
    fn nan_in_head_is_an_error() {
        let c = cfg();
        let mut heat = vec![0.0f32; 128];
        heat[5] = f32::NAN;
        let z = vec![0.0f32; 64 * 4];
        let h = HeadOutputs {
            heat: &heat,
            boxes: &z,
            coef: &z[..64],
            protos: &vec![0.0; 256],
        };
        assert!(matches!(
            decode(&c, &h, 0.3, 100),
            Err(RunError::NonFinite { .. })
        ));
    }
}
