//! Does plain Rust code run slower after a tract kernel on this x86 CPU? (QUANTIZATION.md,
//! "tract's kernels leave the vector registers dirty"):
//!   cargo run --example sseprobe -- [row length]
//! Times a scalar row softmax over 4 x L rows of L values before any tract kernel has run,
//! after a tract Softmax (AVX-512 assembly that returns without `vzeroupper`), and after a
//! `vzeroupper`. In a build for baseline x86-64 (legacy SSE) the middle figure is many times
//! the others on Intel cores; in this workspace's x86-64-v3 build (`.cargo/config.toml`) the
//! three agree.

use std::time::Instant;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::nn::{Softmax, SoftmaxKind};

fn scalar_softmax(buf: &mut [f32], row: usize) {
    for r in buf.chunks_exact_mut(row) {
        let max = r.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        let mut sum = 0.0;
        for x in r.iter_mut() {
            *x = (*x - max).exp();
            sum += *x;
        }
        r.iter_mut().for_each(|x| *x /= sum);
    }
}

/// Milliseconds per scalar softmax over `data`, best of 20.
fn time_scalar(data: &[f32], row: usize) -> f64 {
    let mut buf = data.to_vec();
    (0..20)
        .map(|_| {
            buf.copy_from_slice(data);
            let t = Instant::now();
            scalar_softmax(&mut buf, row);
            t.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() -> TractResult<()> {
    let k: usize = std::env::args()
        .nth(1)
        .map_or(256, |v| v.parse().expect("row length"));
    let data: Vec<f32> = (0..4 * k * k)
        .map(|i| ((i * 7919) % 1000) as f32 / 100.0 - 5.0)
        .collect();
    let before = time_scalar(&data, k);

    let mut m = TypedModel::default();
    let x = m.add_source("x", f32::fact([4, k, k]))?;
    let y = m.wire_node(
        "softmax",
        Softmax::new(tvec!(2), None, SoftmaxKind::Softmax),
        &[x],
    )?;
    m.select_output_outlets(&y)?;
    let plan = m.into_optimized()?.into_runnable()?;
    let input: TValue = Tensor::from_shape(&[4, k, k], &data)?.into();
    let t = Instant::now();
    plan.run(tvec![input])?;
    let tract_ms = t.elapsed().as_secs_f64() * 1e3;
    let after = time_scalar(&data, k);

    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx") {
        // SAFETY: `vzeroupper` only zeroes the upper halves of the vector registers, which
        // hold no live value between these statements, and the CPU has AVX.
        unsafe { std::arch::asm!("vzeroupper") };
    }
    let cleared = time_scalar(&data, k);
    println!(
        "scalar softmax, {} rows of {k}: {before:.3} ms before tract, {after:.3} ms after a tract Softmax ({tract_ms:.3} ms), {cleared:.3} ms after vzeroupper",
        4 * k
    );
    Ok(())
}
