//! Which library runs the stage graphs (`--engine`), and where in a bundle it finds them.
//!
//! The pass itself (`forward.rs`: token selection, gather/scatter, the checks on every output)
//! is one, whatever the engine; an engine only runs a stage graph on the rows it is given. tract
//! is the default (it is what the board build was tuned on); onnxruntime runs the same ONNX
//! stage graphs with its own kernels, its library loaded at run time (`onnxruntime.rs`).

use std::fmt;
use std::str::FromStr;

use crate::manifest::Manifest;

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

/// Where a bundle keeps int8 stage graphs in the form onnxruntime runs fastest: its own dynamic
/// quantizer's (`scripts/ort_quantize.py stages`). tract's int8 graphs (`int8/`, calibrated
/// QLinearMatMul) run on onnxruntime too, at a third of the speed (QUANTIZATION.md).
pub const ORT_INT8_DIR: &str = "ort-int8";

impl Engine {
    /// The bundle directory of `precision`'s stage graphs for this engine.
    pub fn graph_dir(self, manifest: &Manifest, precision: &str) -> String {
        let ort_form = format!("{ORT_INT8_DIR}/embed.onnx");
        if self == Engine::OnnxRuntime
            && precision == "int8"
            && manifest.files.contains_key(&ort_form)
        {
            ORT_INT8_DIR.into()
        } else {
            precision.into()
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
