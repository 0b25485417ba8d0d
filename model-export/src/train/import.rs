//! Starting a run from existing weights: `--init` (a ViT in timm's DeiT naming) and `--from`
//! (a checkpoint of this project).
//!
//! `--init` reads
//! `patch_embed.proj.{weight,bias}`, `pos_embed`, `blocks.{i}.norm1/attn.qkv/attn.proj/
//! norm2/mlp.fc1/mlp.fc2.{weight,bias}`, `norm.{weight,bias}`. A `pos_embed` with a class-token
//! row (N+1 entries) loses that row; one for another grid is resized bilinearly. Gates, the
//! detection head and an hMLP stem (`--stem`) are not in DeiT and start fresh. `cls_token` and
//! `head.*` are ignored.

use std::path::Path;

use crate::error::{bail, Context, Result};
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use svit_runtime::ModelConfig;

pub fn load_backbone(vm: &mut VarMap, path: &Path, cfg: &ModelConfig) -> Result<()> {
    let tensors = candle_core::safetensors::load(path, &Device::Cpu)
        .with_context(|| format!("reading ViT weights from {}", path.display()))?;
    let data = vm.data().lock().expect("varmap lock");
    let mut loaded = 0;
    for (name, var) in data.iter() {
        if name.starts_with("gates.") || name.starts_with("head.") {
            continue;
        }
        let Some(src) = tensors.get(name) else {
            if name.starts_with("blocks.") || name.starts_with("patch_embed") {
                bail!(
                    "{} has no tensor {name}: is it a DeiT/ViT checkpoint in timm naming?",
                    path.display()
                );
            }
            continue;
        };
        let src = src.to_dtype(candle_core::DType::F32)?;
        let src = if name == "pos_embed" {
            fit_pos_embed(&src, cfg)?
        } else {
            src
        };
        if src.dims() != var.dims() {
            bail!(
                "{}: {name} has shape {:?}, this config needs {:?}",
                path.display(),
                src.dims(),
                var.dims()
            );
        }
        var.set(&src)?;
        loaded += 1;
    }
    tracing::info!(loaded, "initialised backbone from {}", path.display());
    Ok(())
}

/// `--from`: every tensor of a checkpoint whose name and shape match. Only head tensors may
/// differ (the class logits of another label set); they start fresh and are returned.
pub fn load_checkpoint(vm: &mut VarMap, path: &Path) -> Result<Vec<String>> {
    let tensors = candle_core::safetensors::load(path, &Device::Cpu)
        .with_context(|| format!("reading weights from {}", path.display()))?;
    let data = vm.data().lock().expect("varmap lock");
    let mut fresh = Vec::new();
    let mut vars: Vec<_> = data.iter().collect();
    vars.sort_by_key(|(name, _)| name.as_str()); // the same first error on every run
    for (name, var) in vars {
        match tensors.get(name) {
            Some(src) if src.dims() == var.dims() => {
                var.set(&src.to_dtype(candle_core::DType::F32)?)?
            }
            Some(src) if name.starts_with("head.") => {
                tracing::info!(
                    "{name} starts fresh: {:?} in the checkpoint, {:?} here",
                    src.dims(),
                    var.dims()
                );
                fresh.push(name.clone());
            }
            Some(src) => bail!(
                "{}: {name} has shape {:?}, this config needs {:?}",
                path.display(),
                src.dims(),
                var.dims()
            ),
            None => bail!(
                "{} has no tensor {name}: is it a checkpoint of this project?",
                path.display()
            ),
        }
    }
    Ok(fresh)
}

fn fit_pos_embed(src: &Tensor, cfg: &ModelConfig) -> Result<Tensor> {
    let (_, n, c) = src.dims3()?;
    let side = (n as f64).sqrt() as usize;
    let src = if side * side == n {
        src.clone()
    } else {
        src.narrow(1, 1, n - 1)?
    };
    let n = src.dim(1)?;
    let side = (n as f64).sqrt() as usize;
    if side * side != n {
        bail!("pos_embed with {n} positions is not a square grid");
    }
    let g = cfg.grid();
    if side == g {
        return Ok(src);
    }
    let v = src.reshape((n, c))?.to_vec2::<f32>()?;
    let mut out = Vec::with_capacity(g * g * c);
    for y in 0..g {
        for x in 0..g {
            let fy =
                ((y as f32 + 0.5) * side as f32 / g as f32 - 0.5).clamp(0.0, (side - 1) as f32);
            let fx =
                ((x as f32 + 0.5) * side as f32 / g as f32 - 0.5).clamp(0.0, (side - 1) as f32);
            let (y0, x0) = (fy as usize, fx as usize);
            let (y1, x1) = ((y0 + 1).min(side - 1), (x0 + 1).min(side - 1));
            let (wy, wx) = (fy - y0 as f32, fx - x0 as f32);
            let at = |yy: usize, xx: usize| v[yy * side + xx].iter().take(c);
            let corners = at(y0, x0).zip(at(y0, x1)).zip(at(y1, x0)).zip(at(y1, x1));
            for (((a, b), d), e) in corners {
                out.push(
                    a * (1.0 - wy) * (1.0 - wx)
                        + b * (1.0 - wy) * wx
                        + d * wy * (1.0 - wx)
                        + e * wy * wx,
                );
            }
        }
    }
    Ok(Tensor::from_vec(out, (1, g * g, c), &Device::Cpu)?)
}
