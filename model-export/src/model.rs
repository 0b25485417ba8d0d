//! The SViT detector in candle, for training. `onnx.rs` writes the same computation as ONNX
//! graphs; `tests/equivalence.rs` proves the two agree on the same weights.
//!
//! Tensor names follow timm's DeiT (`patch_embed.proj.weight`, `blocks.3.attn.qkv.weight`, ...),
//! with linear weights stored `(out, in)` as timm does, so `--init` can load DeiT weights.
//!
//! candle pitfalls avoided on purpose (see ../shared/design.md): LayerNorm is written from tensor
//! ops (candle's fused one has no backward), softmax is `ops::softmax` (not `softmax_last_dim`),
//! and biases are added through a matmul with a ones column (a broadcast add backward is slow).

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::{Init, VarBuilder, VarMap};
use svit_runtime::ModelConfig;

pub const LN_EPS: f64 = 1e-6;

#[derive(Clone)]
pub struct Linear {
    pub w: Tensor,
    pub b: Tensor,
}

impl Linear {
    fn new(vb: &VarBuilder, inp: usize, out: usize, name: &str) -> Result<Self> {
        Self::with_bias(vb, inp, out, name, 0.0)
    }
    fn with_bias(vb: &VarBuilder, inp: usize, out: usize, name: &str, bias: f64) -> Result<Self> {
        let w = vb.get_with_hints(
            (out, inp),
            &format!("{name}.weight"),
            Init::Randn {
                mean: 0.0,
                stdev: 0.02,
            },
        )?;
        let b = vb.get_with_hints(out, &format!("{name}.bias"), Init::Const(bias))?;
        Ok(Linear { w, b })
    }
    /// `x`: (M, in) -> (M, out).
    fn fwd2(&self, x: &Tensor) -> Result<Tensor> {
        let m = x.dim(0)?;
        let ones = Tensor::ones((m, 1), x.dtype(), x.device())?;
        let bias = ones.matmul(&self.b.unsqueeze(0)?)?;
        x.matmul(&self.w.t()?)? + bias
    }
}

impl Module for Linear {
    /// Any leading dims.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let inp = dims[dims.len() - 1];
        let m = x.elem_count() / inp;
        let y = self.fwd2(&x.reshape((m, inp))?)?;
        let mut out = dims;
        *out.last_mut().unwrap() = self.w.dim(0)?;
        y.reshape(out)
    }
}

#[derive(Clone)]
pub struct LayerNorm {
    pub w: Tensor,
    pub b: Tensor,
}

impl LayerNorm {
    fn new(vb: &VarBuilder, dim: usize, name: &str) -> Result<Self> {
        let w = vb.get_with_hints(dim, &format!("{name}.weight"), Init::Const(1.0))?;
        let b = vb.get_with_hints(dim, &format!("{name}.bias"), Init::Const(0.0))?;
        Ok(LayerNorm { w, b })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        let xn = xc.broadcast_div(&(var + LN_EPS)?.sqrt()?)?;
        xn.broadcast_mul(&self.w)?.broadcast_add(&self.b)
    }
}

pub struct Block {
    pub norm1: LayerNorm,
    pub qkv: Linear,
    pub proj: Linear,
    pub norm2: LayerNorm,
    pub fc1: Linear,
    pub fc2: Linear,
    heads: usize,
}

impl Block {
    fn new(vb: &VarBuilder, cfg: &ModelConfig, i: usize) -> Result<Self> {
        let p = format!("blocks.{i}");
        let c = cfg.dim;
        Ok(Block {
            norm1: LayerNorm::new(vb, c, &format!("{p}.norm1"))?,
            qkv: Linear::new(vb, c, 3 * c, &format!("{p}.attn.qkv"))?,
            proj: Linear::new(vb, c, c, &format!("{p}.attn.proj"))?,
            norm2: LayerNorm::new(vb, c, &format!("{p}.norm2"))?,
            fc1: Linear::new(vb, c, c * cfg.mlp_ratio, &format!("{p}.mlp.fc1"))?,
            fc2: Linear::new(vb, c * cfg.mlp_ratio, c, &format!("{p}.mlp.fc2"))?,
            heads: cfg.heads,
        })
    }

