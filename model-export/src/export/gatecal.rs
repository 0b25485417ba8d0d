//! Gate calibration at export: shifts each gate's keep bias so that, at the bundle's threshold,
//! it keeps on average over real images the fraction of tokens its ratio loss trained it towards.
//!
//! Why: training keeps or drops each token by sampling from p_keep (hard Gumbel-softmax), so the
//! ratio loss pins the *mean* p_keep to the target. The runtime keeps every token with
//! p_keep >= threshold, so a gate whose tokens sit just above one half keeps far more on the
//! board than it did in training (block 5 of the first demo bundle: 148 of 256 tokens against a
//! target of 90). The shift moves only the cut; the order of tokens within a gate is unchanged.

use crate::error::{bail, ensure, Context, Result};
use candle_core::{Tensor, D};
use candle_nn::VarMap;
use serde::Serialize;
use svit_runtime::MinKeep;

use crate::model::{GateMode, Svit};

/// What calibration did to one gate; fractions are of all N tokens, as the runtime keeps them
/// (floor included), averaged over the images.
#[derive(Clone, Debug, Serialize)]
pub struct GateShift {
    pub gate: usize,
    pub block: usize,
    pub target: f32,
    pub kept_before: f32,
    pub kept_after: f32,
    /// Added to the gate's keep-minus-drop logit.
    pub logit_shift: f32,
}

/// Calibrates the gates one after another (each sees the tokens the earlier, calibrated gates
/// let through, as on the board), setting their `fc2` biases in `vm`, which `net` shares.
/// `targets`: the kept fraction per gate (default: the ones the model was trained towards).
/// `progress` hears of each of the gates + 1 passes over the images.
pub fn calibrate_gates(
    vm: &VarMap,
    net: &Svit,
    images: &[Vec<f32>],
    threshold: f32,
    min_keep: MinKeep,
    targets: Option<&[f32]>,
    mut progress: impl FnMut(usize),
) -> Result<Vec<GateShift>> {
    ensure!(!images.is_empty(), "no images to calibrate the gates on");
    let targets = targets.unwrap_or(&net.cfg.keep_targets);
    ensure!(
        targets.len() == net.gates.len() && targets.iter().all(|t| *t > 0.0 && *t <= 1.0),
        "{} gate targets for {} gates (each in (0, 1])",
        targets.len(),
        net.gates.len()
    );
    ensure!(
        threshold > 0.0 && threshold < 1.0,
        "gates are calibrated at a threshold in (0, 1), not {threshold}"
    );
    let gates = net.gates.len();
    ensure!(gates > 0, "the model has no gates to calibrate");
    let mode = GateMode::Threshold {
        threshold,
        min_keep,
    };
    let cut = (threshold / (1.0 - threshold)).ln();
    let mut shifts = Vec::with_capacity(gates);
    // Pass g calibrates gate g; the extra last pass measures the result.
    for pass in 0..=gates {
        let (kept, margins) = run_pass(net, images, &mode, pass)?;
        progress(1);
        if pass == 0 {
            for (g, &k) in kept.iter().enumerate() {
                shifts.push(GateShift {
                    gate: g,
                    block: net.cfg.first_gated + g,
                    target: targets[g],
                    kept_before: k,
                    kept_after: k,
                    logit_shift: 0.0,
                });
            }
        }
        if pass == gates {
            for (s, k) in shifts.iter_mut().zip(kept) {
                s.kept_after = k;
            }
            break;
        }
        let shift = cut - cut_for(margins, shifts[pass].target);
        shift_gate(vm, pass, shift)?;
        shifts[pass].logit_shift = shift;
    }
    Ok(shifts)
}

/// One pass over the images: every gate's mean kept fraction, and gate `which`'s
/// keep-minus-drop logits for every token (empty when `which` is past the last gate).
fn run_pass(
    net: &Svit,
    images: &[Vec<f32>],
    mode: &GateMode,
    which: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let mut kept = vec![0f32; net.gates.len()];
    let mut margins = Vec::new();
    for img in crate::export::quant::image_batches(images, net.cfg.image_size) {
        let out = net.forward(&img?, mode)?;
        for (k, pol) in kept.iter_mut().zip(&out.policies) {
            *k += pol.sum_all()?.to_scalar::<f32>()?;
        }
        if let Some(logp) = out.gate_logp.get(which) {
            let m = (logp.narrow(D::Minus1, 0, 1)? - logp.narrow(D::Minus1, 1, 1)?)?;
            let m = m.flatten_all()?.to_vec1::<f32>()?;
            if let Some(bad) = m.iter().find(|v| !v.is_finite()) {
                bail!("gate {which} scores a token {bad}: the weights or images hold NaN/inf");
            }
            margins.extend(m);
        }
    }
    let total = (images.len() * net.cfg.tokens()) as f32;
    kept.iter_mut().for_each(|k| *k /= total);
    Ok((kept, margins))
}

/// The logit that keeps a `target` fraction of `margins`: halfway between the last kept and
/// the first dropped token, so ties do not decide it.
fn cut_for(mut margins: Vec<f32>, target: f32) -> f32 {
    margins.sort_by(|a, b| b.total_cmp(a));
    let n = margins.len();
    let k = ((target as f64 * n as f64).round() as usize).clamp(1, n.max(2) - 1);
    (margins[k - 1] + margins[k.min(n - 1)]) / 2.0
}

fn shift_gate(vm: &VarMap, gate: usize, shift: f32) -> Result<()> {
    let name = format!("gates.{gate}.fc2.bias");
    let data = vm.data().lock().expect("varmap lock");
    let var = data
        .get(&name)
        .with_context(|| format!("the model has no {name}"))?;
    let half = Tensor::new(&[shift / 2.0, -shift / 2.0], var.device())?;
    var.set(&(var.as_tensor() + half)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_the_target_fraction() {
        let m: Vec<f32> = (0..100).map(|i| i as f32 / 10.0).collect();
        let c = cut_for(m.clone(), 0.3);
        assert_eq!(m.iter().filter(|&&x| x >= c).count(), 30);
        let c = cut_for(m.clone(), 1.0);
        assert!(m.iter().filter(|&&x| x >= c).count() >= 99);
    }
}
