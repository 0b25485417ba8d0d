//! `Model` (immutable, optimised stage plans; `Send + Sync`) and `FrameState` (spawned tract
//! states and scratch buffers, reused every frame): the pruned SViT forward pass.
//!
//! Per frame: embed -> for each block: gate scores all N tokens of the current map (pruned ones
//! included, so they can come back) -> keep `p_keep >= threshold` (at least `min_keep`) ->
//! gather K rows -> block on K tokens -> scatter back (pruned rows keep their last feature)
//! -> head on the full map -> post-processing.

mod dense_graph;
mod engine;
mod forward;
mod frame;
mod onnxruntime;
mod plans;
mod runner;
mod state;
mod tract;

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::{BundleError, RunError};
use crate::files::BundleFiles;
use crate::manifest::Manifest;
use crate::post;
use crate::preprocess::Layout;
use frame::ms;
use onnxruntime::OrtStages;
use tract::TractStages;

pub use dense_graph::DenseGraph;
pub use engine::Engine;
pub use frame::{FrameOutput, Pruning, RunOptions, Timings};
pub use onnxruntime::library as onnxruntime_library;
pub use plans::{onnx, optimise_graph, ROW_SYMBOLS};
pub use state::FrameState;

pub struct Model {
    pub manifest: Manifest,
    pub dir: PathBuf,
    pub precision: String,
    pub engine: Engine,
    /// The bundle folder its stage graphs came from (`Engine::graph_dir`).
    pub graphs: String,
    stages: Stages,
    /// Where each input value goes for the embed stage (`ModelConfig::embed_layout`).
    layout: Layout,
}

/// The stage graphs as the engine holds them.
enum Stages {
    Tract(TractStages),
    OnnxRuntime(OrtStages),
}

/// A frame resized and normalised to the model input (`Model::prepare`), in the embed
/// stage's layout.
#[derive(Default)]
pub struct Prepared {
    input: Vec<f32>,
    width: usize,
    height: usize,
    preprocess_ms: f64,
}

impl Prepared {
    /// The frame's buffer (after `run_prepared`, the state's previous one), to hand to the
    /// next `prepare` so a frame loop allocates no new input buffers.
    pub fn into_buffer(self) -> Vec<f32> {
        self.input
    }
}

/// `--precision auto`: int8 where the CPU has 8-bit dot products (x86 VNNI, Arm `dotprod`),
/// else f16 where it has fp16 arithmetic (Cortex-A76/A78), else f32; only among what the
/// bundle has.
pub fn pick_precision(available: &[String]) -> String {
    precision_choice(available).0
}

/// `pick_precision`'s choice and why, in words (`svit-edge doctor` prints it).
pub fn precision_choice(available: &[String]) -> (String, String) {
    let has = |p: &str| available.iter().any(|a| a == p);
    #[cfg(target_arch = "x86_64")]
    let (dot, fp16, dot_name, fp16_name) = (
        std::arch::is_x86_feature_detected!("avx512vnni"),
        false, // x86 has no fp16 arithmetic tract uses: f16 would be emulated, slower than f32
        "avx512vnni",
        "fp16 arithmetic (none on x86 that tract uses)",
    );
    #[cfg(target_arch = "aarch64")]
    let (dot, fp16, dot_name, fp16_name) = (
        std::arch::is_aarch64_feature_detected!("dotprod"),
        std::arch::is_aarch64_feature_detected!("fp16"),
        "dotprod (asimddp)",
        "fp16 (asimdhp)",
    );
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let (dot, fp16, dot_name, fp16_name) = (false, false, "8-bit dot products", "fp16");
    let yes = |b: bool| if b { "has" } else { "lacks" };
    if dot && has("int8") {
        (
            "int8".into(),
            format!("the CPU has {dot_name} and the bundle int8 graphs"),
        )
    } else if fp16 && has("f16") {
        (
            "f16".into(),
            format!(
                "the CPU {} {dot_name} but has {fp16_name}, and the bundle f16 graphs",
                yes(dot)
            ),
        )
    } else {
        let why = format!(
            "the CPU {} {dot_name} and {} {fp16_name}; bundle precisions {available:?}",
            yes(dot),
            yes(fp16)
        );
        ("f32".into(), why)
    }
}

impl Model {
    /// `load_with` on tract.
    pub fn load(dir: &Path, precision: &str) -> Result<Model, BundleError> {
        Model::load_with(dir, precision, Engine::Tract)
    }

