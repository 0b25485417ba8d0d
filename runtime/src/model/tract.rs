//! The tract engine: each stage graph optimised once (`plans.rs`), spawned into states per
//! frame state, and every stage shared out by rows among the crew's threads (`crew.rs`).

use std::ops::Range;

use tract_onnx::prelude::*;

use super::plans::{load_plan, Plan, RowStage, State};
use super::runner::Runner;
use crate::crew::{self, Crew};
use crate::error::{tract_err, BundleError, RunError};
use crate::files::BundleFiles;
use crate::manifest::{block_stages, stage_files};
use crate::ModelConfig;

/// Fewest grid rows of tokens worth handing the head to another thread (4 rows: 64 tokens).
const HEAD_MIN_GRID_ROWS: usize = 4;

/// The crew's stage numbers: `EMBED`, `HEAD`, then `qkv_stage(b)`, its block after it, then
/// the gates (which share the tokens as the embed does).
const EMBED: usize = 0;
const HEAD: usize = 1;
fn qkv_stage(block: usize) -> usize {
    2 + 2 * block
}

/// A bundle's stage graphs as tract plans (immutable, shared by every frame state).
pub(super) struct TractStages {
    embed: RowStage,
    /// Indexed by block; `None` for ungated blocks.
    gates: Vec<Option<RowStage>>,
    /// Per block: its `qkv` and `block` graphs (the row-wise halves, `crew.rs`).
    blocks: Vec<[Plan; 2]>,
    head: RowStage,
}

