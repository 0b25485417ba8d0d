//! The library's error: what went wrong, naming the file, option or tensor at hand. The binary
//! adds its own context with `anyhow`.

use svit_runtime::{BundleError, RunError};

use crate::coco::CocoError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input (data, images, weights, options) is not what the work needs; the message
    /// names what and why.
    #[error("{0}")]
    Invalid(String),
    /// A tensor computation failed.
    #[error("tensor computation: {0}")]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Coco(#[from] CocoError),
    /// An ONNX graph tract could not read or optimise.
    #[error("tract: {0}")]
    Tract(String),
    /// Another failure (a file, an image, JSON), with what was being done.
    #[error("{what}: {source}")]
    Context {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<std::io::Error> for Error {
    fn from(source: std::io::Error) -> Self {
        Error::Context {
            what: "I/O".into(),
            source: Box::new(source),
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(source: serde_json::Error) -> Self {
        Error::Context {
            what: "JSON".into(),
            source: Box::new(source),
        }
    }
}

/// `.context(..)` and `.with_context(|| ..)` on results and options, as `anyhow` has them.
pub trait Context<T> {
    fn context(self, what: impl Into<String>) -> Result<T>;
    fn with_context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T>;
}

impl<T, E: std::error::Error + Send + Sync + 'static> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl Into<String>) -> Result<T> {
        self.map_err(|e| Error::Context {
            what: what.into(),
            source: Box::new(e),
        })
    }
    fn with_context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| Error::Context {
            what: what().into(),
            source: Box::new(e),
        })
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, what: impl Into<String>) -> Result<T> {
        self.ok_or_else(|| Error::Invalid(what.into()))
    }
    fn with_context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.ok_or_else(|| Error::Invalid(what().into()))
    }
}

/// Returns `Error::Invalid` with a formatted message.
macro_rules! bail {
    ($($t:tt)*) => {
        return Err($crate::error::Error::Invalid(format!($($t)*)))
    };
}

/// `bail!` unless the condition holds.
macro_rules! ensure {
    ($cond:expr, $($t:tt)*) => {
        if !$cond {
            $crate::error::bail!($($t)*);
        }
    };
}

pub(crate) use {bail, ensure};
