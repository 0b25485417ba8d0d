//! Writes an edge bundle: stage graphs per precision, `dense.onnx`, and a manifest with the
//! SHA-256 of every file (see `svit_runtime::manifest` for the format).

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Context, Result};
use svit_runtime::manifest::{sha256_hex, Defaults, InputSpec, Manifest, FORMAT_VERSION, MANIFEST};
use svit_runtime::signature::SIGNATURE;

use crate::model::Svit;
use crate::train::targets::{MEAN, STD};

/// The `box_from_mask` a new bundle defaults to, chosen on the tuning scenes (README, "The demo
/// bundle"); `svit-export eval --box-from-mask` measures others.
pub const BOX_FROM_MASK: f32 = 0.5;
/// The manifest's default pruning threshold; `--gate-calib` calibrates the gates at it.
pub const THRESHOLD: f32 = 0.5;

pub struct BundleSpec<'a> {
    pub name: &'a str,
    pub labels: &'a [String],
    pub provenance: Option<serde_json::Value>,
    /// Also write f16 stage graphs (`f16/`), for boards with fp16 arithmetic.
    pub f16: bool,
    /// Also write int8 stage graphs (`int8/`) quantized with these calibrated ranges.
    pub int8: Option<&'a crate::export::quant::Ranges>,
    /// The manifest's default `min_keep` (default: 1/16 of the tokens in every gated block).
    pub min_keep: Option<svit_runtime::MinKeep>,
}

/// The manifest's default floor: the one asked for, else 1/16 of the tokens.
pub fn min_keep(
    cfg: &svit_runtime::ModelConfig,
    asked: Option<svit_runtime::MinKeep>,
) -> svit_runtime::MinKeep {
    asked
        .unwrap_or(svit_runtime::MinKeep::uniform(cfg.tokens() / 16))
        .clamp(1, cfg.tokens())
}

pub fn write(net: &Svit, spec: &BundleSpec, out: &Path) -> Result<Manifest> {
    let cfg = &net.cfg;
    crate::error::ensure!(
        spec.labels.len() == cfg.num_classes,
        "{} labels for {} classes",
        spec.labels.len(),
        cfg.num_classes
    );
    let mut precisions = vec!["f32".to_string()];
    if spec.f16 {
        precisions.push("f16".into());
    }
    if spec.int8.is_some() {
        precisions.push("int8".into());
    }
    for p in &precisions {
        std::fs::create_dir_all(out.join(p))
            .with_context(|| format!("creating {}", out.join(p).display()))?;
    }
    // A bundle re-exported into the same folder must not keep an earlier export's graphs of a
    // precision it no longer has.
    for p in ["f32", "f16", "int8"] {
        let stale = out.join(p);
        if !precisions.iter().any(|q| q == p) && stale.exists() {
            std::fs::remove_dir_all(&stale)
                .with_context(|| format!("removing stale {}", stale.display()))?;
        }
    }
    let mut files = BTreeMap::new();
    let mut put = |rel: String, bytes: &[u8]| -> Result<()> {
        let path = out.join(&rel);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        files.insert(rel, sha256_hex(bytes));
        Ok(())
    };
    // Blocks in int8 by file name; the other stages' int8 graphs are the f32 graphs themselves.
    let mut int8_blocks = std::collections::HashMap::new();
    if let Some(ranges) = spec.int8 {
        for (b, graphs) in crate::export::onnx::int8::blocks(net, ranges)?
            .into_iter()
            .enumerate()
        {
            for (stage, bytes) in svit_runtime::manifest::block_stages(b)
                .into_iter()
                .zip(graphs)
            {
                int8_blocks.insert(format!("{stage}.onnx"), bytes);
            }
        }
    }
    for (name, bytes) in crate::export::onnx::export_all(net) {
        if name == "dense.onnx" {
            put(name, &bytes)?;
            continue;
        }
        if spec.f16 {
            let half = crate::export::onnx::f16::to_f16(&bytes).context("converting to f16")?;
            put(format!("f16/{name}"), &half)?;
        }
        if spec.int8.is_some() {
            let int8 = int8_blocks.get(&name).unwrap_or(&bytes);
            put(format!("int8/{name}"), int8)?;
        }
        put(format!("f32/{name}"), &bytes)?;
    }
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        name: spec.name.into(),
        config: cfg.clone(),
        labels: spec.labels.to_vec(),
        input: InputSpec {
            size: cfg.image_size,
            mean: MEAN,
            std: STD,
        },
        defaults: Defaults {
            threshold: THRESHOLD,
            min_keep: min_keep(cfg, spec.min_keep),
            score_threshold: 0.3,
            box_from_mask: BOX_FROM_MASK,
        },
        precisions,
        quantization: spec.int8.map(|r| {
            serde_json::json!({
                "int8": {
                    "weights": "symmetric int8 per tensor (|w| max / 127), biases carried in extra weight rows",
                    "activations": "symmetric int8 per tensor, ranges calibrated on images",
                    "method": r.method,
                    "percentile": (r.method == crate::export::quant::RangeMethod::Percentile)
                        .then_some((r.percentile as f64 * 1e4).round() / 1e4),
                    "calibration_images": r.images,
                    "int8_ops": "block linear layers (QLinearMatMul), attention logits (MatMulInteger), GELU (lookup table)",
                    "f32_ops": "LayerNorm, softmax, P.V, residual adds, embed, gates, head",
                }
            })
        }),
        provenance: spec.provenance.clone(),
        files,
        digest: String::new(),
    };
    let path = out.join(MANIFEST);
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(manifest)
}

/// Packs a written bundle directory into one `.tar` (what `svit_runtime::Model::load` also
/// reads): manifest first, then the files it lists, in a fixed order.
pub fn pack(dir: &Path, manifest: &Manifest, tar_path: &Path) -> Result<()> {
    let f = std::fs::File::create(tar_path)
        .with_context(|| format!("creating {}", tar_path.display()))?;
    let mut b = tar::Builder::new(f);
    b.mode(tar::HeaderMode::Deterministic);
    // The signature, where the bundle has one (`svit-export sign`), right after the manifest.
    let signed = dir.join(SIGNATURE).exists().then_some(SIGNATURE);
    let rels = std::iter::once(MANIFEST)
        .chain(signed)
        .chain(manifest.files.keys().map(String::as_str));
    for rel in rels {
        b.append_path_with_name(dir.join(rel), rel)
            .with_context(|| format!("adding {rel} to {}", tar_path.display()))?;
    }
    b.into_inner()
        .and_then(|f| f.sync_all())
        .with_context(|| format!("writing {}", tar_path.display()))?;
    Ok(())
}
