//! `svit-export data`: synthetic scenes (PNG) and their COCO instances JSON (RLE masks).

use std::path::PathBuf;

use anyhow::{Context, Result};
use indicatif::ProgressBar;
use svit_export::coco;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 1000)]
    pub scenes: u64,
    #[arg(long, default_value_t = 9000)]
    pub seed: u64,
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// Look of the scenes (`camera`: natural-image backgrounds, perspective, blur, noise,
    /// JPEG, one scene in eight empty).
    #[arg(long, value_enum, default_value = "plain")]
    pub style: super::train::SceneStyle,
}

pub fn run(a: Args) -> Result<()> {
    let cfg = svit_scenes::SceneConfig::with_style(a.size, a.style.into());
    data(a.out, a.scenes, a.seed, &cfg)
}

fn data(out: PathBuf, scenes: u64, seed: u64, cfg: &svit_scenes::SceneConfig) -> Result<()> {
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let bar = ProgressBar::new(scenes);
    let mut ds = coco::Dataset {
        images: Vec::new(),
        annotations: Vec::new(),
        categories: svit_scenes::CLASSES
            .iter()
            .enumerate()
            .map(|(i, n)| coco::Category {
                id: i as u64 + 1,
                name: n.to_string(),
            })
            .collect(),
    };
    for i in 0..scenes {
        let s = svit_scenes::generate(cfg, seed, i);
        let file_name = format!("{i:06}.png");
        let path = out.join(&file_name);
        image::save_buffer(
            &path,
            &s.rgb,
            s.width as u32,
            s.height as u32,
            image::ColorType::Rgb8,
        )
        .with_context(|| format!("writing {}", path.display()))?;
        let image_id = i + 1;
        ds.images.push(coco::Image {
            id: image_id,
            file_name,
            width: s.width,
            height: s.height,
        });
        for o in &s.objects {
            ds.annotations.push(coco::Annotation {
                id: ds.annotations.len() as u64 + 1,
                image_id,
                category_id: o.class as u64 + 1,
                bbox: o.bbox.map(f64::from),
                area: o.area as f64,
                iscrowd: 0,
                segmentation: Some(coco::Segmentation::from_mask(&o.mask, s.width, s.height)),
            });
        }
        bar.inc(1);
    }
    bar.finish();
    let json = out.join("instances.json");
    ds.save(&json)
        .with_context(|| format!("writing {}", json.display()))?;
    tracing::info!(
        images = ds.images.len(),
        objects = ds.annotations.len(),
        "wrote {}",
        json.display()
    );
    Ok(())
}
