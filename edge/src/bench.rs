//! `svit-edge bench`: per-stage latency of the bundle on this board, dense against pruned,
//! over a sweep of engines, precisions, thresholds and thread counts, and against onnxruntime
//! running the whole dense graph; every configuration on the same frames.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use svit_protocol::bench::{BenchConfig, BenchReport, KPoint};
use svit_protocol::stats::Pct;
use svit_protocol::StageTimes;
use svit_runtime::{DenseGraph, Engine, Model, Pruning, RunOptions};

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

/// What a bench sweeps: every engine, precision, thread count and threshold, on the same
/// frames.
pub struct Sweep<'a> {
    pub engines: &'a [Engine],
    pub precisions: &'a [String],
    pub frames: usize,
    pub warmup: usize,
    /// Empty: the dense pass and the bundle's threshold.
    pub thresholds: &'a [f32],
    pub threads: &'a [usize],
    /// Default: the bundle's.
    pub min_keep: Option<svit_runtime::MinKeep>,
    /// With onnxruntime among the engines, these whole dense graphs (precision, file) run on
    /// it as one graph each: the peer a user would otherwise pick (`mode` "dense-graph").
    pub dense_graphs: &'a [(String, PathBuf)],
}

pub fn run(bundle: &Path, sweep: &Sweep, progress: &dyn Fn(&str)) -> Result<BenchReport> {
    let Sweep {
        engines,
        precisions,
        frames,
        warmup,
        thresholds,
        threads,
        min_keep,
        dense_graphs,
    } = *sweep;
    let mut models: Vec<Model> = Vec::new();
    for &engine in engines {
        for p in precisions {
            progress(&format!("loading {p} graphs into {engine}"));
            let m = Model::load_with(bundle, p, engine)
                .with_context(|| format!("loading {} into {engine}", bundle.display()))?;
            // `auto` may name a precision already on the list.
            if !models
                .iter()
                .any(|o| o.precision == m.precision && o.engine == engine)
            {
                models.push(m);
            }
        }
    }
    let Some(first) = models.first() else {
        anyhow::bail!("no precision or engine to bench");
    };
    let thresholds = first.manifest.defaults.compared_thresholds(thresholds);
    let cfg = first.config().clone();
    let decode = first.default_options().decode;
    let graphs: &[(String, PathBuf)] = if engines.contains(&Engine::OnnxRuntime) {
        dense_graphs
    } else {
        &[]
    };
    let size = cfg.image_size;
    // The same frames for every configuration.
    let scfg = svit_scenes::SceneConfig::square(size);
    let distinct = frames.clamp(1, 64);
    let images: Vec<Vec<u8>> = (0..distinct)
        .map(|i| svit_scenes::generate(&scfg, 777, i as u64).rgb)
        .collect();
    let mut configs = Vec::new();
    for &th in threads {
        // The configurations of this thread count take turns, ten frames each, so that a drift
        // in the machine's speed (this one is shared and noisy) reaches all of them alike and
        // the ratios between them hold. Ten, not one: a board runs one configuration with its
        // weights in cache, and a frame after another configuration's starts colder.
        let mut slots = Vec::new();
        for model in &models {
            let min_keep = min_keep.unwrap_or(model.manifest.defaults.min_keep);
            for &thr in &thresholds {
                let opts = RunOptions {
                    pruning: Pruning::at(thr, min_keep),
                    ..model.default_options()
                };
                let pass = Pass::Staged {
                    model,
                    state: model.new_state(th)?,
                    opts,
                };
                let what = format!("{} {}, threshold {thr}", model.engine, model.precision);
                slots.push(Slot::warm(
                    pass, &what, thr, min_keep, th, warmup, &images, progress,
                )?);
            }
        }
        for (precision, path) in graphs {
            let graph = DenseGraph::load(bundle, path, th)
                .with_context(|| format!("loading {} into onnxruntime", path.display()))?;
            let pass = Pass::Graph {
                graph,
                decode,
                precision: precision.clone(),
            };
            let what = format!("onnxruntime {precision} dense graph {}", path.display());
            let mk = min_keep.unwrap_or(first.manifest.defaults.min_keep);
            slots.push(Slot::warm(
                pass, &what, 0.0, mk, th, warmup, &images, progress,
            )?);
        }
        progress(&format!(
            "threads {th}: {} configurations, {frames} frames each",
            slots.len()
        ));
        const TURN: usize = 10;
        for start in (0..frames).step_by(TURN) {
            for s in &mut slots {
                for i in start..frames.min(start + TURN) {
                    let out = s.pass.run(&images[i % distinct], size)?;
                    s.outs.push(out);
                }
            }
        }
        for s in slots {
            configs.push(summarise(&s, &cfg, th, frames, warmup));
        }
    }
    // Reported per engine, precision, then thread count, then threshold (the order of the
    // flags); the dense graphs last.
    let order = |c: &BenchConfig| {
        models
            .iter()
            .position(|m| m.precision == c.precision && m.engine.name() == c.engine)
            .filter(|_| c.mode != DENSE_GRAPH)
            .unwrap_or(models.len())
    };
    configs.sort_by_key(order);
    let h = crate::health::sample(std::time::Instant::now(), &crate::pipeline::Stats::new());
    Ok(BenchReport {
        bundle: bundle.display().to_string(),
        cpu: cpu_model(),
        cpu_mhz: h.cpu_mhz,
        temperature_c: h.cpu_temp_c,
        configs,
    })
}

