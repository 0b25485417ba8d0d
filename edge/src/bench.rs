//! `svit-edge bench`: per-stage latency of the bundle on this board, dense against pruned,
//! over a sweep of thresholds and thread counts, every configuration on the same frames.

use std::path::Path;

use anyhow::{Context, Result};
use svit_protocol::bench::{BenchConfig, BenchReport, KPoint};
use svit_protocol::stats::Pct;
use svit_protocol::StageTimes;
use svit_runtime::{Model, Pruning, RunOptions};

use crate::pipeline::stage_times;

pub fn cpu_model() -> String {
    let s = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    for key in ["model name", "Model", "Hardware", "CPU part"] {
        if let Some(v) = s
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split(':').nth(1))
        {
            return v.trim().to_string();
        }
    }
    std::env::consts::ARCH.to_string()
}

/// What a bench sweeps: every precision, thread count and threshold, on the same frames.
pub struct Sweep<'a> {
    pub precisions: &'a [String],
    pub frames: usize,
    pub warmup: usize,
    /// Empty: the dense pass and the bundle's threshold.
    pub thresholds: &'a [f32],
    pub threads: &'a [usize],
    /// Default: the bundle's.
    pub min_keep: Option<svit_runtime::MinKeep>,
}

pub fn run(bundle: &Path, sweep: &Sweep, progress: &dyn Fn(&str)) -> Result<BenchReport> {
    let Sweep {
        precisions,
        frames,
        warmup,
        thresholds,
        threads,
        min_keep,
    } = *sweep;
    let mut models: Vec<Model> = Vec::new();
    for p in precisions {
        let m = Model::load(bundle, p).with_context(|| format!("loading {}", bundle.display()))?;
        // `auto` may name a precision already on the list.
        if !models.iter().any(|o| o.precision == m.precision) {
            models.push(m);
        }
    }
    let Some(first) = models.first() else {
        anyhow::bail!("no precision to bench");
    };
    let thresholds = first.manifest.defaults.compared_thresholds(thresholds);
    let cfg = first.config().clone();
    let size = cfg.image_size;
    // The same frames for every configuration.
    let scfg = svit_scenes::SceneConfig::square(size);
    let distinct = frames.clamp(1, 64);
    let images: Vec<Vec<u8>> = (0..distinct)
        .map(|i| svit_scenes::generate(&scfg, 777, i as u64).rgb)
        .collect();
    let mut configs = Vec::new();
    for &th in threads {
        // The (precision, threshold) configurations of this thread count take turns, ten
        // frames each, so that a drift in the machine's speed (this one is shared and noisy)
        // reaches all of them alike and the ratios between them hold. Ten, not one: a board runs
        // one configuration with its weights in cache, and a frame after another
        // configuration's starts colder.
        let mut slots = Vec::new();
        for model in &models {
            let min_keep = min_keep.unwrap_or(model.manifest.defaults.min_keep);
            for &thr in &thresholds {
                progress(&format!(
                    "{}, threads {th}, threshold {thr}: warm-up",
                    model.precision
                ));
                let opts = RunOptions {
                    pruning: Pruning::at(thr, min_keep),
                    ..model.default_options()
                };
                let mut state = model.new_state(th)?;
                let t0 = std::time::Instant::now();
                for i in 0..warmup {
                    model.run_rgb(&mut state, &images[i % distinct], size, size, &opts)?;
                }
                slots.push(Slot {
                    model,
                    threshold: thr,
                    min_keep,
                    opts,
                    state,
                    warmup_ms: t0.elapsed().as_secs_f64() * 1e3,
                    outs: Vec::with_capacity(frames),
                });
            }
        }
        progress(&format!(
            "threads {th}: {} configurations, {frames} frames each",
            slots.len()
        ));
        const TURN: usize = 10;
        for start in (0..frames).step_by(TURN) {
            for s in &mut slots {
                for i in start..frames.min(start + TURN) {
                    let image = &images[i % distinct];
                    let out = s.model.run_rgb(&mut s.state, image, size, size, &s.opts)?;
                    s.outs.push(out);
                }
            }
        }
        for s in slots {
            configs.push(summarise(&s, &cfg, th, frames, warmup));
        }
    }
    // Reported per precision, then thread count, then threshold (the order of the flags).
    configs.sort_by_key(|c| models.iter().position(|m| m.precision == c.precision));
    let h = crate::health::sample(std::time::Instant::now(), &crate::pipeline::Stats::new());
    Ok(BenchReport {
        bundle: bundle.display().to_string(),
        cpu: cpu_model(),
        cpu_mhz: h.cpu_mhz,
        temperature_c: h.cpu_temp_c,
        configs,
    })
}

