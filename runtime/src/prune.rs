//! Which tokens a block computes: the per-image (dynamic) selection of SViT, deterministic.

use serde::{Deserialize, Serialize};

/// The fewest tokens a gated block keeps: `first` at the first gated block, changing linearly
/// to `last` at the last one (equal for one floor everywhere): the demo model's masks suffered
/// more from a low floor in the late blocks, which feed the head, than in the early ones.
/// In a manifest: a number, or `[first, last]`; on a command line `96` or `48..128`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "MinKeepRepr", into = "MinKeepRepr")]
pub struct MinKeep {
    pub first: usize,
    pub last: usize,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum MinKeepRepr {
    One(usize),
    Ramp([usize; 2]),
}

impl From<MinKeepRepr> for MinKeep {
    fn from(r: MinKeepRepr) -> Self {
        match r {
            MinKeepRepr::One(k) => MinKeep::uniform(k),
            MinKeepRepr::Ramp([first, last]) => MinKeep { first, last },
        }
    }
}

impl From<MinKeep> for MinKeepRepr {
    fn from(m: MinKeep) -> Self {
        if m.first == m.last {
            MinKeepRepr::One(m.first)
        } else {
            MinKeepRepr::Ramp([m.first, m.last])
        }
    }
}

impl MinKeep {
    pub fn uniform(k: usize) -> Self {
        MinKeep { first: k, last: k }
    }

    /// The floor of gated block `gate` of `gates` (0-based, in block order).
    pub fn at(&self, gate: usize, gates: usize) -> usize {
        if gates <= 1 {
            return self.first;
        }
        let t = gate.min(gates - 1) as f64 / (gates - 1) as f64;
        (self.first as f64 + t * (self.last as f64 - self.first as f64)).round() as usize
    }

    /// Both ends limited to `lo..=hi`.
    pub fn clamp(self, lo: usize, hi: usize) -> Self {
        MinKeep {
            first: self.first.clamp(lo, hi),
            last: self.last.clamp(lo, hi),
        }
    }
}

impl std::fmt::Display for MinKeep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}..{}", self.first, self.last)
        }
    }
}

impl std::str::FromStr for MinKeep {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let num = |v: &str| {
            v.trim().parse::<usize>().map_err(|_| {
                format!("min_keep {s:?}: expected a token count (96) or a range (48..128)")
            })
        };
        match s.split_once("..") {
            Some((a, b)) => Ok(MinKeep {
                first: num(a)?,
                last: num(b)?,
            }),
            None => num(s).map(MinKeep::uniform),
        }
    }
}

/// Indices (ascending) of the tokens to compute: every token with `p_keep >= threshold`,
/// and at least `min_keep` of them (highest `p_keep` first, lower index on ties).
/// `threshold <= 0` keeps everything (the dense pass). A NaN score never counts as kept.
pub fn select_tokens(p_keep: &[f32], threshold: f32, min_keep: usize) -> Vec<usize> {
    let n = p_keep.len();
    if threshold <= 0.0 {
        return (0..n).collect();
    }
    let mut keep: Vec<usize> = (0..n).filter(|&i| p_keep[i] >= threshold).collect();
    let floor = min_keep.min(n);
    if keep.len() < floor {
        keep = top_k(p_keep, floor);
    }
    keep
}

/// Fixed-ratio mode (ablation and latency control): the `k` highest-scoring tokens.
pub fn top_k(p_keep: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..p_keep.len()).collect();
    // NaN sorts last: it is never preferred over a real score.
    let key = |i: usize| {
        if p_keep[i].is_nan() {
            f32::NEG_INFINITY
        } else {
            p_keep[i]
        }
    };
    order.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)));
    order.truncate(k.min(p_keep.len()));
    order.sort_unstable();
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_keep_ramps_from_first_to_last_gated_block() {
        let m: MinKeep = "48..128".parse().unwrap();
        let floors: Vec<usize> = (0..6).map(|g| m.at(g, 6)).collect();
        assert_eq!(floors, vec![48, 64, 80, 96, 112, 128]);
        assert_eq!("96".parse::<MinKeep>().unwrap(), MinKeep::uniform(96));
        assert_eq!(MinKeep::uniform(96).at(3, 6), 96);
        assert!("48..".parse::<MinKeep>().unwrap_err().contains("48.."));
        // In a manifest: a number (as bundles before the ramp wrote it) or a pair.
        let one: MinKeep = serde_json::from_str("96").unwrap();
        let ramp: MinKeep = serde_json::from_str("[48, 128]").unwrap();
        assert_eq!((one, ramp), (MinKeep::uniform(96), m));
        assert_eq!(serde_json::to_string(&m).unwrap(), "[48,128]");
        assert_eq!(m.to_string(), "48..128");
    }

    #[test]
    fn threshold_zero_is_dense() {
        assert_eq!(select_tokens(&[0.0, 0.1, 0.9], 0.0, 0), vec![0, 1, 2]);
    }

    #[test]
    fn threshold_and_floor() {
        let p = [0.2, 0.9, 0.4, 0.6, 0.1];
        assert_eq!(select_tokens(&p, 0.5, 1), vec![1, 3]);
        assert_eq!(select_tokens(&p, 0.5, 3), vec![1, 2, 3]);
        assert_eq!(select_tokens(&p, 0.95, 0), Vec::<usize>::new());
        assert_eq!(select_tokens(&p, 0.95, 10), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn nan_is_never_preferred() {
        let p = [f32::NAN, 0.3, 0.2];
        assert_eq!(select_tokens(&p, 0.5, 1), vec![1]);
        assert_eq!(top_k(&p, 2), vec![1, 2]);
    }
}
