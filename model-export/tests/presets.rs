//! The DeiT-Tiny preset (the size a Pi 5 is meant for) trains, exports and runs end to end.
//! Two steps only (one dense, one gated with token distillation): this proves the plumbing at
//! that size, not accuracy.

mod common;

use common::temp_dir;
use svit_export::export::bundle::{self, BundleSpec};
use svit_export::train::{self, Checkpoint, Progress, Synthetic, TrainPlan};
use svit_runtime::{Model, ModelConfig};

#[test]
fn deit_tiny_trains_exports_and_runs() {
    let labels: Vec<String> = svit_scenes::CLASSES.iter().map(|s| s.to_string()).collect();
    let config = ModelConfig::deit_tiny(labels.len());
    assert_eq!(
        (
            config.dim,
            config.depth,
            config.heads,
            config.image_size,
            config.first_gated
        ),
        (192, 12, 3, 320, 3)
    );
    let plan = TrainPlan {
        config: config.clone(),
        labels: labels.clone(),
        dense_steps: 1,
        gated_steps: 1,
        batch: 2,
        lr: 1e-4,
        finetune_lr_scale: 0.1,
        distill: 1.0,
        gate_init_keep: 0.9,
        warmup: 1,
        seed: 5,
        style: svit_scenes::Style::Camera,
    };
    let dir = temp_dir("deit-tiny");
    let ckpt = Checkpoint {
        dir: dir.join("ckpt"),
    };
    let mut data = Synthetic {
        cfg: svit_scenes::SceneConfig::camera(320),
        seed: 5,
    };
    let mut seen = Vec::new();
    let mut on_step = |s: usize, parts: &[f32; 6], _lr: f64| seen.push((s, parts[4], parts[5]));
    let st = train::train(
        plan,
        &ckpt,
        false,
        train::Start::Random,
        &mut data,
        10,
        Progress {
            on_step: &mut on_step,
            on_saved: None,
        },
    )
    .unwrap();
    assert_eq!(st.step, 2);
    assert!(
        seen[0].1 == 0.0 && seen[1].1 > 0.0,
        "ratio loss only once gates train: {seen:?}"
    );
    // The gated step runs the pruned model against the dense teacher it started from.
    assert!(
        seen[0].2 == 0.0 && seen[1].2 > 0.0 && seen[1].2.is_finite(),
        "distillation only once gates train: {seen:?}"
    );
    assert!(ckpt.dense_weights().exists() && ckpt.weights().exists());

    let (_vm, net) =
        train::load_model(&ckpt.weights(), &config, &candle_core::Device::Cpu).unwrap();
    let out = dir.join("bundle");
    bundle::write(
        &net,
        &BundleSpec {
            name: "deit-tiny-smoke",
            labels: &labels,
            provenance: None,
            f16: false,
            int8: None,
            min_keep: None,
        },
        &out,
    )
    .unwrap();
    let model = Model::load(&out, "f32").unwrap();
    let mut state = model.new_state(1).unwrap();
    let scene = svit_scenes::generate(&svit_scenes::SceneConfig::square(320), 9, 0);
    let o = model
        .run_rgb(&mut state, &scene.rgb, 320, 320, &model.default_options())
        .unwrap();
    assert_eq!(o.kept.len(), 12);
    assert!(
        o.kept[..3].iter().all(|&k| k == 400),
        "ungated blocks see all 400 tokens"
    );
    assert!(
        o.kept[3..].iter().all(|&k| (25..=400).contains(&k)),
        "{:?}",
        o.kept
    );
}