/// The `mode` of a whole dense graph's rows.
pub const DENSE_GRAPH: &str = "dense-graph";

/// What one configuration runs a frame with (a few per bench: their size does not matter).
#[allow(clippy::large_enum_variant)]
enum Pass<'a> {
    /// The bundle's stage graphs, pruned or dense, on an engine.
    Staged {
        model: &'a Model,
        state: svit_runtime::FrameState,
        opts: RunOptions,
    },
    /// A whole dense graph on onnxruntime.
    Graph {
        graph: DenseGraph,
        decode: svit_runtime::DecodeOptions,
        precision: String,
    },
}

impl Pass<'_> {
    fn run(&mut self, image: &[u8], size: usize) -> Result<svit_runtime::FrameOutput> {
        Ok(match self {
            Pass::Staged { model, state, opts } => model.run_rgb(state, image, size, size, opts)?,
            Pass::Graph { graph, decode, .. } => graph.run_rgb(image, size, size, decode)?,
        })
    }

    /// (engine, precision, mode) as the report names them.
    fn names(&self, threshold: f32) -> (&str, &str, &str) {
        match self {
            Pass::Staged { model, .. } => (
                model.engine.name(),
                &model.precision,
                if threshold <= 0.0 { "dense" } else { "pruned" },
            ),
            Pass::Graph { precision, .. } => ("onnxruntime", precision, DENSE_GRAPH),
        }
    }
}

/// One configuration being measured: how it runs a frame, and its frames so far.
struct Slot<'a> {
    pass: Pass<'a>,
    threshold: f32,
    min_keep: svit_runtime::MinKeep,
    warmup_ms: f64,
    outs: Vec<svit_runtime::FrameOutput>,
}

