//! Which int8 graph form does tract 0.23 run fast? Times a stack of Linear layers at the demo
//! block's sizes in f32 and in candidate int8 forms, same input, one thread.
//!   cargo run --example qprobe -p svit-export (add --release-like speed: deps are opt 3)

use std::time::Instant;

use svit_export::export::onnx::{attr_int, Dim, Graph};
use tract_onnx::prelude::*;

const C: usize = 128;
const H: usize = 512;
const LAYERS: usize = 6;

fn weights(seed: u32, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32 / 16777216.0
                - 0.5)
                * 0.1
        })
        .collect()
}

/// `form`: "f32"; "int8-matmulinteger" (static symmetric per-tensor x, per-channel w, f32
/// between layers); "int8-qlinear-chain" (activations stay int8 from layer to layer, requant
/// inside QLinearMatMul, ReLU as an int8 Max; no bias).
fn build(form: &str) -> Vec<u8> {
    let mut g = Graph::new("probe");
    let mut x = g.input("x", &[Dim::Fixed(1), Dim::Sym("K"), Dim::Fixed(C)]);
    if form == "int8-qlinear-chain" {
        let sx = g.scalar(4.0 / 127.0);
        let zp = g.i8_init("zp", &[], &[0]);
        let mut q = g.op("QuantizeLinear", &[&x, &sx, &zp]);
        let mut s_in = sx.clone();
        for l in 0..LAYERS {
            let (i, o) = if l % 2 == 0 { (C, H) } else { (H, C) };
            let w = weights(l as u32, i * o);
            let amax = w.iter().fold(0f32, |m, v| m.max(v.abs()));
            let wq: Vec<i8> = w.iter().map(|v| (v / amax * 127.0).round() as i8).collect();
            let wq = g.i8_init("wq", &[i, o], &wq);
            let sw = g.scalar(amax / 127.0);
            let s_out = g.scalar(0.05);
            q = g.op(
                "QLinearMatMul",
                &[&q, &s_in, &zp, &wq, &sw, &zp, &s_out, &zp],
            );
            if l % 2 == 0 {
                q = g.op("Max", &[&q, &zp]);
            }
            s_in = s_out;
        }
        x = g.op("DequantizeLinear", &[&q, &s_in, &zp]);
        g.output(&x, "y", &[Dim::Fixed(1), Dim::Sym("K"), Dim::Fixed(C)]);
        return g.encode();
    }
    for l in 0..LAYERS {
        let (i, o) = if l % 2 == 0 { (C, H) } else { (H, C) };
        let w = weights(l as u32, i * o);
        let b = g.f32_init("b", &[o], vec![0.01; o]);
        let y = match form {
            "f32" => {
                let w = g.f32_init("w", &[i, o], w);
                g.op("MatMul", &[&x, &w])
            }
            _ => {
                // Per output channel symmetric scale.
                let mut sw = vec![0f32; o];
                for r in 0..i {
                    for c in 0..o {
                        sw[c] = sw[c].max(w[r * o + c].abs() / 127.0);
                    }
                }
                let wq: Vec<i8> = (0..i * o)
                    .map(|k| (w[k] / sw[k % o]).round().clamp(-127.0, 127.0) as i8)
                    .collect();
                let sx = 4.0 / 127.0;
                let wq = g.i8_init("wq", &[i, o], &wq);
                let s = g.scalar(sx);
                let zp = g.i8_init("zp", &[], &[0]);
                let xq = g.op("QuantizeLinear", &[&x, &s, &zp]);
                let acc = g.op("MatMulInteger", &[&xq, &wq]);
                let accf = g.node("Cast", &[&acc], vec![attr_int("to", 1)], None);
                let scale = g.f32_init("s", &[o], sw.iter().map(|v| v * sx).collect());
                g.op("Mul", &[&accf, &scale])
            }
        };
        x = g.op("Add", &[&y, &b]);
        if l % 2 == 0 {
            x = g.op("Relu", &[&x]);
        }
    }
    g.output(&x, "y", &[Dim::Fixed(1), Dim::Sym("K"), Dim::Fixed(C)]);
    g.encode()
}

fn main() -> TractResult<()> {
    svit_runtime::tune_process();
    let k = 128usize;
    let input: Vec<f32> = weights(99, k * C).iter().map(|v| v * 20.0).collect();
    let mut outs = Vec::new();
    for form in ["f32", "int8-matmulinteger", "int8-qlinear-chain"] {
        let bytes = build(form);
        let opt = svit_runtime::onnx()
            .model_for_read(&mut &bytes[..])?
            .into_optimized()?;
        if std::env::var("QPROBE_OPS").is_ok() {
            for n in opt.nodes().iter().take(14) {
                println!("  {form}: {} {:?}", n.op().name(), n.op());
            }
        }
        let plan = opt.into_runnable()?;
        let t = Tensor::from_shape(&[1, k, C], &input)?;
        for _ in 0..20 {
            plan.run(tvec!(t.clone().into()))?;
        }
        let n = 300;
        let start = Instant::now();
        let mut last = None;
        for _ in 0..n {
            last = Some(plan.run(tvec!(t.clone().into()))?);
        }
        let ms = start.elapsed().as_secs_f64() * 1000.0 / n as f64;
        let y = last.unwrap()[0]
            .try_as_plain_ram()?
            .as_slice::<f32>()?
            .to_vec();
        println!("{form:<22} {ms:.3} ms per run (K={k}, {LAYERS} layers {C}<->{H})");
        outs.push(y);
    }
    let max = outs[0]
        .iter()
        .zip(&outs[1])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let scale = outs[0].iter().map(|v| v.abs()).fold(0f32, f32::max);
    println!("int8 vs f32: max abs diff {max:.4} (output max {scale:.4})");
    Ok(())
}
