//! int8 export on the shipped demo checkpoint: the folded f32 block equals the trained block,
//! and each int8 block graph, run by tract, stays close to the f32 block on real activations.

use candle_core::{Device, Tensor};
use svit_export::export::quant::{self, RangeMethod};
use svit_export::train::targets::{MEAN, STD};
use tract_onnx::prelude::*;

mod common;
use common::{demo, scenes};

fn tokens_of(net: &svit_export::model::Svit, img: &[f32]) -> Tensor {
    let s = net.cfg.image_size;
    let t = Tensor::from_slice(img, (1, 3, s, s), &Device::Cpu).unwrap();
    net.embed(&t).unwrap()
}

#[test]
fn folded_block_equals_the_trained_block() {
    let net = demo();
    let x = tokens_of(&net, &scenes(net.cfg.image_size, 5, 1)[0]);
    for b in &net.blocks {
        let want = b.forward(&x, None).unwrap();
        let got = quant::folded_block(b, net.cfg.heads, &x, &mut |_, _| Ok(())).unwrap();
        let d = (want - got)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(d < 1e-4, "folded block differs by {d}");
    }
}

#[test]
fn int8_blocks_track_f32_on_real_activations() {
    let net = demo();
    let size = net.cfg.image_size;
    let calib = scenes(size, 7000, 16);
    let ranges = quant::calibrate(&net, &calib, RangeMethod::Percentile, 99.99, |_| {}).unwrap();
    let graphs = svit_export::export::onnx::int8::blocks(&net, &ranges).unwrap();
    // Held-out scene, pruned to K = 100 tokens as the runtime would hand a block.
    let x = tokens_of(&net, &scenes(size, 9000, 1)[0]);
    let mut x = x.narrow(1, 0, 100).unwrap().contiguous().unwrap();
    for (bi, (block, [qkv, attend])) in net.blocks.iter().zip(&graphs).enumerate() {
        let want = block.forward(&x, None).unwrap();
        let plan = |bytes: &[u8]| {
            svit_runtime::optimise_graph(bytes)
                .unwrap()
                .into_runnable()
                .unwrap()
        };
        let input: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
        let c = net.cfg.dim;
        let tokens: TValue = tract_ndarray::Array3::from_shape_vec((1, 100, c), input)
            .unwrap()
            .into_tensor()
            .into();
        let qkv = plan(qkv).run(tvec!(tokens.clone())).unwrap();
        let out = plan(attend)
            .run(tvec!(
                tokens,
                qkv[0].clone(),
                qkv[1].clone(),
                qkv[2].clone()
            ))
            .unwrap();
        let got: Vec<f32> = out[0]
            .try_as_plain_ram()
            .unwrap()
            .as_slice::<f32>()
            .unwrap()
            .to_vec();
        let want_v: Vec<f32> = want.flatten_all().unwrap().to_vec1().unwrap();
        // Relative error of the block's update (out - x), the part int8 computes.
        let xin: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
        let (mut num, mut den) = (0f64, 0f64);
        for i in 0..got.len() {
            num += ((got[i] - want_v[i]) as f64).powi(2);
            den += ((want_v[i] - xin[i]) as f64).powi(2);
        }
        let rel = (num / den).sqrt();
        eprintln!("block {bi}: relative error of the update {rel:.4}");
        assert!(
            rel < 0.1,
            "block {bi}: int8 update off by {rel:.3} (relative)"
        );
        x = want;
    }
}

#[test]
fn calibration_data_errors_name_the_folder_or_file() {
    let dir = std::env::temp_dir().join(format!("svit-calib-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let load = |d: &std::path::Path| quant::load_images(d, 64, MEAN, STD, 10);

    let e = format!("{:#}", load(&dir).unwrap_err());
    assert!(
        e.contains("cannot be read") && e.contains("svit-calib"),
        "{e}"
    );

    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), b"not an image").unwrap();
    let e = format!("{:#}", load(&dir).unwrap_err());
    assert!(e.contains("has no PNG or JPEG images"), "{e}");

    std::fs::write(dir.join("a.png"), b"\x89PNG garbage").unwrap();
    let e = format!("{:#}", load(&dir).unwrap_err());
    assert!(
        e.contains("a.png") && e.contains("cannot be decoded"),
        "{e}"
    );

    image::save_buffer(
        dir.join("a.png"),
        &[0u8; 8 * 8 * 3],
        8,
        8,
        image::ColorType::Rgb8,
    )
    .unwrap();
    let e = format!("{:#}", load(&dir).unwrap_err());
    assert!(e.contains("a.png") && e.contains("8x8"), "{e}");

    image::save_buffer(
        dir.join("a.png"),
        &[90u8; 40 * 30 * 3],
        40,
        30,
        image::ColorType::Rgb8,
    )
    .unwrap();
    let imgs = load(&dir).unwrap();
    assert_eq!(imgs.len(), 1);
    assert_eq!(imgs[0].len(), 3 * 64 * 64);
    std::fs::remove_dir_all(&dir).unwrap();
}
