//! The model's shape: what the trainer builds, the exporter writes and the runtime checks.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Square input side in pixels; a multiple of `patch * 4`.
    pub image_size: usize,
    pub patch: usize,
    /// Widths of a hierarchical-MLP stem ("hMLP", Touvron et al. 2022): the image is cut into
    /// `patch / 2^len` pixel patches, each stage is a linear + LayerNorm + GELU and every later
    /// stage first merges 2x2 neighbours; a final linear merges to `dim`. Empty: ViT's single
    /// `patch x patch` linear (DeiT-compatible, what `--init` loads).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stem: Vec<usize>,
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
            stem: Vec::new(),
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
            stem: Vec::new(),
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
        let checks: [(bool, &str); 9] = [
            (
                self.patch > 0 && self.image_size % (self.patch * 4) == 0,
                "image_size must be a multiple of 4 * patch",
            ),
            (
                self.stem.len() < 8
                    && self.patch % (1 << self.stem.len()) == 0
                    && self.stem.iter().all(|w| *w > 0),
                "patch must be divisible by 2^(stem stages) and stem widths > 0",
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
        // Every stage maps the same image area: tokens at its stride times in x out.
        let mut side = self.image_size / self.stem_patch();
        let mut inp = 3 * self.stem_patch() * self.stem_patch();
        let mut macs = 0;
        for out in self.stem.iter().chain([&self.dim]) {
            macs += (side * side * inp * out) as u64;
            inp = 4 * out;
            side /= 2;
        }
        macs
    }
    /// Pixel side of the first stem stage's patches (`patch` without an hMLP stem).
    pub fn stem_patch(&self) -> usize {
        self.patch >> self.stem.len()
    }
    /// First-stage patches under each token: 4 per 2x2 merge of the stem.
    pub fn patches_per_token(&self) -> usize {
        1 << (2 * self.stem.len())
    }
    /// Values in one row of the embed stage's input: a token's first-stage patches.
    pub fn embed_row(&self) -> usize {
        3 * self.stem_patch() * self.stem_patch() * self.patches_per_token()
    }
    /// The order the embed stage reads the normalised image in (`Layout::patches`).
    pub fn embed_layout(&self) -> crate::preprocess::Layout {
        crate::preprocess::Layout::patches(self.image_size, self.stem_patch(), self.stem.len())
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
    fn hmlp_stem_cost_sums_its_stages() {
        let mut c = ModelConfig::demo(6);
        let plain = c.embed_macs();
        assert_eq!(plain, 256 * 768 * 128);
        c.stem = vec![32, 64];
        c.validate().unwrap();
        // 64x64 patches of 4x4x3 -> 32, 32x32 of 4*32 -> 64, 16x16 of 4*64 -> 128.
        assert_eq!(
            c.embed_macs(),
            4096 * 48 * 32 + 1024 * 128 * 64 + 256 * 256 * 128
        );
        c.stem = vec![8; 5];
        assert!(c.validate().unwrap_err().contains("stem"));
    }

    #[test]
    fn block_cost_falls_with_tokens() {
        let c = ModelConfig::demo(6);
        assert!(c.block_macs(64) * 3 < c.block_macs(256));
    }
}
