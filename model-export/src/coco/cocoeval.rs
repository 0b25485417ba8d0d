//! COCO detection metrics, computed as pycocotools' `COCOeval` does (`evaluateImg`,
//! `accumulate`, `summarize`): IoU thresholds .50:.05:.95, 101-point interpolated precision,
//! area ranges all/small/medium/large, maxDets 1/10/100, crowd handling, stable sorting.
//!
//! Inputs are per image and category: detection scores and areas, ground-truth areas and crowd
//! flags, and the IoU matrix between them (the caller computes box or mask IoU).

use std::collections::BTreeMap;

pub const AREA_RANGES: [(f64, f64); 4] =
    [(0.0, 1e10), (0.0, 1024.0), (1024.0, 9216.0), (9216.0, 1e10)];
pub const MAX_DETS: [usize; 3] = [1, 10, 100];

/// Detections and ground truth of one (image, category) pair.
#[derive(Clone, Debug, Default)]
pub struct Pair {
    pub dt_scores: Vec<f64>,
    pub dt_areas: Vec<f64>,
    pub gt_areas: Vec<f64>,
    pub gt_crowd: Vec<bool>,
    /// Row-major `dt x gt`, in the order given above (not yet sorted).
    pub ious: Vec<f64>,
}

/// COCO IoU of two `xywh` boxes; against a crowd region it is intersection over the detection.
pub fn box_iou(d: &[f64; 4], g: &[f64; 4], crowd: bool) -> f64 {
    let iw = (d[0] + d[2]).min(g[0] + g[2]) - d[0].max(g[0]);
    let ih = (d[1] + d[3]).min(g[1] + g[3]) - d[1].max(g[1]);
    if iw <= 0.0 || ih <= 0.0 {
        return 0.0;
    }
    let inter = iw * ih;
    let u = if crowd {
        d[2] * d[3]
    } else {
        d[2] * d[3] + g[2] * g[3] - inter
    };
    if u > 0.0 {
        inter / u
    } else {
        0.0
    }
}

/// COCO IoU of two binary masks of the same image.
pub fn mask_iou(d: &[u8], g: &[u8], crowd: bool) -> f64 {
    let (mut inter, mut da, mut ga) = (0u64, 0u64, 0u64);
    for (&a, &b) in d.iter().zip(g) {
        let (a, b) = (a != 0, b != 0);
        inter += (a && b) as u64;
        da += a as u64;
        ga += b as u64;
    }
    let u = if crowd { da } else { da + ga - inter };
    if u > 0 {
        inter as f64 / u as f64
    } else {
        0.0
    }
}

struct EvalImg {
    dt_scores: Vec<f64>,
    /// `[iou_thr][dt]`
    dt_matched: Vec<Vec<bool>>,
    dt_ignore: Vec<Vec<bool>>,
    gt_ignore: Vec<bool>,
}

/// `np.linspace(start, stop, num)` exactly as numpy computes it (the last ulp decides ties).
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    let step = (stop - start) / (num - 1) as f64;
    let mut v: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    v[num - 1] = stop;
    v
}

fn iou_thresholds() -> Vec<f64> {
    linspace(0.5, 0.95, 10)
}

/// Stable argsort by descending score (numpy's `argsort(-s, kind='mergesort')`).
fn order_desc(s: &[f64]) -> Vec<usize> {
    let mut o: Vec<usize> = (0..s.len()).collect();
    o.sort_by(|&a, &b| s[b].partial_cmp(&s[a]).unwrap_or(std::cmp::Ordering::Equal));
    o
}

fn evaluate_img(p: &Pair, area: (f64, f64), max_det: usize) -> Option<EvalImg> {
    let (nd, ng) = (p.dt_scores.len(), p.gt_areas.len());
    if nd == 0 && ng == 0 {
        return None;
    }
    let g_ign: Vec<bool> = (0..ng)
        .map(|g| p.gt_crowd[g] || p.gt_areas[g] < area.0 || p.gt_areas[g] > area.1)
        .collect();
    // Non-ignored ground truth first, stable.
    let mut gind: Vec<usize> = (0..ng).collect();
    gind.sort_by_key(|&g| g_ign[g]);
    let mut dind = order_desc(&p.dt_scores);
    dind.truncate(max_det);
    let thrs = iou_thresholds();
    let mut dtm = vec![vec![false; dind.len()]; thrs.len()];
    let mut dt_ig = vec![vec![false; dind.len()]; thrs.len()];
    let mut gtm = vec![vec![false; ng]; thrs.len()];
    let gt_ig: Vec<bool> = gind.iter().map(|&g| g_ign[g]).collect();
    let crowd: Vec<bool> = gind.iter().map(|&g| p.gt_crowd[g]).collect();
    for (ti, &t) in thrs.iter().enumerate() {
        for (di, &d) in dind.iter().enumerate() {
            let mut best = t.min(1.0 - 1e-10);
            let mut m: Option<usize> = None;
            for (gi, &g) in gind.iter().enumerate() {
                if gtm[ti][gi] && !crowd[gi] {
                    continue;
                }
                if let Some(mm) = m {
                    if !gt_ig[mm] && gt_ig[gi] {
                        break;
                    }
                }
                let iou = p.ious[d * ng + g];
                if iou < best {
                    continue;
                }
                best = iou;
                m = Some(gi);
            }
            if let Some(mm) = m {
                dt_ig[ti][di] = gt_ig[mm];
                dtm[ti][di] = true;
                gtm[ti][mm] = true;
            }
        }
    }
    for (ti, _) in thrs.iter().enumerate() {
        for (di, &d) in dind.iter().enumerate() {
            let a = p.dt_areas[d];
            if !dtm[ti][di] && (a < area.0 || a > area.1) {
                dt_ig[ti][di] = true;
            }
        }
    }
    Some(EvalImg {
        dt_scores: dind.iter().map(|&d| p.dt_scores[d]).collect(),
        dt_matched: dtm,
        dt_ignore: dt_ig,
        gt_ignore: gt_ig,
    })
}

