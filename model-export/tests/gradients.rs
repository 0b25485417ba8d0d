//! Every trainable tensor must receive a gradient: candle silently skips parameters whose ops
//! have no backward (its fused LayerNorm, `softmax_last_dim`), so this guards the model code.

use candle_core::Device;
use candle_nn::VarMap;
use svit_export::model::{self, GateMode};
use svit_export::train;
use svit_export::train::targets::{self, Sample};
mod common;
use common::tiny_config;

#[test]
fn every_parameter_gets_a_gradient_in_gated_training() {
    let cfg = tiny_config();
    let dev = Device::Cpu;
    let vm = VarMap::new();
    let net = model::build(&cfg, &vm, &dev).unwrap();
    let scfg = svit_scenes::SceneConfig {
        min_size: 12.0,
        max_size: 30.0,
        ..svit_scenes::SceneConfig::square(64)
    };
    let batch: Vec<Sample> = (0..4)
        .map(|i| Sample::from_scene(svit_scenes::generate(&scfg, 11, i)))
        .collect();
    let t = targets::build(&cfg, &batch);
    let l = train::losses(&net, &t, batch.len(), &GateMode::Gumbel, None, &dev).unwrap();
    let grads = l.total.backward().unwrap();
    let data = vm.data().lock().unwrap();
    let mut missing = Vec::new();
    for (name, var) in data.iter() {
        match grads.get(var.as_tensor()) {
            Some(g)
                if g.abs()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
                    > 0.0 => {}
            _ => missing.push(name.clone()),
        }
    }
    missing.sort();
    assert!(
        missing.is_empty(),
        "parameters without gradient: {missing:?}"
    );
    assert!(l.parts[4] > 0.0, "ratio loss should be active with gates");
}

#[test]
fn gates_start_the_gated_phase_at_the_keep_probability_asked() {
    let cfg = tiny_config();
    let dev = Device::Cpu;
    let vm = VarMap::new();
    let net = model::build(&cfg, &vm, &dev).unwrap();
    let x = candle_core::Tensor::randn(0f32, 1.0, (2, cfg.tokens(), cfg.dim), &dev).unwrap();
    let p_keep = |g: &model::Gate| {
        let logp = g.forward(&x).unwrap();
        let p = logp.narrow(2, 0, 1).unwrap().exp().unwrap();
        p.mean_all().unwrap().to_scalar::<f32>().unwrap()
    };
    train::set_gate_keep(&vm, 0.9).unwrap();
    for g in &net.gates {
        let p = p_keep(g);
        assert!((p - 0.9).abs() < 0.05, "gate keeps {p}, asked 0.9");
    }
    assert!(train::set_gate_keep(&vm, 1.0).is_err());
}
