//! What one frame is run with (`RunOptions`: the pruning and the decoding) and what comes out
//! (`FrameOutput`: detections, tokens kept per block, GMACs, stage times).

use std::time::Instant;

use crate::error::RunError;
use crate::manifest::InputSpec;
use crate::post::{self, Detection};
use crate::preprocess::Layout;
use crate::prune::MinKeep;

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

/// Milliseconds since `t`.
pub(super) fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// A camera frame (interleaved RGB, `width x height`) checked, then resized and normalised as
/// the bundle's `spec` says into `out` (`resize_normalise`).
pub fn frame_input(
    rgb: &[u8],
    width: usize,
    height: usize,
    layout: &Layout,
    spec: &InputSpec,
    out: &mut Vec<f32>,
) -> Result<(), RunError> {
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
    crate::preprocess::resize_normalise(rgb, width, height, layout, spec.mean, spec.std, out);
    Ok(())
}
