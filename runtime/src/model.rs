//! `Model` (immutable, optimised stage plans; `Send + Sync`) and `FrameState` (spawned tract
//! states and scratch buffers, reused every frame): the pruned SViT forward pass.
//!
//! Per frame: embed -> for each block: gate scores all N tokens of the current map (pruned ones
//! included, so they can come back) -> keep `p_keep >= threshold` (at least `min_keep`) ->
//! gather K rows -> block on K tokens -> scatter back (pruned rows keep their last feature)
//! -> head on the full map -> post-processing.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tract_onnx::prelude::*;

use crate::crew::{self, Crew};
use crate::error::{tract_err, BundleError, RunError};
use crate::files::BundleFiles;
use crate::manifest::{block_stages, stage_files, Manifest};
use crate::post::{self, Detection, HeadOutputs};
use crate::preprocess::Layout;
use crate::prune::{self, MinKeep};

type Plan = Arc<TypedRunnableModel>;
type State = TypedSimpleState;

/// How a frame decides which tokens each gated block computes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pruning {
    /// SViT's dynamic rate: `p_keep >= threshold`, at least `min_keep`. Threshold 0 is dense.
    Threshold { threshold: f32, min_keep: MinKeep },
    /// Ablation / latency control: the top `ratio * N` tokens at every gated block.
    Ratio(f32),
    /// Every block on all tokens, gates not run.
    Dense,
}

