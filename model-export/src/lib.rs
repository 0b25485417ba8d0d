//! Library side of `svit-export`, in its four jobs: the candle model (`model`), training
//! (`train`: the loop, targets and losses, weight import), export (`export`: the ONNX writer, int8
//! quantization, gate calibration, bundle writing) and COCO data (`coco`: I/O, training data,
//! COCOeval, evaluating a bundle as the board runs it). The binary only parses arguments.

pub mod coco;
pub mod error;
pub mod export;
pub mod latency;
pub mod model;
pub mod train;

pub use error::{Error, Result};
