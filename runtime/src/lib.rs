//! Bundle loading and the token-pruned SViT forward pass on tract, shared by `svit-edge` (which
//! runs it on the board) and `svit-export` (which evaluates exactly what the board runs).
//!
//! Architecture invariant: this crate knows nothing of the wire protocol, tokio or cameras.

pub mod budget;
pub mod config;
pub mod crew;
pub mod error;
pub mod files;
pub mod manifest;
pub mod model;
pub mod post;
pub mod preprocess;
pub mod process;
pub mod prune;
pub mod signature;

pub use config::ModelConfig;
pub use error::{BundleError, RunError};
pub use manifest::{Manifest, FORMAT_VERSION};
pub use model::{
    onnx, optimise_graph, pick_precision, precision_choice, DenseGraph, Engine, FrameOutput,
    FrameState, Model, Prepared, Pruning, RunOptions, Timings,
};
pub use post::{DecodeOptions, Detection, Mask};
pub use process::tune_process;
pub use prune::{select_tokens, top_k, MinKeep};
