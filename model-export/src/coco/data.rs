//! A user's COCO-format data set as a training source: images resized to the model input,
//! masks decoded from polygons or RLE and resized with them.

use std::path::{Path, PathBuf};

use crate::error::{Context, Result};

use crate::coco::Dataset;
use crate::train::targets::Sample;
use crate::train::DataSource;

pub struct CocoSource {
    ds: Dataset,
    images: PathBuf,
    size: usize,
    /// Category id -> contiguous class index.
    classes: Vec<u64>,
}

impl CocoSource {
    pub fn open(json: &Path, images: &Path, size: usize) -> Result<Self> {
        let ds = Dataset::load(json)?;
        crate::error::ensure!(
            !ds.images.is_empty(),
            "{}: no images listed",
            json.display()
        );
        let classes = ds.categories.iter().map(|c| c.id).collect();
        Ok(CocoSource {
            ds,
            images: images.to_path_buf(),
            size,
            classes,
        })
    }

    pub fn len(&self) -> usize {
        self.ds.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ds.images.is_empty()
    }

    pub fn load(&self, i: usize) -> Result<Sample> {
        let info = &self.ds.images[i];
        let path = self.images.join(&info.file_name);
        let img = image::open(&path)
            .with_context(|| format!("reading image {}", path.display()))?
            .to_rgb8();
        crate::error::ensure!(
            img.width() as usize == info.width && img.height() as usize == info.height,
            "{}: is {}x{}, the COCO file says {}x{}",
            path.display(),
            img.width(),
            img.height(),
            info.width,
            info.height
        );
        let s = self.size as u32;
        let rgb =
            image::imageops::resize(&img, s, s, image::imageops::FilterType::Triangle).into_raw();
        let mut objects = Vec::new();
        for a in self
            .ds
            .annotations
            .iter()
            .filter(|a| a.image_id == info.id && a.iscrowd == 0)
        {
            let Some(seg) = &a.segmentation else { continue };
            let full = seg.to_mask(info.width, info.height).map_err(|e| {
                crate::error::Error::Invalid(format!(
                    "annotation {} in image {}: {e}",
                    a.id, info.file_name
                ))
            })?;
            let mask = resize_nearest(&full, info.width, info.height, self.size);
            let area = mask.iter().filter(|&&m| m != 0).count();
            if area == 0 {
                continue;
            }
            let class = self
                .classes
                .iter()
                .position(|&c| c == a.category_id)
                .context("category checked on load")?;
            let bbox = svit_scenes::mask_bbox(&mask, self.size, self.size);
            objects.push(svit_scenes::Object {
                class,
                bbox,
                mask,
                area,
            });
        }
        Ok(Sample {
            size: self.size,
            rgb,
            objects,
        })
    }
}

fn resize_nearest(m: &[u8], w: usize, h: usize, size: usize) -> Vec<u8> {
    let mut out = vec![0u8; size * size];
    for y in 0..size {
        let sy = ((y as f64 + 0.5) * h as f64 / size as f64) as usize;
        for x in 0..size {
            let sx = ((x as f64 + 0.5) * w as f64 / size as f64) as usize;
            out[y * size + x] = m[sy.min(h - 1) * w + sx.min(w - 1)];
        }
    }
    out
}

impl DataSource for CocoSource {
    fn sample(&mut self, index: u64) -> Result<Sample> {
        // A fixed pseudo-random walk over the images, so resume sees the same order.
        let n = self.len() as u64;
        let i = (index.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) % n;
        self.load(i as usize)
    }
}
