//! Starting a run from existing weights: `--init` (DeiT naming) and `--from` (a checkpoint).

mod common;

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use common::{temp_dir, tiny_config};
use svit_export::model;
use svit_export::train::import;
use svit_runtime::ModelConfig;

fn tensors(vm: &VarMap) -> HashMap<String, Tensor> {
    let data = vm.data().lock().unwrap();
    data.iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect()
}

/// A freshly initialised model and its tensors, by name.
fn fresh(cfg: &ModelConfig) -> (VarMap, HashMap<String, Tensor>) {
    let vm = VarMap::new();
    model::build(cfg, &vm, &Device::Cpu).unwrap();
    let t = tensors(&vm);
    (vm, t)
}

fn same(a: &Tensor, b: &Tensor) -> bool {
    a.dims() == b.dims()
        && a.flatten_all().unwrap().to_vec1::<f32>().unwrap()
            == b.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn init_loads_a_deit_backbone_and_leaves_gates_and_head_fresh() {
    let cfg = tiny_config();
    let (_, mut deit) = fresh(&cfg);
    // As timm writes it: a class-token row in front of the position embeddings, and tensors
    // this model has no use for.
    let pos = deit["pos_embed"].clone();
    let cls_row = Tensor::ones((1, 1, cfg.dim), candle_core::DType::F32, &Device::Cpu).unwrap();
    deit.insert(
        "pos_embed".into(),
        Tensor::cat(&[&cls_row, &pos], 1).unwrap(),
    );
    deit.insert("cls_token".into(), cls_row);
    deit.retain(|k, _| !k.starts_with("gates.") && !k.starts_with("head."));
    deit.insert(
        "head.weight".into(),
        Tensor::zeros((1000, cfg.dim), candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    let dir = temp_dir("init-deit");
    let path = dir.join("deit.safetensors");
    candle_core::safetensors::save(&deit, &path).unwrap();

    let (mut vm, before) = fresh(&cfg);
    import::load_backbone(&mut vm, &path, &cfg).unwrap();
    let after = tensors(&vm);
    assert!(same(&after["pos_embed"], &pos), "class-token row dropped");
    assert!(same(
        &after["blocks.1.attn.qkv.weight"],
        &deit["blocks.1.attn.qkv.weight"]
    ));
    assert!(same(
        &after["patch_embed.proj.weight"],
        &deit["patch_embed.proj.weight"]
    ));
    assert!(same(&after["head.cls.weight"], &before["head.cls.weight"]));

    // A checkpoint of another width is refused by name.
    let wide = ModelConfig {
        dim: 48,
        ..tiny_config()
    };
    let (mut vm, _) = fresh(&wide);
    let err = import::load_backbone(&mut vm, &path, &wide).unwrap_err();
    assert!(format!("{err:#}").contains("shape"), "{err:#}");
}

#[test]
fn from_loads_a_checkpoint_and_starts_other_class_logits_fresh() {
    let cfg = tiny_config();
    let (_, trained) = fresh(&cfg);
    let dir = temp_dir("from-ckpt");
    let path = dir.join("model.safetensors");
    candle_core::safetensors::save(&trained, &path).unwrap();

    // Same shape: everything loads.
    let (mut vm, _) = fresh(&cfg);
    assert!(import::load_checkpoint(&mut vm, &path).unwrap().is_empty());
    let gate = vm.data().lock().unwrap()["gates.0.fc1.weight"]
        .as_tensor()
        .clone();
    assert!(same(&gate, &trained["gates.0.fc1.weight"]));

    // Another label set: the class logits start fresh, the rest is the checkpoint's.
    let more = ModelConfig {
        num_classes: cfg.num_classes + 2,
        ..tiny_config()
    };
    let (mut vm, _) = fresh(&more);
    let fresh_names = import::load_checkpoint(&mut vm, &path).unwrap();
    assert_eq!(fresh_names, ["head.cls.bias", "head.cls.weight"]);
    let qkv = vm.data().lock().unwrap()["blocks.2.attn.qkv.weight"]
        .as_tensor()
        .clone();
    assert!(same(&qkv, &trained["blocks.2.attn.qkv.weight"]));

    // Another backbone shape is refused by name.
    let deeper = ModelConfig {
        depth: 4,
        keep_targets: vec![0.7, 0.5, 0.5],
        ..tiny_config()
    };
    let (mut vm, _) = fresh(&deeper);
    let err = import::load_checkpoint(&mut vm, &path).unwrap_err();
    assert!(format!("{err:#}").contains("blocks.3"), "{err:#}");
}

/// The CLI path: `train --from` takes the checkpoint's model shape and weights (with a
/// vanishing learning rate one step leaves them as they were).
#[test]
fn train_from_the_shipped_checkpoint_continues_its_weights() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/demo-ckpt");
    let dir = temp_dir("train-from");
    let out = dir.join("run");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_svit-export"))
        .args([
            "train",
            "--from",
            &format!("{root}/dense.safetensors"),
            "--out",
        ])
        .arg(&out)
        .args(["--dense-steps", "1", "--gated-steps", "0", "--batch", "1"])
        .args(["--lr", "1e-12", "--seed", "5"])
        .status()
        .unwrap();
    assert!(status.success());
    let state = |p: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(format!("{p}/state.json")).unwrap()).unwrap()
    };
    let run = state(out.to_str().unwrap());
    assert_eq!(run["plan"]["config"], state(root)["plan"]["config"]);
    assert_eq!(run["step"], 1);
    let load = |p: std::path::PathBuf| candle_core::safetensors::load(p, &Device::Cpu).unwrap();
    let src = load(format!("{root}/dense.safetensors").into());
    let now = load(out.join("model.safetensors"));
    let w = "blocks.4.mlp.fc1.weight";
    let diff = (&src[w] - &now[w])
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap();
    assert!(diff.to_scalar::<f32>().unwrap() < 1e-6);

    // Resuming needs no flags that repeat the model shape (the run's hMLP stem is not the
    // preset's), and a flag that contradicts it is named.
    let train = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_svit-export"))
            .args(["train", "--resume", "--out"])
            .arg(&out)
            .args(["--dense-steps", "2", "--gated-steps", "0", "--batch", "1"])
            .args(["--lr", "1e-12"])
            .args(extra)
            .output()
            .unwrap()
    };
    let contradicting = train(&["--stem", "16,32"]);
    assert!(!contradicting.status.success());
    let err = String::from_utf8_lossy(&contradicting.stderr);
    assert!(err.contains("--stem [16, 32] differs"), "{err}");
    let resumed = train(&[]);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let resumed = state(out.to_str().unwrap());
    assert_eq!(resumed["step"], 2);
    assert_eq!(resumed["plan"]["config"], state(root)["plan"]["config"]);
    // Without --seed the run goes on with the data stream it started with.
    assert_eq!(resumed["plan"]["seed"], 5);

    // A dense phase cut to end at the run's last checkpoint (resumed with --dense-steps at
    // its step, as `scripts/train_next.sh` does with DENSE_STEPS) still records its weights
    // as the dense ones, which the gated phase starts from.
    let dense = out.join("dense.safetensors");
    std::fs::remove_file(&dense).unwrap();
    let cut = train(&[]);
    assert!(
        cut.status.success(),
        "{}",
        String::from_utf8_lossy(&cut.stderr)
    );
    assert_eq!(
        std::fs::read(&dense).unwrap(),
        std::fs::read(out.join("model.safetensors")).unwrap()
    );
    // Ending the dense phase behind the run's step is refused by name.
    let behind = std::process::Command::new(env!("CARGO_BIN_EXE_svit-export"))
        .args(["train", "--resume", "--out"])
        .arg(&out)
        .args(["--dense-steps", "1", "--gated-steps", "1", "--batch", "1"])
        .output()
        .unwrap();
    assert!(!behind.status.success());
    let err = String::from_utf8_lossy(&behind.stderr);
    assert!(err.contains("--dense-steps 1 can only move"), "{err}");

    // And it refuses to mix with --resume.
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_svit-export"))
        .args(["train", "--resume", "--from", root, "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!refused.status.success());
}

/// `train --val-coco` evaluates each saved checkpoint as the board runs it and appends the
/// figures to OUT/val.jsonl; a validation set that cannot be read stops the run before it
/// trains.
#[test]
fn training_validates_its_checkpoints() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/demo-ckpt");
    let dir = temp_dir("train-val");
    let exe = || std::process::Command::new(env!("CARGO_BIN_EXE_svit-export"));
    let val = dir.join("val");
    let made = exe()
        .args(["data", "--scenes", "8", "--seed", "9000", "--out"])
        .arg(&val)
        .status()
        .unwrap();
    assert!(made.success());
    let out = dir.join("run");
    let train = |coco: &std::path::Path| {
        exe()
            .args(["train", "--from", &format!("{root}/dense.safetensors")])
            .args(["--dense-steps", "1", "--gated-steps", "0", "--batch", "1"])
            .args(["--lr", "1e-12", "--val-limit", "8", "--out"])
            .arg(&out)
            .arg("--val-coco")
            .arg(coco)
            .output()
            .unwrap()
    };
    let missing = train(&dir.join("nowhere.json"));
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("nowhere.json"), "{err}");
    assert!(
        !out.join("state.json").exists(),
        "trained despite a missing validation set"
    );

    let ok = train(&val.join("instances.json"));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let log = std::fs::read_to_string(out.join("val.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert_eq!(lines[0]["step"], 1);
    assert_eq!(lines[0]["threshold"], 0.0);
    // The demo model's dense weights find objects: a broken export or evaluation would not.
    let ap = lines[0]["box_ap"].as_f64().unwrap();
    assert!(ap > 1.0 && ap <= 100.0, "{log}");
    assert!(lines[0]["mask_ap"].as_f64().unwrap() > 1.0, "{log}");
}
