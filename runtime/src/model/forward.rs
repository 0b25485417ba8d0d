//! The pruned forward pass, in named steps: `embed` (tokens of the image), then per block
//! `select` (the gate scores all N tokens of the current map; the pruning picks which the block
//! computes) and `block` (gather those rows, run the block's two graphs, scatter back: pruned
//! rows keep their last feature), then `head` on the full map and post-processing. The engine
//! (`engine.rs`) runs each stage graph; what it gives back is checked here, whichever it is.

use std::time::Instant;

use super::frame::{ms, FrameOutput, Pruning, RunOptions, Timings};
use super::state::FrameState;
use crate::error::RunError;
use crate::post::{self, HeadOutputs};
use crate::prune;
use crate::ModelConfig;

/// Runs the frame in `st.input` (already in the embed stage's layout).
pub(super) fn run(
    cfg: &ModelConfig,
    st: &mut FrameState,
    opts: &RunOptions,
) -> Result<FrameOutput, RunError> {
    let n = cfg.tokens();
    let mut t = Timings {
        blocks: Vec::with_capacity(cfg.depth),
        ..Default::default()
    };
    let mut kept = Vec::with_capacity(cfg.depth);
    let mut keep_maps = Vec::new();
    let mut macs = cfg.embed_macs() + cfg.head_macs();

    let t0 = Instant::now();
    embed(st, cfg)?;
    t.embed = ms(t0);

    for b in 0..cfg.depth {
        // None: all tokens.
        let mut keep: Option<Vec<usize>> = None;
        if cfg.gated(b) && opts.pruning != Pruning::Dense {
            let tg = Instant::now();
            let sel = select(st, cfg, b, &opts.pruning)?;
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
        let (block_ms, gather_scatter_ms) = block(st, cfg, b, keep.as_deref())?;
        t.blocks.push(block_ms);
        t.gather_scatter += gather_scatter_ms;
    }

    let th = Instant::now();
    head(st, cfg)?;
    t.head = ms(th);
    let tp = Instant::now();
    let [heat, boxes, coef, protos] = &st.head_out;
    let head = HeadOutputs {
        heat,
        boxes,
        coef,
        protos,
    };
    let detections = post::decode(cfg, &head, &opts.decode)?;
    t.postprocess = ms(tp);
    Ok(FrameOutput {
        detections,
        kept,
        keep_maps,
        gmacs: macs as f64 / 1e9,
        timings: t,
    })
}

/// The input's patch rows -> the token map (`st.map`).
fn embed(st: &mut FrameState, cfg: &ModelConfig) -> Result<(), RunError> {
    let n = cfg.tokens();
    // One row of the embed input per token: its first-stage patches (`embed_layout`).
    if st.input.len() != n * cfg.embed_row() {
        return Err(RunError::Input(format!(
            "{} input values for {n} tokens of a 3x{1}x{1} image",
            st.input.len(),
            cfg.image_size
        )));
    }
    // NaN first: rows an engine left unwritten are caught with the non-finite ones.
    st.map.fill(f32::NAN);
    st.runner.embed(&st.input, &mut st.map)?;
    if st.map.iter().any(|v| !v.is_finite()) {
        return Err(RunError::NonFinite {
            stage: "embed".into(),
        });
    }
    Ok(())
}

/// Gate `b` scores every token of the map (pruned ones included, so they can come back); the
/// pruning picks the tokens block `b` computes, best first.
fn select(
    st: &mut FrameState,
    cfg: &ModelConfig,
    b: usize,
    pruning: &Pruning,
) -> Result<Vec<usize>, RunError> {
    let n = cfg.tokens();
    let mut p_keep = Vec::with_capacity(n);
    st.runner.gate(b, &st.map, &mut p_keep)?;
    if p_keep.len() != n {
        return Err(wrong_size(&format!("gate_{b}")));
    }
    if p_keep.iter().any(|p| !p.is_finite()) {
        return Err(RunError::NonFinite {
            stage: format!("gate_{b}"),
        });
    }
    Ok(match *pruning {
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
        Pruning::Dense => (0..n).collect(),
    })
}

/// Block `b` on the tokens in `keep` (all without it): gather their rows, run the block,
/// scatter its output back into the map. Returns the block's time and the gather/scatter
/// time, in ms.
fn block(
    st: &mut FrameState,
    cfg: &ModelConfig,
    b: usize,
    keep: Option<&[usize]>,
) -> Result<(f64, f64), RunError> {
    let (n, c) = (cfg.tokens(), cfg.dim);
    let k = keep.map_or(n, <[usize]>::len);
    let tb = Instant::now();
    let mut gs = 0.0;
    let input = match keep {
        Some([]) => return Ok((0.0, 0.0)),
        None => &st.map,
        Some(idx) => {
            st.gathered.clear();
            for &i in idx {
                st.gathered.extend_from_slice(&st.map[i * c..(i + 1) * c]);
            }
            gs += ms(tb);
            &st.gathered
        }
    };
    st.block_out.clear();
    st.runner.block(b, input, &mut st.block_out)?;
    let stage = || format!("block_{b}");
    let ys = &st.block_out;
    if ys.len() != k * c {
        return Err(wrong_size(&stage()));
    }
    if ys.iter().any(|v| !v.is_finite()) {
        return Err(RunError::NonFinite { stage: stage() });
    }
    let tsc = Instant::now();
    match keep {
        None => st.map.copy_from_slice(ys),
        Some(idx) => {
            for (y, &i) in ys.chunks_exact(c).zip(idx) {
                st.map[i * c..(i + 1) * c].copy_from_slice(y);
            }
            gs += ms(tsc);
        }
    }
    Ok((ms(tb) - gs, gs))
}

/// The head on the full map. Fills `st.head_out`.
fn head(st: &mut FrameState, cfg: &ModelConfig) -> Result<(), RunError> {
    let n = cfg.tokens();
    st.runner.head(&st.map, &mut st.head_out)?;
    let per_position = [cfg.num_classes, 4, cfg.num_protos, cfg.num_protos];
    let positions = [4 * n, 4 * n, 4 * n, 16 * n];
    for ((o, ch), p) in st.head_out.iter().zip(per_position).zip(positions) {
        if o.len() != ch * p {
            return Err(wrong_size("head"));
        }
    }
    Ok(())
}

/// The error for a stage whose outputs do not have the size the config implies.
pub(super) fn wrong_size(stage: &str) -> RunError {
    RunError::OutputSize {
        stage: stage.into(),
    }
}