impl TractStages {
    pub(super) fn load(
        files: &BundleFiles,
        cfg: &ModelConfig,
        precision: &str,
    ) -> Result<TractStages, BundleError> {
        let stages = stage_files(cfg, precision);
        let plan = |rel: &str| load_plan(files, rel);
        let embed = RowStage::load(files, &stages[0], "K", cfg.tokens())?;
        let gates = (0..cfg.depth)
            .map(|b| {
                cfg.gated(b)
                    .then(|| {
                        let rel = format!("{precision}/gate_{b}.onnx");
                        RowStage::load(files, &rel, "K", cfg.tokens())
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
        let head = RowStage::load(files, &format!("{precision}/head.onnx"), "R", cfg.grid())?;
        Ok(TractStages {
            embed,
            gates,
            blocks,
            head,
        })
    }

    /// A runner whose stages are shared among `threads` threads (this one and helpers it
    /// starts; no more than a stage of N tokens has shares of `crew::MIN_ROWS`). tract's own
    /// matmul threading stays off (`tune_process`): the runtime shares out tokens instead.
    pub(super) fn runner(
        &self,
        cfg: &ModelConfig,
        threads: usize,
    ) -> Result<TractRunner, RunError> {
        let spawn = |p: &Plan, stage: &str| p.spawn().map_err(tract_err(stage));
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
        // The crew's stage numbering (`EMBED`, `HEAD`, `qkv_stage`, then the gates in order).
        let mut gate_stage = vec![None; cfg.depth];
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
        for (i, (name, _)) in own.iter().enumerate() {
            if let Some(b) = name
                .strip_prefix("gate_")
                .and_then(|b| b.parse::<usize>().ok())
            {
                gate_stage[b] = Some(i);
            }
        }
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
        Ok(TractRunner {
            embed: spawn(&own[EMBED].1, "embed")?,
            gates: gate_stage
                .iter()
                .map(|s| {
                    s.map(|i| spawn(&own[i].1, &own[i].0).map(|st| (i, st)))
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
            head: spawn(&own[HEAD].1, "head")?,
            crew: Crew::new(threads, plans_for)?,
            token_shares,
            grid_shares,
            embed_index,
            row: cfg.embed_row(),
            dim: cfg.dim,
            grid: cfg.grid(),
        })
    }
}

/// One frame state's tract states, the crew of helper threads, and how rows are shared.
pub(super) struct TractRunner {
    embed: State,
    /// Per block: the gate's crew stage number and state; `None` for ungated blocks.
    gates: Vec<Option<(usize, State)>>,
    blocks: Vec<[State; 2]>,
    head: State,
    /// Helper threads that take a share of each stage's rows (none on one thread).
    crew: Crew,
    /// Each thread's tokens (embed, gates) and grid rows (head); blocks share their K anew.
    token_shares: Vec<Range<usize>>,
    grid_shares: Vec<Range<usize>>,
    /// The embed stage's `index` input for each share of the tokens.
    embed_index: Vec<TValue>,
    row: usize,
    dim: usize,
    grid: usize,
}

impl Runner for TractRunner {
    fn embed(&mut self, input: &[f32], map: &mut [f32]) -> Result<(), RunError> {
        let row = self.row;
        let inputs = self
            .token_shares
            .iter()
            .zip(&self.embed_index)
            .map(|(r, index)| {
                let patches =
                    tensor_from(&[1, r.len(), row], rows(input, r, row, "embed")?, "embed")?;
                Ok(tvec!(patches.into(), index.clone()))
            })
            .collect::<Result<_, RunError>>()?;
        let outs = self.crew.run(EMBED, &mut self.embed, inputs)?;
        let mut at = 0;
        for o in &outs {
            let y = f32s(output(o, 0, "embed")?).map_err(tract_err("embed"))?;
            map.get_mut(at..at + y.len())
                .ok_or_else(|| super::forward::wrong_size("embed"))?
                .copy_from_slice(y);
            at += y.len();
        }
        Ok(())
    }

    fn gate(&mut self, b: usize, map: &[f32], p_keep: &mut Vec<f32>) -> Result<(), RunError> {
        let c = self.dim;
        let (stage, gate) = self.gates[b]
            .as_mut()
            .ok_or_else(|| RunError::Input(format!("block {b} has no gate")))?;
        let name = self.crew.name(*stage);
        let inputs = self
            .token_shares
            .iter()
            .map(|r| {
                let x = rows(map, r, c, name)?;
                Ok(tvec!(tensor_from(&[1, r.len(), c], x, name)?.into()))
            })
            .collect::<Result<_, RunError>>()?;
        let outs = self.crew.run(*stage, gate, inputs)?;
        for o in &outs {
            let probs = f32s(output(o, 0, name)?).map_err(tract_err(name))?;
            p_keep.extend(probs.chunks_exact(2).map(|p| p[0]));
        }
        Ok(())
    }

    /// `qkv` on each thread's share of the rows, the shares' keys and values joined, then
    /// `block` on each share.
    fn block(&mut self, b: usize, rows_in: &[f32], out: &mut Vec<f32>) -> Result<(), RunError> {
        let c = self.dim;
        let crew = &self.crew;
        let (name, stage) = (crew.name(qkv_stage(b)), crew.name(qkv_stage(b) + 1));
        let [qkv_state, block_state] = &mut self.blocks[b];
        let xs = crew::shares(rows_in.len() / c, crew.threads(), crew::MIN_ROWS)
            .into_iter()
            .map(|r| {
                tensor_from(&[1, r.len(), c], rows(rows_in, &r, c, stage)?, stage).map(TValue::from)
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
        for o in &outs {
            out.extend_from_slice(f32s(output(o, 0, stage)?).map_err(tract_err(stage))?);
        }
        Ok(())
    }

    /// In whole grid rows of tokens; each share's outputs are a contiguous run of every
    /// output's positions.
    fn head(&mut self, map: &[f32], out: &mut [Vec<f32>; 4]) -> Result<(), RunError> {
        let gc = self.grid * self.dim;
        let inputs = self
            .grid_shares
            .iter()
            .map(|r| {
                let x = tensor_from(&[1, r.len(), gc], rows(map, r, gc, "head")?, "head")?;
                Ok(tvec!(x.into()))
            })
            .collect::<Result<_, RunError>>()?;
        let outs = self.crew.run(HEAD, &mut self.head, inputs)?;
        for (i, dst) in out.iter_mut().enumerate() {
            dst.clear();
            for o in &outs {
                dst.extend_from_slice(f32s(output(o, i, "head")?).map_err(tract_err("head"))?);
            }
        }
        Ok(())
    }
}

/// Rows `r` of `width` values each, or a size error naming the stage.
fn rows<'a>(
    x: &'a [f32],
    r: &Range<usize>,
    width: usize,
    stage: &str,
) -> Result<&'a [f32], RunError> {
    x.get(r.start * width..r.end * width)
        .ok_or_else(|| super::forward::wrong_size(stage))
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

fn f32s(t: &Tensor) -> TractResult<&[f32]> {
    t.try_as_plain_ram()?.as_slice::<f32>()
}

fn tensor_from(shape: &[usize], data: &[f32], stage: &str) -> Result<Tensor, RunError> {
    Tensor::from_shape(shape, data).map_err(tract_err(stage))
}
