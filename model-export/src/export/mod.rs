//! From a trained checkpoint to a bundle: the ONNX writer (`onnx`, with its int8 and f16
//! forms), int8 calibration and weight folding (`quant`), gate calibration (`gatecal`), and
//! the bundle itself (`bundle`).

pub mod bundle;
pub mod gatecal;
pub mod onnx;
pub mod quant;
