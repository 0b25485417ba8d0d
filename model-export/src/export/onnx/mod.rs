//! Writes the trained model as ONNX: one graph per stage (embed, gate, block, head) for the
//! runtime's pruned loop, and the whole dense model as one graph for any ONNX engine.
//!
//! The graphs use plain opset-17 ops (MatMul, Softmax, Erf, ReduceMean, ...): attention is
//! MatMul/Softmax/MatMul, which tract 0.23 runs faster than its fused attention. A block's token
//! count is the symbolic dimension `K`, so one optimised plan serves every K.

use candle_core::Tensor;
use prost::Message;
use tract_onnx::pb;

use crate::model::{Block, Gate, Head, LayerNorm, Linear, Svit, LN_EPS};
use svit_runtime::ModelConfig;

pub mod f16;
pub mod int8;

pub const OPSET: i64 = 17;
pub const FLOAT: i32 = 1;
pub const INT64: i32 = 7;
pub const INT8: i32 = 3;
pub const FLOAT16: i32 = 10;

/// A graph under construction; names are made unique by a counter.
pub struct Graph {
    g: pb::GraphProto,
    n: usize,
}

#[derive(Clone, Copy)]
pub enum Dim {
    Fixed(usize),
    Sym(&'static str),
}

impl Graph {
    pub fn new(name: &str) -> Self {
        Graph {
            g: pb::GraphProto {
                name: name.into(),
                ..Default::default()
            },
            n: 0,
        }
    }

    fn fresh(&mut self, hint: &str) -> String {
        self.n += 1;
        format!("{hint}_{}", self.n)
    }

    fn value_info(name: &str, dims: &[Dim], elem_type: i32) -> pb::ValueInfoProto {
        use pb::tensor_shape_proto::{dimension::Value, Dimension};
        let dim = dims
            .iter()
            .map(|d| Dimension {
                value: Some(match d {
                    Dim::Fixed(v) => Value::DimValue(*v as i64),
                    Dim::Sym(s) => Value::DimParam(s.to_string()),
                }),
                ..Default::default()
            })
            .collect();
        pb::ValueInfoProto {
            name: name.into(),
            r#type: Some(pb::TypeProto {
                value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                    elem_type,
                    shape: Some(pb::TensorShapeProto { dim }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    pub fn input(&mut self, name: &str, dims: &[Dim]) -> String {
        self.typed_input(name, dims, FLOAT)
    }

    /// An input of ONNX element type `elem_type` (`FLOAT`, `INT8`, ...).
    pub fn typed_input(&mut self, name: &str, dims: &[Dim], elem_type: i32) -> String {
        self.g.input.push(Self::value_info(name, dims, elem_type));
        name.into()
    }

    pub fn output(&mut self, value: &str, name: &str, dims: &[Dim]) {
        self.typed_output(value, name, dims, FLOAT);
    }

    pub fn typed_output(&mut self, value: &str, name: &str, dims: &[Dim], elem_type: i32) {
        self.node("Identity", &[value], vec![], Some(name));
        self.g.output.push(Self::value_info(name, dims, elem_type));
    }

    pub fn f32_init(&mut self, hint: &str, dims: &[usize], data: Vec<f32>) -> String {
        let name = self.fresh(hint);
        assert_eq!(
            dims.iter().product::<usize>(),
            data.len(),
            "initializer {hint}"
        );
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.g.initializer.push(pb::TensorProto {
            name: name.clone(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: FLOAT,
            raw_data: raw,
            ..Default::default()
        });
        name
    }

    pub fn i64_init(&mut self, hint: &str, data: &[i64]) -> String {
        let name = self.fresh(hint);
        self.g.initializer.push(pb::TensorProto {
            name: name.clone(),
            dims: vec![data.len() as i64],
            data_type: INT64,
            raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name
    }

    /// An int8 initializer (quantized weights, zero points).
    pub fn i8_init(&mut self, hint: &str, dims: &[usize], data: &[i8]) -> String {
        let name = self.fresh(hint);
        assert_eq!(
            dims.iter().product::<usize>(),
            data.len(),
            "initializer {hint}"
        );
        self.g.initializer.push(pb::TensorProto {
            name: name.clone(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: INT8,
            raw_data: data.iter().map(|&v| v as u8).collect(),
            ..Default::default()
        });
        name
    }

    pub fn scalar(&mut self, v: f32) -> String {
        self.f32_init("c", &[], vec![v])
    }

    pub fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        attrs: Vec<pb::AttributeProto>,
        out: Option<&str>,
    ) -> String {
        let o = out
            .map(String::from)
            .unwrap_or_else(|| self.fresh(&op.to_lowercase()));
        let name = self.fresh(op);
        self.g.node.push(pb::NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![o.clone()],
            name,
            op_type: op.into(),
            attribute: attrs,
            ..Default::default()
        });
        o
    }

    pub fn op(&mut self, op: &str, inputs: &[&str]) -> String {
        self.node(op, inputs, vec![], None)
    }

    pub fn into_model(self) -> pb::ModelProto {
        pb::ModelProto {
            ir_version: 8,
            opset_import: vec![pb::OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            }],
            producer_name: "svit-export".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            graph: Some(self.g),
            ..Default::default()
        }
    }

    pub fn encode(self) -> Vec<u8> {
        self.into_model().encode_to_vec()
    }
}

pub fn attr_ints(name: &str, v: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: 7,
        ints: v.to_vec(),
        ..Default::default()
    }
}
pub fn attr_int(name: &str, v: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: 2,
        i: v,
        ..Default::default()
    }
}

fn host(t: &Tensor) -> Vec<f32> {
    t.flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .expect("f32 weights on the CPU")
}

/// Writes model pieces as graph nodes. Weights are transposed to `(in, out)` for MatMul.
pub struct Writer<'a> {
    pub g: &'a mut Graph,
}

impl Writer<'_> {
    pub fn linear(&mut self, x: &str, l: &Linear) -> String {
        let (out, inp) = l.w.dims2().expect("2-D weight");
        let wt = host(&l.w.t().and_then(|t| t.contiguous()).expect("transpose"));
        self.affine(x, inp, out, wt, host(&l.b))
    }

