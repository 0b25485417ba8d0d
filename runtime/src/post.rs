//! Head outputs -> detections: CenterNet peaks on the stride-8 heatmap, boxes from offsets and
//! log sizes, class-wise NMS, YOLACT masks (prototypes . coefficients) cropped to the box, and
//! optionally each box moved towards its mask's own extent.

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
        let (xs, ys) = self.pixels(width, height, bbox);
        for y in ys {
            for x in xs.clone() {
                out[y * width + x] = self.inside(x, y) as u8;
            }
        }
        out
    }

    /// The pixel box `[x0, y0, x1, y1]` of what [`rasterize`](Self::rasterize) would set
    /// (end exclusive, as COCO's box of a mask), or `None` when it sets nothing. Scans inwards
    /// from the edges, so a mask that fills its box costs its perimeter, not its area; a
    /// pixel row or column whose cells all stay below one half is skipped whole (a bilinear
    /// value never exceeds its four corners), and the taps are computed once per row and
    /// column. It runs for every detection on the inference thread.
    pub fn extent(&self, width: usize, height: usize, bbox: [f32; 4]) -> Option<[f32; 4]> {
        let (xs, ys) = self.pixels(width, height, bbox);
        let tx: Vec<Tap> = xs.clone().map(|x| self.tap_x(x)).collect();
        let ty: Vec<Tap> = ys.clone().map(|y| self.tap_y(y)).collect();
        let row_max: Vec<u8> = self.probs.chunks_exact(self.w.max(1)).map(max_u8).collect();
        let col_max: Vec<u8> = (0..self.w)
            .map(|i| {
                (0..self.h)
                    .map(|j| self.probs[j * self.w + i])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let may = |m: &[u8], t: &Tap| m[t.0].max(m[t.1]) > HALF;
        let row = |j: usize| may(&row_max, &ty[j]) && tx.iter().any(|a| self.at(a, &ty[j]));
        let top = (0..ty.len()).find(|&j| row(j))?;
        let bottom = (top..ty.len()).rev().find(|&j| row(j))?;
        let col =
            |i: usize| may(&col_max, &tx[i]) && ty[top..=bottom].iter().any(|b| self.at(&tx[i], b));
        let left = (0..tx.len()).find(|&i| col(i))?;
        let right = (left..tx.len()).rev().find(|&i| col(i))?;
        Some(
            [
                xs.start + left,
                ys.start + top,
                xs.start + right + 1,
                ys.start + bottom + 1,
            ]
            .map(|v| v as f32),
        )
    }

    /// The pixel columns and rows of `bbox`, clipped to the image (none for an empty mask).
    fn pixels(
        &self,
        width: usize,
        height: usize,
        bbox: [f32; 4],
    ) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        if self.w == 0 || self.h == 0 {
            return (0..0, 0..0);
        }
        let x_lo = bbox[0].floor().max(0.0) as usize;
        let y_lo = bbox[1].floor().max(0.0) as usize;
        let x_hi = (bbox[2].ceil().max(0.0) as usize).min(width);
        let y_hi = (bbox[3].ceil().max(0.0) as usize).min(height);
        (x_lo..x_hi, y_lo..y_hi)
    }

    /// Whether pixel (x, y) is in the mask: its centre's bilinear probability >= one half.
    fn inside(&self, x: usize, y: usize) -> bool {
        self.at(&self.tap_x(x), &self.tap_y(y))
    }

    fn tap_x(&self, x: usize) -> Tap {
        tap(x, self.cell[0], self.x0, self.w)
    }

    fn tap_y(&self, y: usize) -> Tap {
        tap(y, self.cell[1], self.y0, self.h)
    }

    /// Whether the pixel with these taps is in the mask.
    fn at(&self, &(ix, ix1, wx): &Tap, &(iy, iy1, wy): &Tap) -> bool {
        let p = |a: usize, b: usize| self.probs[b * self.w + a] as f32;
        let v = p(ix, iy) * (1.0 - wx) * (1.0 - wy)
            + p(ix1, iy) * wx * (1.0 - wy)
            + p(ix, iy1) * (1.0 - wx) * wy
            + p(ix1, iy1) * wx * wy;
        v >= 127.5
    }
}

/// The largest probability that still rounds below one half: no bilinear blend of cells at
/// most this reaches 127.5.
const HALF: u8 = 127;

/// Where a pixel centre falls between cell centres along one axis: the two cells and the
/// weight of the second.
type Tap = (usize, usize, f32);