    /// `x`: (B, N, C). `policy`: (B, N) with 1 = token computed, 0 = pruned; `None` = all kept.
    /// Pruned tokens are masked out as attention keys and carried unchanged:
    /// `out = s * block(x) + (1 - s) * x` (SViT/DynamicViT).
    pub fn forward(&self, x: &Tensor, policy: Option<&Tensor>) -> Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        let h = self.heads;
        let hd = c / h;
        let qkv = self.qkv.forward(&self.norm1.forward(x)?)?; // (B, N, 3C)
        let qkv = qkv.reshape((b, n, 3, h, hd))?.permute((2, 0, 3, 1, 4))?; // (3, B, H, N, hd)
        let q = (qkv.get(0)? * (1.0 / (hd as f64).sqrt()))?.contiguous()?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let logits = q.matmul(&k.t()?)?; // (B, H, N, N)
        let attn = match policy {
            None => candle_nn::ops::softmax(&logits, D::Minus1)?,
            Some(s) => softmax_with_policy(&logits, s)?,
        };
        let y = attn.matmul(&v)?.permute((0, 2, 1, 3))?.reshape((b, n, c))?;
        let x1 = (x + self.proj.forward(&y)?)?;
        let m = self.fc1.forward(&self.norm2.forward(&x1)?)?.gelu_erf()?;
        let x2 = (&x1 + self.fc2.forward(&m)?)?;
        match policy {
            None => Ok(x2),
            Some(s) => {
                let s = s.unsqueeze(2)?;
                x2.broadcast_mul(&s)? + x.broadcast_mul(&(1.0 - s)?)?
            }
        }
    }
}

/// DynamicViT's masked softmax: pruned keys get no weight; a pruned query still sees itself so
/// its (discarded) row stays finite.
fn softmax_with_policy(logits: &Tensor, s: &Tensor) -> Result<Tensor> {
    let (b, _h, n, _) = logits.dims4()?;
    let eye = Tensor::eye(n, logits.dtype(), logits.device())?.reshape((1, 1, n, n))?;
    let keep = s.reshape((b, 1, 1, n))?;
    let policy = (keep.broadcast_add(&(1.0 - &keep)?.broadcast_mul(&eye)?))?;
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let e = logits.broadcast_sub(&max)?.exp()?.broadcast_mul(&policy)?;
    let eps = 1e-6;
    let sum = e.sum_keepdim(D::Minus1)?;
    (e + eps / n as f64)?.broadcast_div(&(sum + eps)?)
}

pub struct Gate {
    pub norm: LayerNorm,
    pub fc1: Linear,
    pub fc2: Linear,
}

impl Gate {
    fn new(vb: &VarBuilder, cfg: &ModelConfig, g: usize) -> Result<Self> {
        let p = format!("gates.{g}");
        let c = cfg.dim;
        Ok(Gate {
            norm: LayerNorm::new(vb, c, &format!("{p}.norm"))?,
            fc1: Linear::new(vb, c, c / 4, &format!("{p}.fc1"))?,
            fc2: Linear::new(vb, c / 4, 2, &format!("{p}.fc2"))?,
        })
    }
    /// (B, N, C) -> (B, N, 2) log-probabilities; channel 0 is "keep".
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let hdn = self.fc1.forward(&self.norm.forward(x)?)?.gelu_erf()?;
        candle_nn::ops::log_softmax(&self.fc2.forward(&hdn)?, D::Minus1)
    }
}

pub struct Head {
    pub norm: LayerNorm,
    pub up: Linear,
    pub hidden: Linear,
    pub cls: Linear,
    pub boxes: Linear,
    pub coef: Linear,
    pub proto_up: Linear,
    pub proto: Linear,
}

/// What the head computes from the full token map (training layout, batch first).
pub struct HeadOut {
    /// (B, 4N, classes) logits on the stride-8 grid.
    pub heat: Tensor,
    /// (B, 4N, 4): centre offset x, y in cells, log width, log height in cells.
    pub boxes: Tensor,
    /// (B, 4N, P) mask coefficients.
    pub coef: Tensor,
    /// (B, 16N, P) mask prototypes on the stride-4 grid.
    pub protos: Tensor,
}

impl Head {
    fn new(vb: &VarBuilder, cfg: &ModelConfig) -> Result<Self> {
        let (c, d, p, q) = (cfg.dim, cfg.head_dim, cfg.proto_dim, cfg.num_protos);
        Ok(Head {
            norm: LayerNorm::new(vb, c, "norm")?,
            up: Linear::new(vb, c, 4 * d, "head.up")?,
            hidden: Linear::new(vb, d, d, "head.hidden")?,
            // CenterNet's prior: start every cell at p = 0.1 so the focal loss does not explode.
            cls: Linear::with_bias(vb, d, cfg.num_classes, "head.cls", -2.19)?,
            boxes: Linear::new(vb, d, 4, "head.box")?,
            coef: Linear::new(vb, d, q, "head.coef")?,
            proto_up: Linear::new(vb, d, 4 * p, "head.proto_up")?,
            proto: Linear::new(vb, p, q, "head.proto")?,
        })
    }

