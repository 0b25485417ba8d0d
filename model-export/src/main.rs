//! `svit-export`: synthetic data, training, bundle export and evaluation of the SViT detector.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use svit_export::{coco, train};
use svit_runtime::preprocess::Layout;
use svit_runtime::{MinKeep, ModelConfig};

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

#[derive(Clone, Copy, ValueEnum)]
enum Preset {
    /// 256x256, dim 128, 8 blocks, gates on blocks 2..7 (the shipped demo).
    Demo,
    /// DeiT-Tiny: 320x320, dim 192, 12 blocks, 3 heads, gates on blocks 3..11.
    DeitTiny,
}

#[derive(clap::Args)]
struct BundleArgs {
    /// Checkpoint directory written by `train`.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Bundle directory to write (e.g. models/demo).
    #[arg(long)]
    out: PathBuf,
    /// Export the weights as they were after dense training (dense.safetensors).
    #[arg(long)]
    dense: bool,
    #[arg(long)]
    name: Option<String>,
    /// Also pack the bundle into OUT.tar (one file to copy; svit-edge --bundle reads it).
    #[arg(long)]
    tar: bool,
    /// Also write f16 stage graphs, for boards with fp16 arithmetic (Pi 5, Jetson Orin).
    #[arg(long)]
    f16: bool,
    /// Default for the fewest tokens a gated block keeps (runs may override it): `96`, or
    /// `48..128` for a floor rising from the first gated block to the last; default 1/16 of the
    /// tokens.
    #[arg(long)]
    min_keep: Option<MinKeep>,
    /// Before export, shift each gate's keep bias so that at threshold 0.5 it keeps, on
    /// average over these images (a PNG/JPEG folder, e.g. data/calib), the fraction its ratio
    /// loss trained it towards: training samples from p_keep, the board keeps p_keep >= 0.5.
    #[arg(long)]
    gate_calib: Option<PathBuf>,
    /// With --gate-calib: the kept fraction to calibrate each gate to, e.g.
    /// `0.4,0.35,0.3,0.3,0.25,0.25` (default: the targets the model was trained towards).
    #[arg(long, value_delimiter = ',', requires = "gate_calib")]
    gate_targets: Option<Vec<f32>>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write synthetic scenes (PNG) and their COCO instances JSON (RLE masks).
    Data {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1000)]
        scenes: u64,
        #[arg(long, default_value_t = 9000)]
        seed: u64,
        #[arg(long, default_value_t = 256)]
        size: usize,
    },
    /// Train the dense model, then fine-tune it with gates (SViT). Resumable.
    Train {
        /// Checkpoint directory (model.safetensors, state.json, dense.safetensors).
        #[arg(long)]
        out: PathBuf,
        /// Model size (default: demo; a resumed run keeps its own).
        #[arg(long, value_enum)]
        preset: Option<Preset>,
        /// Widths of a hierarchical-MLP patch stem in front of the blocks, e.g. `32,64` (4x4
        /// pixel patches -> 32 -> 2x2 merge -> 64 -> 2x2 merge -> dim). Default: the preset's
        /// (plain ViT patch embedding, which `--init` can load).
        #[arg(long, value_delimiter = ',')]
        stem: Option<Vec<usize>>,
        /// Kept-token fraction the ratio loss pulls each gate towards during gated
        /// fine-tuning, one per gated block (default: the preset's or the --from checkpoint's).
        #[arg(long, value_delimiter = ',')]
        keep_targets: Option<Vec<f32>>,
        #[arg(long, default_value_t = 3000)]
        dense_steps: usize,
        #[arg(long, default_value_t = 1000)]
        gated_steps: usize,
        #[arg(long, default_value_t = 16)]
        batch: usize,
        #[arg(long, default_value_t = 1e-3)]
        lr: f64,
        /// Learning rate of backbone and head during gated fine-tuning, relative to --lr.
        #[arg(long, default_value_t = 0.1)]
        finetune_lr_scale: f64,
        /// Weight of token distillation during gated fine-tuning: the pruned model's final
        /// tokens are pulled towards those of the dense model the phase started from (relative
        /// squared error; 0 = off).
        #[arg(long, default_value_t = 0.0)]
        distill: f64,
        /// Keep probability the gates start the gated phase at (e.g. 0.9: fine-tuning starts
        /// near the dense model and the ratio loss prunes from there); 0 = as initialised.
        #[arg(long, default_value_t = 0.0)]
        gate_init_keep: f64,
        /// Seed of the synthetic training stream (keep it apart from the validation seed).
        /// Default: 1, or the run's own seed when resuming.
        #[arg(long)]
        seed: Option<u64>,
        /// Continue from the checkpoint in --out.
        #[arg(long)]
        resume: bool,
        /// Start the backbone from ViT weights in timm DeiT naming (safetensors).
        #[arg(long, conflicts_with_all = ["resume", "from"])]
        init: Option<PathBuf>,
        /// Start from a checkpoint of this project, with this run's schedule and data: a
        /// checkpoint directory (its final weights) or a weights file in one (e.g.
        /// `runs/x/dense.safetensors`). The model shape comes from that checkpoint; the class
        /// logits start fresh when the data has other labels.
        #[arg(long, conflicts_with = "resume")]
        from: Option<PathBuf>,
        /// Train on a COCO-format data set instead of synthetic scenes.
        #[arg(long, requires = "images")]
        coco: Option<PathBuf>,
        #[arg(long)]
        images: Option<PathBuf>,
        #[arg(long, default_value_t = 100)]
        ckpt_every: usize,
        /// Validate while training on this COCO instances JSON (e.g. `svit-export data --out
        /// data/val`): box and mask AP of the checkpoint, run as the board runs it, logged and
        /// appended to OUT/val.jsonl (dense; also at the bundle's default threshold once gates
        /// train).
        #[arg(long)]
        val_coco: Option<PathBuf>,
        /// Images of --val-coco (default: the JSON's folder).
        #[arg(long, requires = "val_coco")]
        val_images: Option<PathBuf>,
        /// Validate at the first checkpoint after every N steps, and at the end of each phase.
        #[arg(long, default_value_t = 500)]
        val_every: usize,
        /// How many of the validation images (the first N).
        #[arg(long, default_value_t = 200)]
        val_limit: usize,
    },
    /// Export a checkpoint as an edge bundle (manifest, stage graphs, dense.onnx).
    Bundle {
        #[command(flatten)]
        bundle: BundleArgs,
    },
    /// Export a bundle with int8 stage graphs beside the f32 ones: calibrate activation ranges
    /// on real images, quantize, then check int8 against f32 on COCO data and refuse to ship
    /// int8 graphs that lost more than --max-ap-drop.
    Quantize {
        #[command(flatten)]
        bundle: BundleArgs,
        /// Folder of calibration images (PNG/JPEG), e.g. `svit-export data --out data/calib --scenes 256 --seed 7000`.
        #[arg(long)]
        calib: PathBuf,
        /// Use at most this many calibration images (sorted by name).
        #[arg(long, default_value_t = 256)]
        calib_images: usize,
        /// How activation ranges are taken from the calibration data.
        #[arg(long, value_enum, default_value = "percentile")]
        method: svit_export::quant::RangeMethod,
        /// The percentile of |x| for --method percentile.
        #[arg(long, default_value_t = 99.99)]
        percentile: f32,
        /// COCO instances to check int8 against f32 on (default: CALIB/instances.json if present).
        #[arg(long)]
        check_coco: Option<PathBuf>,
        /// Images of --check-coco (default: the folder holding it).
        #[arg(long)]
        check_images: Option<PathBuf>,
        #[arg(long, default_value_t = 200)]
        check_limit: usize,
        /// Largest box or mask AP loss of int8 against f32 (0-100 scale) that may ship.
        #[arg(long, default_value_t = 1.0)]
        max_ap_drop: f64,
        /// Ship the int8 graphs even when they lose more than --max-ap-drop (with a warning).
        #[arg(long)]
        allow_drop: bool,
    },
    /// Evaluate a bundle on COCO data as the board runs it: box/mask AP, kept tokens, GMACs.
    Eval {
        #[arg(long)]
        bundle: PathBuf,
        #[arg(long)]
        coco: PathBuf,
        #[arg(long)]
        images: PathBuf,
        /// Pruning thresholds to evaluate; 0 is the dense pass (default: 0 and the bundle's).
        #[arg(long, value_delimiter = ',')]
        thresholds: Vec<f32>,
        /// The fewest tokens a gated block keeps (default: the bundle's): `96` or `48..128`.
        #[arg(long)]
        min_keep: Option<MinKeep>,
        #[arg(long, default_value = "f32")]
        precision: String,
        /// Detections below this score are not reported (COCO AP wants a low value).
        #[arg(long, default_value_t = 0.05)]
        score_threshold: f32,
        /// Move each box this far from the regressed one towards its mask's extent, 0 to 1
        /// (default: the bundle's).
        #[arg(long)]
        box_from_mask: Option<f32>,
        /// Summary JSON ({"runs": [...]}); COCO results files go beside it (default: runs/eval/).
        #[arg(long)]
        json: Option<PathBuf>,
        #[arg(long)]
        limit: Option<usize>,
        /// Threads that share each image's stages, as on the board (`svit-edge run --threads`).
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// Write reference tensors for engine cross-checks: the normalised input, dense.onnx run by
    /// tract, and the runtime's stage pipeline at threshold 0 (raw little-endian f32 files).
    Reference {
        #[arg(long, default_value = "models/demo")]
        bundle: PathBuf,
        /// An image (any size; resized like the board does).
        #[arg(long)]
        image: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Score a COCO results file against COCO ground truth (as pycocotools' COCOeval).
    Score {
        #[arg(long)]
        coco: PathBuf,
        #[arg(long)]
        results: PathBuf,
        /// bbox or segm
        #[arg(long, default_value = "bbox")]
        iou_type: String,
    },
}

fn main() -> Result<()> {
    svit_protocol::process::init_tracing(None);
    svit_runtime::tune_process();
    match Cli::parse().cmd {
        Cmd::Reference { bundle, image, out } => reference(bundle, image, out),
        Cmd::Score {
            coco,
            results,
            iou_type,
        } => {
            let gt = coco::Dataset::load(&coco)?;
            let bytes = std::fs::read(&results)
                .with_context(|| format!("reading {}", results.display()))?;
            let res: Vec<coco::ResultEntry> = serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a COCO results list", results.display()))?;
            let segm = match iou_type.as_str() {
                "bbox" => false,
                "segm" => true,
                other => bail!("--iou-type must be bbox or segm, not {other:?}"),
            };
            let s = svit_export::eval::score_results(&gt, &coco, &res, segm)?;
            println!("{}", serde_json::to_string_pretty(&s)?);
            Ok(())
        }
        Cmd::Bundle { bundle: b } => bundle(&b, &load_checkpoint(&b)?, None).map(drop),
        Cmd::Quantize {
            bundle: b,
            calib,
            calib_images,
            method,
            percentile,
            check_coco,
            check_images,
            check_limit,
            max_ap_drop,
            allow_drop,
        } => {
            let check = check_coco.or_else(|| {
                let j = calib.join("instances.json");
                j.exists().then_some(j)
            });
            let q = Quantize {
                calib,
                calib_images,
                method,
                percentile,
                check_images: check_images
                    .or_else(|| check.as_ref().and_then(|j| j.parent()).map(PathBuf::from)),
                check,
                check_limit,
                max_ap_drop,
                allow_drop,
            };
            quantize(&b, &q)
        }
        Cmd::Eval {
            bundle,
            coco,
            images,
            thresholds,
            min_keep,
            precision,
            score_threshold,
            box_from_mask,
            json,
            limit,
            threads,
        } => eval(
            bundle,
            coco,
            images,
            thresholds,
            min_keep,
            precision,
            (score_threshold, box_from_mask),
            json,
            limit,
            threads,
        ),
        Cmd::Data {
            out,
            scenes,
            seed,
            size,
        } => data(out, scenes, seed, size),
        Cmd::Train {
            out,
            preset,
            stem,
            keep_targets,
            dense_steps,
            gated_steps,
            batch,
            lr,
            finetune_lr_scale,
            distill,
            gate_init_keep,
            seed,
            resume,
            init,
            from,
            coco,
            images,
            ckpt_every,
            val_coco,
            val_images,
            val_every,
            val_limit,
        } => {
            let labels: Vec<String> = match &coco {
                None => svit_scenes::CLASSES.iter().map(|s| s.to_string()).collect(),
                Some(json) => coco::Dataset::load(json)?
                    .categories
                    .iter()
                    .map(|c| c.name.clone())
                    .collect(),
            };
            let from = from.map(|p| from_checkpoint(&p)).transpose()?;
            // A resumed run's plan, read once: its model shape and seed carry on.
            let resumed = resume
                .then(|| train::Checkpoint { dir: out.clone() }.load_state())
                .transpose()
                .context("--resume needs the checkpoint of an earlier run in --out")?
                .map(|s| s.plan);
            let config = train_config(
                &out,
                resumed.as_ref().map(|p| &p.config),
                from.as_ref().map(|f| &f.1),
                preset,
                stem,
                keep_targets,
                labels.len(),
            )?;
            let seed = train_seed(&out, resumed.as_ref().map(|p| p.seed), seed);
            let mut source: Box<dyn train::DataSource> = match coco {
                None => Box::new(train::Synthetic {
                    cfg: svit_scenes::SceneConfig::square(config.image_size),
                    seed,
                }),
                Some(json) => {
                    let images = images.context("--coco needs --images")?;
                    Box::new(svit_export::cocodata::CocoSource::open(
                        &json,
                        &images,
                        config.image_size,
                    )?)
                }
            };
            let plan = train::TrainPlan {
                config,
                labels,
                dense_steps,
                gated_steps,
                batch,
                lr,
                finetune_lr_scale,
                distill,
                gate_init_keep,
                warmup: 200,
                seed,
            };
            let total = (dense_steps + gated_steps) as u64;
            let bar = ProgressBar::new(total).with_style(
                ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
                )
                .expect("static template"),
            );
            let mut on_step = |step: usize, parts: &[f32; 6], lr: f64| {
                bar.set_position(step as u64);
                let mut msg = format!(
                    "heat {:.3} off {:.3} size {:.3} mask {:.3} ratio {:.3} lr {:.1e}",
                    parts[0], parts[1], parts[2], parts[3], parts[4], lr
                );
                if parts[5] > 0.0 {
                    msg += &format!(" distill {:.3}", parts[5]);
                }
                if step % 50 == 0 {
                    tracing::info!(step, "{msg}");
                }
                bar.set_message(msg);
            };
            let mut val = val_coco
                .map(|coco| {
                    let images = val_images
                        .unwrap_or_else(|| coco.parent().map(PathBuf::from).unwrap_or_default());
                    Validation::new(coco, images, &out, &plan, val_every, val_limit, resume)
                })
                .transpose()?;
            let mut on_saved = |step: usize, net: &svit_export::model::Svit| {
                if let Some(v) = val.as_mut() {
                    v.maybe_run(step, net, &bar);
                }
            };
            let ckpt = train::Checkpoint { dir: out };
            let st = train::train(
                plan,
                &ckpt,
                resume,
                match (&from, &init) {
                    (Some((weights, _)), _) => train::Start::Checkpoint(weights),
                    (None, Some(init)) => train::Start::Deit(init),
                    (None, None) => train::Start::Random,
                },
                source.as_mut(),
                ckpt_every,
                train::Progress {
                    on_step: &mut on_step,
                    on_saved: Some(&mut on_saved),
                },
            )?;
            bar.finish();
            tracing::info!(
                steps = st.step,
                seconds = st.seconds as u64,
                "training done: {}",
                ckpt.dir.display()
            );
            Ok(())
        }
    }
}

/// `train --val-coco`: exports the checkpoint to OUT/val-bundle and evaluates it there.
struct Validation {
    coco: PathBuf,
    images: PathBuf,
    dir: PathBuf,
    log: PathBuf,
    labels: Vec<String>,
    dense_steps: usize,
    total: usize,
    every: usize,
    limit: usize,
    last: Option<usize>,
}

impl Validation {
    /// Checks the data set up front, so a long run does not find out at its first checkpoint.
    fn new(
        coco: PathBuf,
        images: PathBuf,
        out: &std::path::Path,
        plan: &train::TrainPlan,
        every: usize,
        limit: usize,
        resume: bool,
    ) -> Result<Self> {
        let ds = coco::Dataset::load(&coco)?;
        svit_export::eval::category_map(&plan.labels, &ds, &coco)?;
        let log = out.join("val.jsonl");
        // A resumed run goes on from its last validation instead of validating again at its
        // first checkpoint.
        let last = if resume {
            last_validated(&std::fs::read_to_string(&log).unwrap_or_default())
        } else {
            None
        };
        Ok(Validation {
            coco,
            images,
            dir: out.join("val-bundle"),
            log,
            labels: plan.labels.clone(),
            dense_steps: plan.dense_steps,
            total: plan.dense_steps + plan.gated_steps,
            every: every.max(1),
            limit,
            last,
        })
    }

    /// Validates at the first checkpoint past each multiple of `every` and at the end of each
    /// phase. A failure is logged, not fatal: the training run goes on.
    fn maybe_run(&mut self, step: usize, net: &svit_export::model::Svit, bar: &ProgressBar) {
        let due = step / self.every > self.last.unwrap_or(0) / self.every
            || step == self.dense_steps
            || step == self.total;
        if !due || self.last == Some(step) {
            return;
        }
        self.last = Some(step);
        if let Err(e) = bar.suspend(|| self.run(step, net)) {
            tracing::warn!(step, "validation failed: {e:#}");
        }
    }

    fn run(&self, step: usize, net: &svit_export::model::Svit) -> Result<()> {
        let spec = svit_export::bundle::BundleSpec {
            name: "val",
            labels: &self.labels,
            provenance: None,
            f16: false,
            int8: None,
            min_keep: None,
        };
        svit_export::bundle::write(net, &spec, &self.dir)?;
        let model = svit_runtime::Model::load(&self.dir, "f32")?;
        let mut thresholds = vec![0.0];
        if step > self.dense_steps {
            thresholds.push(model.manifest.defaults.threshold);
        }
        let spec = svit_export::eval::EvalSpec {
            coco: &self.coco,
            images: &self.images,
            thresholds: &thresholds,
            min_keep: None,
            score_threshold: 0.05,
            box_from_mask: None,
            results_dir: &self.dir,
            limit: Some(self.limit),
            threads: 1,
        };
        let runs = svit_export::eval::run(&model, &spec, |_, _| {})?;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        for r in &runs {
            tracing::info!(
                step,
                threshold = r.threshold,
                "validation: box AP {:.2} mask AP {:.2} kept {:.3}",
                r.box_ap,
                r.mask_ap,
                r.kept_fraction
            );
            let line = serde_json::json!({
                "step": step,
                "threshold": r.threshold,
                "box_ap": r.box_ap,
                "mask_ap": r.mask_ap,
                "box_ap50": r.box_ap50,
                "mask_ap50": r.mask_ap50,
                "kept_fraction": r.kept_fraction,
            });
            writeln!(log, "{line}").with_context(|| format!("writing {}", self.log.display()))?;
        }
        Ok(())
    }
}

/// `--seed`, else the resumed run's seed (so its stream goes on as it started), else 1.
fn train_seed(out: &std::path::Path, resumed: Option<u64>, seed: Option<u64>) -> u64 {
    match (resumed, seed) {
        (Some(saved), Some(s)) if s != saved => {
            tracing::warn!(
                "--seed {s}: the run in {} was started with seed {saved}; its data stream changes from here",
                out.display()
            );
            s
        }
        (Some(saved), _) => saved,
        (None, s) => s.unwrap_or(1),
    }
}

/// The model a `train` run builds: a resumed run's own (flags may only repeat it), a `--from`
/// checkpoint's shape, or the preset's; `--stem` and `--keep-targets` adjust the last two.
fn train_config(
    out: &std::path::Path,
    resumed: Option<&ModelConfig>,
    from: Option<&ModelConfig>,
    preset: Option<Preset>,
    stem: Option<Vec<usize>>,
    keep_targets: Option<Vec<f32>>,
    classes: usize,
) -> Result<ModelConfig> {
    if let Some(saved) = resumed {
        let preset_shape = preset.map(|p| preset_config(p, classes)).filter(|p| {
            (p.image_size, p.dim, p.depth, p.heads)
                != (saved.image_size, saved.dim, saved.depth, saved.heads)
        });
        if let Some(p) = preset_shape {
            bail!(
                "--preset describes {}x{} input, dim {}, {} blocks; the run in {} has {}x{}, dim {}, {} blocks (leave --preset out to resume it)",
                p.image_size, p.image_size, p.dim, p.depth, out.display(),
                saved.image_size, saved.image_size, saved.dim, saved.depth
            );
        }
        if let Some(s) = stem.filter(|s| *s != saved.stem) {
            bail!(
                "--stem {s:?} differs from the stem {:?} of the run in {}",
                saved.stem,
                out.display()
            );
        }
        if let Some(t) = keep_targets.filter(|t| *t != saved.keep_targets) {
            bail!(
                "--keep-targets {t:?} differs from the run's {:?}; start a new run (--from) to change them",
                saved.keep_targets
            );
        }
        if saved.num_classes != classes {
            bail!(
                "the run in {} has {} classes; the training data has {classes}",
                out.display(),
                saved.num_classes
            );
        }
        return Ok(saved.clone());
    }
    let mut config = match from {
        // --from: the model shape is the checkpoint's, whatever the preset says.
        Some(trained) => {
            if stem.as_ref().is_some_and(|s| *s != trained.stem) {
                bail!(
                    "--stem differs from the --from checkpoint's stem {:?}",
                    trained.stem
                );
            }
            ModelConfig {
                num_classes: classes,
                ..trained.clone()
            }
        }
        None => {
            let mut c = preset_config(preset.unwrap_or(Preset::Demo), classes);
            if let Some(stem) = stem {
                c.stem = stem;
            }
            c
        }
    };
    if let Some(t) = keep_targets {
        if t.len() != config.num_gates() {
            bail!(
                "--keep-targets has {} values; this model has {} gated blocks",
                t.len(),
                config.num_gates()
            );
        }
        config.keep_targets = t;
    }
    Ok(config)
}

/// `--from PATH`: the weights file it names (a checkpoint directory means its final weights)
/// and the model config it was trained with.
fn from_checkpoint(path: &std::path::Path) -> Result<(PathBuf, ModelConfig)> {
    let (dir, weights) = if path.is_dir() {
        let c = train::Checkpoint {
            dir: path.to_path_buf(),
        };
        (path.to_path_buf(), c.weights())
    } else {
        let dir = path.parent().unwrap_or(std::path::Path::new("."));
        (dir.to_path_buf(), path.to_path_buf())
    };
    if !weights.is_file() {
        bail!(
            "--from {}: no weights file {}",
            path.display(),
            weights.display()
        );
    }
    let state = train::Checkpoint { dir }.load_state()?;
    Ok((weights, state.plan.config))
}

struct Quantize {
    calib: PathBuf,
    calib_images: usize,
    method: svit_export::quant::RangeMethod,
    percentile: f32,
    check: Option<PathBuf>,
    check_images: Option<PathBuf>,
    check_limit: usize,
    max_ap_drop: f64,
    allow_drop: bool,
}

/// The checkpoint `a` names: its training state, the weights file used and the model.
struct Loaded {
    state: train::CheckpointState,
    weights: PathBuf,
    net: svit_export::model::Svit,
    /// What `--gate-calib` did, for the manifest's provenance.
    gate_shifts: Option<Vec<svit_export::gatecal::GateShift>>,
}

fn load_checkpoint(a: &BundleArgs) -> Result<Loaded> {
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
    a: &BundleArgs,
) -> Result<Vec<svit_export::gatecal::GateShift>> {
    let cfg = &net.cfg;
    let images = svit_export::quant::load_images(
        dir,
        cfg.image_size,
        svit_export::targets::MEAN,
        svit_export::targets::STD,
        256,
    )?;
    let floor = svit_export::bundle::min_keep(cfg, a.min_keep);
    let bar = ProgressBar::new(net.gates.len() as u64 + 1).with_style(
        ProgressStyle::with_template(&format!(
            "calibrating gates on {} images {{bar:40}} pass {{pos}}/{{len}} [{{elapsed_precise}}<{{eta_precise}}]",
            images.len()
        ))
        .expect("static template"),
    );
    let targets = a.gate_targets.as_deref();
    let shifts = svit_export::gatecal::calibrate_gates(
        vm,
        net,
        &images,
        svit_export::bundle::THRESHOLD,
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
fn bundle(
    a: &BundleArgs,
    l: &Loaded,
    int8: Option<&svit_export::quant::Ranges>,
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
            "threshold": svit_export::bundle::THRESHOLD,
            "gates": g,
        })),
    });
    let spec = svit_export::bundle::BundleSpec {
        name: &name,
        labels: &st.plan.labels,
        provenance: Some(provenance),
        f16: a.f16,
        int8,
        min_keep: a.min_keep,
    };
    let out = &a.out;
    let m = svit_export::bundle::write(&l.net, &spec, out)?;
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
        svit_export::bundle::pack(out, &m, &t)?;
        svit_runtime::Model::load(&t, "f32")
            .with_context(|| format!("re-loading {}", t.display()))?;
        tracing::info!("packed {}", t.display());
    }
    Ok(models)
}

