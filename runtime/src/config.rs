//! The model's shape: what the trainer builds, the exporter writes and the runtime checks.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Square input side in pixels; a multiple of `patch * 4`.
    pub image_size: usize,
    pub patch: usize,
    pub dim: usize,
    pub depth: usize,
    pub heads: usize,
    pub mlp_ratio: usize,
    /// Blocks `first_gated..depth` have a gate; earlier blocks always run on all tokens.
    pub first_gated: usize,
    pub num_classes: usize,
    /// Channels of the stride-8 head map.
    pub head_dim: usize,
    /// Channels of the stride-4 prototype map before the prototype projection.
    pub proto_dim: usize,
    /// YOLACT-style mask prototypes (and coefficients per detection).
    pub num_protos: usize,
    /// Training keep-rate target of each gate (`depth - first_gated` entries).
    pub keep_targets: Vec<f32>,
}

impl ModelConfig {
    /// The shipped demo: small enough to train on a 2-core machine.
    pub fn demo(num_classes: usize) -> Self {
        ModelConfig {
            image_size: 256,
            patch: 16,
            dim: 128,
            depth: 8,
            heads: 4,
            mlp_ratio: 4,
            first_gated: 2,
            num_classes,
            head_dim: 64,
            proto_dim: 32,
            num_protos: 12,
            keep_targets: stepped_targets(6, &[0.5, 0.35, 0.25]),
        }
    }

    /// DeiT-Tiny backbone (the Pi 5 size): SViT's gates on blocks 3..11 and its targets.
    pub fn deit_tiny(num_classes: usize) -> Self {
        ModelConfig {
            image_size: 320,
            patch: 16,
            dim: 192,
            depth: 12,
            heads: 3,
            mlp_ratio: 4,
            first_gated: 3,
            num_classes,
            head_dim: 96,
            proto_dim: 32,
            num_protos: 16,
            keep_targets: stepped_targets(9, &[0.7, 0.49, 0.343]),
        }
    }

    pub fn grid(&self) -> usize {
        self.image_size / self.patch
    }
    pub fn tokens(&self) -> usize {
        self.grid() * self.grid()
    }
    pub fn gated(&self, block: usize) -> bool {
        block >= self.first_gated && block < self.depth
    }
    pub fn num_gates(&self) -> usize {
        self.depth.saturating_sub(self.first_gated)
    }

    /// Checks the invariants the graphs rely on; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        let checks: [(bool, &str); 8] = [
            (
                self.patch > 0 && self.image_size % (self.patch * 4) == 0,
                "image_size must be a multiple of 4 * patch",
            ),
            (
                self.dim > 0 && self.heads > 0 && self.dim % self.heads == 0,
                "dim must be a multiple of heads",
            ),
            (
                self.dim % 4 == 0,
                "dim must be a multiple of 4 (gate hidden width dim/4)",
            ),
            (
                self.depth > 0 && self.first_gated <= self.depth,
                "first_gated must be <= depth",
            ),
            (
                self.keep_targets.len() == self.num_gates(),
                "keep_targets needs one entry per gated block",
            ),
            (
                self.keep_targets.iter().all(|t| *t > 0.0 && *t <= 1.0),
                "keep_targets must lie in (0, 1]",
            ),
            (
                self.num_classes > 0 && self.num_protos > 0,
                "num_classes and num_protos must be > 0",
            ),
            (
                self.head_dim > 0 && self.proto_dim > 0 && self.mlp_ratio > 0,
                "head_dim, proto_dim and mlp_ratio must be > 0",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, msg)) => Err(format!("invalid model config: {msg}")),
            None => Ok(()),
        }
    }

    /// Multiply-accumulates of one transformer block on `k` tokens.
    pub fn block_macs(&self, k: usize) -> u64 {
        let (k, c, m) = (
            k as u64,
            self.dim as u64,
            (self.dim * self.mlp_ratio) as u64,
        );
        k * c * 3 * c + 2 * k * k * c + k * c * c + 2 * k * c * m
    }
    pub fn gate_macs(&self) -> u64 {
        let (n, c) = (self.tokens() as u64, self.dim as u64);
        n * (c * c / 4 + c / 4 * 2)
    }
    pub fn embed_macs(&self) -> u64 {
        (self.tokens() * 3 * self.patch * self.patch * self.dim) as u64
    }
    pub fn head_macs(&self) -> u64 {
        let (n, c, d) = (self.tokens() as u64, self.dim as u64, self.head_dim as u64);
        let (p, q) = (self.proto_dim as u64, self.num_protos as u64);
        let n8 = 4 * n;
        let outs = self.num_classes as u64 + 4 + q;
        n * c * 4 * d + n8 * d * d + n8 * d * outs + n8 * d * 4 * p + 4 * n8 * p * q
    }
}

/// SViT's stepped keep targets, spread over `gates` gates in three equal stages.
pub fn stepped_targets(gates: usize, stages: &[f32; 3]) -> Vec<f32> {
    (0..gates)
        .map(|g| stages[(g * 3 / gates.max(1)).min(2)])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid() {
        let d = ModelConfig::demo(6);
        d.validate().unwrap();
        assert_eq!(d.tokens(), 256);
        let t = ModelConfig::deit_tiny(6);
        t.validate().unwrap();
        assert_eq!(
            t.keep_targets,
            vec![0.7, 0.7, 0.7, 0.49, 0.49, 0.49, 0.343, 0.343, 0.343]
        );
    }

    #[test]
    fn validation_names_the_problem() {
        let mut c = ModelConfig::demo(6);
        c.keep_targets.pop();
        assert!(c.validate().unwrap_err().contains("keep_targets"));
    }

    #[test]
    fn block_cost_falls_with_tokens() {
        let c = ModelConfig::demo(6);
        assert!(c.block_macs(64) * 3 < c.block_macs(256));
    }
}
