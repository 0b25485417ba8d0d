//! Typed errors of the runtime: each names the file, stage or input at fault.

use std::path::PathBuf;

type Source = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("bundle file {path} is missing")]
    Missing { path: PathBuf },
    #[error("cannot read bundle file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {problem}")]
    Manifest { path: PathBuf, problem: String },
    #[error("{path}: bundle format version {} but this runtime reads version {expected}; re-export the bundle with a matching svit-export", found.map(|v| v.to_string()).unwrap_or_else(|| "missing".into()))]
    Version {
        path: PathBuf,
        found: Option<u64>,
        expected: u32,
    },
    #[error("{path}: SHA-256 mismatch (manifest says {expected}, file has {actual}): the file is corrupt or was changed")]
    Hash {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("bundle has no {requested} graphs; it has: {}", available.join(", "))]
    Precision {
        requested: String,
        available: Vec<String>,
    },
    #[error("{path}: {engine} cannot load or optimise this graph: {source}")]
    Graph {
        path: PathBuf,
        engine: &'static str,
        source: Source,
    },
    /// A bundle signature or key file that does not check out (`signature.rs`).
    #[error("{0}")]
    Signature(String),
    /// onnxruntime's library is missing or unusable (`--engine onnxruntime`).
    #[error("onnxruntime: {0}")]
    OnnxRuntime(String),
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("bad input image: {0}")]
    Input(String),
    #[error("{stage} produced a non-finite value (NaN or infinity): check the input and the bundle weights")]
    NonFinite { stage: String },
    #[error("tract failed in {stage}: {source}")]
    Tract { stage: String, source: Source },
    #[error("onnxruntime failed in {stage}: {source}")]
    OnnxRuntime { stage: String, source: Source },
    #[error("{stage}: its outputs do not have the size the bundle's config implies")]
    OutputSize { stage: String },
}

pub(crate) fn tract_err(
    stage: impl Into<String>,
) -> impl FnOnce(tract_onnx::prelude::TractError) -> RunError {
    let stage = stage.into();
    move |e| RunError::Tract {
        stage,
        source: format!("{e:#}").into(),
    }
}
