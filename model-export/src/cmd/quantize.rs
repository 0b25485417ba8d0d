//! `svit-export quantize`: a bundle with int8 stage graphs beside the f32 ones, checked for AP
//! against f32 before it ships.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use super::bundle::{bundle, load_checkpoint};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub bundle: super::bundle::Args,
    /// Folder of calibration images (PNG/JPEG), e.g. `svit-export data --out data/calib --scenes 256 --seed 7000`.
    #[arg(long)]
    pub calib: PathBuf,
    /// Use at most this many calibration images (sorted by name).
    #[arg(long, default_value_t = 256)]
    pub calib_images: usize,
    /// How activation ranges are taken from the calibration data.
    #[arg(long, value_enum, default_value = "percentile")]
    pub method: svit_export::export::quant::RangeMethod,
    /// The percentile of |x| for --method percentile.
    #[arg(long, default_value_t = 99.99)]
    pub percentile: f32,
    /// COCO instances to check int8 against f32 on (default: CALIB/instances.json if present).
    #[arg(long)]
    pub check_coco: Option<PathBuf>,
    /// Images of --check-coco (default: the folder holding it).
    #[arg(long)]
    pub check_images: Option<PathBuf>,
    #[arg(long, default_value_t = 200)]
    pub check_limit: usize,
    /// Largest box or mask AP loss of int8 against f32 (0-100 scale) that may ship.
    #[arg(long, default_value_t = 1.0)]
    pub max_ap_drop: f64,
    /// Ship the int8 graphs even when they lose more than --max-ap-drop (with a warning).
    #[arg(long)]
    pub allow_drop: bool,
}

pub fn run(a: Args) -> Result<()> {
    let Args {
        bundle: b,
        calib,
        calib_images,
        method,
        percentile,
        check_coco,
        check_images,
        check_limit,
        max_ap_drop,
        allow_drop,
    } = a;
    let check = check_coco.or_else(|| {
        let j = calib.join("instances.json");
        j.exists().then_some(j)
    });
    let q = Quantize {
        calib,
        calib_images,
        method,
        percentile,
        check_images: check_images
            .or_else(|| check.as_ref().and_then(|j| j.parent()).map(PathBuf::from)),
        check,
        check_limit,
        max_ap_drop,
        allow_drop,
    };
    quantize(&b, &q)
}

struct Quantize {
    calib: PathBuf,
    calib_images: usize,
    method: svit_export::export::quant::RangeMethod,
    percentile: f32,
    check: Option<PathBuf>,
    check_images: Option<PathBuf>,
    check_limit: usize,
    max_ap_drop: f64,
    allow_drop: bool,
}

fn quantize(a: &super::bundle::Args, q: &Quantize) -> Result<()> {
    use svit_export::export::quant;
    let l = load_checkpoint(a)?;
    let cfg = &l.state.plan.config;
    let images = quant::load_images(
        &q.calib,
        cfg.image_size,
        svit_export::train::targets::MEAN,
        svit_export::train::targets::STD,
        q.calib_images,
    )?;
    tracing::info!(images = images.len(), method = ?q.method, "calibrating on {}", q.calib.display());
    let bar = ProgressBar::new(images.len() as u64).with_style(
        ProgressStyle::with_template(
            "calibrating {bar:40} {pos}/{len} images [{elapsed_precise}<{eta_precise}]",
        )
        .expect("static template"),
    );
    let ranges = quant::calibrate(&l.net, &images, q.method, q.percentile, |n| {
        bar.inc(n as u64)
    })?;
    bar.finish_and_clear();
    let models = bundle(a, &l, Some(&ranges))?;

    let (Some(coco_json), Some(imgs)) = (&q.check, &q.check_images) else {
        tracing::warn!(
            "NO ACCURACY CHECK: int8 shipped unchecked; pass --check-coco (or put instances.json in --calib) so a lossy int8 is caught"
        );
        return Ok(());
    };
    let results_dir = std::env::temp_dir().join(format!("svit-quantize-{}", std::process::id()));
    let by_precision = |p: &str| {
        models
            .iter()
            .find(|m| m.precision == p)
            .with_context(|| format!("{} has no {p} graphs", a.out.display()))
    };
    let thresholds = by_precision("f32")?
        .manifest
        .defaults
        .compared_thresholds(&[]);
    let mut ap = Vec::new();
    for precision in ["f32", "int8"] {
        let model = by_precision(precision)?;
        let spec = svit_export::coco::eval::EvalSpec {
            coco: coco_json,
            images: imgs,
            thresholds: &thresholds,
            min_keep: None,
            score_threshold: 0.05,
            box_from_mask: None,
            results_dir: &results_dir,
            limit: Some(q.check_limit),
            threads: 1,
            budgets: &[],
            latency: None,
        };
        let bar = ProgressBar::new(0).with_message(format!("checking {precision}"));
        let runs = svit_export::coco::eval::run(model, &spec, |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        })?;
        bar.finish_and_clear();
        ap.push(runs);
    }
    let _ = std::fs::remove_dir_all(&results_dir);
    let mut worst = 0f64;
    for (f, i) in ap[0].iter().zip(&ap[1]) {
        let (db, dm) = (f.box_ap - i.box_ap, f.mask_ap - i.mask_ap);
        worst = worst.max(db).max(dm);
        println!(
            "threshold {:.2}: box AP f32 {:.2} int8 {:.2} ({:+.2}), mask AP f32 {:.2} int8 {:.2} ({:+.2})",
            f.threshold, f.box_ap, i.box_ap, -db, f.mask_ap, i.mask_ap, -dm
        );
    }
    if worst > q.max_ap_drop {
        let msg = format!(
            "int8 loses {worst:.2} AP against f32 on {} (more than --max-ap-drop {})",
            coco_json.display(),
            q.max_ap_drop
        );
        if q.allow_drop {
            tracing::warn!("{msg}; shipped anyway because of --allow-drop");
        } else {
            bundle(a, &l, None)?;
            bail!("{msg}: the int8 graphs were NOT shipped ({} holds f32 only). Try --method minmax or another --percentile, or --allow-drop.", a.out.display());
        }
    }
    Ok(())
}
