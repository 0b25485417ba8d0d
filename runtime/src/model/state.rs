//! `FrameState`: one running model's engine states (`Runner`) and the scratch buffers of the
//! pruned pass, made by `Model::new_state` and reused every frame.

use super::runner::Runner;
use crate::ModelConfig;

/// Per-thread mutable state of a running model. Create with [`Model::new_state`].
///
/// [`Model::new_state`]: super::Model::new_state
pub struct FrameState {
    pub(super) runner: Box<dyn Runner>,
    pub(super) map: Vec<f32>,
    pub(super) gathered: Vec<f32>,
    pub(super) block_out: Vec<f32>,
    pub(super) input: Vec<f32>,
    pub(super) head_out: [Vec<f32>; 4],
}

impl FrameState {
    pub(super) fn new(cfg: &ModelConfig, runner: Box<dyn Runner>) -> FrameState {
        let (n, c) = (cfg.tokens(), cfg.dim);
        FrameState {
            runner,
            map: vec![0.0; n * c],
            gathered: Vec::with_capacity(n * c),
            block_out: Vec::with_capacity(n * c),
            input: Vec::with_capacity(3 * cfg.image_size * cfg.image_size),
            head_out: Default::default(),
        }
    }

    /// Raw head outputs of the last frame: heat, boxes, coef, protos (for checks and tools).
    pub fn head_outputs(&self) -> &[Vec<f32>; 4] {
        &self.head_out
    }
}
