//! The pruned forward pass, in named steps: `embed` (tokens of the image), then per block
//! `select` (the gate scores all N tokens of the current map; the pruning picks which the block
//! computes) and `block` (gather those rows, run the block's two graphs, scatter back: pruned
//! rows keep their last feature), then `head` on the full map and post-processing. Every stage
//! runs on the crew's shares of its rows.

use std::time::Instant;

use tract_onnx::prelude::*;

use super::frame::{ms, FrameOutput, Pruning, RunOptions, Timings};
use super::plans::State;
use super::state::{gate_stage, qkv_stage, FrameState, EMBED, HEAD};
use crate::crew::{self, Crew};
use crate::error::{tract_err, RunError};
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
        if st.gates[b].is_some() && opts.pruning != Pruning::Dense {
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
    let (n, c) = (cfg.tokens(), cfg.dim);
    let gate = st.gates[b]
        .as_mut()
        .ok_or_else(|| RunError::Input(format!("block {b} has no gate")))?;
    let inputs = st
        .token_shares
        .iter()
        .map(|r| {
            let x = &st.map[r.start * c..r.end * c];
            Ok(tvec!(tensor_from(&[1, r.len(), c], x, "gate")?.into()))
        })
        .collect::<Result<_, RunError>>()?;
    let outs = st.crew.run(gate_stage(cfg, b), gate, inputs)?;
    let mut p_keep = Vec::with_capacity(n);
    let name = st.crew.name(gate_stage(cfg, b));
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
    let stage = st.crew.name(qkv_stage(b) + 1);
    let k = keep.map_or(n, <[usize]>::len);
    let tb = Instant::now();
    let mut gs = 0.0;
    let outs = match keep {
        Some([]) => return Ok((0.0, 0.0)),
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
        match keep {
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
    }
    Ok((ms(tb) - gs, gs))
}

/// The head on the full map, in whole grid rows of tokens; each share's outputs are a
/// contiguous run of every output's positions. Fills `st.head_out`.
fn head(st: &mut FrameState, cfg: &ModelConfig) -> Result<(), RunError> {
    let (n, c, g) = (cfg.tokens(), cfg.dim, cfg.grid());
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
    Ok(())
}

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

fn tensor_from(shape: &[usize], data: &[f32], stage: &str) -> Result<Tensor, RunError> {
    Tensor::from_shape(shape, data).map_err(tract_err(stage))
}
