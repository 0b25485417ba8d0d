//! int8 export: activation ranges calibrated on real images, weights quantized, and the block
//! graphs written in the form tract 0.23 runs fastest of those measured (QUANTIZATION.md).
//!
//! Every scale is symmetric and per tensor, every zero point 0: anything else makes tract split
//! the requantisation out of its int8 kernel into separate passes. Five of a block's six linear
//! layers (q, k, v, fc1, fc2) run as `QLinearMatMul` (int8 in, requantised int8 out, one
//! kernel), the attention logits as `MatMulInteger` (exact int32); LayerNorm, softmax, P.V, the
//! projection after it (quantizing P.V's output cost more than the int8 matmul saved) and the
//! residual adds stay f32, and GELU between the int8 MLP layers becomes a 256-entry lookup
//! table. `QLinearMatMul` has no bias input, so biases ride in the weights: each int8 input gets
//! "carrier" channels holding 127, the weights a row per carrier (`Mat::with_carriers`). Two
//! biases fold away exactly: the key bias (it shifts a query's logits by one constant, which
//! softmax ignores) and the value bias (attention rows sum to 1, so it joins the projection's
//! bias as `b_proj + W_proj b_v`).

use std::path::Path;

use crate::error::{bail, ensure, Context, Result};
use candle_core::{Device, Module, Tensor, D};
use serde::{Deserialize, Serialize};

use crate::model::{Block, LayerNorm, Svit};
use svit_runtime::preprocess::Layout;

/// The activations of a block whose ranges calibration records, in the order of `Ranges`
/// ("attn" and "proj" are f32 in the exported graph, see `FoldedBlock`).
pub const SITES: [&str; 10] = [
    "ln1", "q", "k", "v", "attn", "proj", "ln2", "fc1", "gelu", "fc2",
];
const NS: usize = SITES.len();

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RangeMethod {
    /// The largest |x| seen over all calibration images.
    MinMax,
    /// Per batch the given percentile of |x|, averaged over batches (clips rare outliers).
    Percentile,
}

/// Calibrated |x| range of every site of every block, in `SITES` order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Ranges {
    pub method: RangeMethod,
    pub percentile: f32,
    pub images: usize,
    pub blocks: Vec<[f32; NS]>,
}

/// Row-major f32 matrix `(rows, cols)`: a weight as the graph multiplies it, `x (K, rows)`.
#[derive(Clone, Debug)]
pub struct Mat {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Mat {
    /// From a candle `(out, in)` weight, transposed to `(in, out)` and multiplied by `scale`.
    fn from_linear(w: &Tensor, scale: f32) -> Result<Mat> {
        let (out, inp) = w.dims2()?;
        let data = (w.t()?.contiguous()? * scale as f64)?
            .flatten_all()?
            .to_vec1()?;
        Ok(Mat {
            rows: inp,
            cols: out,
            data,
        })
    }

    pub fn abs_max(&self) -> f32 {
        self.data.iter().fold(0f32, |m, v| m.max(v.abs()))
    }

