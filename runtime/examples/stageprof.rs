//! Times one stage graph of a bundle in isolation and lists what tract optimised it into:
//!   cargo run --example stageprof -p svit-runtime -- models/demo/f32/gate_2.onnx [tokens] [channels]

use std::time::Instant;

use tract_onnx::prelude::*;

fn main() -> TractResult<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: stageprof GRAPH.onnx [tokens]");
    let k: usize = args.next().map_or(256, |v| v.parse().expect("tokens"));
    let c: usize = args.next().map_or(128, |v| v.parse().expect("channels"));
    let opt = tract_onnx::onnx().model_for_path(&path)?.into_optimized()?;
    for n in opt.nodes() {
        if n.op().name() != "Const" {
            println!("  {}", n.op().name());
        }
    }
    let plan = opt.into_runnable()?;
    let x = Tensor::from_shape(&[1, k, c], &vec![0.1f32; k * c])?;
    for _ in 0..20 {
        plan.run(tvec!(x.clone().into()))?;
    }
    let n = 500;
    let t = Instant::now();
    for _ in 0..n {
        plan.run(tvec!(x.clone().into()))?;
    }
    println!(
        "{path}: {:.3} ms per run at {k} tokens",
        t.elapsed().as_secs_f64() * 1e3 / n as f64
    );
    Ok(())
}
