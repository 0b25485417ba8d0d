//! `svit-export eval`: runs a bundle through `svit_runtime` exactly as the board does, on a
//! COCO data set, and reports COCO box and mask AP, kept-token fraction and GMACs per threshold.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use svit_runtime::budget::Budget;
use svit_runtime::{DecodeOptions, Model, Pruning, RunOptions};

use crate::coco::cocoeval::{self, box_iou, mask_iou, Pair, Summary};
use crate::coco::{Annotation, Dataset, ResultEntry, Segmentation};
use crate::error::{bail, Context, Result};
use crate::latency::LatencyModel;

#[derive(Clone, Debug, Serialize)]
pub struct EvalRun {
    /// The run's threshold (with a budget: the mean of the thresholds the controller chose).
    pub threshold: f32,
    /// With a budget: the budget, the fraction of images whose predicted total held it, and
    /// the p95 of the predicted totals (ms).
    pub budget_ms: Option<f32>,
    pub budget_hit_rate: Option<f64>,
    pub predicted_p95_ms: Option<f64>,
    /// What ran the stage graphs (tract or onnxruntime).
    pub engine: String,
    pub precision: String,
    pub box_ap: f64,
    pub mask_ap: f64,
    pub box_ap50: f64,
    pub mask_ap50: f64,
    pub kept_fraction: f64,
    pub gmacs: f64,
    pub images: usize,
    pub box_summary: Summary,
    pub mask_summary: Summary,
    pub per_class: Vec<ClassAp>,
    /// What the detector calls each ground-truth object (rows: true class, in `per_class`
    /// order; columns: the class of the best-scoring detection whose box overlaps it at IoU
    /// >= 0.5, then "missed"). The diagonal is right; off it, class confusion.
    pub confusion: Vec<Vec<u64>>,
    pub results_bbox: PathBuf,
    pub results_segm: PathBuf,
}

/// Box and mask AP@[.5:.95] of one category; -1 where it has no ground truth.
#[derive(Clone, Debug, Serialize)]
pub struct ClassAp {
    pub name: String,
    pub box_ap: f64,
    pub mask_ap: f64,
}

pub struct EvalSpec<'a> {
    pub coco: &'a Path,
    pub images: &'a Path,
    pub thresholds: &'a [f32],
    pub min_keep: Option<svit_runtime::MinKeep>,
    pub score_threshold: f32,
    /// Default: the bundle's (`DecodeOptions::box_from_mask`).
    pub box_from_mask: Option<f32>,
    pub results_dir: &'a Path,
    /// Evaluate only the first N images (quick checks).
    pub limit: Option<usize>,
    /// Threads a frame is shared among (as on the board).
    pub threads: usize,
    /// Latency budgets to run the controller at, each over every image, with the board's
    /// latency model (`latency`) predicting each frame's time.
    pub budgets: &'a [f32],
    pub latency: Option<&'a LatencyModel>,
}

/// How a run picks each image's pruning: one threshold, or the budget controller.
enum Steering {
    Threshold(f32),
    Budget(Budget),
}

/// Class index of the bundle -> category id of the data set, matched by name.
pub fn category_map(labels: &[String], ds: &Dataset, path: &Path) -> Result<Vec<u64>> {
    labels
        .iter()
        .map(|l| {
            ds.categories
                .iter()
                .find(|c| &c.name == l)
                .map(|c| c.id)
                .with_context(|| {
                    format!(
                        "{}: no category named {l:?}; the model's labels are {labels:?}",
                        path.display(),
                    )
                })
        })
        .collect()
}

