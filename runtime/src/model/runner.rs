//! What the pruned pass (`forward.rs`) asks of an engine (`tract.rs`, `onnxruntime.rs`).

use crate::error::RunError;

/// One frame's stage graphs on an engine. Inputs and outputs are row-major f32 rows in the
/// shapes of the bundle's config; `forward.rs` checks sizes and values of what comes back.
pub(super) trait Runner: Send {
    /// The embed stage on the N rows of `input` (`ModelConfig::embed_row` values each), written
    /// into `map` (N x dim).
    fn embed(&mut self, input: &[f32], map: &mut [f32]) -> Result<(), RunError>;
    /// Gate `b` on every row of `map`: each token's keep probability appended to `p_keep`.
    fn gate(&mut self, b: usize, map: &[f32], p_keep: &mut Vec<f32>) -> Result<(), RunError>;
    /// Block `b` on `rows` (K x dim): its K output rows appended to `out`.
    fn block(&mut self, b: usize, rows: &[f32], out: &mut Vec<f32>) -> Result<(), RunError>;
    /// The head on the whole map: heat, boxes, coef and protos, each over every position.
    fn head(&mut self, map: &[f32], out: &mut [Vec<f32>; 4]) -> Result<(), RunError>;
}
