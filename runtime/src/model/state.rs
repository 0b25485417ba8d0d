//! `FrameState`: the spawned tract states, the crew of helper threads and the scratch buffers
//! of one running model, made by `Model::new_state` and reused every frame.

use std::ops::Range;

use tract_onnx::prelude::*;

use super::plans::{Plan, RowStage, State};
use crate::crew::{self, Crew};
use crate::error::{tract_err, RunError};
use crate::manifest::block_stages;
use crate::ModelConfig;

/// Per-thread mutable state of a running model. Create with [`Model::new_state`].
pub struct FrameState {
    pub(super) embed: State,
    pub(super) gates: Vec<Option<State>>,
    pub(super) blocks: Vec<[State; 2]>,
    pub(super) head: State,
    /// Helper threads that take a share of each stage's rows (none on one thread).
    pub(super) crew: Crew,
    /// Each thread's tokens (embed, gates) and grid rows (head); blocks share their K anew.
    pub(super) token_shares: Vec<Range<usize>>,
    pub(super) grid_shares: Vec<Range<usize>>,
    /// The embed stage's `index` input for each share of the tokens.
    pub(super) embed_index: Vec<TValue>,
    pub(super) map: Vec<f32>,
    pub(super) gathered: Vec<f32>,
    pub(super) input: Vec<f32>,
    pub(super) head_out: [Vec<f32>; 4],
}

impl FrameState {
    /// Raw head outputs of the last frame: heat, boxes, coef, protos (for checks and tools).
    pub fn head_outputs(&self) -> &[Vec<f32>; 4] {
        &self.head_out
    }
}

/// The model's stage plans a state is made from.
pub(super) struct Stages<'a> {
    pub embed: &'a RowStage,
    pub gates: &'a [Option<RowStage>],
    pub blocks: &'a [[Plan; 2]],
    pub head: &'a RowStage,
}

impl FrameState {
    /// A state whose stages are shared among `threads` threads (this one and helpers it starts;
    /// no more than a stage of N tokens has shares of `crew::MIN_ROWS`). tract's own matmul
    /// threading stays off (`tune_process`): the runtime shares out tokens instead.
    pub(super) fn new(
        cfg: &ModelConfig,
        stages: Stages,
        threads: usize,
    ) -> Result<FrameState, RunError> {
        let spawn = |p: &Plan, stage: &str| p.spawn().map_err(tract_err(stage));
        let threads = threads.clamp(1, (cfg.tokens() / crew::MIN_ROWS).max(1));
        let token_shares = crew::shares(cfg.tokens(), threads, crew::MIN_ROWS);
        let grid_shares = crew::shares(cfg.grid(), threads, HEAD_MIN_GRID_ROWS);
        // Each thread's embed, gate and head plans are optimised for the size of its share,
        // one plan per distinct size (a thread beyond a stage's shares never runs it).
        let embed_plans = stages.embed.plans_for(&token_shares)?;
        let head_plans = stages.head.plans_for(&grid_shares)?;
        let gate_plans = stages
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
            for (b, [q, a]) in stages.blocks.iter().enumerate() {
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
            blocks: stages
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
}

/// The crew's stage numbers (`Model::new_state`).
pub(super) const EMBED: usize = 0;
pub(super) const HEAD: usize = 1;
pub(super) fn qkv_stage(block: usize) -> usize {
    2 + 2 * block
}
pub(super) fn gate_stage(cfg: &crate::ModelConfig, block: usize) -> usize {
    2 + 2 * cfg.depth + block - cfg.first_gated
}

/// Fewest grid rows of tokens worth handing the head to another thread (4 rows: 64 tokens).
const HEAD_MIN_GRID_ROWS: usize = 4;
