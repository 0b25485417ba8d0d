//! A `svit-edge bench` report: the JSON it writes to disk and the `Bench` message it sends to a
//! host are the same type, covered by the schema hash.

use alloc::string::String;
use alloc::vec::Vec;
use postcard_schema::Schema;
use serde::{Deserialize, Serialize};

use crate::stats::Pct;

/// Block latency at one token count (all blocks pooled, K rounded to 16).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Schema)]
pub struct KPoint {
    pub k: u32,
    pub frames: u32,
    pub block_ms: f64,
    pub block_gmacs: f64,
}

/// One configuration (engine, precision, threshold, threads) timed on the bench's frames.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Schema)]
pub struct BenchConfig {
    pub engine: String,
    pub precision: String,
    pub threshold: f32,
    /// The fewest tokens the first and the last gated block keep.
    pub min_keep: [u32; 2],
    /// `dense` or `pruned` (the bundle's stage graphs), or `dense-graph` (onnxruntime running a
    /// whole dense graph, `engine` "onnxruntime").
    pub mode: String,
    pub threads: u32,
    pub frames: u32,
    pub warmup_frames: u32,
    pub warmup_ms: f64,
    pub total_ms: Pct,
    pub backbone_ms: Pct,
    pub preprocess_ms: Pct,
    pub embed_ms: Pct,
    pub gates_ms: Pct,
    pub gather_scatter_ms: Pct,
    pub blocks_ms: Vec<Pct>,
    pub head_ms: Pct,
    pub postprocess_ms: Pct,
    pub kept_fraction: f64,
    pub kept_per_block: Vec<f64>,
    pub gmacs: f64,
    pub gflops_per_s: f64,
    pub block_time_vs_k: Vec<KPoint>,
    /// Gates + gather/scatter as a fraction of the backbone (the pruning overhead).
    pub overhead_fraction: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Schema)]
pub struct BenchReport {
    pub bundle: String,
    pub cpu: String,
    pub cpu_mhz: Option<u32>,
    pub temperature_c: Option<f32>,
    pub configs: Vec<BenchConfig>,
}