    /// `x . w + b` with `w` given `(inp, out)` row-major.
    fn affine(&mut self, x: &str, inp: usize, out: usize, w: Vec<f32>, b: Vec<f32>) -> String {
        let w = self.g.f32_init("w", &[inp, out], w);
        let b = self.g.f32_init("b", &[out], b);
        let y = self.g.op("MatMul", &[x, &w]);
        self.g.op("Add", &[&y, &b])
    }

    pub fn layer_norm(&mut self, x: &str, ln: &LayerNorm) -> String {
        self.layer_norm_of_rows(x, ln, None)
    }

    /// `layer_norm` where the token count is known (`rows`), which lets narrow rows be scaled
    /// several at a time (see `wide_rows`).
    fn layer_norm_of_rows(&mut self, x: &str, ln: &LayerNorm, rows: Option<usize>) -> String {
        let c = ln.w.dim(0).expect("1-D");
        let xn = self.normalise(x, c);
        // tract runs a per-channel Mul/Add with its fast kernels only when a row has more
        // than 32 values; narrower rows (the first hMLP stem stage) are scaled as wider rows
        // of several tokens each, with the weights repeated (0.5 ms of the embed graph).
        let r = rows.map_or(1, |n| wide_rows(c, n));
        let xn = if r > 1 {
            self.reshape(&xn, &[1, -1, (c * r) as i64])
        } else {
            xn
        };
        let w = self.g.f32_init("ln_w", &[c * r], host(&ln.w).repeat(r));
        let b = self.g.f32_init("ln_b", &[c * r], host(&ln.b).repeat(r));
        let y = self.g.op("Mul", &[&xn, &w]);
        let y = self.g.op("Add", &[&y, &b]);
        if r > 1 {
            self.reshape(&y, &[1, -1, c as i64])
        } else {
            y
        }
    }

    /// LayerNorm without its scale and shift: (x - mean) / sqrt(var + eps) over the last axis
    /// of `c` channels. The mean is a MatMul by a column of 1/c: tract's `Reduce<Sum>` over short
    /// rows cost 1 ns per value (a gate 0.097 -> 0.078 ms, an int8 block at K=256 1.73 -> 1.64
    /// ms). The variance stays a ReduceMean, which tract fuses into its fast `RmsNorm`.
    fn normalise(&mut self, x: &str, c: usize) -> String {
        let axes = vec![attr_ints("axes", &[-1])];
        let ones = self.g.f32_init("mean_w", &[c, 1], vec![1.0 / c as f32; c]);
        let mean = self.g.op("MatMul", &[x, &ones]);
        let xc = self.g.op("Sub", &[x, &mean]);
        let sq = self.g.op("Mul", &[&xc, &xc]);
        let var = self.g.node("ReduceMean", &[&sq], axes, None);
        let eps = self.g.scalar(LN_EPS as f32);
        let ve = self.g.op("Add", &[&var, &eps]);
        let sd = self.g.op("Sqrt", &[&ve]);
        self.g.op("Div", &[&xc, &sd])
    }

