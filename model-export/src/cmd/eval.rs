//! `svit-export eval`: a bundle on COCO data as the board runs it.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use indicatif::ProgressBar;
use svit_export::latency::LatencyModel;
use svit_runtime::MinKeep;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pub bundle: PathBuf,
    #[arg(long)]
    pub coco: PathBuf,
    #[arg(long)]
    pub images: PathBuf,
    /// Pruning thresholds to evaluate; 0 is the dense pass (default: 0 and the bundle's).
    #[arg(long, value_delimiter = ',')]
    pub thresholds: Vec<f32>,
    /// The fewest tokens a gated block keeps (default: the bundle's): `96` or `48..128`.
    #[arg(long)]
    pub min_keep: Option<MinKeep>,
    #[arg(long, default_value = "f32")]
    pub precision: String,
    /// What runs the stage graphs, as on the board (`svit-edge run --engine`): tract,
    /// onnxruntime or auto.
    #[arg(long, default_value = "tract", value_parser = svit_runtime::Engine::choose)]
    pub engine: svit_runtime::Engine,
    /// Detections below this score are not reported (COCO AP wants a low value).
    #[arg(long, default_value_t = 0.05)]
    pub score_threshold: f32,
    /// Move each box this far from the regressed one towards its mask's extent, 0 to 1
    /// (default: the bundle's).
    #[arg(long)]
    pub box_from_mask: Option<f32>,
    /// Summary JSON ({"runs": [...]}); COCO results files go beside it (default: runs/eval/).
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[arg(long)]
    pub limit: Option<usize>,
    /// Threads that share each image's stages, as on the board (`svit-edge run --threads`).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Latency budgets (ms) to run `svit-edge run --budget-ms`'s controller at over the images,
    /// each frame's time predicted by --latency-model: what a budget costs in accuracy.
    #[arg(long, value_delimiter = ',', requires = "latency_model")]
    pub budget_ms: Vec<f32>,
    /// A board's `svit-edge bench --json` output: its block time against kept tokens.
    #[arg(long)]
    pub latency_model: Option<PathBuf>,
    /// The bench configuration's thread count to take the latency model from.
    #[arg(long, default_value_t = 1)]
    pub latency_threads: u32,
}

pub fn run(a: Args) -> Result<()> {
    let Args {
        bundle,
        coco: coco_json,
        images,
        thresholds,
        min_keep,
        precision,
        engine,
        score_threshold,
        box_from_mask,
        json,
        limit,
        threads,
        budget_ms,
        latency_model,
        latency_threads,
    } = a;
    if budget_ms.iter().any(|b| !b.is_finite() || *b <= 0.0) {
        bail!("--budget-ms takes positive numbers of milliseconds");
    }
    if box_from_mask.is_some_and(|w| !(0.0..=1.0).contains(&w)) {
        bail!("--box-from-mask must be between 0 and 1");
    }
    let model = svit_runtime::Model::load_with(&bundle, &precision, engine)
        .with_context(|| format!("loading bundle {} into {engine}", bundle.display()))?;
    let thresholds = model.manifest.defaults.compared_thresholds(&thresholds);
    let latency = latency_model
        .map(|p| {
            LatencyModel::from_bench(&p, model.engine.name(), &model.precision, latency_threads)
        })
        .transpose()?;
    // COCO results files go beside the summary JSON, or under runs/eval without one.
    let results_dir = match json.as_ref().and_then(|j| j.parent()) {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        Some(_) => PathBuf::from("."),
        None => PathBuf::from("runs/eval"),
    };
    let spec = svit_export::coco::eval::EvalSpec {
        coco: &coco_json,
        images: &images,
        thresholds: &thresholds,
        min_keep,
        score_threshold,
        box_from_mask,
        results_dir: &results_dir,
        limit,
        threads,
        budgets: &budget_ms,
        latency: latency.as_ref(),
    };
    let bar = ProgressBar::new(0);
    let runs = svit_export::coco::eval::run(&model, &spec, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    println!(
        "{:>9} {:>9} {:>9} {:>7} {:>7} {:>9} {:>9} {:>6} {:>6}",
        "budget",
        "threshold",
        "precision",
        "box AP",
        "mask AP",
        "box AP50",
        "mask AP50",
        "kept",
        "GMACs"
    );
    for r in &runs {
        let budget = r.budget_ms.map_or("-".into(), |b| {
            format!("{b:.1}ms {:.0}%", 100.0 * r.budget_hit_rate.unwrap_or(0.0))
        });
        println!(
            "{budget:>9} {:>9.2} {:>9} {:>7.2} {:>7.2} {:>9.2} {:>9.2} {:>6.3} {:>6.3}",
            r.threshold,
            r.precision,
            r.box_ap,
            r.mask_ap,
            r.box_ap50,
            r.mask_ap50,
            r.kept_fraction,
            r.gmacs
        );
    }
    // Per class, box/mask AP at each threshold: which classes the model gets wrong.
    if let Some(first) = runs.first() {
        print!("\n{:>12}", "class");
        for r in &runs {
            print!(" {:>15}", format!("box/mask t={:.2}", r.threshold));
        }
        println!();
        for (i, c) in first.per_class.iter().enumerate() {
            print!("{:>12}", c.name);
            for r in &runs {
                let a = &r.per_class[i];
                print!(" {:>15}", format!("{:.2}/{:.2}", a.box_ap, a.mask_ap));
            }
            println!();
        }
    }
    // Class confusion at the first threshold: which classes the detector mistakes for which.
    if let Some(first) = runs.first() {
        println!(
            "\nwhat each object is called at threshold {:.2} (rows: true class; columns: the \
             best-scoring detection at box IoU >= 0.5)",
            first.threshold
        );
        print!("{:>12}", "");
        for c in &first.per_class {
            print!(" {:>8.8}", c.name);
        }
        println!(" {:>8} {:>7}", "missed", "right");
        for (i, row) in first.confusion.iter().enumerate() {
            print!("{:>12.12}", first.per_class[i].name);
            for n in row {
                print!(" {n:>8}");
            }
            let found: u64 = row[..row.len() - 1].iter().sum();
            let right = 100.0 * row[i] as f64 / found.max(1) as f64;
            println!(" {right:>6.1}%");
        }
    }
    if let Some(j) = json {
        let doc = serde_json::json!({ "bundle": bundle.display().to_string(), "runs": runs });
        std::fs::write(&j, serde_json::to_vec_pretty(&doc)?)
            .with_context(|| format!("writing {}", j.display()))?;
    }
    Ok(())
}
