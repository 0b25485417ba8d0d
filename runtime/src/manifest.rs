//! The bundle manifest (`manifest.json`): an API boundary shared with every exported bundle.
//! Bump `FORMAT_VERSION` whenever a field's meaning or a stage graph's signature changes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::BundleError;
pub use crate::files::MANIFEST;
use crate::ModelConfig;

/// 2: the embed graph takes the image as patch rows (`ModelConfig::embed_layout`), not as
/// (1, 3, S, S). 3: each block is two graphs, `qkv_{b}` and `block_{b}` (row-parallel halves).
pub const FORMAT_VERSION: u32 = 3;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    /// Square side the embed graph takes; frames of other sizes are resized to it.
    pub size: usize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Defaults {
    pub threshold: f32,
    pub min_keep: crate::prune::MinKeep,
    pub score_threshold: f32,
    /// `DecodeOptions::box_from_mask`; bundles written before it existed report regressed boxes.
    #[serde(default)]
    pub box_from_mask: f32,
}

impl Defaults {
    /// The thresholds a comparison (bench, eval, the int8 check) runs: those `given`, or with
    /// none, the dense pass and the bundle's own threshold.
    pub fn compared_thresholds(&self, given: &[f32]) -> Vec<f32> {
        if !given.is_empty() {
            return given.to_vec();
        }
        let mut t = vec![0.0];
        if self.threshold > 0.0 {
            t.push(self.threshold);
        }
        t
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub name: String,
    pub config: ModelConfig,
    pub labels: Vec<String>,
    pub input: InputSpec,
    pub defaults: Defaults,
    /// Precisions with a full set of stage graphs, e.g. `["f32"]`; each lives in a directory
    /// of that name (`f32/embed.onnx`, `f32/gate_3.onnx`, `f32/qkv_0.onnx`, `f32/block_0.onnx`,
    /// `f32/head.onnx`).
    pub precisions: Vec<String>,
    /// How int8/f16 graphs were made (scheme, calibration), when there are any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<serde_json::Value>,
    /// Where the weights came from (training plan, steps, seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<serde_json::Value>,
    /// SHA-256 (hex) of every other file in the bundle, by relative path.
    pub files: BTreeMap<String, String>,
    /// SHA-256 (hex) of manifest.json as read, so of the whole bundle: set by
    /// [`Manifest::load_verified`], empty in a manifest being written.
    #[serde(skip)]
    pub digest: String,
}

/// The stage graph files of one precision.
pub fn stage_files(cfg: &ModelConfig, precision: &str) -> Vec<String> {
    let mut v = vec![format!("{precision}/embed.onnx")];
    v.extend((cfg.first_gated..cfg.depth).map(|b| format!("{precision}/gate_{b}.onnx")));
    for b in 0..cfg.depth {
        v.extend(block_stages(b).map(|s| format!("{precision}/{s}.onnx")));
    }
    v.push(format!("{precision}/head.onnx"));
    v
}

/// The two stages of block `b`, each a graph `NAME.onnx` in every precision's folder: LayerNorm
/// and q/k/v, then attention, projection and MLP.
pub fn block_stages(b: usize) -> [String; 2] {
    [format!("qkv_{b}"), format!("block_{b}")]
}

pub const DENSE_ONNX: &str = "dense.onnx";

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Manifest {
    /// Reads and checks `dir/manifest.json` and every file it lists. Every problem names the
    /// file: missing, unreadable, not JSON, wrong version, wrong hash, inconsistent config.
    pub fn load_verified(dir: &Path) -> Result<Manifest, BundleError> {
        Self::load_verified_from(&crate::files::BundleFiles::open(dir)?)
    }

    /// As [`Manifest::load_verified`], for a directory or a tar.
    pub fn load_verified_from(files: &crate::files::BundleFiles) -> Result<Manifest, BundleError> {
        let path = files.display(MANIFEST);
        let bytes = files.read(MANIFEST)?;
        // Read the version first, so a future manifest fails on its version, not a field.
        let probe: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| BundleError::Manifest {
                path: path.clone(),
                problem: e.to_string(),
            })?;
        let found = probe.get("format_version").and_then(|v| v.as_u64());
        if found != Some(FORMAT_VERSION as u64) {
            return Err(BundleError::Version {
                path,
                found,
                expected: FORMAT_VERSION,
            });
        }
        let mut m: Manifest = serde_json::from_value(probe).map_err(|e| BundleError::Manifest {
            path: path.clone(),
            problem: e.to_string(),
        })?;
        let bad = |problem: String| BundleError::Manifest {
            path: path.clone(),
            problem,
        };
        m.config.validate().map_err(bad)?;
        if m.labels.len() != m.config.num_classes {
            return Err(bad(format!(
                "{} labels for {} classes",
                m.labels.len(),
                m.config.num_classes
            )));
        }
        if m.input.size != m.config.image_size {
            return Err(bad(format!(
                "input size {} but the model takes {}",
                m.input.size, m.config.image_size
            )));
        }
        let w = m.defaults.box_from_mask;
        if !(0.0..=1.0).contains(&w) {
            return Err(bad(format!(
                "defaults.box_from_mask is {w}, not between 0 and 1"
            )));
        }
        for p in &m.precisions {
            for f in stage_files(&m.config, p) {
                if !m.files.contains_key(&f) {
                    return Err(bad(format!("precision {p} is listed but {f} is not")));
                }
            }
        }
        for (rel, want) in &m.files {
            if rel.contains("..") || rel.starts_with('/') {
                return Err(bad(format!(
                    "file entry {rel:?} leaves the bundle directory"
                )));
            }
            let fp = files.display(rel);
            let got = sha256_hex(&files.read(rel)?);
            if &got != want {
                return Err(BundleError::Hash {
                    path: fp,
                    expected: want.clone(),
                    actual: got,
                });
            }
        }
        m.digest = sha256_hex(&bytes);
        Ok(m)
    }
}

/// Path of a listed file, for callers that open files themselves.
pub fn file_path(dir: &Path, rel: &str) -> PathBuf {
    dir.join(rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compared_thresholds_are_the_given_ones_or_dense_and_the_bundles() {
        let mut d = Defaults {
            threshold: 0.5,
            min_keep: crate::prune::MinKeep::uniform(16),
            score_threshold: 0.3,
            box_from_mask: 0.0,
        };
        assert_eq!(d.compared_thresholds(&[]), [0.0, 0.5]);
        assert_eq!(d.compared_thresholds(&[0.3]), [0.3]);
        d.threshold = 0.0;
        assert_eq!(d.compared_thresholds(&[]), [0.0]);
    }
}