    /// Exact (erf) GELU, the form tract recognises.
    pub fn gelu(&mut self, x: &str) -> String {
        let r = self.g.scalar(std::f32::consts::FRAC_1_SQRT_2);
        let xs = self.g.op("Mul", &[x, &r]);
        let e = self.g.op("Erf", &[&xs]);
        let one = self.g.scalar(1.0);
        let e1 = self.g.op("Add", &[&e, &one]);
        let half = self.g.scalar(0.5);
        let xh = self.g.op("Mul", &[x, &half]);
        self.g.op("Mul", &[&xh, &e1])
    }

    fn reshape(&mut self, x: &str, shape: &[i64]) -> String {
        let s = self.g.i64_init("shape", shape);
        self.g.op("Reshape", &[x, &s])
    }

    fn transpose(&mut self, x: &str, perm: &[i64]) -> String {
        self.g
            .node("Transpose", &[x], vec![attr_ints("perm", perm)], None)
    }

    /// (1, K, C) -> (1, K, C): pre-norm attention and MLP on whatever tokens it is given.
    pub fn block(&mut self, x: &str, b: &Block, heads: usize) -> String {
        let qkv = self.block_qkv(x, b, heads);
        self.block_attend(x, &qkv, b, heads)
    }

    /// The row-wise first half of a block: (1, K, C) -> q (scaled), k, v, each (1, K, C).
    pub fn block_qkv(&mut self, x: &str, b: &Block, heads: usize) -> [String; 3] {
        let c = b.proj.w.dim(0).expect("dim");
        let a = self.layer_norm(x, &b.norm1);
        // Split qkv into three projections so no Gather/Slice sits in the hot path.
        let part = |i: usize| Linear {
            w: b.qkv.w.narrow(0, i * c, c).expect("qkv rows"),
            b: b.qkv.b.narrow(0, i * c, c).expect("qkv bias"),
        };
        let q = self.linear(&a, &part(0));
        let scale = self.g.scalar(1.0 / ((c / heads) as f32).sqrt());
        [
            self.g.op("Mul", &[&q, &scale]),
            self.linear(&a, &part(1)),
            self.linear(&a, &part(2)),
        ]
    }

    /// The rest of a block for Q query tokens `x` (1, Q, C) with their `q` (1, Q, C), given
    /// the keys and values of all K tokens (1, K, C): row-wise in the queries.
    pub fn block_attend(&mut self, x: &str, qkv: &[String; 3], b: &Block, heads: usize) -> String {
        let c = b.proj.w.dim(0).expect("dim");
        let [q, k, v] = self.heads(&qkv[0], &qkv[1], &qkv[2], heads, c);
        let s = self.g.op("MatMul", &[&q, &k]);
        let p = self
            .g
            .node("Softmax", &[&s], vec![attr_int("axis", -1)], None);
        let y = self.g.op("MatMul", &[&p, &v]);
        let y = self.merge_heads(&y, c);
        let y = self.linear(&y, &b.proj);
        let x1 = self.g.op("Add", &[x, &y]);
        let m = self.layer_norm(&x1, &b.norm2);
        let m = self.linear(&m, &b.fc1);
        let m = self.gelu(&m);
        let m = self.linear(&m, &b.fc2);
        self.g.op("Add", &[&x1, &m])
    }

    /// (1, K, C) projections -> q (1, H, K, hd), k transposed (1, H, hd, K), v (1, H, K, hd).
    fn heads(&mut self, q: &str, k: &str, v: &str, heads: usize, c: usize) -> [String; 3] {
        let shape = [1, -1, heads as i64, (c / heads) as i64];
        let q = self.reshape(q, &shape);
        let q = self.transpose(&q, &[0, 2, 1, 3]);
        let k = self.reshape(k, &shape);
        let k = self.transpose(&k, &[0, 2, 3, 1]);
        let v = self.reshape(v, &shape);
        let v = self.transpose(&v, &[0, 2, 1, 3]);
        [q, k, v]
    }

    /// (1, H, K, hd) -> (1, K, C).
    fn merge_heads(&mut self, y: &str, c: usize) -> String {
        let y = self.transpose(y, &[0, 2, 1, 3]);
        self.reshape(&y, &[1, -1, c as i64])
    }

