//! Training: dense first, then gated fine-tuning as SViT does it, with checkpoints and resume.

pub mod import;
pub mod targets;

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarMap};
use serde::{Deserialize, Serialize};
use svit_runtime::ModelConfig;

use crate::model::{self, GateMode, Svit};
use targets::{Sample, Targets};

/// Weight of the keep-ratio loss (SViT).
pub const RATIO_WEIGHT: f64 = 4.0;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainPlan {
    pub config: ModelConfig,
    pub labels: Vec<String>,
    pub dense_steps: usize,
    pub gated_steps: usize,
    pub batch: usize,
    pub lr: f64,
    /// Backbone and head learning rate during gated fine-tuning, as a fraction of `lr`.
    pub finetune_lr_scale: f64,
    /// Weight of token distillation from the dense model during gated fine-tuning (0 = off).
    #[serde(default)]
    pub distill: f64,
    /// Keep probability the gates start the gated phase at (their output bias is set to it
    /// when the phase begins); 0 = leave them as initialised (about 0.5).
    #[serde(default)]
    pub gate_init_keep: f64,
    pub warmup: usize,
    pub seed: u64,
    /// Look of the synthetic scenes (runs from before styles were plain).
    #[serde(default)]
    pub style: svit_scenes::Style,
}

/// What `state.json` beside the weights records, so `--resume` continues where it stopped.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckpointState {
    pub plan: TrainPlan,
    pub step: usize,
    pub seconds: f64,
    pub last_loss: Option<f32>,
}

pub trait DataSource {
    /// Sample `index` of the training stream, already at the model's input size.
    fn sample(&mut self, index: u64) -> Result<Sample>;
}

pub struct Synthetic {
    pub cfg: svit_scenes::SceneConfig,
    pub seed: u64,
}

impl DataSource for Synthetic {
    fn sample(&mut self, index: u64) -> Result<Sample> {
        Ok(Sample::from_scene(svit_scenes::generate(
            &self.cfg, self.seed, index,
        )))
    }
}

pub struct Losses {
    pub total: Tensor,
    pub parts: [f32; 6], // heat, offset, size, mask, ratio, distill
}

/// The dense model a gated phase started from, run beside it so the pruned model's final tokens
/// can be pulled towards the dense ones (DynamicViT's token distillation). Its weights are plain
/// tensors, not variables, so backward never walks into it.
pub struct Teacher {
    net: Svit,
    weight: f64,
}

impl Teacher {
    pub fn load(weights: &Path, cfg: &ModelConfig, weight: f64, dev: &Device) -> Result<Self> {
        let tensors = candle_core::safetensors::load(weights, dev)
            .with_context(|| format!("loading the distillation teacher {}", weights.display()))?;
        let vb = candle_nn::VarBuilder::from_tensors(tensors, DType::F32, dev);
        let net = Svit::new(&vb, cfg)
            .with_context(|| format!("{} does not fit the model config", weights.display()))?;
        Ok(Teacher { net, weight })
    }
}

fn softplus(x: &Tensor) -> candle_core::Result<Tensor> {
    // max(x, 0) + log(1 + exp(-|x|)), stable for large |x|.
    x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?
}

