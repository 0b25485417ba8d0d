//! f16 stage graphs, for boards with fp16 arithmetic.

use prost::Message;
use tract_onnx::pb;

use super::{attr_int, FLOAT, FLOAT16};

/// The same graph computing in f16: every f32 initializer stored as f16, the f32 inputs cast to
/// f16 on entry and the outputs cast back to f32, so callers still pass and get f32 tensors.
/// For boards with fp16 arithmetic (Cortex-A76, A78AE); x86 runs it emulated and slower.
pub fn to_f16(onnx: &[u8]) -> Result<Vec<u8>, prost::DecodeError> {
    let mut m = pb::ModelProto::decode(onnx)?;
    let Some(g) = m.graph.as_mut() else {
        return Ok(onnx.to_vec());
    };
    for t in &mut g.initializer {
        if t.data_type == FLOAT {
            t.raw_data = t
                .raw_data
                .chunks_exact(4)
                .flat_map(|b| {
                    half::f16::from_f32(f32::from_le_bytes([b[0], b[1], b[2], b[3]])).to_le_bytes()
                })
                .collect();
            t.data_type = FLOAT16;
        }
    }
    let cast = |from: &str, to: &str, ty: i32| pb::NodeProto {
        input: vec![from.into()],
        output: vec![to.into()],
        name: format!("cast_{to}"),
        op_type: "Cast".into(),
        attribute: vec![attr_int("to", ty as i64)],
        ..Default::default()
    };
    let mut head = Vec::new();
    for i in &g.input {
        let inner = format!("{}_f16", i.name);
        for n in &mut g.node {
            for x in &mut n.input {
                if *x == i.name {
                    x.clone_from(&inner);
                }
            }
        }
        head.push(cast(&i.name, &inner, FLOAT16));
    }
    let mut tail = Vec::new();
    for o in &g.output {
        let inner = format!("{}_f16", o.name);
        for n in &mut g.node {
            for x in &mut n.output {
                if *x == o.name {
                    x.clone_from(&inner);
                }
            }
        }
        tail.push(cast(&inner, &o.name, FLOAT));
    }
    head.append(&mut g.node);
    head.extend(tail);
    g.node = head;
    Ok(m.encode_to_vec())
}
