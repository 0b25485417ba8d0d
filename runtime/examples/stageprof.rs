//! Times one stage graph of a bundle in isolation and lists what tract optimised it into:
//!   cargo run --example stageprof -p svit-runtime -- models/demo/f32/gate_2.onnx [tokens]
//! One thread (the runtime shares stages among threads itself, `crew.rs`). `STAGEPROF_NODES=1`
//! and `STAGEPROF_CONCRETE=1` are explained below.

use std::time::Instant;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::DimLike;

fn main() -> TractResult<()> {
    svit_runtime::tune_process();
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: stageprof GRAPH.onnx [tokens]");
    let k: usize = args.next().map_or(256, |v| v.parse().expect("tokens"));
    let bytes = std::fs::read(&path)?;
    // STAGEPROF_CONCRETE=1: optimise for exactly this size, as the runtime does for the embed,
    // gate and head stages, to see which kernels tract would pick if a block's K were known
    // (the runtime keeps it symbolic: one plan for every K).
    let opt = if std::env::var_os("STAGEPROF_CONCRETE").is_some() {
        let m = svit_runtime::onnx().model_for_read(&mut &bytes[..])?;
        let subs: std::collections::HashMap<_, _> = svit_runtime::model::ROW_SYMBOLS
            .into_iter()
            .filter_map(|s| m.symbols.get(s))
            .map(|s| (s, TDim::from(k as i64)))
            .collect();
        m.into_typed()?.set_symbols(&subs)?.into_optimized()?
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
    // Every symbolic dimension of every input is `tokens` (grid rows for the head); int64
    // inputs (the embed stage's token index) count 0, 1, ...; int8 ones (an int8 block's q, k,
    // v) hold 3.
    let mut inputs = TVec::<TValue>::new();
    for i in 0..opt.inputs.len() {
        let fact = opt.input_fact(i)?;
        let shape: Vec<usize> = fact
            .shape
            .iter()
            .map(|d| d.to_usize().unwrap_or(k))
            .collect();
        let len = shape.iter().product::<usize>();
        let t = if fact.datum_type == i64::datum_type() {
            Tensor::from_shape(&shape, &(0..len as i64).collect::<Vec<_>>())?
        } else if fact.datum_type == i8::datum_type() {
            Tensor::from_shape(&shape, &vec![3i8; len])?
        } else {
            Tensor::from_shape(&shape, &vec![0.1f32; len])?
        };
        inputs.push(t.into());
    }
    let plan = opt.into_runnable()?;
    for _ in 0..20 {
        plan.run(inputs.clone())?;
    }
    let n = 500;
    let t = Instant::now();
    for _ in 0..n {
        plan.run(inputs.clone())?;
    }
    let shapes: Vec<_> = inputs.iter().map(|t| t.shape().to_vec()).collect();
    println!(
        "{path}: {:.3} ms per run, inputs {shapes:?}",
        t.elapsed().as_secs_f64() * 1e3 / n as f64
    );
    // Where the time goes, per op kind (summed over the nodes of that kind), per node with
    // STAGEPROF_NODES=1, or per kind of work with STAGEPROF_GROUPS=1 (`group_nodes` below).
    let by_node = std::env::var_os("STAGEPROF_NODES").is_some();
    let groups = std::env::var_os("STAGEPROF_GROUPS").map(|_| group_nodes(plan.model()));
    let mut per_op: std::collections::BTreeMap<String, f64> = Default::default();
    let mut state = tract_onnx::tract_core::plan::SimpleState::new(&plan)?;
    for _ in 0..n {
        state.run_plan_with_eval(inputs.clone(), |ctx, st, node, inputs| {
            let t = Instant::now();
            let r = tract_onnx::tract_core::plan::eval(ctx, st, node, inputs);
            let key = if let Some(g) = &groups {
                g[node.id].to_string()
            } else if by_node {
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

/// Each node's kind of work, to see how much of a stage int8 can speed up at all: `linear`
/// (a matmul by a weight: k and one of m, n concrete), `attention` (a matmul of two
/// activations, q.k or p.v: k or both m and n symbolic), `norm` (the matrix-vector products
/// that compute LayerNorm means), `softmax`, `gelu` (exact or int8 lookup table), `int8 glue`
/// (quantize, dequantize, casts, the carrier pads, the clamping chains) and `other`. A packing
/// node counts as the matmul that reads it; a dequantize feeding attention or softmax (the
/// int8 logits) as attention.
fn group_nodes(model: &TypedModel) -> Vec<&'static str> {
    let mut g = vec!["other"; model.nodes().len()];
    let matmul_kind = |info: &str| {
        let dim = |key: &str| {
            info.split(key)
                .nth(1)
                .and_then(|r| r.split([' ', '"']).next())
                .map(|d| d.parse::<usize>().ok())
        };
        match (dim(" m:"), dim(" k:"), dim(" n:")) {
            (Some(Some(1)), _, _) | (_, _, Some(Some(1))) => "norm",
            (Some(m), Some(Some(_)), Some(n)) if m.is_some() || n.is_some() => "linear",
            _ => "attention",
        }
    };
    for n in model.nodes() {
        let op = n.op().name();
        let info = n.op().info().unwrap_or_default().join(" ");
        g[n.id] = match &*op {
            "OptMatMul" => matmul_kind(&info),
            "Softmax" => "softmax",
            "GeluExact" | "LookupTable" => "gelu",
            "Cast" | "Pad" => "int8 glue",
            o if o.starts_with("Quantize") || o.starts_with("Dequantize") => "int8 glue",
            o if o.contains("Max+Min") => "int8 glue",
            _ => "other",
        };
    }
    // Packing nodes and an attention's dequantized inputs take their consumer's kind.
    for n in model.nodes().iter().rev() {
        let op = n.op().name();
        let follows = op == "OptMatMulPack" || op.starts_with("Dequantize");
        if let (true, Some(next)) = (follows, n.outputs[0].successors.first()) {
            let k = g[next.node];
            if op == "OptMatMulPack" {
                g[n.id] = k;
            } else if matches!(k, "attention" | "softmax") {
                g[n.id] = "attention";
            }
        }
    }
    g
}