    /// (1, N, C) -> (1, N, 2) probabilities; channel 0 is "keep".
    ///
    /// The gates run on all N tokens before every gated block, so their fixed cost counts:
    /// the LayerNorm's scale and shift are folded into fc1, and the softmax over the two
    /// logits is written as the sigmoid of their difference (one element-wise op instead of a
    /// row-wise softmax: a gate at 256 tokens took 0.13 ms, 0.035 of it in these two).
    pub fn gate(&mut self, x: &str, gate: &Gate) -> String {
        let h = self.normalise(x, gate.norm.w.dim(0).expect("1-D"));
        let fc1 = fold_scale_shift(&gate.norm, &gate.fc1).expect("gate weights fold");
        let h = self.linear(&h, &fc1);
        let h = self.gelu(&h);
        let fc2 = logit_differences(&gate.fc2).expect("gate weights fold");
        let h = self.linear(&h, &fc2);
        self.g.op("Sigmoid", &[&h])
    }

    /// (1, 3, S, S) -> the embed stage's input: first-stage patches as rows in the order of
    /// `ModelConfig::embed_layout` (a quad tree of 2x2 merges below each token), by one
    /// Reshape/Transpose. The runtime writes its input in that order while preprocessing, so
    /// only `dense.onnx` carries this.
    fn patchify(&mut self, img: &str, cfg: &ModelConfig) -> String {
        let p = cfg.stem_patch() as i64;
        let levels = cfg.stem.len();
        let t = (cfg.image_size / cfg.patch) as i64;
        // (1, 3, [ty, a_1y .. a_Ly, py], [tx, a_1x .. a_Lx, px]) -> (ty, tx, a_1y, a_1x, ..,
        // c, py, px): axis 1 is the channel, the y axes start at 2, the x axes at 4 + levels.
        let side: Vec<i64> = [t]
            .into_iter()
            .chain(std::iter::repeat_n(2, levels))
            .chain([p])
            .collect();
        let shape = [&[1, 3][..], &side, &side].concat();
        let (y0, x0) = (2, 4 + levels as i64);
        let mut perm = vec![0, y0, x0];
        for l in 1..=levels as i64 {
            perm.extend([y0 + l, x0 + l]);
        }
        perm.extend([1, y0 + levels as i64 + 1, x0 + levels as i64 + 1]);
        let y = self.reshape(img, &shape);
        let y = self.transpose(&y, &perm);
        self.reshape(&y, &[1, -1, cfg.embed_row() as i64])
    }

    /// Patch rows (`patchify`: one row per token, holding its first-stage patches) -> (1, T,
    /// C), as `Svit::embed` computes it: each stem stage a MatMul, from the second on after a
    /// 2x2 merge, which the row order makes a Reshape. Row-wise in the tokens: `index` (T,
    /// int64) says which tokens they are (for the position embedding); `None` means all N.
    pub fn embed(&mut self, patches: &str, net: &Svit, index: Option<&str>) -> String {
        let cfg = &net.cfg;
        let p = cfg.stem_patch() as i64;
        let mut per_token = cfg.patches_per_token();
        let mut x = self.reshape(patches, &[1, -1, 3 * p * p]);
        for (i, st) in net.stem.iter().enumerate() {
            if i > 0 {
                let d = st.proj.w.dim(1).expect("2-D weight") as i64;
                per_token /= 4;
                x = self.reshape(&x, &[1, -1, d]);
            }
            x = self.linear(&x, &st.proj);
            if let Some(norm) = &st.norm {
                x = self.layer_norm_of_rows(&x, norm, Some(per_token));
                x = self.gelu(&x);
            }
        }
        let pos = self
            .g
            .f32_init("pos", &[1, cfg.tokens(), cfg.dim], host(&net.pos));
        let pos = match index {
            Some(i) => self
                .g
                .node("Gather", &[&pos, i], vec![attr_int("axis", 1)], None),
            None => pos,
        };
        self.g.op("Add", &[&x, &pos])
    }

    /// (1, R g, 4 d) -> (1, 4 R g, d): each position of a grid g wide becomes 2x2 positions
    /// of a grid 2g wide, for any number R of whole grid rows.
    fn pixel_shuffle(&mut self, x: &str, g: usize, d: usize) -> String {
        let (g, d) = (g as i64, d as i64);
        let y = self.reshape(x, &[1, -1, g, 2, 2, d]);
        let y = self.transpose(&y, &[0, 1, 3, 2, 4, 5]);
        self.reshape(&y, &[1, -1, d])
    }

