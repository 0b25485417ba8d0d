//! The training graph (candle) and the exported graphs (ONNX run by tract through `runtime`)
//! compute the same thing on the same weights: dense, and pruned with the runtime's selection.

mod common;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use common::{temp_dir, tiny_config, tiny_hmlp_config, TEST_DECODE};
use svit_export::export::bundle::{self, BundleSpec};
use svit_export::model::{self, GateMode, Svit};
use svit_export::train::targets::normalise_into;
use svit_runtime::ModelConfig;
use svit_runtime::{MinKeep, Model, Pruning, RunOptions};
use tract_onnx::prelude::{tvec, Framework, InferenceModelExt, IntoRunnable};

fn setup(name: &str) -> (Svit, svit_e2e::TempDir, Vec<f32>) {
    setup_with(name, tiny_config())
}

fn setup_with(name: &str, cfg: ModelConfig) -> (Svit, svit_e2e::TempDir, Vec<f32>) {
    let dev = Device::Cpu;
    let vm = VarMap::new();
    let net = model::build(&cfg, &vm, &dev).unwrap();
    // Spread gate scores (fresh gates all say ~0.5) so selection is far from ties, and give
    // every weight a scale at which a wrong op would show. Position embeddings get a real scale
    // too: behind an hMLP stem (its LayerNorms) tokens are otherwise so alike that every gate
    // may keep or drop them all, and the pruned path would go untested.
    for (n, v) in vm.data().lock().unwrap().iter() {
        let std = if n.contains("gates.") && n.ends_with("fc2.weight") {
            2.0
        } else if n == "pos_embed" {
            1.0
        } else {
            0.1
        };
        if (n.ends_with("weight") && !n.contains("norm")) || n == "pos_embed" {
            v.set(&Tensor::randn(0f32, std, v.shape(), &dev).unwrap())
                .unwrap();
        }
    }
    let dir = temp_dir(name);
    let labels: Vec<String> = svit_scenes::CLASSES.iter().map(|s| s.to_string()).collect();
    bundle::write(
        &net,
        &BundleSpec {
            name: "tiny",
            labels: &labels,
            provenance: None,
            f16: true,
            int8: None,
            min_keep: None,
        },
        &dir,
    )
    .unwrap();
    let scene = svit_scenes::generate(&svit_scenes::SceneConfig::square(64), 3, 1);
    let mut input = Vec::new();
    normalise_into(&scene.rgb, 64, &mut input);
    (net, dir, input)
}

fn candle_head(net: &Svit, input: &[f32], mode: &GateMode) -> (Vec<Vec<f32>>, Vec<usize>) {
    let s = net.cfg.image_size;
    let img = Tensor::from_slice(input, (1, 3, s, s), &Device::Cpu).unwrap();
    let out = net.forward(&img, mode).unwrap();
    let h = &out.head;
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let kept = out
        .policies
        .iter()
        .map(|p| p.sum_all().unwrap().to_scalar::<f32>().unwrap() as usize)
        .collect();
    (
        vec![
            flat(&h.heat),
            flat(&h.boxes),
            flat(&h.coef),
            flat(&h.protos),
        ],
        kept,
    )
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn assert_close(a: &[Vec<f32>], b: &[Vec<f32>], tol: f32, what: &str) {
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let d = max_diff(x, y);
        assert!(d < tol, "{what}: output {i} differs by {d}");
    }
}

#[test]
fn dense_onnx_matches_candle() {
    check_dense_onnx("dense", tiny_config());
}

#[test]
fn hmlp_stem_dense_onnx_matches_candle() {
    check_dense_onnx("dense-hmlp", tiny_hmlp_config());
}

fn check_dense_onnx(name: &str, cfg: ModelConfig) {
    let (net, dir, input) = setup_with(name, cfg);
    let (want, _) = candle_head(&net, &input, &GateMode::Dense);
    let plan = svit_runtime::onnx()
        .model_for_path(dir.join("dense.onnx"))
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let img = tract_onnx::prelude::Tensor::from_shape(&[1, 3, 64, 64], &input).unwrap();
    let out = plan.run(tvec!(img.into())).unwrap();
    let got: Vec<Vec<f32>> = out
        .iter()
        .map(|t| {
            t.try_as_plain_ram()
                .unwrap()
                .as_slice::<f32>()
                .unwrap()
                .to_vec()
        })
        .collect();
    assert_close(&got, &want, 1e-4, "dense.onnx vs candle");
}