    /// Appends `n` carrier rows that add `bias` when the input's `n` carrier channels hold
    /// `carrier` each: that is how a bias rides inside an int8 matmul that has no bias input.
    fn with_carriers(mut self, bias: &[f32], n: usize, carrier: f32) -> Mat {
        for _ in 0..n {
            self.data
                .extend(bias.iter().map(|b| b / (n as f32 * carrier)));
        }
        self.rows += n;
        self
    }
}

/// A block's weights as its int8 graph uses them: the attention scale folded into q, the key
/// bias dropped, the value bias folded into the projection's, every bias carried by extra
/// input rows (`Mat::with_carriers`).
pub struct FoldedBlock {
    pub c: usize,
    pub norm1: LayerNorm,
    pub norm2: LayerNorm,
    pub wq: Mat,
    pub wk: Mat,
    pub wv: Mat,
    /// The projection stays f32: `(in, out)` weight and bias (with the value bias folded in).
    pub wproj: Mat,
    pub bproj: Vec<f32>,
    pub wfc1: Mat,
    pub wfc2: Mat,
    /// Carrier channels appended to each int8 input: [ln1, ln2, gelu].
    pub carriers: [usize; 3],
}

/// The f32 biases of the folded block: q (scaled), projection (with the value bias), fc1, fc2.
struct FoldedBias {
    q: Vec<f32>,
    proj: Vec<f32>,
    fc1: Vec<f32>,
    fc2: Vec<f32>,
}

fn folded_bias(b: &Block, heads: usize) -> Result<FoldedBias> {
    let c = b.proj.w.dim(0)?;
    let qs = 1.0 / ((c / heads) as f32).sqrt();
    let qkv_b: Vec<f32> = b.qkv.b.to_vec1()?;
    let bv = Tensor::from_slice(&qkv_b[2 * c..], (c, 1), b.proj.b.device())?;
    let proj = (&b.proj.b + b.proj.w.matmul(&bv)?.squeeze(1)?)?.to_vec1()?;
    Ok(FoldedBias {
        q: qkv_b[..c].iter().map(|v| v * qs).collect(),
        proj,
        fc1: b.fc1.b.to_vec1()?,
        fc2: b.fc2.b.to_vec1()?,
    })
}

/// How many carrier rows keep every carrier weight within the matrix's own |w| max (so the
/// per-tensor weight scale is not stretched by a large bias).
fn carriers_for(m: &Mat, bias: &[f32], range: f32) -> usize {
    let bmax = bias.iter().fold(0f32, |a, v| a.max(v.abs()));
    if bmax == 0.0 {
        0
    } else {
        (bmax / (range * m.abs_max().max(1e-12))).ceil() as usize
    }
}

impl FoldedBlock {
    pub fn new(b: &Block, heads: usize, r: &[f32; NS]) -> Result<Self> {
        let c = b.proj.w.dim(0)?;
        let qs = 1.0 / ((c / heads) as f32).sqrt();
        let rows = |i: usize| -> Result<Tensor> { Ok(b.qkv.w.narrow(0, i * c, c)?) };
        let fb = folded_bias(b, heads)?;
        let (wq, wk, wv) = (
            Mat::from_linear(&rows(0)?, qs)?,
            Mat::from_linear(&rows(1)?, 1.0)?,
            Mat::from_linear(&rows(2)?, 1.0)?,
        );
        let wproj = Mat::from_linear(&b.proj.w, 1.0)?;
        let wfc1 = Mat::from_linear(&b.fc1.w, 1.0)?;
        let wfc2 = Mat::from_linear(&b.fc2.w, 1.0)?;
        let zeros = vec![0f32; c];
        // k and v have no bias left, so q alone decides the carriers of their shared input.
        let n_qkv = carriers_for(&wq, &fb.q, r[0]);
        let n_fc1 = carriers_for(&wfc1, &fb.fc1, r[6]);
        let n_fc2 = carriers_for(&wfc2, &fb.fc2, r[8]);
        Ok(FoldedBlock {
            c,
            norm1: b.norm1.clone(),
            norm2: b.norm2.clone(),
            wq: wq.with_carriers(&fb.q, n_qkv, r[0]),
            wk: wk.with_carriers(&zeros, n_qkv, r[0]),
            wv: wv.with_carriers(&zeros, n_qkv, r[0]),
            wproj,
            bproj: fb.proj,
            wfc1: wfc1.with_carriers(&fb.fc1, n_fc1, r[6]),
            wfc2: wfc2.with_carriers(&fb.fc2, n_fc2, r[8]),
            carriers: [n_qkv, n_fc1, n_fc2],
        })
    }
}

/// The block computed in f32 the way its int8 graph is built (folded biases, scaled q),
/// handing every site's tensor to `tap`. Its output equals `Block::forward` (a test checks).
pub fn folded_block(
    b: &Block,
    heads: usize,
    x: &Tensor,
    tap: &mut dyn FnMut(usize, &Tensor) -> Result<()>,
) -> Result<Tensor> {
    let (bsz, n, c) = x.dims3()?;
    let hd = c / heads;
    let fb = folded_bias(b, heads)?;
    let dev = x.device();
    let vec = |v: &[f32]| Tensor::from_slice(v, v.len(), dev);
    let rows = |i: usize| -> Result<Tensor> { Ok(b.qkv.w.narrow(0, i * c, c)?) };
    let mm = |x: &Tensor, w: &Tensor| -> Result<Tensor> { Ok(x.broadcast_matmul(&w.t()?)?) };
    let a = b.norm1.forward(x)?;
    tap(0, &a)?;
    let q = ((mm(&a, &rows(0)?)? * (1.0 / (hd as f64).sqrt()))?.broadcast_add(&vec(&fb.q)?))?;
    tap(1, &q)?;
    let k = mm(&a, &rows(1)?)?;
    tap(2, &k)?;
    let v = mm(&a, &rows(2)?)?;
    tap(3, &v)?;
    let split = |t: Tensor| -> Result<Tensor> {
        Ok(t.reshape((bsz, n, heads, hd))?
            .permute((0, 2, 1, 3))?
            .contiguous()?)
    };
    let (q, k, v) = (split(q)?, split(k)?, split(v)?);
    let logits = q.matmul(&k.t()?)?;
    let attn = candle_nn::ops::softmax(&logits, D::Minus1)?;
    let y = attn
        .matmul(&v)?
        .permute((0, 2, 1, 3))?
        .reshape((bsz, n, c))?;
    tap(4, &y)?;
    let p = mm(&y, &b.proj.w)?.broadcast_add(&vec(&fb.proj)?)?;
    tap(5, &p)?;
    let x1 = (x + p)?;
    let m = b.norm2.forward(&x1)?;
    tap(6, &m)?;
    let h = mm(&m, &b.fc1.w)?.broadcast_add(&vec(&fb.fc1)?)?;
    tap(7, &h)?;
    let g = h.gelu_erf()?;
    tap(8, &g)?;
    let o = mm(&g, &b.fc2.w)?.broadcast_add(&vec(&fb.fc2)?)?;
    tap(9, &o)?;
    Ok((x1 + o)?)
}

/// Calibration images (CHW planes of `size` x `size`) as candle batches of up to 8.
pub fn image_batches(
    images: &[Vec<f32>],
    size: usize,
) -> impl Iterator<Item = Result<Tensor>> + '_ {
    images.chunks(8).map(move |chunk| {
        let flat: Vec<f32> = chunk.iter().flatten().copied().collect();
        Ok(Tensor::from_vec(
            flat,
            (chunk.len(), 3, size, size),
            &Device::Cpu,
        )?)
    })
}

