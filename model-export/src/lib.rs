//! Library side of `svit-export`: the candle model and its training, COCO I/O, the ONNX writer,
//! bundle export and evaluation. The binary in `main.rs` only parses arguments.

pub mod bundle;
pub mod coco;
pub mod cocodata;
pub mod cocoeval;
pub mod eval;
pub mod gatecal;
pub mod import;
pub mod model;
pub mod onnx;
pub mod quant;
pub mod targets;
pub mod train;
