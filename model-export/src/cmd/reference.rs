//! `svit-export reference`: reference tensors for engine cross-checks.

use std::path::PathBuf;

use anyhow::{Context, Result};
use svit_runtime::preprocess::Layout;
use svit_runtime::MinKeep;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "models/demo")]
    pub bundle: PathBuf,
    /// An image (any size; resized like the board does).
    #[arg(long)]
    pub image: PathBuf,
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    reference(a.bundle, a.image, a.out)
}

fn reference(bundle: PathBuf, image: PathBuf, out: PathBuf) -> Result<()> {
    use tract_onnx::prelude::*;
    let model = svit_runtime::Model::load(&bundle, "f32")?;
    let img = image::open(&image)
        .with_context(|| format!("reading {}", image.display()))?
        .to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let s = model.config().image_size;
    let inp = &model.manifest.input;
    let mut chw = Vec::new();
    svit_runtime::preprocess::resize_normalise(
        img.as_raw(),
        w,
        h,
        &Layout::chw(s),
        inp.mean,
        inp.std,
        &mut chw,
    );
    std::fs::create_dir_all(&out)?;
    let write = |name: &str, v: &[f32]| -> Result<()> {
        let p = out.join(name);
        std::fs::write(
            &p,
            v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>(),
        )
        .with_context(|| format!("writing {}", p.display()))
    };
    write("input.f32", &chw)?;
    let plan = svit_runtime::onnx()
        .model_for_path(bundle.join("dense.onnx"))?
        .into_optimized()?
        .into_runnable()?;
    let res = plan.run(tvec!(Tensor::from_shape(&[1, 3, s, s], &chw)?.into()))?;
    let names = ["heat", "boxes", "coef", "protos"];
    for (name, t) in names.iter().zip(res.iter()) {
        write(
            &format!("tract_dense_{name}.f32"),
            t.try_as_plain_ram()?.as_slice::<f32>()?,
        )?;
    }
    let mut st = model.new_state(1)?;
    let opts = svit_runtime::RunOptions {
        pruning: svit_runtime::Pruning::Threshold {
            threshold: 0.0,
            min_keep: MinKeep::uniform(1),
        },
        ..model.default_options()
    };
    model.run_tensor(&mut st, &chw, &opts)?;
    for (name, v) in names.iter().zip(st.head_outputs()) {
        write(&format!("stages_t0_{name}.f32"), v)?;
    }
    tracing::info!("wrote reference tensors to {}", out.display());
    Ok(())
}
