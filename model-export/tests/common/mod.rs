//! Helpers shared by the integration tests.
#![allow(dead_code)]

use svit_runtime::ModelConfig;

/// A model small enough to build, export and run in well under a second.
pub fn tiny_config() -> ModelConfig {
    ModelConfig {
        image_size: 64,
        patch: 16,
        stem: Vec::new(),
        dim: 32,
        depth: 3,
        heads: 2,
        mlp_ratio: 2,
        first_gated: 1,
        num_classes: svit_scenes::CLASSES.len(),
        head_dim: 16,
        proto_dim: 8,
        num_protos: 4,
        keep_targets: vec![0.7, 0.5],
    }
}

/// The tiny model with a two-stage hMLP stem in front.
pub fn tiny_hmlp_config() -> ModelConfig {
    ModelConfig {
        stem: vec![8, 16],
        ..tiny_config()
    }
}

/// A fresh, empty directory under the system temp dir, removed when dropped.
pub fn temp_dir(name: &str) -> svit_e2e::TempDir {
    svit_e2e::tmp(&format!("test-{name}"))
}
