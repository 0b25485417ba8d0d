//! `svit-export bundle`: a checkpoint exported as an edge bundle (manifest, stage graphs,
//! dense.onnx), optionally with its gates calibrated.

use std::path::PathBuf;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use svit_export::train;
use svit_runtime::MinKeep;

#[derive(clap::Args)]
pub struct Args {
    /// Checkpoint directory written by `train`.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Bundle directory to write (e.g. models/demo).
    #[arg(long)]
    pub out: PathBuf,
    /// Export the weights as they were after dense training (dense.safetensors).
    #[arg(long)]
    pub dense: bool,
    #[arg(long)]
    pub name: Option<String>,
    /// Also pack the bundle into OUT.tar (one file to copy; svit-edge --bundle reads it).
    #[arg(long)]
    pub tar: bool,
    /// Also write f16 stage graphs, for boards with fp16 arithmetic (Pi 5, Jetson Orin).
    #[arg(long)]
    f16: bool,
    /// Default for the fewest tokens a gated block keeps (runs may override it): `96`, or
    /// `48..128` for a floor rising from the first gated block to the last; default 1/16 of the
    /// tokens.
    #[arg(long)]
    pub min_keep: Option<MinKeep>,
    /// Before export, shift each gate's keep bias so that at threshold 0.5 it keeps, on
    /// average over these images (a PNG/JPEG folder, e.g. data/calib), the fraction its ratio
    /// loss trained it towards: training samples from p_keep, the board keeps p_keep >= 0.5.
    #[arg(long)]
    pub gate_calib: Option<PathBuf>,
    /// With --gate-calib: the kept fraction to calibrate each gate to, e.g.
    /// `0.4,0.35,0.3,0.3,0.25,0.25` (default: the targets the model was trained towards).
    #[arg(long, value_delimiter = ',', requires = "gate_calib")]
    pub gate_targets: Option<Vec<f32>>,
}

pub fn run(a: Args) -> Result<()> {
    bundle(&a, &load_checkpoint(&a)?, None).map(drop)
}

/// The checkpoint `a` names: its training state, the weights file used and the model.
pub struct Loaded {
    pub state: train::CheckpointState,
    pub weights: PathBuf,
    pub net: svit_export::model::Svit,
    /// What `--gate-calib` did, for the manifest's provenance.
    pub gate_shifts: Option<Vec<svit_export::export::gatecal::GateShift>>,
}

pub fn load_checkpoint(a: &Args) -> Result<Loaded> {
    let ckpt = train::Checkpoint {
        dir: a.checkpoint.clone(),
    };
    let state = ckpt.load_state()?;
    let weights = if a.dense {
        ckpt.dense_weights()
    } else {
        ckpt.weights()
    };
    let cfg = &state.plan.config;
    let (vm, net) = train::load_model(&weights, cfg, &candle_core::Device::Cpu)?;
    let gate_shifts = match &a.gate_calib {
        Some(dir) => Some(calibrate_gates(&vm, &net, dir, a)?),
        None => None,
    };
    Ok(Loaded {
        state,
        weights,
        net,
        gate_shifts,
    })
}

fn calibrate_gates(
    vm: &candle_nn::VarMap,
    net: &svit_export::model::Svit,
    dir: &std::path::Path,
    a: &Args,
) -> Result<Vec<svit_export::export::gatecal::GateShift>> {
    let cfg = &net.cfg;
    let images = svit_export::export::quant::load_images(
        dir,
        cfg.image_size,
        svit_export::train::targets::MEAN,
        svit_export::train::targets::STD,
        256,
    )?;
    let floor = svit_export::export::bundle::min_keep(cfg, a.min_keep);
    let bar = ProgressBar::new(net.gates.len() as u64 + 1).with_style(
        ProgressStyle::with_template(&format!(
            "calibrating gates on {} images {{bar:40}} pass {{pos}}/{{len}} [{{elapsed_precise}}<{{eta_precise}}]",
            images.len()
        ))
        .expect("static template"),
    );
    let targets = a.gate_targets.as_deref();
    let shifts = svit_export::export::gatecal::calibrate_gates(
        vm,
        net,
        &images,
        svit_export::export::bundle::THRESHOLD,
        floor,
        targets,
        |n| bar.inc(n as u64),
    )
    .context("calibrating the gates")?;
    bar.finish_and_clear();
    println!("gate  block  target  kept before  kept after  logit shift");
    for g in &shifts {
        println!(
            "{:>4}  {:>5}  {:>6.3}  {:>11.3}  {:>10.3}  {:>+11.3}",
            g.gate, g.block, g.target, g.kept_before, g.kept_after, g.logit_shift
        );
    }
    Ok(shifts)
}

/// Writes the bundle (with int8 graphs when `int8` is given) and loads every precision back
/// as the board would; returns those loaded models, in the manifest's precision order.
pub fn bundle(
    a: &Args,
    l: &Loaded,
    int8: Option<&svit_export::export::quant::Ranges>,
) -> Result<Vec<svit_runtime::Model>> {
    let st = &l.state;
    let name = a.name.clone().unwrap_or_else(|| {
        a.out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let provenance = serde_json::json!({
        "checkpoint": l.weights.display().to_string(),
        "steps": st.step,
        "train_seconds": st.seconds.round(),
        "dense_only": a.dense,
        "plan": st.plan,
        "gate_calibration": l.gate_shifts.as_ref().map(|g| serde_json::json!({
            "images": a.gate_calib.as_ref().map(|d| d.display().to_string()),
            "threshold": svit_export::export::bundle::THRESHOLD,
            "gates": g,
        })),
    });
    let spec = svit_export::export::bundle::BundleSpec {
        name: &name,
        labels: &st.plan.labels,
        provenance: Some(provenance),
        f16: a.f16,
        int8,
        min_keep: a.min_keep,
    };
    let out = &a.out;
    let m = svit_export::export::bundle::write(&l.net, &spec, out)?;
    let models = m
        .precisions
        .iter()
        .map(|p| {
            svit_runtime::Model::load(out, p)
                .with_context(|| format!("re-loading {} ({p})", out.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    tracing::info!(files = m.files.len(), precisions = ?m.precisions, "wrote bundle {}", out.display());
    if a.tar {
        let t = out.with_extension("tar");
        svit_export::export::bundle::pack(out, &m, &t)?;
        svit_runtime::Model::load(&t, "f32")
            .with_context(|| format!("re-loading {}", t.display()))?;
        tracing::info!("packed {}", t.display());
    }
    Ok(models)
}