/// One configuration being measured: its model, options, state and frames so far.
struct Slot<'a> {
    model: &'a Model,
    threshold: f32,
    min_keep: svit_runtime::MinKeep,
    opts: RunOptions,
    state: svit_runtime::FrameState,
    warmup_ms: f64,
    outs: Vec<svit_runtime::FrameOutput>,
}

fn summarise(
    s: &Slot,
    cfg: &svit_runtime::ModelConfig,
    threads: usize,
    frames: usize,
    warmup: usize,
) -> BenchConfig {
    let outs = &s.outs;
    let col = |f: &dyn Fn(&svit_runtime::FrameOutput) -> f64| {
        Pct::of(&outs.iter().map(f).collect::<Vec<_>>())
    };
    // Totals as the wire defines them (no decode here: the frames are already RGB).
    let times: Vec<StageTimes> = outs.iter().map(|o| stage_times(&o.timings)).collect();
    let of_times = |f: &dyn Fn(&StageTimes) -> u32| {
        Pct::of(&times.iter().map(|t| f(t) as f64 / 1e3).collect::<Vec<_>>())
    };
    let n = outs.len().max(1) as f64;
    let gmacs = outs.iter().map(|o| o.gmacs).sum::<f64>() / n;
    let total = of_times(&StageTimes::total_us);
    let backbone = of_times(&StageTimes::backbone_us);
    let overhead = times
        .iter()
        .map(|t| (t.gates + t.gather_scatter) as f64)
        .sum::<f64>()
        / times
            .iter()
            .map(|t| t.backbone_us() as f64)
            .sum::<f64>()
            .max(1e-9);
    let mut buckets: std::collections::BTreeMap<usize, (usize, f64, f64)> = Default::default();
    for o in outs {
        for (b, &k) in o.kept.iter().enumerate() {
            let e = buckets.entry(k.div_ceil(16) * 16).or_default();
            e.0 += 1;
            e.1 += o.timings.blocks[b];
            e.2 += cfg.block_macs(k) as f64 / 1e9;
        }
    }
    let thr = s.threshold;
    BenchConfig {
        engine: "tract".into(),
        precision: s.model.precision.clone(),
        threshold: thr,
        min_keep: [s.min_keep.first as u32, s.min_keep.last as u32],
        mode: if thr <= 0.0 { "dense" } else { "pruned" }.into(),
        threads: threads as u32,
        frames: frames as u32,
        warmup_frames: warmup as u32,
        warmup_ms: s.warmup_ms,
        backbone_ms: backbone,
        preprocess_ms: col(&|o| o.timings.preprocess),
        embed_ms: col(&|o| o.timings.embed),
        gates_ms: col(&|o| o.timings.gates),
        gather_scatter_ms: col(&|o| o.timings.gather_scatter),
        blocks_ms: (0..cfg.depth)
            .map(|b| col(&|o| o.timings.blocks[b]))
            .collect(),
        head_ms: col(&|o| o.timings.head),
        postprocess_ms: col(&|o| o.timings.postprocess),
        kept_fraction: outs
            .iter()
            .map(|o| o.kept_fraction(cfg.tokens()))
            .sum::<f64>()
            / n,
        kept_per_block: (0..cfg.depth)
            .map(|b| outs.iter().map(|o| o.kept[b] as f64).sum::<f64>() / n)
            .collect(),
        gmacs,
        gflops_per_s: 2.0 * gmacs / (total.mean / 1e3).max(1e-9),
        block_time_vs_k: buckets
            .into_iter()
            .map(|(k, (c, ms, g))| KPoint {
                k: k as u32,
                frames: c as u32,
                block_ms: ms / c as f64,
                block_gmacs: g / c as f64,
            })
            .collect(),
        overhead_fraction: overhead,
        total_ms: total,
    }
}