impl Pruning {
    /// The mode a pruning threshold stands for: 0 (or below) is the dense pass.
    pub fn at(threshold: f32, min_keep: MinKeep) -> Self {
        if threshold <= 0.0 {
            Pruning::Dense
        } else {
            Pruning::Threshold {
                threshold,
                min_keep,
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct RunOptions {
    pub pruning: Pruning,
    pub decode: post::DecodeOptions,
}

/// Wall time of each stage of one frame, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timings {
    pub preprocess: f64,
    pub embed: f64,
    pub gates: f64,
    pub gather_scatter: f64,
    pub blocks: Vec<f64>,
    pub head: f64,
    pub postprocess: f64,
}

#[derive(Clone, Debug)]
pub struct FrameOutput {
    pub detections: Vec<Detection>,
    /// Tokens computed by each block.
    pub kept: Vec<usize>,
    /// Per gated block: which of the N tokens it computed (row-major grid), for heatmaps.
    pub keep_maps: Vec<Vec<bool>>,
    /// Executed multiply-accumulates, counted from each block's K.
    pub gmacs: f64,
    pub timings: Timings,
}

impl FrameOutput {
    /// SViT's kept fraction: sum over blocks of K / (N * blocks), ungated blocks counting 1.
    pub fn kept_fraction(&self, tokens: usize) -> f64 {
        self.kept.iter().sum::<usize>() as f64 / (tokens * self.kept.len().max(1)) as f64
    }
}

pub struct Model {
    pub manifest: Manifest,
    pub dir: PathBuf,
    pub precision: String,
    embed: RowStage,
    /// Indexed by block; `None` for ungated blocks.
    gates: Vec<Option<RowStage>>,
    /// Per block: its `qkv` and `block` graphs (the row-wise halves, `crew.rs`).
    blocks: Vec<[Plan; 2]>,
    head: RowStage,
    /// Where each input value goes for the embed stage (`ModelConfig::embed_layout`).
    layout: Layout,
}

/// A frame resized and normalised to the model input (`Model::prepare`), in the embed
/// stage's layout.
pub struct Prepared {
    input: Vec<f32>,
    width: usize,
    height: usize,
    preprocess_ms: f64,
}

impl Prepared {
    /// The frame's buffer (after `run_prepared`, the state's previous one), to hand to the
    /// next `prepare` so a frame loop allocates no new input buffers.
    pub fn into_buffer(self) -> Vec<f32> {
        self.input
    }
}

/// Per-thread mutable state of a running model. Create with [`Model::new_state`].
pub struct FrameState {
    embed: State,
    gates: Vec<Option<State>>,
    blocks: Vec<[State; 2]>,
    head: State,
    /// Helper threads that take a share of each stage's rows (none on one thread).
    crew: Crew,
    /// Each thread's tokens (embed, gates) and grid rows (head); blocks share their K anew.
    token_shares: Vec<Range<usize>>,
    grid_shares: Vec<Range<usize>>,
    /// The embed stage's `index` input for each share of the tokens.
    embed_index: Vec<TValue>,
    map: Vec<f32>,
    gathered: Vec<f32>,
    input: Vec<f32>,
    head_out: [Vec<f32>; 4],
}

impl FrameState {
    /// Raw head outputs of the last frame: heat, boxes, coef, protos (for checks and tools).
    pub fn head_outputs(&self) -> &[Vec<f32>; 4] {
        &self.head_out
    }
}

/// A stage graph that is row-wise in its one symbol (embed: tokens `K`; head: grid rows `R`),
/// kept unoptimised so that each thread's share gets a plan optimised for its exact size.
/// With the size left symbolic, tract puts a matmul's concrete side (the channels) on its
/// kernel's 64-row tile, half idle for the stem's 32 channels: embed 1.20 -> 1.45 ms, head
/// 1.13 -> 1.38 ms on one thread (`examples/stageprof`).
struct RowStage {
    typed: TypedModel,
    symbol: &'static str,
    rows: usize,
    /// The plan for all `rows` rows (one thread).
    full: Plan,
}

impl RowStage {
    fn load(
        files: &BundleFiles,
        rel: &str,
        symbol: &'static str,
        rows: usize,
    ) -> Result<RowStage, BundleError> {
        let graph = graph_error(files, rel);
        let bytes = files.read(rel)?;
        let typed = tract_onnx::onnx()
            .model_for_read(&mut &bytes[..])
            .and_then(|m| m.into_typed())
            .map_err(&graph)?;
        let full = concrete(&typed, symbol, rows).map_err(&graph)?;
        Ok(RowStage {
            typed,
            symbol,
            rows,
            full,
        })
    }

    fn plan(&self, rows: usize) -> Result<Plan, RunError> {
        if rows == self.rows {
            return Ok(self.full.clone());
        }
        concrete(&self.typed, self.symbol, rows).map_err(tract_err(self.symbol))
    }

    /// A plan for each distinct size among `shares`, by size.
    fn plans_for(&self, shares: &[Range<usize>]) -> Result<HashMap<usize, Plan>, RunError> {
        let mut plans = HashMap::new();
        for r in shares {
            if let std::collections::hash_map::Entry::Vacant(e) = plans.entry(r.len()) {
                e.insert(self.plan(r.len())?);
            }
        }
        Ok(plans)
    }
}

fn concrete(typed: &TypedModel, symbol: &str, rows: usize) -> TractResult<Plan> {
    let subs = HashMap::from([(typed.symbols.sym(symbol), TDim::from(rows as i64))]);
    typed.set_symbols(&subs)?.into_optimized()?.into_runnable()
}

fn load_plan(files: &BundleFiles, rel: &str) -> Result<Plan, BundleError> {
    let bytes = files.read(rel)?;
    optimise_graph(&bytes)
        .and_then(|m| m.into_runnable())
        .map_err(graph_error(files, rel))
}

/// tract's error about bundle file `rel`, as the bundle error naming that file.
fn graph_error(files: &BundleFiles, rel: &str) -> impl Fn(TractError) -> BundleError {
    let path = files.display(rel);
    move |e| BundleError::Graph {
        path: path.clone(),
        source: format!("{e:#}").into(),
    }
}

/// The symbolic sizes of the stage graphs: tokens, queries and grid rows.
pub const ROW_SYMBOLS: [&str; 3] = ["K", "Q", "R"];

/// An ONNX stage graph as the runtime optimises it (also for `examples/stageprof`).
pub fn optimise_graph(onnx: &[u8]) -> TractResult<TypedModel> {
    let m = tract_onnx::onnx().model_for_read(&mut &onnx[..])?;
    // A stage never runs on zero tokens, queries or grid rows (min_keep >= 1). Telling tract
    // so lets it prove "K * C > 32" and pick its fast same-shape kernels for the residual adds, which it
    // otherwise leaves as generic broadcasting ops (12% of a block at K = 256).
    for sym in ROW_SYMBOLS {
        if m.symbols.get(sym).is_some() {
            m.symbols.add_assertion(format!("{sym}>=1"))?;
        }
    }
    m.into_optimized()
}

/// `--precision auto`: int8 where the CPU has 8-bit dot products (x86 VNNI, Arm `dotprod`),
/// else f16 where it has fp16 arithmetic (Cortex-A76/A78), else f32; only among what the
/// bundle has.
pub fn pick_precision(available: &[String]) -> String {
    let has = |p: &str| available.iter().any(|a| a == p);
    #[cfg(target_arch = "x86_64")]
    let (dot, fp16) = (
        std::arch::is_x86_feature_detected!("avx512vnni"),
        false, // x86 has no fp16 arithmetic tract uses: f16 would be emulated, slower than f32
    );
    #[cfg(target_arch = "aarch64")]
    let (dot, fp16) = (
        std::arch::is_aarch64_feature_detected!("dotprod"),
        std::arch::is_aarch64_feature_detected!("fp16"),
    );
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let (dot, fp16) = (false, false);
    if dot && has("int8") {
        "int8".into()
    } else if fp16 && has("f16") {
        "f16".into()
    } else {
        "f32".into()
    }
}

impl Model {
    /// Verifies the bundle (a directory or a `.tar` of one: version, hashes, config) and
    /// optimises every stage graph once.
    pub fn load(dir: &Path, precision: &str) -> Result<Model, BundleError> {
        let files = BundleFiles::open(dir)?;
        let manifest = Manifest::load_verified_from(&files)?;
        let chosen = if precision == "auto" {
            pick_precision(&manifest.precisions)
        } else {
            precision.to_string()
        };
        let precision = chosen.as_str();
        if !manifest.precisions.iter().any(|p| p == precision) {
            return Err(BundleError::Precision {
                requested: precision.into(),
                available: manifest.precisions.clone(),
            });
        }
        let cfg = &manifest.config;
        let stages = stage_files(cfg, precision);
        let plan = |rel: &str| load_plan(&files, rel);
        let embed = RowStage::load(&files, &stages[0], "K", cfg.tokens())?;
        let gates = (0..cfg.depth)
            .map(|b| {
                cfg.gated(b)
                    .then(|| {
                        let rel = format!("{precision}/gate_{b}.onnx");
                        RowStage::load(&files, &rel, "K", cfg.tokens())
                    })
                    .transpose()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let blocks = (0..cfg.depth)
            .map(|b| {
                let [q, a] = block_stages(b);
                Ok([
                    plan(&format!("{precision}/{q}.onnx"))?,
                    plan(&format!("{precision}/{a}.onnx"))?,
                ])
            })
            .collect::<Result<Vec<_>, BundleError>>()?;
        let head = RowStage::load(&files, &format!("{precision}/head.onnx"), "R", cfg.grid())?;
        Ok(Model {
            layout: cfg.embed_layout(),
            manifest,
            dir: dir.to_path_buf(),
            precision: precision.into(),
            embed,
            gates,
            blocks,
            head,
        })
    }

    pub fn config(&self) -> &crate::ModelConfig {
        &self.manifest.config
    }

    pub fn default_options(&self) -> RunOptions {
        let d = &self.manifest.defaults;
        RunOptions {
            pruning: Pruning::Threshold {
                threshold: d.threshold,
                min_keep: d.min_keep,
            },
            decode: post::DecodeOptions {
                score_threshold: d.score_threshold,
                max_detections: 100,
                box_from_mask: d.box_from_mask,
            },
        }
    }

    /// A state whose stages are shared among `threads` threads (this one and helpers it starts;
    /// no more than a stage of N tokens has shares of `crew::MIN_ROWS`). tract's own matmul
    /// threading stays off (`tune_process`): the runtime shares out tokens instead.
    pub fn new_state(&self, threads: usize) -> Result<FrameState, RunError> {
        let spawn = |p: &Plan, stage: &str| p.spawn().map_err(tract_err(stage));
        let cfg = self.config();
        let threads = threads.clamp(1, (cfg.tokens() / crew::MIN_ROWS).max(1));
        let token_shares = crew::shares(cfg.tokens(), threads, crew::MIN_ROWS);
        let grid_shares = crew::shares(cfg.grid(), threads, HEAD_MIN_GRID_ROWS);
        // Each thread's embed, gate and head plans are optimised for the size of its share,
        // one plan per distinct size (a thread beyond a stage's shares never runs it).
        let embed_plans = self.embed.plans_for(&token_shares)?;
        let head_plans = self.head.plans_for(&grid_shares)?;
        let gate_plans = self
            .gates
            .iter()
            .map(|g| g.as_ref().map(|g| g.plans_for(&token_shares)).transpose())
            .collect::<Result<Vec<_>, _>>()?;
        let size = |s: &[Range<usize>], i: usize| s.get(i).unwrap_or(&s[0]).len();
        // The crew's stage numbering: `EMBED`, `HEAD`, then `qkv_stage(b)`, its block after it,
        // then `gate_stage(b)` (gates share the tokens as the embed does).
        let plans_for = |share: usize| -> Vec<(String, Plan)> {
            let tokens = size(&token_shares, share);
            let mut v = vec![
                ("embed".to_string(), embed_plans[&tokens].clone()),
                (
                    "head".to_string(),
                    head_plans[&size(&grid_shares, share)].clone(),
                ),
            ];
            for (b, [q, a]) in self.blocks.iter().enumerate() {
                let [qn, an] = block_stages(b);
                v.push((qn, q.clone()));
                v.push((an, a.clone()));
            }
            for (b, g) in gate_plans.iter().enumerate() {
                if let Some(g) = g {
                    v.push((format!("gate_{b}"), g[&tokens].clone()));
                }
            }
            v
        };
        let own = plans_for(0);
        // The embed stage's token indices (for the position embedding), one tensor per share.
        let embed_index = token_shares
            .iter()
            .map(|r| {
                let index: Vec<i64> = (r.start as i64..r.end as i64).collect();
                Tensor::from_shape(&[r.len()], &index)
                    .map(TValue::from)
                    .map_err(tract_err("embed"))
            })
            .collect::<Result<_, _>>()?;
        Ok(FrameState {
            embed: spawn(&own[EMBED].1, "embed")?,
            gates: (0..cfg.depth)
                .map(|b| {
                    cfg.gated(b)
                        .then(|| spawn(&own[gate_stage(cfg, b)].1, &format!("gate_{b}")))
                        .transpose()
                })
                .collect::<Result<_, _>>()?,
            blocks: self
                .blocks
                .iter()
                .enumerate()
                .map(|(b, [q, a])| {
                    let [qn, an] = block_stages(b);
                    Ok([spawn(q, &qn)?, spawn(a, &an)?])
                })
                .collect::<Result<_, RunError>>()?,
            crew: Crew::new(threads, plans_for)?,
            token_shares,
            grid_shares,
            embed_index,
            head: spawn(&own[HEAD].1, "head")?,
            map: vec![0.0; cfg.tokens() * cfg.dim],
            gathered: Vec::with_capacity(cfg.tokens() * cfg.dim),
            input: Vec::with_capacity(3 * cfg.image_size * cfg.image_size),
            head_out: Default::default(),
        })
    }

    /// Resizes and normalises an RGB frame into `buf` (reused), ready for `run_prepared`. The
    /// board does this on its capture thread, so inference never waits for it.
    pub fn prepare(
        &self,
        rgb: &[u8],
        width: usize,
        height: usize,
        buf: Vec<f32>,
    ) -> Result<Prepared, RunError> {
        if width == 0 || height == 0 {
            return Err(RunError::Input(format!("empty frame ({width}x{height})")));
        }
        if rgb.len() != width * height * 3 {
            return Err(RunError::Input(format!(
                "{} bytes for a {width}x{height} RGB frame (expected {}); is it RGB with 3 channels?",
                rgb.len(),
                width * height * 3
            )));
        }
        let t0 = Instant::now();
        let inp = &self.manifest.input;
        let mut input = buf;
        crate::preprocess::resize_normalise(
            rgb,
            width,
            height,
            &self.layout,
            inp.mean,
            inp.std,
            &mut input,
        );
        Ok(Prepared {
            input,
            width,
            height,
            preprocess_ms: ms(t0),
        })
    }

    /// Runs a prepared frame; boxes and masks come back in the frame's pixels. The frame's
    /// buffer is swapped into the state rather than copied (`p` is left with the old one).
    pub fn run_prepared(
        &self,
        st: &mut FrameState,
        p: &mut Prepared,
        opts: &RunOptions,
    ) -> Result<FrameOutput, RunError> {
        std::mem::swap(&mut st.input, &mut p.input);
        let mut out = self.run_normalised(st, opts)?;
        out.timings.preprocess = p.preprocess_ms;
        let s = self.config().image_size;
        let (sx, sy) = (p.width as f32 / s as f32, p.height as f32 / s as f32);
        for d in &mut out.detections {
            d.rescale(sx, sy);
        }
        Ok(out)
    }

    /// `prepare` then `run_prepared` on one thread.
    pub fn run_rgb(
        &self,
        st: &mut FrameState,
        rgb: &[u8],
        width: usize,
        height: usize,
        opts: &RunOptions,
    ) -> Result<FrameOutput, RunError> {
        let buf = std::mem::take(&mut st.input);
        let mut p = self.prepare(rgb, width, height, buf)?;
        self.run_prepared(st, &mut p, opts)
    }

    /// Runs a normalised image given as CHW planes (3 x size x size).
    pub fn run_tensor(
        &self,
        st: &mut FrameState,
        chw: &[f32],
        opts: &RunOptions,
    ) -> Result<FrameOutput, RunError> {
        let s = self.config().image_size;
        if chw.len() != 3 * s * s {
            return Err(RunError::Input(format!(
                "{} values for a 3x{s}x{s} input",
                chw.len()
            )));
        }
        if chw.iter().any(|v| !v.is_finite()) {
            return Err(RunError::NonFinite {
                stage: "input".into(),
            });
        }
        self.layout.from_chw(chw, &mut st.input);
        self.run_normalised(st, opts)
    }

    fn run_normalised(
        &self,
        st: &mut FrameState,
        opts: &RunOptions,
    ) -> Result<FrameOutput, RunError> {
        let cfg = self.config().clone();
        let (n, c) = (cfg.tokens(), cfg.dim);
        let mut t = Timings {
            blocks: Vec::with_capacity(cfg.depth),
            ..Default::default()
        };
        let mut kept = Vec::with_capacity(cfg.depth);
        let mut keep_maps = Vec::new();
        let mut macs = cfg.embed_macs() + cfg.head_macs();

        let t0 = Instant::now();
        // One row of the embed input per token: its first-stage patches (`embed_layout`).
        let row = cfg.embed_row();
        if st.input.len() != n * row {
            return Err(RunError::Input(format!(
                "{} input values for {n} tokens of a 3x{1}x{1} image",
                st.input.len(),
                cfg.image_size
            )));
        }
        let inputs = st
            .token_shares
            .iter()
            .zip(&st.embed_index)
            .map(|(r, index)| {
                let patches = tensor_from(
                    &[1, r.len(), row],
                    &st.input[r.start * row..r.end * row],
                    "embed",
                )?;
                Ok(tvec!(patches.into(), index.clone()))
            })
            .collect::<Result<_, RunError>>()?;
        let outs = st.crew.run(EMBED, &mut st.embed, inputs)?;
        let mut at = 0;
        for o in &outs {
            let y = f32s(output(o, 0, "embed")?).map_err(tract_err("embed"))?;
            let dst = st
                .map
                .get_mut(at..at + y.len())
                .ok_or_else(|| wrong_size("embed"))?;
            dst.copy_from_slice(y);
            at += y.len();
        }
        if at != st.map.len() {
            return Err(wrong_size("embed"));
        }
        if st.map.iter().any(|v| !v.is_finite()) {
            return Err(RunError::NonFinite {
                stage: "embed".into(),
            });
        }
        t.embed = ms(t0);

        for b in 0..cfg.depth {
            let stage = st.crew.name(qkv_stage(b) + 1);
            let mut keep: Option<Vec<usize>> = None; // None = all tokens
            if let (Some(gate), false) = (st.gates[b].as_mut(), opts.pruning == Pruning::Dense) {
                let tg = Instant::now();
                let inputs = st
                    .token_shares
                    .iter()
                    .map(|r| {
                        let x = &st.map[r.start * c..r.end * c];
                        Ok(tvec!(tensor_from(&[1, r.len(), c], x, "gate")?.into()))
                    })
                    .collect::<Result<_, RunError>>()?;
                let outs = st.crew.run(gate_stage(&cfg, b), gate, inputs)?;
                let mut p_keep = Vec::with_capacity(n);
                let name = st.crew.name(gate_stage(&cfg, b));
                for o in &outs {
                    let probs = f32s(output(o, 0, name)?).map_err(tract_err(name))?;
                    p_keep.extend(probs.chunks_exact(2).map(|p| p[0]));
                }
                if p_keep.len() != n {
                    return Err(wrong_size(name));
                }
                if p_keep.iter().any(|p| !p.is_finite()) {
                    return Err(RunError::NonFinite { stage: name.into() });
                }
                let sel = match opts.pruning {
                    Pruning::Threshold {
                        threshold,
                        min_keep,
                    } => {
                        let gate = b - cfg.first_gated;
                        let floor = min_keep.at(gate, cfg.depth - cfg.first_gated);
                        prune::select_tokens(&p_keep, threshold, floor)
                    }
                    Pruning::Ratio(r) => prune::top_k(
                        &p_keep,
                        ((r.clamp(0.0, 1.0) * n as f32).round() as usize).max(1),
                    ),
                    Pruning::Dense => unreachable!("gates are skipped when dense"),
                };
                macs += cfg.gate_macs();
                let mut m = vec![false; n];
                for &i in &sel {
                    m[i] = true;
                }
                keep_maps.push(m);
                if sel.len() < n {
                    keep = Some(sel);
                }
                t.gates += ms(tg);
            }
            let k = keep.as_ref().map_or(n, Vec::len);
            kept.push(k);
            macs += cfg.block_macs(k);
            let tb = Instant::now();
            let mut gs = 0.0;
            let outs = match &keep {
                Some(idx) if idx.is_empty() => {
                    t.blocks.push(0.0);
                    continue;
                }
                None => run_block(&mut st.blocks[b], &st.crew, b, &st.map, c)?,
                Some(idx) => {
                    st.gathered.clear();
                    for &i in idx {
                        st.gathered.extend_from_slice(&st.map[i * c..(i + 1) * c]);
                    }
                    gs += ms(tb);
                    run_block(&mut st.blocks[b], &st.crew, b, &st.gathered, c)?
                }
            };
            let tsc = Instant::now();
            let mut row = 0;
            for o in &outs {
                let ys = f32s(o).map_err(tract_err(stage))?;
                let rows = ys.len() / c;
                if rows * c != ys.len() || row + rows > k {
                    return Err(wrong_size(stage));
                }
                if ys.iter().any(|v| !v.is_finite()) {
                    return Err(RunError::NonFinite {
                        stage: stage.into(),
                    });
                }
                match &keep {
                    None => st.map[row * c..(row + rows) * c].copy_from_slice(ys),
                    Some(idx) => {
                        for (r, &i) in idx[row..row + rows].iter().enumerate() {
                            st.map[i * c..(i + 1) * c].copy_from_slice(&ys[r * c..(r + 1) * c]);
                        }
                    }
                }
                row += rows;
            }
            if row != k {
                return Err(wrong_size(stage));
            }
            if keep.is_some() {
                gs += ms(tsc);
                t.gather_scatter += gs;
            }
            t.blocks.push(ms(tb) - gs);
        }

        let th = Instant::now();
        // The head is row-wise in whole grid rows of tokens; each share's outputs are a
        // contiguous run of every output's positions.
        let g = cfg.grid();
        let inputs = st
            .grid_shares
            .iter()
            .map(|r| {
                let x = tensor_from(
                    &[1, r.len(), g * c],
                    &st.map[r.start * g * c..r.end * g * c],
                    "head",
                )?;
                Ok(tvec!(x.into()))
            })
            .collect::<Result<_, RunError>>()?;
        let outs = st.crew.run(HEAD, &mut st.head, inputs)?;
        for (i, dst) in st.head_out.iter_mut().enumerate() {
            dst.clear();
            for o in &outs {
                dst.extend_from_slice(f32s(output(o, i, "head")?).map_err(tract_err("head"))?);
            }
        }
        let per_position = [cfg.num_classes, 4, cfg.num_protos, cfg.num_protos];
        let positions = [4 * n, 4 * n, 4 * n, 16 * n];
        for ((o, ch), p) in st.head_out.iter().zip(per_position).zip(positions) {
            if o.len() != ch * p {
                return Err(wrong_size("head"));
            }
        }
        t.head = ms(th);
        let tp = Instant::now();
        let [heat, boxes, coef, protos] = &st.head_out;
        let head = HeadOutputs {
            heat,
            boxes,
            coef,
            protos,
        };
        let detections = post::decode(&cfg, &head, &opts.decode)?;
        t.postprocess = ms(tp);
        Ok(FrameOutput {
            detections,
            kept,
            keep_maps,
            gmacs: macs as f64 / 1e9,
            timings: t,
        })
    }
}

/// The crew's stage numbers (`Model::new_state_on`).
const EMBED: usize = 0;
const HEAD: usize = 1;
fn qkv_stage(block: usize) -> usize {
    2 + 2 * block
}
fn gate_stage(cfg: &crate::ModelConfig, block: usize) -> usize {
    2 + 2 * cfg.depth + block - cfg.first_gated
}

/// Fewest grid rows of tokens worth handing the head to another thread (4 rows: 64 tokens).
const HEAD_MIN_GRID_ROWS: usize = 4;

fn wrong_size(stage: &str) -> RunError {
    RunError::Tract {
        stage: stage.into(),
        source: "its outputs do not have the size the bundle's config implies".into(),
    }
}

/// Output `i` of a stage run, or an error naming the stage if the graph has fewer.
fn output<'a>(outs: &'a TVec<TValue>, i: usize, stage: &str) -> Result<&'a TValue, RunError> {
    outs.get(i).ok_or_else(|| RunError::Tract {
        stage: stage.into(),
        source: format!(
            "the graph has {} outputs, expected at least {}",
            outs.len(),
            i + 1
        )
        .into(),
    })
}

/// Block `b` on `rows` (K x `c`, row-major): `qkv` on each thread's share of the rows, the
/// shares' keys and values joined, then `block` on each share. Its output rows, a tensor per
/// share, in order.
fn run_block(
    states: &mut [State; 2],
    crew: &Crew,
    b: usize,
    rows: &[f32],
    c: usize,
) -> Result<Vec<TValue>, RunError> {
    let (name, stage) = (crew.name(qkv_stage(b)), crew.name(qkv_stage(b) + 1));
    let [qkv_state, block_state] = states;
    let xs = crew::shares(rows.len() / c, crew.threads(), crew::MIN_ROWS)
        .into_iter()
        .map(|r| {
            tensor_from(&[1, r.len(), c], &rows[r.start * c..r.end * c], stage).map(TValue::from)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let qkv = crew.run(
        qkv_stage(b),
        qkv_state,
        xs.iter().map(|x| tvec!(x.clone())).collect(),
    )?;
    let join = |i: usize| -> Result<TValue, RunError> {
        if qkv.len() == 1 {
            return Ok(output(&qkv[0], i, name)?.clone());
        }
        let parts = qkv
            .iter()
            .map(|o| output(o, i, name).map(|t| &**t))
            .collect::<Result<Vec<&Tensor>, _>>()?;
        Tensor::stack_tensors(1, &parts)
            .map(TValue::from)
            .map_err(tract_err(stage))
    };
    let (k, v) = (join(1)?, join(2)?);
    let inputs = xs
        .into_iter()
        .zip(&qkv)
        .map(|(x, o)| Ok(tvec!(x, output(o, 0, name)?.clone(), k.clone(), v.clone())))
        .collect::<Result<_, RunError>>()?;
    let outs = crew.run(qkv_stage(b) + 1, block_state, inputs)?;
    outs.iter().map(|o| output(o, 0, stage).cloned()).collect()
}

fn f32s(t: &Tensor) -> TractResult<&[f32]> {
    t.try_as_plain_ram()?.as_slice::<f32>()
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn tensor_from(shape: &[usize], data: &[f32], stage: &str) -> Result<Tensor, RunError> {
    Tensor::from_shape(shape, data).map_err(tract_err(stage))
}