fn quantize(a: &BundleArgs, q: &Quantize) -> Result<()> {
    use svit_export::quant;
    let l = load_checkpoint(a)?;
    let cfg = &l.state.plan.config;
    let images = quant::load_images(
        &q.calib,
        cfg.image_size,
        svit_export::targets::MEAN,
        svit_export::targets::STD,
        q.calib_images,
    )?;
    tracing::info!(images = images.len(), method = ?q.method, "calibrating on {}", q.calib.display());
    let bar = ProgressBar::new(images.len() as u64).with_style(
        ProgressStyle::with_template(
            "calibrating {bar:40} {pos}/{len} images [{elapsed_precise}<{eta_precise}]",
        )
        .expect("static template"),
    );
    let ranges = quant::calibrate(&l.net, &images, q.method, q.percentile, |n| {
        bar.inc(n as u64)
    })?;
    bar.finish_and_clear();
    let models = bundle(a, &l, Some(&ranges))?;

    let (Some(coco_json), Some(imgs)) = (&q.check, &q.check_images) else {
        tracing::warn!(
            "NO ACCURACY CHECK: int8 shipped unchecked; pass --check-coco (or put instances.json in --calib) so a lossy int8 is caught"
        );
        return Ok(());
    };
    let results_dir = std::env::temp_dir().join(format!("svit-quantize-{}", std::process::id()));
    let by_precision = |p: &str| {
        models
            .iter()
            .find(|m| m.precision == p)
            .with_context(|| format!("{} has no {p} graphs", a.out.display()))
    };
    let thresholds = by_precision("f32")?
        .manifest
        .defaults
        .compared_thresholds(&[]);
    let mut ap = Vec::new();
    for precision in ["f32", "int8"] {
        let model = by_precision(precision)?;
        let spec = svit_export::eval::EvalSpec {
            coco: coco_json,
            images: imgs,
            thresholds: &thresholds,
            min_keep: None,
            score_threshold: 0.05,
            box_from_mask: None,
            results_dir: &results_dir,
            limit: Some(q.check_limit),
            threads: 1,
        };
        let bar = ProgressBar::new(0).with_message(format!("checking {precision}"));
        let runs = svit_export::eval::run(model, &spec, |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        })?;
        bar.finish_and_clear();
        ap.push(runs);
    }
    let _ = std::fs::remove_dir_all(&results_dir);
    let mut worst = 0f64;
    for (f, i) in ap[0].iter().zip(&ap[1]) {
        let (db, dm) = (f.box_ap - i.box_ap, f.mask_ap - i.mask_ap);
        worst = worst.max(db).max(dm);
        println!(
            "threshold {:.2}: box AP f32 {:.2} int8 {:.2} ({:+.2}), mask AP f32 {:.2} int8 {:.2} ({:+.2})",
            f.threshold, f.box_ap, i.box_ap, -db, f.mask_ap, i.mask_ap, -dm
        );
    }
    if worst > q.max_ap_drop {
        let msg = format!(
            "int8 loses {worst:.2} AP against f32 on {} (more than --max-ap-drop {})",
            coco_json.display(),
            q.max_ap_drop
        );
        if q.allow_drop {
            tracing::warn!("{msg}; shipped anyway because of --allow-drop");
        } else {
            bundle(a, &l, None)?;
            bail!("{msg}: the int8 graphs were NOT shipped ({} holds f32 only). Try --method minmax or another --percentile, or --allow-drop.", a.out.display());
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn eval(
    bundle: PathBuf,
    coco_json: PathBuf,
    images: PathBuf,
    thresholds: Vec<f32>,
    min_keep: Option<MinKeep>,
    precision: String,
    (score_threshold, box_from_mask): (f32, Option<f32>),
    json: Option<PathBuf>,
    limit: Option<usize>,
    threads: usize,
) -> Result<()> {
    if box_from_mask.is_some_and(|w| !(0.0..=1.0).contains(&w)) {
        bail!("--box-from-mask must be between 0 and 1");
    }
    let model = svit_runtime::Model::load(&bundle, &precision)
        .with_context(|| format!("loading bundle {}", bundle.display()))?;
    let thresholds = model.manifest.defaults.compared_thresholds(&thresholds);
    // COCO results files go beside the summary JSON, or under runs/eval without one.
    let results_dir = match json.as_ref().and_then(|j| j.parent()) {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        Some(_) => PathBuf::from("."),
        None => PathBuf::from("runs/eval"),
    };
    let spec = svit_export::eval::EvalSpec {
        coco: &coco_json,
        images: &images,
        thresholds: &thresholds,
        min_keep,
        score_threshold,
        box_from_mask,
        results_dir: &results_dir,
        limit,
        threads,
    };
    let bar = ProgressBar::new(0);
    let runs = svit_export::eval::run(&model, &spec, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    println!(
        "{:>9} {:>9} {:>7} {:>7} {:>9} {:>9} {:>6} {:>6}",
        "threshold", "precision", "box AP", "mask AP", "box AP50", "mask AP50", "kept", "GMACs"
    );
    for r in &runs {
        println!(
            "{:>9.2} {:>9} {:>7.2} {:>7.2} {:>9.2} {:>9.2} {:>6.3} {:>6.3}",
            r.threshold,
            r.precision,
            r.box_ap,
            r.mask_ap,
            r.box_ap50,
            r.mask_ap50,
            r.kept_fraction,
            r.gmacs
        );
    }
    // Per class, box/mask AP at each threshold: which classes the model gets wrong.
    if let Some(first) = runs.first() {
        print!("\n{:>12}", "class");
        for r in &runs {
            print!(" {:>15}", format!("box/mask t={:.2}", r.threshold));
        }
        println!();
        for (i, c) in first.per_class.iter().enumerate() {
            print!("{:>12}", c.name);
            for r in &runs {
                let a = &r.per_class[i];
                print!(" {:>15}", format!("{:.2}/{:.2}", a.box_ap, a.mask_ap));
            }
            println!();
        }
    }
    // Class confusion at the first threshold: which classes the detector mistakes for which.
    if let Some(first) = runs.first() {
        println!(
            "\nwhat each object is called at threshold {:.2} (rows: true class; columns: the \
             best-scoring detection at box IoU >= 0.5)",
            first.threshold
        );
        print!("{:>12}", "");
        for c in &first.per_class {
            print!(" {:>8.8}", c.name);
        }
        println!(" {:>8} {:>7}", "missed", "right");
        for (i, row) in first.confusion.iter().enumerate() {
            print!("{:>12.12}", first.per_class[i].name);
            for n in row {
                print!(" {n:>8}");
            }
            let found: u64 = row[..row.len() - 1].iter().sum();
            let right = 100.0 * row[i] as f64 / found.max(1) as f64;
            println!(" {right:>6.1}%");
        }
    }
    if let Some(j) = json {
        let doc = serde_json::json!({ "bundle": bundle.display().to_string(), "runs": runs });
        std::fs::write(&j, serde_json::to_vec_pretty(&doc)?)
            .with_context(|| format!("writing {}", j.display()))?;
    }
    Ok(())
}

fn reference(bundle: PathBuf, image: PathBuf, out: PathBuf) -> Result<()> {
    use tract_onnx::prelude::*;
    let model = svit_runtime::Model::load(&bundle, "f32")?;
    let img = image::open(&image)
        .with_context(|| format!("reading {}", image.display()))?
        .to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let s = model.config().image_size;
    let inp = &model.manifest.input;
    let mut chw = Vec::new();
    svit_runtime::preprocess::resize_normalise(
        img.as_raw(),
        w,
        h,
        &Layout::chw(s),
        inp.mean,
        inp.std,
        &mut chw,
    );
    std::fs::create_dir_all(&out)?;
    let write = |name: &str, v: &[f32]| -> Result<()> {
        let p = out.join(name);
        std::fs::write(
            &p,
            v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>(),
        )
        .with_context(|| format!("writing {}", p.display()))
    };
    write("input.f32", &chw)?;
    let plan = tract_onnx::onnx()
        .model_for_path(bundle.join("dense.onnx"))?
        .into_optimized()?
        .into_runnable()?;
    let res = plan.run(tvec!(Tensor::from_shape(&[1, 3, s, s], &chw)?.into()))?;
    let names = ["heat", "boxes", "coef", "protos"];
    for (name, t) in names.iter().zip(res.iter()) {
        write(
            &format!("tract_dense_{name}.f32"),
            t.try_as_plain_ram()?.as_slice::<f32>()?,
        )?;
    }
    let mut st = model.new_state(1)?;
    let opts = svit_runtime::RunOptions {
        pruning: svit_runtime::Pruning::Threshold {
            threshold: 0.0,
            min_keep: MinKeep::uniform(1),
        },
        ..model.default_options()
    };
    model.run_tensor(&mut st, &chw, &opts)?;
    for (name, v) in names.iter().zip(st.head_outputs()) {
        write(&format!("stages_t0_{name}.f32"), v)?;
    }
    tracing::info!("wrote reference tensors to {}", out.display());
    Ok(())
}

fn preset_config(p: Preset, classes: usize) -> ModelConfig {
    match p {
        Preset::Demo => ModelConfig::demo(classes),
        Preset::DeitTiny => ModelConfig::deit_tiny(classes),
    }
}

fn data(out: PathBuf, scenes: u64, seed: u64, size: usize) -> Result<()> {
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let cfg = svit_scenes::SceneConfig::square(size);
    let bar = ProgressBar::new(scenes);
    let mut ds = coco::Dataset {
        images: Vec::new(),
        annotations: Vec::new(),
        categories: svit_scenes::CLASSES
            .iter()
            .enumerate()
            .map(|(i, n)| coco::Category {
                id: i as u64 + 1,
                name: n.to_string(),
            })
            .collect(),
    };
    for i in 0..scenes {
        let s = svit_scenes::generate(&cfg, seed, i);
        let file_name = format!("{i:06}.png");
        let path = out.join(&file_name);
        image::save_buffer(
            &path,
            &s.rgb,
            s.width as u32,
            s.height as u32,
            image::ColorType::Rgb8,
        )
        .with_context(|| format!("writing {}", path.display()))?;
        let image_id = i + 1;
        ds.images.push(coco::Image {
            id: image_id,
            file_name,
            width: s.width,
            height: s.height,
        });
        for o in &s.objects {
            ds.annotations.push(coco::Annotation {
                id: ds.annotations.len() as u64 + 1,
                image_id,
                category_id: o.class as u64 + 1,
                bbox: o.bbox.map(f64::from),
                area: o.area as f64,
                iscrowd: 0,
                segmentation: Some(coco::Segmentation::from_mask(&o.mask, s.width, s.height)),
            });
        }
        bar.inc(1);
    }
    bar.finish();
    let json = out.join("instances.json");
    ds.save(&json)
        .with_context(|| format!("writing {}", json.display()))?;
    tracing::info!(
        images = ds.images.len(),
        objects = ds.annotations.len(),
        "wrote {}",
        json.display()
    );
    Ok(())
}

/// The last step a validation log (`val.jsonl`, a JSON object per line) holds; lines that do
/// not parse are skipped.
fn last_validated(log: &str) -> Option<usize> {
    log.lines()
        .filter_map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()?
                .get("step")?
                .as_u64()
        })
        .max()
        .map(|s| s as usize)
}

#[cfg(test)]
mod tests {
    #[test]
    fn last_validated_step_of_a_log() {
        let log = "{\"step\":500,\"box_ap\":1}\n{\"step\":1000}\ngarbage\n{\"step\":750}\n";
        assert_eq!(super::last_validated(log), Some(1000));
        assert_eq!(super::last_validated(""), None);
    }
}
