//! Helpers shared by the integration tests.
#![allow(dead_code)]

use candle_core::Device;
use svit_export::train;
use svit_export::train::targets::normalise_into;
use svit_runtime::{DecodeOptions, ModelConfig};

/// Decoding for tests that compare runs: boxes as regressed, so they show the head's output.
pub const TEST_DECODE: DecodeOptions = DecodeOptions {
    score_threshold: 0.3,
    max_detections: 100,
    box_from_mask: 0.0,
};

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

/// The shipped demo checkpoint's gated weights.
pub fn demo() -> svit_export::model::Svit {
    demo_with_vars().1
}

/// The shipped demo checkpoint, with the variables that its tensors share.
pub fn demo_with_vars() -> (candle_nn::VarMap, svit_export::model::Svit) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/demo-ckpt");
    let ckpt = train::Checkpoint { dir: root.into() };
    let st = ckpt.load_state().unwrap();
    train::load_model(&ckpt.weights(), &st.plan.config, &Device::Cpu).unwrap()
}

/// Normalised CHW synthetic scenes at the model's input size.
pub fn scenes(size: usize, seed: u64, n: u64) -> Vec<Vec<f32>> {
    (0..n)
        .map(|i| {
            let s = svit_scenes::generate(&svit_scenes::SceneConfig::square(size), seed, i);
            let mut v = Vec::new();
            normalise_into(&s.rgb, size, &mut v);
            v
        })
        .collect()
}