    /// Verifies the bundle (a directory or a `.tar` of one: version, hashes, config) and
    /// loads every stage graph into `engine` once.
    pub fn load_with(dir: &Path, precision: &str, engine: Engine) -> Result<Model, BundleError> {
        let files = BundleFiles::open(dir)?;
        let manifest = Manifest::load_verified_from(&files)?;
        let chosen = if precision == "auto" {
            pick_precision(&manifest.precisions)
        } else {
            precision.to_string()
        };
        let precision = chosen.as_str();
        if !manifest.precisions.iter().any(|p| p == precision) {
            return Err(BundleError::Precision {
                requested: precision.into(),
                available: manifest.precisions.clone(),
            });
        }
        let cfg = &manifest.config;
        let graphs = engine.graph_dir(&manifest, precision);
        let stages = match engine {
            Engine::Tract => Stages::Tract(TractStages::load(&files, cfg, &graphs)?),
            Engine::OnnxRuntime => Stages::OnnxRuntime(OrtStages::load(&files, cfg, &graphs)?),
        };
        Ok(Model {
            layout: cfg.embed_layout(),
            manifest,
            dir: dir.to_path_buf(),
            precision: precision.into(),
            engine,
            graphs,
            stages,
        })
    }

    pub fn config(&self) -> &crate::ModelConfig {
        &self.manifest.config
    }

    pub fn default_options(&self) -> RunOptions {
        let d = &self.manifest.defaults;
        RunOptions {
            pruning: Pruning::Threshold {
                threshold: d.threshold,
                min_keep: d.min_keep,
            },
            decode: post::DecodeOptions {
                score_threshold: d.score_threshold,
                max_detections: 100,
                box_from_mask: d.box_from_mask,
            },
        }
    }

    /// A state for running frames on `threads` threads (`FrameState::new`).
    pub fn new_state(&self, threads: usize) -> Result<FrameState, RunError> {
        let cfg = self.config();
        let runner: Box<dyn runner::Runner> = match &self.stages {
            Stages::Tract(t) => Box::new(t.runner(cfg, threads)?),
            Stages::OnnxRuntime(o) => Box::new(o.runner(threads)?),
        };
        Ok(FrameState::new(cfg, runner))
    }

    /// Resizes and normalises an RGB frame into `buf` (reused), ready for `run_prepared`. The
    /// board does this on its capture thread, so inference never waits for it.
    pub fn prepare(
        &self,
        rgb: &[u8],
        width: usize,
        height: usize,
        buf: Vec<f32>,
    ) -> Result<Prepared, RunError> {
        let t0 = Instant::now();
        let mut input = buf;
        frame::frame_input(
            rgb,
            width,
            height,
            &self.layout,
            &self.manifest.input,
            &mut input,
        )?;
        Ok(Prepared {
            input,
            width,
            height,
            preprocess_ms: ms(t0),
        })
    }

    /// Runs a prepared frame; boxes and masks come back in the frame's pixels. The frame's
    /// buffer is swapped into the state rather than copied (`p` is left with the old one).
    pub fn run_prepared(
        &self,
        st: &mut FrameState,
        p: &mut Prepared,
        opts: &RunOptions,
    ) -> Result<FrameOutput, RunError> {
        std::mem::swap(&mut st.input, &mut p.input);
        let mut out = forward::run(self.config(), st, opts)?;
        out.timings.preprocess = p.preprocess_ms;
        let s = self.config().image_size;
        let (sx, sy) = (p.width as f32 / s as f32, p.height as f32 / s as f32);
        for d in &mut out.detections {
            d.rescale(sx, sy);
        }
        Ok(out)
    }

    /// `prepare` then `run_prepared` on one thread.
    pub fn run_rgb(
        &self,
        st: &mut FrameState,
        rgb: &[u8],
        width: usize,
        height: usize,
        opts: &RunOptions,
    ) -> Result<FrameOutput, RunError> {
        let buf = std::mem::take(&mut st.input);
        let mut p = self.prepare(rgb, width, height, buf)?;
        self.run_prepared(st, &mut p, opts)
    }

    /// Runs a normalised image given as CHW planes (3 x size x size).
    pub fn run_tensor(
        &self,
        st: &mut FrameState,
        chw: &[f32],
        opts: &RunOptions,
    ) -> Result<FrameOutput, RunError> {
        let s = self.config().image_size;
        if chw.len() != 3 * s * s {
            return Err(RunError::Input(format!(
                "{} values for a 3x{s}x{s} input",
                chw.len()
            )));
        }
        if chw.iter().any(|v| !v.is_finite()) {
            return Err(RunError::NonFinite {
                stage: "input".into(),
            });
        }
        self.layout.from_chw(chw, &mut st.input);
        forward::run(self.config(), st, opts)
    }
}
