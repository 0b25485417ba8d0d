//! Which tokens a block computes: the per-image (dynamic) selection of SViT, deterministic.

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
