//! The int8 block graphs (QUANTIZATION.md): the writer's int8 forms of a block's two graphs,
//! from the weights `quant` folds and the ranges it calibrates.

use crate::error::Result;

use super::{attr_int, block_graphs, Writer, INT8};
use crate::export::quant::{FoldedBlock, Mat, Ranges, SITES};
use crate::model::Svit;

impl Writer<'_> {
    /// `block_qkv` in int8: q, k and v come out int8 (scales `r[1..4] / 127`). Five of a
    /// block's six linear layers are int8, activations int8 around them (see `quant.rs` for
    /// the form and the folded biases). `r`: calibrated |x| ranges of the sites in
    /// `quant::SITES` order; the weights come folded from `quant::FoldedBlock`.
    pub fn block_int8_qkv(
        &mut self,
        x: &str,
        f: &FoldedBlock,
        r: &[f32; SITES.len()],
    ) -> [String; 3] {
        let s = r.map(|v| v / 127.0);
        let a = self.layer_norm(x, &f.norm1);
        let aq = self.quantize_by_cast(&a, s[0]);
        let aq = self.carrier(&aq, f.carriers[0]);
        [
            self.qlinear(&aq, s[0], &f.wq, s[1]),
            self.qlinear(&aq, s[0], &f.wk, s[2]),
            self.qlinear(&aq, s[0], &f.wv, s[3]),
        ]
    }

    /// `block_attend` in int8, taking `block_int8_qkv`'s int8 q, k and v.
    pub fn block_int8_attend(
        &mut self,
        x: &str,
        qkv: &[String; 3],
        f: &FoldedBlock,
        heads: usize,
        r: &[f32; SITES.len()],
    ) -> String {
        let c = f.c;
        let s = r.map(|v| v / 127.0);
        let [q, k, v] = self.heads(&qkv[0], &qkv[1], &qkv[2], heads, c);
        // Logits exact in int32 (MatMulInteger) and softmax and P.V in f32. Measured against
        // the alternatives in QUANTIZATION.md; one trap: a QLinearMatMul for the logits leaves
        // DequantizeLinear -> Softmax -> QuantizeLinear, which tract 0.23 folds into a
        // 256-entry lookup table as if softmax were element-wise (wrong results).
        let l = self.g.op("MatMulInteger", &[&q, &k]);
        let l = self.dequantize_i32(&l, s[1] * s[2]);
        let p = self
            .g
            .node("Softmax", &[&l], vec![attr_int("axis", -1)], None);
        let v = self.dequantize(&v, s[3]);
        let y = self.g.op("MatMul", &[&p, &v]);
        let y = self.merge_heads(&y, c);
        let pr = self.affine(&y, c, c, f.wproj.data.clone(), f.bproj.clone());
        let x1 = self.g.op("Add", &[x, &pr]);
        let m = self.layer_norm(&x1, &f.norm2);
        let mq = self.quantize_by_cast(&m, s[6]);
        let mq = self.carrier(&mq, f.carriers[1]);
        let h = self.qlinear(&mq, s[6], &f.wfc1, s[7]);
        // DequantizeLinear -> GELU -> QuantizeLinear: tract makes this one int8 lookup table.
        let h = self.dequantize(&h, s[7]);
        let g = self.gelu(&h);
        let gq = self.quantize(&g, s[8]);
        let gq = self.carrier(&gq, f.carriers[2]);
        let o = self.qlinear(&gq, s[8], &f.wfc2, s[9]);
        let o = self.dequantize(&o, s[9]);
        self.g.op("Add", &[&x1, &o])
    }

    /// Symmetric per-tensor int8 (zero point 0) of f32 `x` at scale `s`.
    fn quantize(&mut self, x: &str, s: f32) -> String {
        let sc = self.g.scalar(s);
        let zp = self.g.i8_init("zp", &[], &[0]);
        self.g.op("QuantizeLinear", &[x, &sc, &zp])
    }

    /// `quantize` as element-wise arithmetic and a Cast: scale, clamp to [-127, 127], round to
    /// nearest even by adding and subtracting 1.5 * 2^23, cast. tract runs the arithmetic as one
    /// fused pass after the LayerNorm's and the Cast vectorised, where its QuantizeLinear is a
    /// scalar loop: 0.040-0.044 ms against 0.056-0.063 ms on 256 x 128 values. Not where a
    /// QuantizeLinear follows a DequantizeLinear and GELU, which tract folds into a lookup table.
    fn quantize_by_cast(&mut self, x: &str, s: f32) -> String {
        const ROUND: f32 = 12_582_912.0;
        let inv = self.g.scalar(1.0 / s);
        let (lo, hi, round) = (
            self.g.scalar(-127.0),
            self.g.scalar(127.0),
            self.g.scalar(ROUND),
        );
        let y = self.g.op("Mul", &[x, &inv]);
        let y = self.g.op("Clip", &[&y, &lo, &hi]);
        let y = self.g.op("Add", &[&y, &round]);
        let y = self.g.op("Sub", &[&y, &round]);
        self.g
            .node("Cast", &[&y], vec![attr_int("to", INT8 as i64)], None)
    }

    fn dequantize(&mut self, x: &str, s: f32) -> String {
        let sc = self.g.scalar(s);
        let zp = self.g.i8_init("zp", &[], &[0]);
        self.g.op("DequantizeLinear", &[x, &sc, &zp])
    }

    fn dequantize_i32(&mut self, x: &str, s: f32) -> String {
        let sc = self.g.scalar(s);
        self.g.op("DequantizeLinear", &[x, &sc])
    }

    /// Appends `n` channels holding int8 127 to the last axis of a rank-3 int8 tensor.
    fn carrier(&mut self, xq: &str, n: usize) -> String {
        if n == 0 {
            return xq.to_string();
        }
        let pads = self.g.i64_init("pads", &[0, 0, 0, 0, 0, n as i64]);
        let v = self.g.i8_init("carrier", &[], &[127]);
        self.g.op("Pad", &[xq, &pads, &v])
    }

    /// int8 `a` (scale `sa`) times int8 `b` (scale `sb`), requantised to int8 at `sy` inside
    /// tract's kernel. Every zero point is 0 and every scale one scalar: any per-channel scale
    /// or zero point makes tract split the requantisation into separate passes.
    fn qmatmul(&mut self, a: &str, sa: f32, b: &str, sb: f32, sy: f32) -> String {
        let zp = self.g.i8_init("zp", &[], &[0]);
        let (sa, sb, sy) = (self.g.scalar(sa), self.g.scalar(sb), self.g.scalar(sy));
        self.g
            .op("QLinearMatMul", &[a, &sa, &zp, b, &sb, &zp, &sy, &zp])
    }

    /// `qmatmul` by a constant weight, quantized symmetric per tensor.
    fn qlinear(&mut self, xq: &str, sx: f32, w: &Mat, sy: f32) -> String {
        let sw = w.abs_max().max(1e-12) / 127.0;
        let wq: Vec<i8> = w
            .data
            .iter()
            .map(|v| (v / sw).round().clamp(-127.0, 127.0) as i8)
            .collect();
        let wq = self.g.i8_init("wq", &[w.rows, w.cols], &wq);
        self.qmatmul(xq, sx, &wq, sw, sy)
    }
}

