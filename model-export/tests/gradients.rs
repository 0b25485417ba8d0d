//! Every trainable tensor must receive a gradient: candle silently skips parameters whose ops
//! have no backward (its fused LayerNorm, `softmax_last_dim`), so this guards the model code.

use candle_core::Device;
use candle_nn::VarMap;
use svit_export::model::{self, GateMode};
use svit_export::targets::{self, Sample};
use svit_export::train;
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
    let l = train::losses(&net, &t, batch.len(), &GateMode::Gumbel, &dev).unwrap();
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