    /// (1, N, C) -> heat, boxes, coef, protos (names as the runtime reads them). Row-wise in
    /// whole grid rows of tokens: `x` may also be R grid rows as (1, R, grid C), giving the
    /// outputs of those rows (tract cannot split a symbolic token count into grid rows).
    pub fn head(&mut self, x: &str, h: &Head, net: &Svit) -> [String; 4] {
        let cfg = &net.cfg;
        let x = self.reshape(x, &[1, -1, cfg.dim as i64]);
        let y = self.layer_norm(&x, &h.norm);
        let u = self.linear(&y, &h.up);
        let u = self.gelu(&u);
        let u = self.pixel_shuffle(&u, cfg.grid(), cfg.head_dim);
        let hd = self.linear(&u, &h.hidden);
        let hd = self.gelu(&hd);
        let pu = self.linear(&u, &h.proto_up);
        let pu = self.gelu(&pu);
        // The prototypes are per position, so they are computed before the pixel shuffle
        // (on the shuffle's input rows): then the bias Add follows its MatMul directly and
        // tract fuses it, where after the shuffle it ran as a slow broadcasting Add.
        let pu = self.reshape(&pu, &[1, -1, cfg.proto_dim as i64]);
        let protos = self.linear(&pu, &h.proto);
        let protos = self.reshape(&protos, &[1, -1, 4 * cfg.num_protos as i64]);
        [
            self.linear(&hd, &h.cls),
            self.linear(&hd, &h.boxes),
            self.linear(&hd, &h.coef),
            self.pixel_shuffle(&protos, cfg.grid() * 2, cfg.num_protos),
        ]
    }
}

/// `fc(ln_w * x + ln_b)` as one linear layer of `x`.
fn fold_scale_shift(ln: &LayerNorm, fc: &Linear) -> candle_core::Result<Linear> {
    Ok(Linear {
        w: fc.w.broadcast_mul(&ln.w.unsqueeze(0)?)?,
        b: (&fc.b + fc.w.matmul(&ln.b.unsqueeze(1)?)?.squeeze(1)?)?,
    })
}

/// Two logits (a, b) -> (a - b, b - a): their sigmoids are the softmax of (a, b).
fn logit_differences(fc: &Linear) -> candle_core::Result<Linear> {
    let d = |t: &Tensor| -> candle_core::Result<Tensor> {
        let (a, b) = (t.narrow(0, 0, 1)?, t.narrow(0, 1, 1)?);
        Tensor::cat(&[(&a - &b)?, (&b - &a)?], 0)
    };
    Ok(Linear {
        w: d(&fc.w)?,
        b: d(&fc.b)?,
    })
}

/// How many of `rows` tokens a per-channel op of `c` channels is run over at once, so that
/// each row tract sees has more than 32 values (1 where `rows` does not divide).
fn wide_rows(c: usize, rows: usize) -> usize {
    let mut r = 1;
    while c * r <= 32 {
        r *= 2;
    }
    if rows % r == 0 {
        r
    } else {
        1
    }
}

/// Names and shapes of the head outputs, shared by the stage graph and dense.onnx (`rows`:
/// positions per output, fixed for dense.onnx, symbolic for the stage graph, where the
/// runtime may give it a share of the grid rows).
fn head_outputs(g: &mut Graph, outs: [String; 4], net: &Svit, rows: [Dim; 2]) {
    let cfg = &net.cfg;
    let [n8, n16] = rows;
    let dims = [
        ("heat", cfg.num_classes, &n8),
        ("boxes", 4, &n8),
        ("coef", cfg.num_protos, &n8),
        ("protos", cfg.num_protos, &n16),
    ];
    for (o, (name, ch, n)) in outs.iter().zip(dims) {
        g.output(o, name, &[Dim::Fixed(1), *n, Dim::Fixed(ch)]);
    }
}

/// A block's two stage graphs, `qkv_{b}.onnx` and `block_{b}.onnx` (see `block_qkv` and
/// `block_attend`), so the runtime can share a block's tokens among threads: `qkv` maps
/// `tokens` (1, K, C) to `q`, `k`, `v` (1, K, C) of ONNX type `qkv_type`; `block` maps `tokens`
/// and `q` (1, Q, C) with `k`, `v` (1, K, C) to `out` (1, Q, C). Q and K symbolic.
pub fn block_graphs(
    name: &str,
    c: usize,
    qkv_type: i32,
    qkv: impl FnOnce(&mut Writer, &str) -> [String; 3],
    attend: impl FnOnce(&mut Writer, &str, &[String; 3]) -> String,
) -> [Vec<u8>; 2] {
    let rows = |s: &'static str| [Dim::Fixed(1), Dim::Sym(s), Dim::Fixed(c)];
    const NAMES: [&str; 3] = ["q", "k", "v"];
    let mut g = Graph::new(&format!("{name}_qkv"));
    let i = g.input("tokens", &rows("K"));
    let outs = qkv(&mut Writer { g: &mut g }, &i);
    for (o, n) in outs.iter().zip(NAMES) {
        g.typed_output(o, n, &rows("K"), qkv_type);
    }
    let first = g.encode();
    let mut g = Graph::new(name);
    let i = g.input("tokens", &rows("Q"));
    let ins = NAMES.map(|n| g.typed_input(n, &rows(if n == "q" { "Q" } else { "K" }), qkv_type));
    let y = attend(&mut Writer { g: &mut g }, &i, &ins);
    g.output(&y, "out", &rows("Q"));
    [first, g.encode()]
}

/// Every stage graph of `net`, as `(file name, bytes)`, plus `dense.onnx`.
pub fn export_all(net: &Svit) -> Vec<(String, Vec<u8>)> {
    let cfg = &net.cfg;
    let (n, c, s) = (cfg.tokens(), cfg.dim, cfg.image_size);
    let img_dims = || [Dim::Fixed(1), Dim::Fixed(3), Dim::Fixed(s), Dim::Fixed(s)];
    let mut files = Vec::new();

    // The embed, gate and head stages are row-wise in the tokens (K of them), so the runtime
    // can share them among threads like the blocks.
    let mut g = Graph::new("embed");
    let row = Dim::Fixed(cfg.embed_row());
    let i = g.input("patches", &[Dim::Fixed(1), Dim::Sym("K"), row]);
    let index = g.typed_input("index", &[Dim::Sym("K")], INT64);
    let y = Writer { g: &mut g }.embed(&i, net, Some(&index));
    g.output(&y, "tokens", &[Dim::Fixed(1), Dim::Sym("K"), Dim::Fixed(c)]);
    files.push(("embed.onnx".to_string(), g.encode()));

    for (gi, gate) in net.gates.iter().enumerate() {
        let block = cfg.first_gated + gi;
        let mut g = Graph::new(&format!("gate_{block}"));
        let i = g.input("tokens", &[Dim::Fixed(1), Dim::Sym("K"), Dim::Fixed(c)]);
        let y = Writer { g: &mut g }.gate(&i, gate);
        g.output(&y, "probs", &[Dim::Fixed(1), Dim::Sym("K"), Dim::Fixed(2)]);
        files.push((format!("gate_{block}.onnx"), g.encode()));
    }

    for (bi, block) in net.blocks.iter().enumerate() {
        let [qkv, attend] = block_graphs(
            &format!("block_{bi}"),
            c,
            FLOAT,
            |w, x| w.block_qkv(x, block, cfg.heads),
            |w, x, qkv| w.block_attend(x, qkv, block, cfg.heads),
        );
        let [qn, an] = svit_runtime::manifest::block_stages(bi);
        files.push((format!("{qn}.onnx"), qkv));
        files.push((format!("{an}.onnx"), attend));
    }

    let mut g = Graph::new("head");
    let grid_row = cfg.grid() * c;
    let i = g.input(
        "tokens",
        &[Dim::Fixed(1), Dim::Sym("R"), Dim::Fixed(grid_row)],
    );
    let outs = Writer { g: &mut g }.head(&i, &net.head, net);
    head_outputs(&mut g, outs, net, [Dim::Sym("R4"), Dim::Sym("R16")]);
    files.push(("head.onnx".to_string(), g.encode()));

    let mut g = Graph::new("dense");
    let i = g.input("image", &img_dims());
    let mut w = Writer { g: &mut g };
    let patches = w.patchify(&i, cfg);
    let mut x = w.embed(&patches, net, None);
    for block in &net.blocks {
        x = w.block(&x, block, cfg.heads);
    }
    let outs = w.head(&x, &net.head, net);
    head_outputs(&mut g, outs, net, [Dim::Fixed(4 * n), Dim::Fixed(16 * n)]);
    files.push(("dense.onnx".to_string(), g.encode()));
    files
}