impl<'a> Slot<'a> {
    /// `pass` after `warmup` frames.
    #[allow(clippy::too_many_arguments)]
    fn warm(
        mut pass: Pass<'a>,
        what: &str,
        threshold: f32,
        min_keep: svit_runtime::MinKeep,
        threads: usize,
        warmup: usize,
        images: &[Vec<u8>],
        progress: &dyn Fn(&str),
    ) -> Result<Slot<'a>> {
        progress(&format!("{what}, threads {threads}: warm-up"));
        let size = (images[0].len() / 3).isqrt();
        let t0 = std::time::Instant::now();
        for i in 0..warmup {
            pass.run(&images[i % images.len()], size)?;
        }
        Ok(Slot {
            pass,
            threshold,
            min_keep,
            warmup_ms: t0.elapsed().as_secs_f64() * 1e3,
            outs: Vec::new(),
        })
    }
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
    // A dense graph's one "block" is the whole graph: no time per block.
    for o in outs
        .iter()
        .filter(|o| o.timings.blocks.len() == o.kept.len())
    {
        for (b, &k) in o.kept.iter().enumerate() {
            let e = buckets.entry(k.div_ceil(16) * 16).or_default();
            e.0 += 1;
            e.1 += o.timings.blocks[b];
            e.2 += cfg.block_macs(k) as f64 / 1e9;
        }
    }
    let thr = s.threshold;
    let (engine, precision, mode) = s.pass.names(thr);
    let blocks = outs.first().map_or(0, |o| o.timings.blocks.len());
    BenchConfig {
        engine: engine.into(),
        precision: precision.into(),
        threshold: thr,
        min_keep: [s.min_keep.first as u32, s.min_keep.last as u32],
        mode: mode.into(),
        threads: threads as u32,
        frames: frames as u32,
        warmup_frames: warmup as u32,
        warmup_ms: s.warmup_ms,
        backbone_ms: backbone,
        preprocess_ms: col(&|o| o.timings.preprocess),
        embed_ms: col(&|o| o.timings.embed),
        gates_ms: col(&|o| o.timings.gates),
        gather_scatter_ms: col(&|o| o.timings.gather_scatter),
        blocks_ms: (0..blocks).map(|b| col(&|o| o.timings.blocks[b])).collect(),
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

/// The report as a table: each row's backbone speed-up against the dense pass of the same
/// engine, precision and threads, and its total against onnxruntime's whole dense graph (f32,
/// and int8 where it ran) on the same threads.
pub fn print(report: &BenchReport) {
    println!("cpu: {}", report.cpu);
    println!(
        "{:>11} {:>9} {:>7} {:>9} {:>11} {:>10} {:>10} {:>10} {:>8} {:>9} {:>9} {:>6} {:>6} {:>8}",
        "engine",
        "precision",
        "threads",
        "threshold",
        "mode",
        "total p50",
        "total p95",
        "backbone",
        "speedup",
        "vs ort f32",
        "vs ort i8",
        "kept",
        "GMACs",
        "overhead"
    );
    let find = |c: &BenchConfig, mode: &str, engine: &str, precision: &str| {
        report.configs.iter().find(|d| {
            d.mode == mode
                && d.engine == engine
                && d.precision == precision
                && d.threads == c.threads
        })
    };
    let ratio = |x: f64, y: f64| format!("{:.2}x", x / y);
    for c in &report.configs {
        // Without the row to compare with there is no ratio.
        let speedup = find(c, "dense", &c.engine, &c.precision)
            .filter(|_| c.mode != DENSE_GRAPH)
            .map_or("-".into(), |d| {
                ratio(d.backbone_ms.mean, c.backbone_ms.mean)
            });
        let [vs_f32, vs_i8] = ["f32", "int8"].map(|p| {
            find(c, DENSE_GRAPH, "onnxruntime", p)
                .map_or("-".into(), |d| ratio(d.total_ms.mean, c.total_ms.mean))
        });
        println!(
            "{:>11} {:>9} {:>7} {:>9.2} {:>11} {:>10.2} {:>10.2} {:>10.2} {:>8} {:>9} {:>9} {:>6.3} {:>6.3} {:>7.1}%",
            c.engine,
            c.precision,
            c.threads,
            c.threshold,
            c.mode,
            c.total_ms.p50,
            c.total_ms.p95,
            c.backbone_ms.mean,
            speedup,
            vs_f32,
            vs_i8,
            c.kept_fraction,
            c.gmacs,
            100.0 * c.overhead_fraction
        );
    }
}