#[test]
fn runtime_threshold_zero_is_the_dense_pass() {
    let (net, dir, input) = setup("thr0");
    let model = Model::load(&dir, "f32").unwrap();
    let mut st = model.new_state(1).unwrap();
    let opts = |pruning| RunOptions {
        pruning,
        decode: TEST_DECODE,
    };
    let zero = model
        .run_tensor(
            &mut st,
            &input,
            &opts(Pruning::Threshold {
                threshold: 0.0,
                min_keep: MinKeep::uniform(1),
            }),
        )
        .unwrap();
    let a = st.head_outputs().clone();
    let dense = model
        .run_tensor(&mut st, &input, &opts(Pruning::Dense))
        .unwrap();
    assert_eq!(
        &a,
        st.head_outputs(),
        "threshold 0 must be bit-identical to dense"
    );
    assert_eq!(zero.kept, vec![16; 3]);
    assert_eq!(zero.detections, dense.detections);
    let (want, _) = candle_head(&net, &input, &GateMode::Dense);
    assert_close(&a, &want, 1e-4, "runtime dense vs candle");
}

#[test]
fn runtime_pruned_pass_matches_candle_masked_pass() {
    check_pruned("pruned", tiny_config());
}

#[test]
fn hmlp_stem_pruned_pass_matches_candle_masked_pass() {
    check_pruned("pruned-hmlp", tiny_hmlp_config());
}

fn check_pruned(name: &str, cfg: ModelConfig) {
    let (net, dir, input) = setup_with(name, cfg);
    let model = Model::load(&dir, "f32").unwrap();
    let mut st = model.new_state(1).unwrap();
    // A floor rising over the gated blocks, the same in both passes.
    let (thr, min_keep) = (0.5, MinKeep { first: 1, last: 4 });
    let opts = RunOptions {
        pruning: Pruning::Threshold {
            threshold: thr,
            min_keep,
        },
        decode: TEST_DECODE,
    };
    let out = model.run_tensor(&mut st, &input, &opts).unwrap();
    let (want, kept) = candle_head(
        &net,
        &input,
        &GateMode::Threshold {
            threshold: thr,
            min_keep,
        },
    );
    assert_eq!(&out.kept[1..], &kept[..], "kept tokens per gated block");
    assert!(
        out.kept.iter().any(|&k| k < 16),
        "test weights should prune something: {:?}",
        out.kept
    );
    assert_close(
        st.head_outputs(),
        &want,
        1e-4,
        "runtime pruned vs candle masked",
    );
    let full = 16 * 3;
    assert!(out.kept_fraction(16) < 1.0 && out.kept.iter().sum::<usize>() < full);
    assert!(out.gmacs > 0.0);
}

#[test]
fn nan_weights_are_reported_not_turned_into_boxes() {
    let (net, dir, input) = setup("nan");
    // Poison one weight of block 1 and re-export over the same directory.
    let w = &net.blocks[1].fc1.w;
    let mut v = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    v[3] = f32::NAN;
    let poisoned = Tensor::from_vec(v, w.shape(), &Device::Cpu).unwrap();
    let mut net = net;
    net.blocks[1].fc1.w = poisoned;
    let labels: Vec<String> = svit_scenes::CLASSES.iter().map(|s| s.to_string()).collect();
    bundle::write(
        &net,
        &BundleSpec {
            name: "nan",
            labels: &labels,
            provenance: None,
            f16: false,
            int8: None,
            min_keep: None,
        },
        &dir,
    )
    .unwrap();
    let model = Model::load(&dir, "f32").unwrap();
    let mut st = model.new_state(1).unwrap();
    let opts = RunOptions {
        pruning: Pruning::Dense,
        decode: TEST_DECODE,
    };
    let err = model.run_tensor(&mut st, &input, &opts).unwrap_err();
    assert!(err.to_string().contains("block_1"), "{err}");
}

/// The f16 stage graphs compute the same function as the f32 ones, to f16 precision.
#[test]
fn f16_graphs_match_f32_to_half_precision() {
    let (_net, dir, input) = setup("f16");
    let run = |precision: &str| {
        let model = Model::load(&dir, precision).unwrap();
        assert_eq!(model.precision, precision);
        let mut st = model.new_state(1).unwrap();
        let opts = RunOptions {
            pruning: Pruning::Dense,
            decode: TEST_DECODE,
        };
        model.run_tensor(&mut st, &input, &opts).unwrap();
        st.head_outputs().clone()
    };
    let (a, b) = (run("f32"), run("f16"));
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let scale = x.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-3);
        let err = x.iter().zip(y).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
        assert!(
            err / scale < 2e-2,
            "output {i}: f16 differs by {err} (scale {scale})"
        );
        assert!(
            err > 0.0,
            "output {i}: f16 graphs identical to f32, conversion did nothing?"
        );
    }
}
