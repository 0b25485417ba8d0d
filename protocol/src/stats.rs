//! Latency summaries in the shape both programs report them (`svit-edge bench` JSON, the host's
//! summary.json), computed one way so the two agree on what "p95" means.

use alloc::vec::Vec;
use postcard_schema::Schema;
use serde::{Deserialize, Serialize};

/// Nearest-rank percentiles and the mean of a series; all zero for an empty one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, Schema)]
pub struct Pct {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub mean: f64,
}

impl Pct {
    pub fn of(v: &[f64]) -> Pct {
        if v.is_empty() {
            return Pct::default();
        }
        let mut s: Vec<f64> = v.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        // Rank ceil(p/100 * n) in integers (no float ceil without std).
        let at = |p: usize| s[((p * n).div_ceil(100)).clamp(1, n) - 1];
        Pct {
            p50: at(50),
            p95: at(95),
            p99: at(99),
            mean: s.iter().sum::<f64>() / n as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Pct::of(&v);
        assert_eq!((p.p50, p.p95, p.p99), (50.0, 95.0, 99.0));
        assert!((p.mean - 50.5).abs() < 1e-9);
        let p = Pct::of(&[3.0, 1.0, 2.0]);
        assert_eq!((p.p50, p.p95, p.p99), (2.0, 3.0, 3.0));
        assert_eq!(Pct::of(&[]), Pct::default());
    }
}