    pub fn forward(&self, x: &Tensor, grid: usize) -> Result<HeadOut> {
        let u = self.up.forward(&self.norm.forward(x)?)?.gelu_erf()?;
        let u = pixel_shuffle(&u, grid)?; // (B, 4N, D)
        let hdn = self.hidden.forward(&u)?.gelu_erf()?;
        let pu = self.proto_up.forward(&u)?.gelu_erf()?;
        let pu = pixel_shuffle(&pu, grid * 2)?; // (B, 16N, p)
        Ok(HeadOut {
            heat: self.cls.forward(&hdn)?,
            boxes: self.boxes.forward(&hdn)?,
            coef: self.coef.forward(&hdn)?,
            protos: self.proto.forward(&pu)?,
        })
    }
}

/// (B, g*g, D) row-major -> (B, g/2*g/2, 4D) with channels ordered (dy, dx, d): the inverse
/// of `pixel_shuffle`.
pub fn merge_2x2(x: &Tensor, g: usize) -> Result<Tensor> {
    let (b, _, d) = x.dims3()?;
    x.reshape((b, g / 2, 2, g / 2, 2, d))?
        .permute((0, 1, 3, 2, 4, 5))?
        .reshape((b, g * g / 4, 4 * d))
}

/// One stage of the patch embedding. Only the last stage has no norm (the blocks bring theirs).
pub struct StemStage {
    pub proj: Linear,
    pub norm: Option<LayerNorm>,
}

fn stem(vb: &VarBuilder, cfg: &ModelConfig) -> Result<Vec<StemStage>> {
    let (c, p) = (cfg.dim, cfg.patch);
    if cfg.stem.is_empty() {
        // ViT/DeiT layout: a (dim, 3, p, p) Conv weight, seen here as a linear on flat patches.
        let w = vb.get_with_hints(
            (c, 3, p, p),
            "patch_embed.proj.weight",
            Init::Randn {
                mean: 0.0,
                stdev: 0.02,
            },
        )?;
        let b = vb.get_with_hints(c, "patch_embed.proj.bias", Init::Const(0.0))?;
        return Ok(vec![StemStage {
            proj: Linear {
                w: w.reshape((c, 3 * p * p))?,
                b,
            },
            norm: None,
        }]);
    }
    let mut inp = 3 * cfg.stem_patch() * cfg.stem_patch();
    let mut stages = Vec::new();
    for (i, &out) in cfg.stem.iter().enumerate() {
        let name = format!("stem.{i}");
        stages.push(StemStage {
            proj: Linear::new(vb, inp, out, &format!("{name}.proj"))?,
            norm: Some(LayerNorm::new(vb, out, &format!("{name}.norm"))?),
        });
        inp = 4 * out;
    }
    stages.push(StemStage {
        proj: Linear::new(vb, inp, c, &format!("stem.{}.proj", cfg.stem.len()))?,
        norm: None,
    });
    Ok(stages)
}

/// (B, g*g, 4D) with channels ordered (dy, dx, d) -> (B, 2g*2g, D), row-major on the finer grid.
pub fn pixel_shuffle(x: &Tensor, g: usize) -> Result<Tensor> {
    let (b, _, c4) = x.dims3()?;
    let d = c4 / 4;
    x.reshape((b, g, g, 2, 2, d))?
        .permute((0, 1, 3, 2, 4, 5))?
        .reshape((b, 4 * g * g, d))
}

pub struct Svit {
    pub cfg: ModelConfig,
    /// Patch embedding: one stage (ViT) or the hMLP stages, the last one mapping to `dim`.
    pub stem: Vec<StemStage>,
    pub pos: Tensor,
    pub blocks: Vec<Block>,
    pub gates: Vec<Gate>,
    pub head: Head,
}

/// How the gates act during a forward pass.
#[derive(Clone, Debug)]
pub enum GateMode {
    /// Every block on every token; gates not evaluated.
    Dense,
    /// Training: hard Gumbel-softmax with straight-through gradients (tau 1).
    Gumbel,
    /// Inference, exactly as the runtime does it: keep where p_keep >= threshold, at least
    /// `min_keep` tokens (highest p_keep first).
    Threshold {
        threshold: f32,
        min_keep: svit_runtime::MinKeep,
    },
}

pub struct ForwardOut {
    pub head: HeadOut,
    /// (B, N, C) the tokens the head read.
    pub tokens: Tensor,
    /// Per gate: (B, N) policy actually used (hard 0/1, with straight-through gradient in training).
    pub policies: Vec<Tensor>,
    /// Per gate: (B, N, 2) the gate's log-probabilities (channel 0 = keep); empty when dense.
    pub gate_logp: Vec<Tensor>,
}