/// The twelve numbers of `COCOeval.summarize()`, on the 0-100 scale.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Summary {
    pub ap: f64,
    pub ap50: f64,
    pub ap75: f64,
    pub ap_small: f64,
    pub ap_medium: f64,
    pub ap_large: f64,
    pub ar1: f64,
    pub ar10: f64,
    pub ar100: f64,
    pub ar_small: f64,
    pub ar_medium: f64,
    pub ar_large: f64,
    /// AP@[.5:.95] (all areas, 100 detections) of each category, in the order the categories
    /// were given; -1 for a category without ground truth. Not part of `summarize()`, but what
    /// pycocotools' `precision[:, :, k, 0, 2]` averages to.
    pub per_category: Vec<f64>,
}

/// `pairs`: keyed by (category, image) — images in ascending id order within a category, as
/// pycocotools concatenates them. Categories with no ground truth do not count.
pub fn evaluate(pairs: &BTreeMap<(u64, u64), Pair>, categories: &[u64]) -> Summary {
    let thrs = iou_thresholds();
    let rec_thrs = linspace(0.0, 1.0, 101);
    let (nt, nr) = (thrs.len(), rec_thrs.len());
    // precision[t][r][k][a][m], recall[t][k][a][m]; -1 = no ground truth.
    let (nk, na, nm) = (categories.len(), AREA_RANGES.len(), MAX_DETS.len());
    let mut precision = vec![-1.0f64; nt * nr * nk * na * nm];
    let mut recall = vec![-1.0f64; nt * nk * na * nm];
    let pidx = |t: usize, r: usize, k: usize, a: usize, m: usize| {
        (((t * nr + r) * nk + k) * na + a) * nm + m
    };
    let ridx = |t: usize, k: usize, a: usize, m: usize| ((t * nk + k) * na + a) * nm + m;
    for (k, &cat) in categories.iter().enumerate() {
        let cat_pairs: Vec<&Pair> = pairs
            .range((cat, 0)..=(cat, u64::MAX))
            .map(|(_, p)| p)
            .collect();
        for (a, &area) in AREA_RANGES.iter().enumerate() {
            let evals: Vec<EvalImg> = cat_pairs
                .iter()
                .filter_map(|p| evaluate_img(p, area, MAX_DETS[2]))
                .collect();
            for (m, &max_det) in MAX_DETS.iter().enumerate() {
                let mut scores = Vec::new();
                let mut matched: Vec<Vec<bool>> = vec![Vec::new(); nt];
                let mut ignored: Vec<Vec<bool>> = vec![Vec::new(); nt];
                let mut npig = 0usize;
                for e in &evals {
                    let n = e.dt_scores.len().min(max_det);
                    scores.extend_from_slice(&e.dt_scores[..n]);
                    for t in 0..nt {
                        matched[t].extend_from_slice(&e.dt_matched[t][..n]);
                        ignored[t].extend_from_slice(&e.dt_ignore[t][..n]);
                    }
                    npig += e.gt_ignore.iter().filter(|&&g| !g).count();
                }
                if npig == 0 {
                    continue;
                }
                let order = order_desc(&scores);
                for t in 0..nt {
                    let (mut tp, mut fp) = (0f64, 0f64);
                    let mut rc = Vec::with_capacity(order.len());
                    let mut pr = Vec::with_capacity(order.len());
                    for &i in &order {
                        if ignored[t][i] {
                            // Neither a true nor a false positive, but still a point on the curve.
                        } else if matched[t][i] {
                            tp += 1.0;
                        } else {
                            fp += 1.0;
                        }
                        rc.push(tp / npig as f64);
                        pr.push(tp / (fp + tp + f64::EPSILON));
                    }
                    recall[ridx(t, k, a, m)] = rc.last().copied().unwrap_or(0.0);
                    for i in (1..pr.len()).rev() {
                        if pr[i] > pr[i - 1] {
                            pr[i - 1] = pr[i];
                        }
                    }
                    for (r, &thr) in rec_thrs.iter().enumerate() {
                        // numpy searchsorted(rc, thr, side='left')
                        let pi = rc.partition_point(|&v| v < thr);
                        precision[pidx(t, r, k, a, m)] = if pi < pr.len() { pr[pi] } else { 0.0 };
                    }
                }
            }
        }
    }
    let mean = |vals: Vec<f64>| {
        let v: Vec<f64> = vals.into_iter().filter(|&x| x > -1.0).collect();
        if v.is_empty() {
            -1.0
        } else {
            100.0 * v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let ap_of = |ks: &[usize], t: Option<usize>, a: usize, m: usize| {
        let ts: Vec<usize> = t.map_or((0..nt).collect(), |t| vec![t]);
        mean(
            ts.iter()
                .flat_map(|&t| (0..nr).flat_map(move |r| ks.iter().map(move |&k| (t, r, k))))
                .map(|(t, r, k)| precision[pidx(t, r, k, a, m)])
                .collect(),
        )
    };
    let all: Vec<usize> = (0..nk).collect();
    let ap = |t: Option<usize>, a: usize, m: usize| ap_of(&all, t, a, m);
    let ar = |a: usize, m: usize| {
        mean(
            (0..nt)
                .flat_map(|t| (0..nk).map(move |k| (t, k)))
                .map(|(t, k)| recall[ridx(t, k, a, m)])
                .collect(),
        )
    };
    Summary {
        ap: ap(None, 0, 2),
        ap50: ap(Some(0), 0, 2),
        ap75: ap(Some(5), 0, 2),
        ap_small: ap(None, 1, 2),
        ap_medium: ap(None, 2, 2),
        ap_large: ap(None, 3, 2),
        ar1: ar(0, 0),
        ar10: ar(0, 1),
        ar100: ar(0, 2),
        ar_small: ar(1, 2),
        ar_medium: ar(2, 2),
        ar_large: ar(3, 2),
        per_category: (0..nk).map(|k| ap_of(&[k], None, 0, 2)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dt: &[(f64, [f64; 4])], gt: &[[f64; 4]]) -> Pair {
        let mut p = Pair::default();
        for (s, b) in dt {
            p.dt_scores.push(*s);
            p.dt_areas.push(b[2] * b[3]);
        }
        for g in gt {
            p.gt_areas.push(g[2] * g[3]);
            p.gt_crowd.push(false);
        }
        for (_, d) in dt {
            for g in gt {
                p.ious.push(box_iou(d, g, false));
            }
        }
        p
    }

    #[test]
    fn perfect_detections_score_100() {
        let g = [[10.0, 10.0, 50.0, 40.0], [70.0, 20.0, 20.0, 20.0]];
        let mut m = BTreeMap::new();
        m.insert((1, 1), pair(&[(0.9, g[0]), (0.8, g[1])], &g));
        let s = evaluate(&m, &[1]);
        assert!(
            (s.ap - 100.0).abs() < 1e-9 && (s.ap50 - 100.0).abs() < 1e-9,
            "{s:?}"
        );
        assert_eq!(s.ap_large, -1.0); // no large objects: -1 as pycocotools prints
    }

    #[test]
    fn a_false_positive_ranked_first_costs_precision() {
        let g = [[10.0, 10.0, 50.0, 40.0]];
        let mut m = BTreeMap::new();
        m.insert(
            (1, 1),
            pair(&[(0.9, [200.0, 200.0, 10.0, 10.0]), (0.8, g[0])], &g),
        );
        let s = evaluate(&m, &[1]);
        // Recall 1 reached at precision 0.5 for every threshold: AP = 50.
        assert!((s.ap - 50.0).abs() < 1e-6, "{s:?}");
    }

    #[test]
    fn loose_box_counts_only_at_low_iou() {
        let g = [[0.0, 0.0, 100.0, 100.0]];
        let mut m = BTreeMap::new();
        m.insert((1, 1), pair(&[(0.9, [0.0, 0.0, 100.0, 72.0])], &g)); // IoU 0.72
        let s = evaluate(&m, &[1]);
        assert!((s.ap50 - 100.0).abs() < 1e-9);
        // Matches at .50 to .70 (5 of 10 thresholds).
        assert!((s.ap - 50.0).abs() < 1e-6, "{s:?}");
    }

    #[test]
    fn per_category_ap_averages_to_the_summary() {
        let g = [[10.0, 10.0, 50.0, 40.0]];
        let mut m = BTreeMap::new();
        m.insert((1, 1), pair(&[(0.9, g[0])], &g)); // category 1: perfect
        let fp_first = pair(&[(0.9, [200.0, 200.0, 10.0, 10.0]), (0.8, g[0])], &g);
        m.insert((2, 1), fp_first); // category 2: AP 50
        let s = evaluate(&m, &[1, 2, 3]); // category 3 has no ground truth
        assert_eq!(s.per_category.len(), 3);
        assert!((s.per_category[0] - 100.0).abs() < 1e-9, "{s:?}");
        assert!((s.per_category[1] - 50.0).abs() < 1e-6, "{s:?}");
        assert_eq!(s.per_category[2], -1.0);
        assert!((s.ap - 75.0).abs() < 1e-6, "{s:?}");
    }
}