pub fn losses(
    net: &Svit,
    t: &Targets,
    b: usize,
    mode: &GateMode,
    teacher: Option<&Teacher>,
    dev: &Device,
) -> Result<Losses> {
    let cfg = &net.cfg;
    let s = cfg.image_size;
    let img = Tensor::from_slice(&t.images, (b, 3, s, s), dev)?;
    let out = net.forward(&img, mode)?;
    let h = &out.head;
    let (g8, g4, nc, np) = (s / 8, s / 4, cfg.num_classes, cfg.num_protos);
    let m = t.objects();
    let npos = m.max(1) as f64;

    // CenterNet focal loss, penalty-reduced around each peak.
    let gt = Tensor::from_slice(&t.heat, (b, g8 * g8, nc), dev)?;
    let z = h.heat.clamp(-12f32, 12f32)?;
    let log_p = softplus(&z.neg()?)?.neg()?;
    let log_1p = softplus(&z)?.neg()?;
    let p = log_p.exp()?;
    let pos = gt.ge(0.9999f32)?.to_dtype(DType::F32)?;
    let neg = (1.0 - &pos)?;
    let pos_l = ((1.0 - &p)?.sqr()? * &log_p)?.mul(&pos)?.sum_all()?;
    let neg_w = (1.0 - &gt)?.powf(4.0)?;
    let neg_l = (p.sqr()? * &log_1p)?.mul(&neg_w)?.mul(&neg)?.sum_all()?;
    let heat = ((pos_l + neg_l)?.neg()? / npos)?;

    let zero = Tensor::zeros((), DType::F32, dev)?;
    let (off, size, mask) = if m == 0 {
        (zero.clone(), zero.clone(), zero.clone())
    } else {
        let idx = Tensor::from_slice(&t.centre_idx, m, dev)?;
        let pred = h.boxes.reshape((b * g8 * g8, 4))?.index_select(&idx, 0)?;
        let tb = Tensor::from_slice(&t.boxes, (m, 4), dev)?;
        let diff = (pred - tb)?.abs()?;
        let off = diff.narrow(1, 0, 2)?.mean_all()?;
        let size = diff.narrow(1, 2, 2)?.mean_all()?;
        // YOLACT: mask logits = protos . coefficients, BCE inside the box crop.
        let coef = h.coef.reshape((b * g8 * g8, np))?.index_select(&idx, 0)?; // (M, P)
        let img_idx = Tensor::from_slice(&t.obj_img, m, dev)?;
        let protos = h.protos.index_select(&img_idx, 0)?; // (M, G4², P)
        let logits = protos.matmul(&coef.unsqueeze(2)?)?.squeeze(2)?; // (M, G4²)
        let tm = Tensor::from_slice(&t.masks, (m, g4 * g4), dev)?;
        let tw = Tensor::from_slice(&t.mask_w, (m, g4 * g4), dev)?;
        let bce = (softplus(&logits)? - (&tm * &logits)?)?;
        let per_obj = ((bce * &tw)?.sum(1)? / (tw.sum(1)? + 1.0)?)?;
        (off, size, per_obj.mean_all()?)
    };

    // SViT keep-ratio loss: per image mean keep against the gate's target, squared.
    let ratio = if out.policies.is_empty() {
        zero
    } else {
        let mut acc = Vec::new();
        for (g, pol) in out.policies.iter().enumerate() {
            let keep = pol.mean(1)?;
            acc.push((keep - cfg.keep_targets[g] as f64)?.sqr()?.mean_all()?);
        }
        (Tensor::stack(&acc, 0)?.mean_all()? * RATIO_WEIGHT)?
    };
    // Relative squared error of the final tokens against the dense teacher's: scale-free, so
    // the weight means the same whatever the residual stream's magnitude.
    let distill = match teacher {
        None => Tensor::zeros((), DType::F32, dev)?,
        Some(tch) => {
            let want = tch.net.forward(&img, &GateMode::Dense)?.tokens.detach();
            let err = (&out.tokens - &want)?.sqr()?.mean_all()?;
            ((err / want.sqr()?.mean_all()?.to_scalar::<f32>()?.max(1e-12) as f64)? * tch.weight)?
        }
    };
    let total = (((((&heat + &off)? + &size)? + &mask)? + &ratio)? + &distill)?;
    let parts = [
        heat.to_scalar()?,
        off.to_scalar()?,
        size.to_scalar()?,
        mask.to_scalar()?,
        ratio.to_scalar()?,
        distill.to_scalar()?,
    ];
    if parts.iter().any(|v: &f32| !v.is_finite()) {
        bail!("loss is not finite ({parts:?}): lower the learning rate or check the data");
    }
    Ok(Losses { total, parts })
}

fn lr_at(plan: &TrainPlan, step: usize) -> f64 {
    // Each phase: linear warm-up, then cosine down to 5%.
    let (local, len) = if step < plan.dense_steps {
        (step, plan.dense_steps)
    } else {
        (step - plan.dense_steps, plan.gated_steps)
    };
    let warm = plan.warmup.min(len / 4).max(1);
    if local < warm {
        return plan.lr * (local + 1) as f64 / warm as f64;
    }
    let t = (local - warm) as f64 / (len - warm).max(1) as f64;
    plan.lr * (0.05 + 0.95 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()))
}

pub struct Checkpoint {
    pub dir: PathBuf,
}