/// Reads up to `max` calibration images (PNG or JPEG, sorted by name) from `dir`, resized and
/// normalised as the board does. Errors name the folder or the file.
pub fn load_images(
    dir: &Path,
    size: usize,
    mean: [f32; 3],
    std: [f32; 3],
    max: usize,
) -> Result<Vec<Vec<f32>>> {
    let mut paths = svit_runtime::preprocess::image_files(dir)
        .with_context(|| format!("calibration folder {} cannot be read", dir.display()))?;
    ensure!(
        !paths.is_empty(),
        "calibration folder {} has no PNG or JPEG images (make some with `svit-export data --out {} --scenes 256 --seed 7000`)",
        dir.display(),
        dir.display()
    );
    paths.truncate(max);
    let mut out = Vec::with_capacity(paths.len());
    for p in &paths {
        let img = image::open(p)
            .with_context(|| format!("calibration image {} cannot be decoded", p.display()))?
            .to_rgb8();
        let (w, h) = (img.width() as usize, img.height() as usize);
        ensure!(
            w >= 16 && h >= 16,
            "calibration image {} is {w}x{h}, too small to stand for a camera frame",
            p.display()
        );
        let mut chw = Vec::new();
        svit_runtime::preprocess::resize_normalise(
            img.as_raw(),
            w,
            h,
            &Layout::chw(size),
            mean,
            std,
            &mut chw,
        );
        out.push(chw);
    }
    Ok(out)
}

/// Runs the dense model over the images in batches and records every site's range.
pub fn calibrate(
    net: &Svit,
    images: &[Vec<f32>],
    method: RangeMethod,
    percentile: f32,
    mut progress: impl FnMut(usize),
) -> Result<Ranges> {
    ensure!(!images.is_empty(), "no calibration images");
    ensure!(
        (50.0..=100.0).contains(&percentile),
        "--percentile must be between 50 and 100, not {percentile}"
    );
    let s = net.cfg.image_size;
    let depth = net.blocks.len();
    // Per block and site: running max, and the sum of per-batch percentiles.
    let mut maxes = vec![[0f32; NS]; depth];
    let mut pct_sum = vec![[0f64; NS]; depth];
    let mut batches = 0usize;
    for (bi, img) in image_batches(images, s).enumerate() {
        let img = img?;
        let mut x = net.embed(&img)?;
        for (i, block) in net.blocks.iter().enumerate() {
            let mut tap = |site: usize, t: &Tensor| -> Result<()> {
                let mut v: Vec<f32> = t.flatten_all()?.abs()?.to_vec1()?;
                if let Some(bad) = v.iter().find(|v| !v.is_finite()) {
                    bail!("block {i} {} is {bad} on calibration batch {bi}: the weights or images hold NaN/inf", SITES[site]);
                }
                let m = v.iter().fold(0f32, |a, &b| a.max(b));
                maxes[i][site] = maxes[i][site].max(m);
                let rank = (((percentile / 100.0) * (v.len() - 1) as f32).round() as usize)
                    .min(v.len() - 1);
                let (_, p, _) = v.select_nth_unstable_by(rank, f32::total_cmp);
                pct_sum[i][site] += *p as f64;
                Ok(())
            };
            x = folded_block(block, net.cfg.heads, &x, &mut tap)?;
        }
        batches += 1;
        progress(img.dim(0)?);
    }
    let blocks = (0..depth)
        .map(|i| {
            let mut r = [0f32; NS];
            for s in 0..NS {
                let v = match method {
                    RangeMethod::MinMax => maxes[i][s],
                    RangeMethod::Percentile => (pct_sum[i][s] / batches as f64) as f32,
                };
                // A site that never saw a non-zero value still needs a usable scale.
                r[s] = if v > 0.0 { v } else { 1e-3 };
            }
            r
        })
        .collect();
    Ok(Ranges {
        method,
        percentile,
        images: images.len(),
        blocks,
    })
}