impl Svit {
    pub fn new(vb: &VarBuilder, cfg: &ModelConfig) -> Result<Self> {
        let (c, n) = (cfg.dim, cfg.tokens());
        Ok(Svit {
            cfg: cfg.clone(),
            stem: stem(vb, cfg)?,
            pos: vb.get_with_hints(
                (1, n, c),
                "pos_embed",
                Init::Randn {
                    mean: 0.0,
                    stdev: 0.02,
                },
            )?,
            blocks: (0..cfg.depth)
                .map(|i| Block::new(vb, cfg, i))
                .collect::<Result<_>>()?,
            gates: (0..cfg.num_gates())
                .map(|g| Gate::new(vb, cfg, g))
                .collect::<Result<_>>()?,
            head: Head::new(vb, cfg)?,
        })
    }

    /// (B, 3, H, W) normalised image -> (B, N, C) tokens: patches (channel-major, as a Conv
    /// weight reads them), then each stem stage, merging 2x2 neighbours (dy, dx, c) before every
    /// stage after the first; plus position embeddings.
    pub fn embed(&self, img: &Tensor) -> Result<Tensor> {
        let (b, _, hh, ww) = img.dims4()?;
        let p = self.cfg.stem_patch();
        let (gh, gw) = (hh / p, ww / p);
        let mut x = img
            .reshape((b, 3, gh, p, gw, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .reshape((b, gh * gw, 3 * p * p))?;
        let mut g = gh;
        for (i, st) in self.stem.iter().enumerate() {
            if i > 0 {
                x = merge_2x2(&x, g)?;
                g /= 2;
            }
            x = st.proj.forward(&x)?;
            if let Some(norm) = &st.norm {
                x = norm.forward(&x)?.gelu_erf()?;
            }
        }
        x.broadcast_add(&self.pos)
    }

    pub fn forward(&self, img: &Tensor, mode: &GateMode) -> Result<ForwardOut> {
        let mut x = self.embed(img)?;
        let (mut policies, mut gate_logp) = (Vec::new(), Vec::new());
        for (i, block) in self.blocks.iter().enumerate() {
            let policy = if matches!(mode, GateMode::Dense) || !self.cfg.gated(i) {
                None
            } else {
                let gate = i - self.cfg.first_gated;
                let logp = self.gates[gate].forward(&x)?;
                let policy = match mode {
                    GateMode::Threshold {
                        threshold,
                        min_keep,
                    } => threshold_policy(&logp, *threshold, min_keep.at(gate, self.gates.len()))?,
                    _ => gumbel_hard_keep(&logp)?,
                };
                gate_logp.push(logp);
                Some(policy)
            };
            x = block.forward(&x, policy.as_ref())?;
            policies.extend(policy);
        }
        Ok(ForwardOut {
            head: self.head.forward(&x, self.cfg.grid())?,
            tokens: x,
            policies,
            gate_logp,
        })
    }
}

/// Hard Gumbel-softmax (tau 1), straight-through: forward is one-hot, gradient is the softmax's.
fn gumbel_hard_keep(logp: &Tensor) -> Result<Tensor> {
    let u = Tensor::rand(1e-6f32, 1.0 - 1e-6, logp.shape(), logp.device())?;
    let g = u.log()?.neg()?.log()?.neg()?;
    let y = candle_nn::ops::softmax(&(logp + g)?, D::Minus1)?;
    let idx = y.argmax_keepdim(D::Minus1)?; // 0 = keep
    let hard = idx.eq(0u32)?.to_dtype(y.dtype())?.squeeze(D::Minus1)?;
    let soft = y.narrow(D::Minus1, 0, 1)?.squeeze(D::Minus1)?;
    (hard - soft.detach())? + soft
}

/// The runtime's deterministic selection, computed host-side per image.
fn threshold_policy(logp: &Tensor, threshold: f32, min_keep: usize) -> Result<Tensor> {
    let (b, n, _) = logp.dims3()?;
    let p = logp
        .narrow(D::Minus1, 0, 1)?
        .squeeze(D::Minus1)?
        .exp()?
        .to_vec2::<f32>()?;
    let mut out = Vec::with_capacity(b * n);
    for row in &p {
        let keep = svit_runtime::select_tokens(row, threshold, min_keep);
        let mut mask = vec![0f32; n];
        for i in keep {
            mask[i] = 1.0;
        }
        out.extend(mask);
    }
    Tensor::from_vec(out, (b, n), logp.device())
}

/// A fresh model with its variables registered in `varmap`.
pub fn build(cfg: &ModelConfig, varmap: &VarMap, device: &Device) -> Result<Svit> {
    let vb = VarBuilder::from_varmap(varmap, DType::F32, device);
    Svit::new(&vb, cfg)
}