impl Checkpoint {
    pub fn weights(&self) -> PathBuf {
        self.dir.join("model.safetensors")
    }
    pub fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    /// The model as it was when dense training ended, before gates were trained.
    pub fn dense_weights(&self) -> PathBuf {
        self.dir.join("dense.safetensors")
    }
    fn save(&self, vm: &VarMap, st: &CheckpointState) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        // Write then rename, so a kill mid-save leaves the previous checkpoint intact.
        let tmp = self.dir.join("model.safetensors.tmp");
        vm.save(&tmp).context("saving weights")?;
        std::fs::rename(&tmp, self.weights())?;
        let tmp = self.dir.join("state.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(st)?)?;
        std::fs::rename(&tmp, self.state())?;
        Ok(())
    }
    pub fn load_state(&self) -> Result<CheckpointState> {
        let p = self.state();
        let bytes = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a training state", p.display()))
    }
}

/// Loads a checkpoint's weights into a fresh model (for export and tests).
pub fn load_model(weights: &Path, cfg: &ModelConfig, dev: &Device) -> Result<(VarMap, Svit)> {
    let mut vm = VarMap::new();
    let net = model::build(cfg, &vm, dev)?;
    vm.load(weights)
        .with_context(|| format!("loading weights from {}", weights.display()))?;
    Ok((vm, net))
}

fn vars_by(vm: &VarMap, gate: bool) -> Vec<Var> {
    let data = vm.data().lock().expect("varmap lock");
    let mut named: Vec<(&String, &Var)> = data
        .iter()
        .filter(|(k, _)| k.starts_with("gates.") == gate)
        .collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    named.into_iter().map(|(_, v)| v.clone()).collect()
}

/// After every checkpoint is written: the step and the model as saved (validation).
pub type OnSaved<'a> = &'a mut dyn FnMut(usize, &Svit);

pub struct Progress<'a> {
    pub on_step: &'a mut dyn FnMut(usize, &[f32; 6], f64),
    pub on_saved: Option<OnSaved<'a>>,
}