/// The int8 block graphs, a pair per block in order (`qkv_{i}.onnx` and `block_{i}.onnx` of
/// the `int8/` precision, as `onnx::block_graphs` writes them; embed, gates and head stay f32:
/// a small share of the work, and the head's outputs are what AP is measured on).
pub fn blocks(net: &Svit, ranges: &Ranges) -> Result<Vec<[Vec<u8>; 2]>> {
    net.blocks
        .iter()
        .zip(&ranges.blocks)
        .enumerate()
        .map(|(bi, (block, r))| {
            let folded = FoldedBlock::new(block, net.cfg.heads, r)?;
            Ok(block_graphs(
                &format!("block_{bi}_int8"),
                net.cfg.dim,
                INT8,
                |w, x| w.block_int8_qkv(x, &folded, r),
                |w, x, qkv| w.block_int8_attend(x, qkv, &folded, net.cfg.heads, r),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::onnx::{attr_int, Dim, Graph, FLOAT};
    use tract_onnx::prelude::{tvec, IntoRunnable, Tensor as TractTensor};

    /// The cast form of quantisation rounds to nearest even and clamps to [-127, 127] in
    /// tract, as QuantizeLinear would (which would clamp at -128), and the optimiser does not
    /// cancel the rounding constant.
    #[test]
    fn quantize_by_cast_rounds_half_to_even_and_clamps() {
        let s = 0.5;
        let xs: Vec<f32> = vec![
            0.25, 0.75, -0.25, -0.75, 0.3, -0.8, 1.26, 100.0, -100.0, 63.4,
        ];
        let want: Vec<f32> = vec![0.0, 2.0, 0.0, -2.0, 1.0, -2.0, 3.0, 127.0, -127.0, 127.0];
        let mut g = Graph::new("q");
        let dims = [Dim::Fixed(1), Dim::Fixed(xs.len())];
        let x = g.input("x", &dims);
        let mut w = Writer { g: &mut g };
        let q = w.quantize_by_cast(&x, s);
        let y =
            w.g.node("Cast", &[&q], vec![attr_int("to", FLOAT as i64)], None);
        g.output(&y, "y", &dims);
        let plan = svit_runtime::model::optimise_graph(&g.encode())
            .unwrap()
            .into_runnable()
            .unwrap();
        let out = plan
            .run(tvec!(TractTensor::from_shape(&[1, xs.len()], &xs)
                .unwrap()
                .into()))
            .unwrap();
        let got = out[0]
            .try_as_plain_ram()
            .unwrap()
            .as_slice::<f32>()
            .unwrap()
            .to_vec();
        assert_eq!(got, want);
    }
}
