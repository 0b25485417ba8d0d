//! The peer a user would otherwise pick: onnxruntime running a whole dense graph in one call
//! (the bundle's `dense.onnx`, or an int8 version of it made by onnxruntime's own quantizer),
//! with the same preprocessing and post-processing around it as the pruned pass, so that a
//! bench's totals compare like with like.

use std::path::Path;
use std::time::Instant;

use ort::session::Session;
use ort::value::TensorRef;

use super::frame::{frame_input, ms, FrameOutput, Timings};
use super::onnxruntime::{f32_output, ort_error, session_from};
use crate::error::{BundleError, RunError};
use crate::manifest::Manifest;
use crate::post::{self, DecodeOptions, HeadOutputs};
use crate::preprocess::Layout;

pub struct DenseGraph {
    pub manifest: Manifest,
    session: Session,
    layout: Layout,
    input: Vec<f32>,
}

impl DenseGraph {
    /// `graph` (an ONNX file taking the bundle's `image` input and giving its four head
    /// outputs) on onnxruntime, on one thread or its pool of a thread per core, for the
    /// verified bundle `dir`.
    pub fn load(dir: &Path, graph: &Path, threads: usize) -> Result<DenseGraph, BundleError> {
        let manifest = Manifest::load_verified(dir)?;
        let bytes = std::fs::read(graph).map_err(|source| BundleError::Io {
            path: graph.to_path_buf(),
            source,
        })?;
        let session = session_from(&bytes, threads).map_err(|e| BundleError::Graph {
            path: graph.to_path_buf(),
            engine: "onnxruntime",
            source: e.into(),
        })?;
        let size = manifest.config.image_size;
        Ok(DenseGraph {
            manifest,
            session,
            layout: Layout::chw(size),
            input: Vec::with_capacity(3 * size * size),
        })
    }

    /// One RGB frame: resize and normalise, the whole graph, decode. The graph's time is the
    /// frame's only block (it includes the head, which has no time of its own here).
    pub fn run_rgb(
        &mut self,
        rgb: &[u8],
        width: usize,
        height: usize,
        decode: &DecodeOptions,
    ) -> Result<FrameOutput, RunError> {
        let cfg = &self.manifest.config;
        let s = cfg.image_size;
        let t0 = Instant::now();
        frame_input(
            rgb,
            width,
            height,
            &self.layout,
            &self.manifest.input,
            &mut self.input,
        )?;
        let preprocess = ms(t0);
        let tg = Instant::now();
        let x = TensorRef::from_array_view(([1, 3, s, s], &self.input[..]))
            .map_err(ort_error("dense graph"))?;
        let outs = self
            .session
            .run(ort::inputs![x])
            .map_err(ort_error("dense graph"))?;
        let graph = ms(tg);
        let tp = Instant::now();
        let [heat, boxes, coef, protos] = [0, 1, 2, 3].map(|i| f32_output(&outs, i, "dense graph"));
        let head = HeadOutputs {
            heat: heat?,
            boxes: boxes?,
            coef: coef?,
            protos: protos?,
        };
        if [head.heat, head.boxes, head.coef, head.protos]
            .iter()
            .any(|o| o.iter().any(|v| !v.is_finite()))
        {
            return Err(RunError::NonFinite {
                stage: "dense graph".into(),
            });
        }
        let mut detections = post::decode(cfg, &head, decode)?;
        let (sx, sy) = (width as f32 / s as f32, height as f32 / s as f32);
        for d in &mut detections {
            d.rescale(sx, sy);
        }
        let n = cfg.tokens();
        Ok(FrameOutput {
            detections,
            kept: vec![n; cfg.depth],
            keep_maps: Vec::new(),
            gmacs: (0..cfg.depth).fold(cfg.embed_macs() + cfg.head_macs(), |m, _| {
                m + cfg.block_macs(n)
            }) as f64
                / 1e9,
            timings: Timings {
                preprocess,
                blocks: vec![graph],
                postprocess: ms(tp),
                ..Default::default()
            },
        })
    }
}