/// Where the weights of a new (not resumed) run come from.
#[derive(Clone, Copy)]
pub enum Start<'a> {
    Random,
    /// `--init`: the backbone from ViT weights in timm's DeiT naming.
    Deit(&'a Path),
    /// `--from`: a checkpoint of this project (same model shape; head tensors that differ,
    /// such as the class logits of another label set, start fresh).
    Checkpoint(&'a Path),
}

/// Runs (or resumes) a training plan into `ckpt`; a new run starts as `start` says.
pub fn train(
    plan: TrainPlan,
    ckpt: &Checkpoint,
    resume: bool,
    start: Start,
    data: &mut dyn DataSource,
    ckpt_every: usize,
    mut progress: Progress,
) -> Result<CheckpointState> {
    plan.config.validate().map_err(crate::Error::Invalid)?;
    let dev = Device::Cpu;
    let mut vm = VarMap::new();
    let net = model::build(&plan.config, &vm, &dev)?;
    let mut state = CheckpointState {
        plan: plan.clone(),
        step: 0,
        seconds: 0.0,
        last_loss: None,
    };
    if resume {
        let saved = ckpt.load_state()?;
        if saved.plan.config != plan.config {
            bail!(
                "{} was trained with another model config; use a new --out",
                ckpt.state().display()
            );
        }
        vm.load(ckpt.weights())
            .with_context(|| format!("loading {}", ckpt.weights().display()))?;
        // Moving the dense phase's end (`--dense-steps`) is fine while the weights have seen
        // only dense steps and the new end is not behind them; otherwise the schedule would
        // call dense-trained weights gated, or the other way round.
        let only_dense = saved.step <= saved.plan.dense_steps;
        if plan.dense_steps != saved.plan.dense_steps
            && (!only_dense || saved.step > plan.dense_steps)
        {
            bail!(
                "{} is at step {} and its dense phase ends at step {}: --dense-steps {} can only move that end while the run is still dense, and not behind its step (keep --dense-steps {})",
                ckpt.state().display(),
                saved.step,
                saved.plan.dense_steps,
                plan.dense_steps,
                saved.plan.dense_steps
            );
        }
        state.step = saved.step;
        state.seconds = saved.seconds;
        tracing::info!(step = state.step, "resumed from {}", ckpt.dir.display());
        // A dense phase cut to end where the run stopped never reaches the phase change in
        // the loop below, so its end is recorded here.
        if plan.dense_steps > 0 && state.step == plan.dense_steps && !ckpt.dense_weights().exists()
        {
            std::fs::copy(ckpt.weights(), ckpt.dense_weights())
                .with_context(|| format!("writing {}", ckpt.dense_weights().display()))?;
            tracing::info!(
                "dense phase ends here: wrote {}",
                ckpt.dense_weights().display()
            );
        }
    } else {
        match start {
            Start::Random => {}
            Start::Deit(path) => crate::train::import::load_backbone(&mut vm, path, &plan.config)?,
            Start::Checkpoint(path) => {
                crate::train::import::load_checkpoint(&mut vm, path)?;
            }
        }
    }

    let params = |lr| ParamsAdamW {
        lr,
        weight_decay: 0.01,
        ..Default::default()
    };
    let mut opt_main = AdamW::new(vars_by(&vm, false), params(plan.lr))?;
    let mut opt_gate = AdamW::new(vars_by(&vm, true), params(plan.lr))?;
    let total = plan.dense_steps + plan.gated_steps;
    let mut teacher = None;
    let started = Instant::now();
    let base_seconds = state.seconds;
    while state.step < total {
        let step = state.step;
        let gated = step >= plan.dense_steps;
        let batch: Vec<Sample> = (0..plan.batch)
            .map(|i| data.sample((step * plan.batch + i) as u64))
            .collect::<Result<_>>()?;
        let t = targets::build(&plan.config, &batch);
        let mode = if gated {
            GateMode::Gumbel
        } else {
            GateMode::Dense
        };
        if step == plan.dense_steps && plan.gate_init_keep > 0.0 {
            set_gate_keep(&vm, plan.gate_init_keep)?;
        }
        if gated && plan.distill > 0.0 && teacher.is_none() {
            // The teacher is the model as dense training left it: dense.safetensors, written
            // at the phase change (or now, when this run starts with the gated phase).
            if !ckpt.dense_weights().exists() {
                std::fs::create_dir_all(&ckpt.dir)
                    .with_context(|| format!("creating {}", ckpt.dir.display()))?;
                vm.save(ckpt.dense_weights())
                    .context("saving the dense weights")?;
            }
            teacher = Some(Teacher::load(
                &ckpt.dense_weights(),
                &plan.config,
                plan.distill,
                &dev,
            )?);
        }
        let l = losses(&net, &t, batch.len(), &mode, teacher.as_ref(), &dev)?;
        let grads = l.total.backward()?;
        let lr = lr_at(&plan, step);
        opt_main.set_learning_rate(if gated {
            lr * plan.finetune_lr_scale
        } else {
            lr
        });
        opt_main.step(&grads)?;
        if gated {
            opt_gate.set_learning_rate(lr);
            opt_gate.step(&grads)?;
        }
        state.step += 1;
        state.last_loss = Some(l.parts.iter().sum());
        state.seconds = base_seconds + started.elapsed().as_secs_f64();
        (progress.on_step)(state.step, &l.parts, lr);
        let phase_end = state.step == plan.dense_steps && plan.dense_steps > 0;
        if phase_end || state.step % ckpt_every.max(1) == 0 || state.step == total {
            ckpt.save(&vm, &state)?;
            if phase_end {
                std::fs::copy(ckpt.weights(), ckpt.dense_weights())?;
            }
            if let Some(f) = progress.on_saved.as_mut() {
                f(state.step, &net);
            }
        }
    }
    Ok(state)
}

/// Sets every gate's output bias so that it keeps a token with probability `p` before its
/// weights say otherwise (channel 0 is "keep"), so the gated phase starts near the dense model
/// instead of dropping half the tokens at random.
pub fn set_gate_keep(vm: &VarMap, p: f64) -> Result<()> {
    if !(0.0..1.0).contains(&p) {
        bail!("a gate's initial keep probability must be in [0, 1), got {p}");
    }
    let half = ((p / (1.0 - p)).ln() / 2.0) as f32;
    let data = vm.data().lock().expect("varmap lock");
    for (name, var) in data.iter() {
        if name.starts_with("gates.") && name.ends_with(".fc2.bias") {
            var.set(&Tensor::new(&[half, -half], var.device())?)?;
        }
    }
    Ok(())
}

/// Mean over a (B, N) keep policy per gate, for logging and tests.
pub fn keep_means(policies: &[Tensor]) -> Result<Vec<f32>> {
    policies
        .iter()
        .map(|p| Ok(p.mean_all()?.to_scalar::<f32>()?))
        .collect()
}
