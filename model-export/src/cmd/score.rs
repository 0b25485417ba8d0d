//! `svit-export score`: a COCO results file against COCO ground truth (as pycocotools' COCOeval).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use svit_export::coco;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pub coco: PathBuf,
    #[arg(long)]
    pub results: PathBuf,
    /// bbox or segm
    #[arg(long, default_value = "bbox")]
    pub iou_type: String,
}

pub fn run(a: Args) -> Result<()> {
    let Args {
        coco,
        results,
        iou_type,
    } = a;
    let gt = coco::Dataset::load(&coco)?;
    let bytes =
        std::fs::read(&results).with_context(|| format!("reading {}", results.display()))?;
    let res: Vec<coco::ResultEntry> = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a COCO results list", results.display()))?;
    let segm = match iou_type.as_str() {
        "bbox" => false,
        "segm" => true,
        other => bail!("--iou-type must be bbox or segm, not {other:?}"),
    };
    let s = svit_export::coco::eval::score_results(&gt, &coco, &res, segm)?;
    println!("{}", serde_json::to_string_pretty(&s)?);
    Ok(())
}
