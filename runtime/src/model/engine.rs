//! Which library runs the stage graphs (`--engine`), and what the pruned pass asks of it.
//!
//! The pass itself (`forward.rs`: token selection, gather/scatter, the checks on every output)
//! is one, whatever the engine; an engine only runs a stage graph on the rows it is given. tract
//! is the default (it is what the board build was tuned on); onnxruntime runs the same ONNX
//! stage graphs with its own kernels, its library loaded at run time (`onnxruntime.rs`).

use std::fmt;
use std::str::FromStr;

use crate::error::RunError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Tract,
    OnnxRuntime,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Tract => "tract",
            Engine::OnnxRuntime => "onnxruntime",
        }
    }

    /// `tract`, `onnxruntime` (or `ort`), or `auto`: onnxruntime where its library loads, else
    /// tract.
    pub fn choose(choice: &str) -> Result<Engine, String> {
        match choice {
            "auto" => Ok(if super::onnxruntime::library().is_ok() {
                Engine::OnnxRuntime
            } else {
                Engine::Tract
            }),
            other => other.parse(),
        }
    }
}

impl FromStr for Engine {
    type Err = String;
    fn from_str(s: &str) -> Result<Engine, String> {
        match s {
            "tract" => Ok(Engine::Tract),
            "onnxruntime" | "ort" => Ok(Engine::OnnxRuntime),
            _ => Err(format!(
                "unknown engine {s:?}: expected tract, onnxruntime or auto"
            )),
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.name())
    }
}

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
