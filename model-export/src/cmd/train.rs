//! `svit-export train`: dense training, then gated fine-tuning (SViT); resumable, with
//! validation of the checkpoints as the board runs them.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use svit_export::{coco, train};
use svit_runtime::ModelConfig;

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Preset {
    /// 256x256, dim 128, 8 blocks, gates on blocks 2..7 (the shipped demo).
    Demo,
    /// DeiT-Tiny: 320x320, dim 192, 12 blocks, 3 heads, gates on blocks 3..11.
    DeitTiny,
}

/// `svit_scenes::Style` on the command line.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum SceneStyle {
    Plain,
    Camera,
}

impl From<SceneStyle> for svit_scenes::Style {
    fn from(s: SceneStyle) -> Self {
        match s {
            SceneStyle::Plain => svit_scenes::Style::Plain,
            SceneStyle::Camera => svit_scenes::Style::Camera,
        }
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// Checkpoint directory (model.safetensors, state.json, dense.safetensors).
    #[arg(long)]
    pub out: PathBuf,
    /// Model size (default: demo; a resumed run keeps its own).
    #[arg(long, value_enum)]
    pub preset: Option<Preset>,
    /// Widths of a hierarchical-MLP patch stem in front of the blocks, e.g. `32,64` (4x4
    /// pixel patches -> 32 -> 2x2 merge -> 64 -> 2x2 merge -> dim). Default: the preset's
    /// (plain ViT patch embedding, which `--init` can load).
    #[arg(long, value_delimiter = ',')]
    pub stem: Option<Vec<usize>>,
    /// Kept-token fraction the ratio loss pulls each gate towards during gated
    /// fine-tuning, one per gated block (default: the preset's or the --from checkpoint's).
    #[arg(long, value_delimiter = ',')]
    pub keep_targets: Option<Vec<f32>>,
    #[arg(long, default_value_t = 3000)]
    pub dense_steps: usize,
    #[arg(long, default_value_t = 1000)]
    pub gated_steps: usize,
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Learning rate of backbone and head during gated fine-tuning, relative to --lr.
    #[arg(long, default_value_t = 0.1)]
    pub finetune_lr_scale: f64,
    /// Weight of token distillation during gated fine-tuning: the pruned model's final
    /// tokens are pulled towards those of the dense model the phase started from (relative
    /// squared error; 0 = off).
    #[arg(long, default_value_t = 0.0)]
    pub distill: f64,
    /// Keep probability the gates start the gated phase at (e.g. 0.9: fine-tuning starts
    /// near the dense model and the ratio loss prunes from there); 0 = as initialised.
    #[arg(long, default_value_t = 0.0)]
    pub gate_init_keep: f64,
    /// Seed of the synthetic training stream (keep it apart from the validation seed).
    /// Default: 1, or the run's own seed when resuming.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Look of the synthetic scenes: `plain` backdrops, or `camera` (natural-image
    /// backgrounds, perspective, blur, noise, JPEG, empty scenes). Default: plain, or the
    /// run's own when resuming.
    #[arg(long, value_enum)]
    pub scenes: Option<SceneStyle>,
    /// Continue from the checkpoint in --out.
    #[arg(long)]
    pub resume: bool,
    /// Start the backbone from ViT weights in timm DeiT naming (safetensors).
    #[arg(long, conflicts_with_all = ["resume", "from"])]
    pub init: Option<PathBuf>,
    /// Start from a checkpoint of this project, with this run's schedule and data: a
    /// checkpoint directory (its final weights) or a weights file in one (e.g.
    /// `runs/x/dense.safetensors`). The model shape comes from that checkpoint; the class
    /// logits start fresh when the data has other labels.
    #[arg(long, conflicts_with = "resume")]
    pub from: Option<PathBuf>,
    /// Train on a COCO-format data set instead of synthetic scenes.
    #[arg(long, requires = "images")]
    pub coco: Option<PathBuf>,
    #[arg(long)]
    pub images: Option<PathBuf>,
    #[arg(long, default_value_t = 100)]
    pub ckpt_every: usize,
    /// Validate while training on this COCO instances JSON (e.g. `svit-export data --out
    /// data/val`): box and mask AP of the checkpoint, run as the board runs it, logged and
    /// appended to OUT/val.jsonl (dense; also at the bundle's default threshold once gates
    /// train).
    #[arg(long)]
    pub val_coco: Option<PathBuf>,
    /// Images of --val-coco (default: the JSON's folder).
    #[arg(long, requires = "val_coco")]
    pub val_images: Option<PathBuf>,
    /// Validate at the first checkpoint after every N steps, and at the end of each phase.
    #[arg(long, default_value_t = 500)]
    pub val_every: usize,
    /// How many of the validation images (the first N).
    #[arg(long, default_value_t = 200)]
    pub val_limit: usize,
}

pub fn run(a: Args) -> Result<()> {
    let Args {
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
        scenes,
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
    } = a;
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
    let style = scenes
        .map(svit_scenes::Style::from)
        .or(resumed.as_ref().map(|p| p.style))
        .unwrap_or_default();
    let mut source: Box<dyn train::DataSource> = match coco {
        None => Box::new(train::Synthetic {
            cfg: svit_scenes::SceneConfig::with_style(config.image_size, style),
            seed,
        }),
        Some(json) => {
            let images = images.context("--coco needs --images")?;
            Box::new(svit_export::coco::data::CocoSource::open(
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
        style,
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
            let images =
                val_images.unwrap_or_else(|| coco.parent().map(PathBuf::from).unwrap_or_default());
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
        svit_export::coco::eval::category_map(&plan.labels, &ds, &coco)?;
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
        let spec = svit_export::export::bundle::BundleSpec {
            name: "val",
            labels: &self.labels,
            provenance: None,
            f16: false,
            int8: None,
            min_keep: None,
        };
        svit_export::export::bundle::write(net, &spec, &self.dir)?;
        let model = svit_runtime::Model::load(&self.dir, "f32")?;
        let mut thresholds = vec![0.0];
        if step > self.dense_steps {
            thresholds.push(model.manifest.defaults.threshold);
        }
        let spec = svit_export::coco::eval::EvalSpec {
            coco: &self.coco,
            images: &self.images,
            thresholds: &thresholds,
            min_keep: None,
            score_threshold: 0.05,
            box_from_mask: None,
            results_dir: &self.dir,
            limit: Some(self.limit),
            threads: 1,
            budgets: &[],
            latency: None,
        };
        let runs = svit_export::coco::eval::run(&model, &spec, |_, _| {})?;
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

fn preset_config(p: Preset, classes: usize) -> ModelConfig {
    match p {
        Preset::Demo => ModelConfig::demo(classes),
        Preset::DeitTiny => ModelConfig::deit_tiny(classes),
    }
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
