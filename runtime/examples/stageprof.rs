//! Times one stage graph of a bundle in isolation and lists what tract optimised it into:
//!   cargo run --example stageprof -p svit-runtime -- models/demo/f32/gate_2.onnx [tokens] [channels]
//! `STAGEPROF_THREADS=n` runs tract's matmuls on n threads; `STAGEPROF_NODES=1` and
//! `STAGEPROF_CONCRETE=1` are explained below.

use std::time::Instant;

use tract_onnx::prelude::*;

fn main() -> TractResult<()> {
    svit_runtime::tune_process();
    if let Some(t) = std::env::var("STAGEPROF_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
    {
        svit_runtime::set_threads(t);
    }
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: stageprof GRAPH.onnx [tokens]");
    let k: usize = args.next().map_or(256, |v| v.parse().expect("tokens"));
    let c: usize = args.next().map_or(128, |v| v.parse().expect("channels"));
    let bytes = std::fs::read(&path)?;
    // STAGEPROF_CONCRETE=1: optimise for exactly this token count, to see which kernels tract
    // would pick if K were known (the runtime's graphs keep K symbolic).
    let opt = if std::env::var_os("STAGEPROF_CONCRETE").is_some() {
        let m = tract_onnx::onnx().model_for_read(&mut &bytes[..])?;
        let sym = m.symbols.sym("K");
        let typed = m.into_typed()?;
        let subs = std::collections::HashMap::from([(sym, TDim::from(k as i64))]);
        typed.set_symbols(&subs)?.into_optimized()?
    } else {
        svit_runtime::optimise_graph(&bytes)?
    };
    for n in opt.nodes() {
        if n.op().name() != "Const" {
            println!(
                "  {} {} {:?}",
                n.op().name(),
                n.name,
                n.op().info().unwrap_or_default()
            );
        }
    }
    // The embed graph takes the image (a concrete shape); the others take K tokens.
    let shape: Vec<usize> = match opt.input_fact(0)?.shape.as_concrete() {
        Some(s) => s.to_vec(),
        None => vec![1, k, c],
    };
    let plan = opt.into_runnable()?;
    let x = Tensor::from_shape(&shape, &vec![0.1f32; shape.iter().product()])?;
    for _ in 0..20 {
        plan.run(tvec!(x.clone().into()))?;
    }
    let n = 500;
    let t = Instant::now();
    for _ in 0..n {
        plan.run(tvec!(x.clone().into()))?;
    }
    println!(
        "{path}: {:.3} ms per run, input {shape:?}",
        t.elapsed().as_secs_f64() * 1e3 / n as f64
    );
    // Where the time goes, per op kind (summed over the nodes of that kind), or per node with
    // STAGEPROF_NODES=1.
    let by_node = std::env::var_os("STAGEPROF_NODES").is_some();
    let mut per_op: std::collections::BTreeMap<String, f64> = Default::default();
    let mut state = tract_onnx::tract_core::plan::SimpleState::new(&plan)?;
    for _ in 0..n {
        state.run_plan_with_eval(tvec!(x.clone().into()), |ctx, st, node, inputs| {
            let t = Instant::now();
            let r = tract_onnx::tract_core::plan::eval(ctx, st, node, inputs);
            let key = if by_node {
                format!("{} {}", node.op().name(), node.name)
            } else {
                node.op().name().to_string()
            };
            *per_op.entry(key).or_default() += t.elapsed().as_secs_f64();
            r
        })?;
    }
    let mut rows: Vec<_> = per_op.into_iter().collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (op, s) in rows.iter().take(if by_node { 40 } else { 12 }) {
        println!("  {:>8.3} ms  {op}", s * 1e3 / n as f64);
    }
    Ok(())
}