pub fn run(
    model: &Model,
    spec: &EvalSpec,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<EvalRun>> {
    let ds = Dataset::load(spec.coco)?;
    let cats = category_map(&model.manifest.labels, &ds, spec.coco)?;
    let all_cats: Vec<u64> = ds.categories.iter().map(|c| c.id).collect();
    let mut images = ds.images.clone();
    images.sort_by_key(|i| i.id);
    if let Some(n) = spec.limit {
        images.truncate(n);
    }
    if images.is_empty() {
        bail!("{}: no images to evaluate", spec.coco.display());
    }
    let mut gts: BTreeMap<u64, Vec<&Annotation>> = BTreeMap::new();
    for a in &ds.annotations {
        gts.entry(a.image_id).or_default().push(a);
    }
    std::fs::create_dir_all(spec.results_dir)
        .with_context(|| format!("creating {}", spec.results_dir.display()))?;
    let mut state = model.new_state(spec.threads)?;
    let mut runs = Vec::new();
    if !spec.budgets.is_empty() && spec.latency.is_none() {
        bail!("a budget needs the board's latency model (--latency-model bench.json)");
    }
    let default_threshold = model.manifest.defaults.threshold;
    let steerings: Vec<Steering> = spec
        .thresholds
        .iter()
        .map(|&t| Steering::Threshold(t))
        .chain(
            spec.budgets
                .iter()
                .map(|&b| Steering::Budget(Budget::new(b, default_threshold))),
        )
        .collect();
    let total = images.len() * steerings.len();
    let mut done = 0;
    for mut steer in steerings {
        let min_keep = spec.min_keep.unwrap_or(model.manifest.defaults.min_keep);
        let decode = DecodeOptions {
            score_threshold: spec.score_threshold,
            max_detections: 100,
            box_from_mask: spec
                .box_from_mask
                .unwrap_or(model.manifest.defaults.box_from_mask),
        };
        let (mut thr_sum, mut predicted) = (0.0f64, Vec::new());
        let mut box_pairs: BTreeMap<(u64, u64), Pair> = BTreeMap::new();
        let mut mask_pairs: BTreeMap<(u64, u64), Pair> = BTreeMap::new();
        let (mut res_bbox, mut res_segm) = (Vec::new(), Vec::new());
        let (mut kept_sum, mut gmacs_sum) = (0.0, 0.0);
        let mut confusion = vec![vec![0u64; all_cats.len() + 1]; all_cats.len()];
        for info in &images {
            let path = spec.images.join(&info.file_name);
            let img = image::open(&path)
                .with_context(|| format!("reading {}", path.display()))?
                .to_rgb8();
            let (w, h) = (img.width() as usize, img.height() as usize);
            if (w, h) != (info.width, info.height) {
                bail!(
                    "{}: is {w}x{h}, {} says {}x{}",
                    path.display(),
                    spec.coco.display(),
                    info.width,
                    info.height
                );
            }
            let thr = match &steer {
                Steering::Threshold(t) => *t,
                Steering::Budget(b) => b.threshold(),
            };
            thr_sum += thr as f64;
            let opts = RunOptions {
                pruning: Pruning::at(thr, min_keep),
                decode,
            };
            let out = model
                .run_rgb(&mut state, img.as_raw(), w, h, &opts)
                .with_context(|| format!("running the bundle on {}", path.display()))?;
            if let (Steering::Budget(b), Some(lat)) = (&mut steer, spec.latency) {
                let ms = lat.predict(&out.kept, thr > 0.0);
                predicted.push(ms);
                b.observe(ms as f32);
            }
            kept_sum += out.kept_fraction(model.config().tokens());
            gmacs_sum += out.gmacs;
            // Ground truth of this image, per category, with decoded masks.
            let anns = gts.get(&info.id).map(Vec::as_slice).unwrap_or(&[]);
            let mut gt_masks = Vec::with_capacity(anns.len());
            for a in anns {
                let m = match &a.segmentation {
                    Some(s) => s.to_mask(w, h).map_err(|e| {
                        crate::error::Error::Invalid(format!(
                            "{}: annotation {}: {e}",
                            spec.coco.display(),
                            a.id
                        ))
                    })?,
                    None => vec![0; w * h],
                };
                gt_masks.push(m);
            }
            let dets: Vec<Det> = out
                .detections
                .iter()
                .map(|d| Det {
                    cat: cats[d.class],
                    score: d.score as f64,
                    xywh: [
                        d.bbox[0] as f64,
                        d.bbox[1] as f64,
                        (d.bbox[2] - d.bbox[0]) as f64,
                        (d.bbox[3] - d.bbox[1]) as f64,
                    ],
                    mask: Some(d.mask.rasterize(w, h, d.bbox)),
                })
                .collect();
            for (gt, called) in called_as(anns, &dets, &all_cats) {
                confusion[gt][called.unwrap_or(all_cats.len())] += 1;
            }
            add_image(
                info.id,
                anns,
                &gt_masks,
                &dets,
                &all_cats,
                &mut box_pairs,
                Some(&mut mask_pairs),
            );
            for d in dets {
                let segmentation = d.mask.as_ref().map(|m| Segmentation::from_mask(m, w, h));
                let e = ResultEntry {
                    image_id: info.id,
                    category_id: d.cat,
                    bbox: d.xywh,
                    score: d.score,
                    segmentation,
                };
                res_bbox.push(e.clone());
                res_segm.push(e);
            }
            done += 1;
            progress(done, total);
        }
        let b = cocoeval::evaluate(&box_pairs, &all_cats);
        let m = cocoeval::evaluate(&mask_pairs, &all_cats);
        let n = images.len() as f64;
        let (threshold, budget_ms) = match &steer {
            Steering::Threshold(t) => (*t, None),
            Steering::Budget(b) => ((thr_sum / n) as f32, Some(b.budget_ms)),
        };
        let tag = match budget_ms {
            None => format!("t{threshold:.2}"),
            Some(b) => format!("budget{b:.1}"),
        };
        let results_bbox = spec.results_dir.join(format!("results_bbox_{tag}.json"));
        let results_segm = spec.results_dir.join(format!("results_segm_{tag}.json"));
        write_results(&results_bbox, &res_bbox, false)?;
        write_results(&results_segm, &res_segm, true)?;
        let per_class = ds
            .categories
            .iter()
            .zip(b.per_category.iter().zip(&m.per_category))
            .map(|(c, (&box_ap, &mask_ap))| ClassAp {
                name: c.name.clone(),
                box_ap,
                mask_ap,
            })
            .collect();
        predicted.sort_by(f64::total_cmp);
        runs.push(EvalRun {
            threshold,
            budget_ms,
            budget_hit_rate: budget_ms
                .map(|b| predicted.iter().filter(|&&p| p <= b as f64).count() as f64 / n),
            predicted_p95_ms: budget_ms.and_then(|_| {
                predicted
                    .get((predicted.len() * 95).div_ceil(100).saturating_sub(1))
                    .copied()
            }),
            engine: model.engine.name().into(),
            precision: model.precision.clone(),
            box_ap: b.ap,
            mask_ap: m.ap,
            box_ap50: b.ap50,
            mask_ap50: m.ap50,
            kept_fraction: kept_sum / n,
            gmacs: gmacs_sum / n,
            images: images.len(),
            box_summary: b,
            mask_summary: m,
            per_class,
            confusion,
            results_bbox,
            results_segm,
        });
    }
    Ok(runs)
}

/// For each ground-truth object (crowds skipped) its class index in `cat_ids`, and the class
/// index of the best-scoring detection whose box overlaps it at IoU >= 0.5 (None: missed).
fn called_as(anns: &[&Annotation], dets: &[Det], cat_ids: &[u64]) -> Vec<(usize, Option<usize>)> {
    let index = |cat: u64| cat_ids.iter().position(|&c| c == cat);
    anns.iter()
        .filter(|a| a.iscrowd == 0)
        .filter_map(|a| {
            let best = dets
                .iter()
                .filter(|d| box_iou(&d.xywh, &a.bbox, false) >= 0.5)
                .max_by(|x, y| x.score.total_cmp(&y.score));
            Some((index(a.category_id)?, best.and_then(|d| index(d.cat))))
        })
        .collect()
}

/// One detection in COCO terms; `mask` is the full-frame binary mask.
pub struct Det {
    pub cat: u64,
    pub score: f64,
    pub xywh: [f64; 4],
    pub mask: Option<Vec<u8>>,
}

/// Adds one image's (category, image) pairs: box IoUs always, mask IoUs when `mask_pairs`.
fn add_image(
    image_id: u64,
    anns: &[&Annotation],
    gt_masks: &[Vec<u8>],
    dets: &[Det],
    all_cats: &[u64],
    box_pairs: &mut BTreeMap<(u64, u64), Pair>,
    mut mask_pairs: Option<&mut BTreeMap<(u64, u64), Pair>>,
) {
    for &cat in all_cats {
        let g: Vec<usize> = (0..anns.len())
            .filter(|&i| anns[i].category_id == cat)
            .collect();
        let dd: Vec<&Det> = dets.iter().filter(|d| d.cat == cat).collect();
        if g.is_empty() && dd.is_empty() {
            continue;
        }
        let mut bp = Pair::default();
        let mut mp = Pair::default();
        for &gi in &g {
            for p in [&mut bp, &mut mp] {
                p.gt_areas.push(anns[gi].area);
                p.gt_crowd.push(anns[gi].iscrowd != 0);
            }
        }
        for d in dd {
            bp.dt_scores.push(d.score);
            bp.dt_areas.push(d.xywh[2] * d.xywh[3]);
            let mask = d.mask.as_deref().unwrap_or(&[]);
            mp.dt_scores.push(d.score);
            mp.dt_areas.push(mask.iter().map(|&v| v as f64).sum());
            for &gi in &g {
                let crowd = anns[gi].iscrowd != 0;
                bp.ious.push(box_iou(&d.xywh, &anns[gi].bbox, crowd));
                if mask_pairs.is_some() {
                    // Both masks lie inside their boxes: disjoint boxes, disjoint masks.
                    let touch = box_iou(&d.xywh, &anns[gi].bbox, true) > 0.0;
                    mp.ious.push(if touch && !mask.is_empty() {
                        mask_iou(mask, &gt_masks[gi], crowd)
                    } else {
                        0.0
                    });
                }
            }
        }
        box_pairs.insert((cat, image_id), bp);
        if let Some(m) = mask_pairs.as_deref_mut() {
            m.insert((cat, image_id), mp);
        }
    }
}

/// Scores a COCO results file against ground truth, as `COCOeval` would with `iouType`
/// `bbox` (`segm = false`) or `segm`.
pub fn score_results(
    gt: &Dataset,
    gt_path: &Path,
    results: &[ResultEntry],
    segm: bool,
) -> Result<Summary> {
    let all_cats: Vec<u64> = gt.categories.iter().map(|c| c.id).collect();
    let mut by_img: BTreeMap<u64, Vec<&ResultEntry>> = BTreeMap::new();
    for r in results {
        by_img.entry(r.image_id).or_default().push(r);
    }
    let mut pairs = BTreeMap::new();
    let mut mask_pairs = BTreeMap::new();
    let mut images = gt.images.clone();
    images.sort_by_key(|i| i.id);
    for info in &images {
        let (w, h) = (info.width, info.height);
        let anns: Vec<&Annotation> = gt
            .annotations
            .iter()
            .filter(|a| a.image_id == info.id)
            .collect();
        let gt_masks = if segm {
            anns.iter()
                .map(|a| match &a.segmentation {
                    Some(s) => s.to_mask(w, h).map_err(|e| {
                        crate::error::Error::Invalid(format!(
                            "{}: annotation {}: {e}",
                            gt_path.display(),
                            a.id
                        ))
                    }),
                    None => Ok(vec![0; w * h]),
                })
                .collect::<Result<Vec<_>>>()?
        } else {
            Vec::new()
        };
        let mut dets = Vec::new();
        for r in by_img.get(&info.id).map(Vec::as_slice).unwrap_or(&[]) {
            let mask = match (&r.segmentation, segm) {
                (Some(s), true) => Some(s.to_mask(w, h).map_err(|e| {
                    crate::error::Error::Invalid(format!("result for image {}: {e}", info.id))
                })?),
                (None, true) => bail!("result for image {} has no segmentation", info.id),
                _ => None,
            };
            // COCO.loadRes derives segm boxes from the mask.
            let xywh = match &mask {
                Some(m) => svit_scenes::mask_bbox(m, w, h).map(f64::from),
                None => r.bbox,
            };
            dets.push(Det {
                cat: r.category_id,
                score: r.score,
                xywh,
                mask,
            });
        }
        if segm {
            add_image(
                info.id,
                &anns,
                &gt_masks,
                &dets,
                &all_cats,
                &mut pairs,
                Some(&mut mask_pairs),
            );
        } else {
            add_image(
                info.id, &anns, &gt_masks, &dets, &all_cats, &mut pairs, None,
            );
        }
    }
    Ok(cocoeval::evaluate(
        if segm { &mask_pairs } else { &pairs },
        &all_cats,
    ))
}

/// COCO results files: boxes only, or masks only (as `COCO.loadRes` derives area from each).
fn write_results(path: &Path, entries: &[ResultEntry], segm: bool) -> Result<()> {
    let v: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| {
            if segm {
                serde_json::json!({"image_id": e.image_id, "category_id": e.category_id, "score": e.score, "segmentation": e.segmentation})
            } else {
                serde_json::json!({"image_id": e.image_id, "category_id": e.category_id, "score": e.score, "bbox": e.bbox})
            }
        })
        .collect();
    std::fs::write(path, serde_json::to_vec(&v)?)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(cat: u64, score: f64, xywh: [f64; 4]) -> Det {
        Det {
            cat,
            score,
            xywh,
            mask: None,
        }
    }

    #[test]
    fn each_object_is_called_what_its_best_overlapping_detection_says() {
        let ann = |id, category_id, bbox, iscrowd| Annotation {
            id,
            image_id: 1,
            category_id,
            bbox,
            area: 100.0,
            iscrowd,
            segmentation: None,
        };
        let square = ann(1, 20, [0.0, 0.0, 10.0, 10.0], 0);
        let star = ann(2, 30, [50.0, 50.0, 10.0, 10.0], 0);
        let crowd = ann(3, 20, [80.0, 80.0, 10.0, 10.0], 1);
        let dets = [
            // On the square: a circle scored higher than the square, and a better-scored star
            // that overlaps it too little to count.
            det(10, 0.9, [1.0, 0.0, 10.0, 10.0]),
            det(20, 0.5, [0.0, 0.0, 10.0, 10.0]),
            det(30, 0.95, [6.0, 6.0, 10.0, 10.0]),
            // Near the star, but IoU < 0.5: the star is missed.
            det(30, 0.9, [56.0, 56.0, 10.0, 10.0]),
        ];
        let got = called_as(&[&square, &star, &crowd], &dets, &[10, 20, 30]);
        assert_eq!(got, vec![(1, Some(0)), (2, None)]);
    }
}