fn tap(p: usize, cell: f32, origin: usize, n: usize) -> Tap {
    let g = ((p as f32 + 0.5) / cell - 0.5 - origin as f32).clamp(0.0, (n - 1) as f32);
    (g as usize, (g as usize + 1).min(n - 1), g.fract())
}

fn max_u8(v: &[u8]) -> u8 {
    v.iter().copied().max().unwrap_or(0)
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

/// A logit below which `sigmoid` is surely under `t`, so most cells skip the `exp`: the
/// threshold's logit less a margin far wider than sigmoid's rounding for t in (1e-4, 0.99);
/// no shortcut outside that range, where sigmoid saturates.
fn logit_floor(t: f32) -> f32 {
    if t > 1e-4 && t < 0.99 {
        (t / (1.0 - t)).ln() - 1e-3
    } else {
        f32::NEG_INFINITY
    }
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

/// With `box_from_mask`, a mask's extent is sought up to this fraction of the regressed box's
/// size beyond each of its sides (0.1 scored best of 0.05..0.25 on the tuning scenes).
const MASK_SEARCH: f32 = 0.1;

/// What decoding keeps and how it places boxes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DecodeOptions {
    /// Detections below this score are dropped.
    pub score_threshold: f32,
    pub max_detections: usize,
    /// How far each box moves from the regressed one (0) towards the extent of its own mask
    /// (1). The stride-4 masks place medium and large objects' edges better than the stride-8
    /// size regression does; the two errors are partly independent, so a blend beats either.
    pub box_from_mask: f32,
}

pub fn decode(
    cfg: &ModelConfig,
    h: &HeadOutputs,
    opts: &DecodeOptions,
) -> Result<Vec<Detection>, RunError> {
    let (score_threshold, max_det) = (opts.score_threshold, opts.max_detections);
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
    let clearly_below = logit_floor(score_threshold);
    for cell in 0..g8 * g8 {
        let (cx, cy) = ((cell % g8) as isize, (cell / g8) as isize);
        for k in 0..nc {
            let v = h.heat[cell * nc + k];
            if v < clearly_below || sigmoid(v) < score_threshold {
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
        let w = opts.box_from_mask;
        // The mask may reach past a box regressed too small: look for it a little wider.
        let g = if w > 0.0 { MASK_SEARCH } else { 0.0 };
        let (bw, bh) = (bbox[2] - bbox[0], bbox[3] - bbox[1]);
        let search = [
            (bbox[0] - g * bw).max(0.0),
            (bbox[1] - g * bh).max(0.0),
            (bbox[2] + g * bw).min(s),
            (bbox[3] + g * bh).min(s),
        ];
        let mask = mask_for(h.protos, coef, &search, g4, np);
        let side = cfg.image_size;
        let bbox = match (w > 0.0).then(|| mask.extent(side, side, search)).flatten() {
            Some(m) => std::array::from_fn(|i| bbox[i] + w * (m[i] - bbox[i])),
            None => bbox,
        };
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
    use svit_scenes::Rng;

    fn opts(box_from_mask: f32) -> DecodeOptions {
        DecodeOptions {
            score_threshold: 0.3,
            max_detections: 100,
            box_from_mask,
        }
    }

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
        let d = decode(&c, &h, &opts(0.0)).unwrap();
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

    /// A wide regressed box around a mask that covers stride-4 cells x 3..=6, y 6..=7: the box
    /// moves onto the mask's extent as far as `box_from_mask` says, and the extent is exactly
    /// the box of what `rasterize` sets.
    #[test]
    fn boxes_move_towards_their_masks() {
        let c = cfg(); // g8 = 8, g4 = 16
        let mut heat = vec![-9.0f32; 64 * 2];
        heat[(3 * 8 + 2) * 2] = 3.0; // cell (2,3), class 0
        let mut boxes = vec![0.0f32; 64 * 4];
        // Centre (20, 28), 32 x 16 px: [4, 20, 36, 36].
        boxes[(3 * 8 + 2) * 4..(3 * 8 + 2) * 4 + 4].copy_from_slice(&[
            0.5,
            0.5,
            4f32.ln(),
            2f32.ln(),
        ]);
        let coef = vec![1.0f32; 64];
        let mut protos = vec![-5.0f32; 256];
        for y in 6..=7 {
            for x in 3..=6 {
                protos[y * 16 + x] = 5.0;
            }
        }
        let h = HeadOutputs {
            heat: &heat,
            boxes: &boxes,
            coef: &coef,
            protos: &protos,
        };
        let at = |w| decode(&c, &h, &opts(w)).unwrap()[0].clone();
        let (regressed, onto, half) = (at(0.0), at(1.0), at(0.5));
        let close = |a: [f32; 4], b: [f32; 4]| a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-3);
        assert!(
            close(regressed.bbox, [4.0, 20.0, 36.0, 36.0]),
            "{:?}",
            regressed.bbox
        );
        let ext = [12.0, 24.0, 28.0, 32.0];
        assert!(close(onto.bbox, ext), "{:?}", onto.bbox);
        assert!(close(half.bbox, [8.0, 22.0, 32.0, 34.0]), "{:?}", half.bbox);
        // The extent is the box of the rasterized mask.
        let m = onto.mask.rasterize(64, 64, [0.0, 0.0, 64.0, 64.0]);
        let set: Vec<(usize, usize)> = (0..64 * 64)
            .filter(|&i| m[i] == 1)
            .map(|i| (i % 64, i / 64))
            .collect();
        let xs = set.iter().map(|p| p.0);
        let ys = set.iter().map(|p| p.1);
        let from_pixels = [
            xs.clone().min().unwrap() as f32,
            ys.clone().min().unwrap() as f32,
            xs.max().unwrap() as f32 + 1.0,
            ys.max().unwrap() as f32 + 1.0,
        ];
        assert!(close(from_pixels, ext), "{from_pixels:?}");
        assert_eq!(onto.mask.extent(64, 64, [0.0, 0.0, 1.0, 1.0]), None);
    }

    /// The skipping scan finds exactly the box of what `rasterize` sets, on random masks
    /// (blobs and noise, cells of several sizes, windows offset in the grid) and boxes.
    #[test]
    fn extent_is_the_box_of_the_rasterized_mask() {
        let mut rng = Rng::new(7);
        for case in 0..400 {
            let (w, h) = (rng.int(1, 12), rng.int(1, 12));
            let cell = [2.0 + (case % 4) as f32 * 1.5, 4.0 - (case % 3) as f32];
            let probs: Vec<u8> = (0..w * h)
                .map(|_| match rng.int(0, 3) {
                    0 => 255,
                    1 => 0,
                    _ => rng.int(0, 255) as u8,
                })
                .collect();
            let m = Mask {
                x0: rng.int(0, 4),
                y0: rng.int(0, 4),
                w,
                h,
                cell,
                probs,
            };
            let side = 96;
            let mut r = || rng.range(-4.0, side as f32 + 4.0);
            let (a, b, c, d) = (r(), r(), r(), r());
            let bbox = [a.min(c), b.min(d), a.max(c), b.max(d)];
            let raster = m.rasterize(side, side, bbox);
            let set: Vec<usize> = (0..side * side).filter(|&i| raster[i] == 1).collect();
            let expected = (!set.is_empty()).then(|| {
                let xs = set.iter().map(|i| i % side);
                let ys = set.iter().map(|i| i / side);
                [
                    xs.clone().min().unwrap(),
                    ys.clone().min().unwrap(),
                    xs.max().unwrap() + 1,
                    ys.max().unwrap() + 1,
                ]
                .map(|v| v as f32)
            });
            assert_eq!(
                m.extent(side, side, bbox),
                expected,
                "case {case}: {m:?} {bbox:?}"
            );
        }
    }

    /// Below `logit_floor(t)` the sigmoid is under t, for thresholds across (0, 1).
    #[test]
    fn logit_floor_only_skips_scores_below_the_threshold() {
        let mut rng = Rng::new(3);
        for &t in &[
            1e-5f32, 1e-4, 0.01, 0.05, 0.3, 0.5, 0.7, 0.9, 0.98, 0.99, 0.999,
        ] {
            let floor = logit_floor(t);
            for _ in 0..20_000 {
                let v = rng.range(-12.0, 12.0);
                if v < floor {
                    assert!(sigmoid(v) < t, "t {t} v {v}");
                }
            }
            // Right at the floor the shortcut must still be below the threshold.
            if floor.is_finite() {
                assert!(sigmoid(floor) < t && sigmoid(floor + 2e-3) >= t * 0.999);
            }
        }
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
            decode(&c, &h, &opts(0.0)),
            Err(RunError::NonFinite { .. })
        ));
    }
}
