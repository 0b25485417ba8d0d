//! `svit-export`: synthetic data, training, bundle export and evaluation of the SViT detector.
//! Each command lives in `cmd/`; this file only dispatches.

mod cmd;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "svit-export",
    version,
    about = "Train, export and evaluate the token-pruned SViT detector"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write synthetic scenes (PNG) and their COCO instances JSON (RLE masks).
    Data(cmd::data::Args),
    /// Train the dense model, then fine-tune it with gates (SViT). Resumable.
    Train(cmd::train::Args),
    /// Export a checkpoint as an edge bundle (manifest, stage graphs, dense.onnx).
    Bundle(cmd::bundle::Args),
    /// Export a bundle with int8 stage graphs beside the f32 ones: calibrate activation ranges
    /// on real images, quantize, then check int8 against f32 on COCO data and refuse to ship
    /// int8 graphs that lost more than --max-ap-drop.
    Quantize(cmd::quantize::Args),
    /// Evaluate a bundle on COCO data as the board runs it: box/mask AP, kept tokens, GMACs.
    Eval(cmd::eval::Args),
    /// Write reference tensors for engine cross-checks: the normalised input, dense.onnx run by
    /// tract, and the runtime's stage pipeline at threshold 0 (raw little-endian f32 files).
    Reference(cmd::reference::Args),
    /// Score a COCO results file against COCO ground truth (as pycocotools' COCOeval).
    Score(cmd::score::Args),
    /// Make an Ed25519 key pair for signing bundles (PREFIX.key, PREFIX.pub).
    Keygen(cmd::sign::KeygenArgs),
    /// Sign a bundle: an Ed25519 signature over its manifest, which pins every file by SHA-256.
    /// Boards given the public key (`svit-edge run --trust`) refuse anything else.
    Sign(cmd::sign::SignArgs),
    /// The printable target sheet (PDF): the six shapes as the model learned them, a scale bar
    /// and how far to hold it from the camera.
    Targets(cmd::targets::Args),
}

fn main() -> Result<()> {
    svit_protocol::process::init_tracing(None);
    svit_runtime::tune_process();
    match Cli::parse().cmd {
        Cmd::Data(a) => cmd::data::run(a),
        Cmd::Train(a) => cmd::train::run(a),
        Cmd::Bundle(a) => cmd::bundle::run(a),
        Cmd::Quantize(a) => cmd::quantize::run(a),
        Cmd::Eval(a) => cmd::eval::run(a),
        Cmd::Reference(a) => cmd::reference::run(a),
        Cmd::Score(a) => cmd::score::run(a),
        Cmd::Keygen(a) => cmd::sign::keygen(a),
        Cmd::Sign(a) => cmd::sign::sign(a),
        Cmd::Targets(a) => cmd::targets::run(a),
    }
}
