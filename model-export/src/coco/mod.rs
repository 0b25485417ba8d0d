//! COCO-format JSON: instances (ground truth) and results, with COCO's compressed RLE masks,
//! so pycocotools and every other COCO tool read what we write and we read what they write.

pub mod cocoeval;
pub mod data;
pub mod eval;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CocoError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not COCO instances JSON: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
    #[error("{path}: {problem}")]
    Invalid { path: String, problem: String },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Dataset {
    pub images: Vec<Image>,
    pub annotations: Vec<Annotation>,
    pub categories: Vec<Category>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Image {
    pub id: u64,
    pub file_name: String,
    pub width: usize,
    pub height: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Category {
    pub id: u64,
    pub name: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Annotation {
    pub id: u64,
    pub image_id: u64,
    pub category_id: u64,
    pub bbox: [f64; 4],
    pub area: f64,
    #[serde(default)]
    pub iscrowd: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segmentation: Option<Segmentation>,
}

/// COCO segmentations: polygons, uncompressed RLE (counts as numbers) or compressed RLE.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Segmentation {
    Polygons(Vec<Vec<f64>>),
    Rle { size: [usize; 2], counts: RleCounts },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RleCounts {
    Compressed(String),
    Raw(Vec<u32>),
}

/// One detection in COCO results format.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ResultEntry {
    pub image_id: u64,
    pub category_id: u64,
    /// Absent in segmentation results, where the mask defines the box.
    #[serde(default)]
    pub bbox: [f64; 4],
    pub score: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segmentation: Option<Segmentation>,
}

impl Dataset {
    pub fn load(path: &Path) -> Result<Self, CocoError> {
        let p = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| CocoError::Io {
            path: p.clone(),
            source,
        })?;
        let ds: Dataset = serde_json::from_slice(&bytes).map_err(|source| CocoError::Json {
            path: p.clone(),
            source,
        })?;
        ds.validate()
            .map_err(|problem| CocoError::Invalid { path: p, problem })?;
        Ok(ds)
    }

    /// Referential integrity and sane geometry: problems name the annotation.
    pub fn validate(&self) -> Result<(), String> {
        let images: BTreeMap<u64, &Image> = self.images.iter().map(|i| (i.id, i)).collect();
        if images.len() != self.images.len() {
            return Err("duplicate image ids".into());
        }
        let cats: Vec<u64> = self.categories.iter().map(|c| c.id).collect();
        for a in &self.annotations {
            let Some(img) = images.get(&a.image_id) else {
                return Err(format!(
                    "annotation {} refers to image {} which is not listed",
                    a.id, a.image_id
                ));
            };
            if !cats.contains(&a.category_id) {
                return Err(format!(
                    "annotation {} has category {} which is not listed",
                    a.id, a.category_id
                ));
            }
            if a.bbox.iter().any(|v| !v.is_finite()) || a.bbox[2] < 0.0 || a.bbox[3] < 0.0 {
                return Err(format!(
                    "annotation {} has an invalid bbox {:?}",
                    a.id, a.bbox
                ));
            }
            if let Some(Segmentation::Rle { size, .. }) = &a.segmentation {
                if *size != [img.height, img.width] {
                    return Err(format!(
                        "annotation {}: RLE size {:?} differs from image {} ({}x{})",
                        a.id, size, img.id, img.height, img.width
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, serde_json::to_vec(self)?)
    }
}

/// Row-major binary mask -> COCO RLE counts (column-major runs, starting with zeros).
pub fn rle_encode(mask: &[u8], w: usize, h: usize) -> Vec<u32> {
    let mut counts = Vec::new();
    let mut cur = 0u8;
    let mut run = 0u32;
    for x in 0..w {
        for y in 0..h {
            let v = (mask[y * w + x] != 0) as u8;
            if v != cur {
                counts.push(run);
                run = 0;
                cur = v;
            }
            run += 1;
        }
    }
    counts.push(run);
    counts
}

/// COCO RLE counts -> row-major binary mask. Errors when the runs do not cover `w * h`.
pub fn rle_decode(counts: &[u32], w: usize, h: usize) -> Result<Vec<u8>, String> {
    let total: u64 = counts.iter().map(|&c| c as u64).sum();
    if total != (w * h) as u64 {
        return Err(format!(
            "RLE covers {total} pixels, the image has {}",
            w * h
        ));
    }
    let mut out = vec![0u8; w * h];
    let mut pos = 0usize;
    for (i, &c) in counts.iter().enumerate() {
        if i % 2 == 1 {
            for p in pos..pos + c as usize {
                let (x, y) = (p / h, p % h);
                out[y * w + x] = 1;
            }
        }
        pos += c as usize;
    }
    Ok(out)
}

/// pycocotools' `rleToString`: LEB128-like, 5 bits a char, deltas from two runs back.
pub fn rle_to_string(counts: &[u32]) -> String {
    let mut s = String::new();
    for (i, &c) in counts.iter().enumerate() {
        let mut x = c as i64;
        if i > 2 {
            x -= counts[i - 2] as i64;
        }
        loop {
            let mut c = x & 0x1f;
            x >>= 5;
            let more = if c & 0x10 != 0 { x != -1 } else { x != 0 };
            if more {
                c |= 0x20;
            }
            s.push((c as u8 + 48) as char);
            if !more {
                break;
            }
        }
    }
    s
}

/// pycocotools' `rleFrString`.
pub fn rle_from_string(s: &str) -> Result<Vec<u32>, String> {
    let b = s.as_bytes();
    let mut counts: Vec<u32> = Vec::new();
    let mut p = 0;
    while p < b.len() {
        let mut x: i64 = 0;
        let mut k = 0;
        let mut more = true;
        while more {
            let Some(&ch) = b.get(p) else {
                return Err("RLE string ends inside a number".into());
            };
            if !(48..48 + 64).contains(&ch) || k > 6 {
                return Err(format!("invalid RLE character {:?}", ch as char));
            }
            let c = (ch - 48) as i64;
            x |= (c & 0x1f) << (5 * k);
            more = c & 0x20 != 0;
            p += 1;
            k += 1;
            if !more && (c & 0x10) != 0 {
                x |= -1i64 << (5 * k);
            }
        }
        let m = counts.len();
        if m > 2 {
            x += counts[m - 2] as i64;
        }
        if x < 0 || x > u32::MAX as i64 {
            return Err("RLE run out of range".into());
        }
        counts.push(x as u32);
    }
    Ok(counts)
}

/// Even-odd fill of COCO polygons (pixel centres), for user data sets that use them.
pub fn polygons_to_mask(polys: &[Vec<f64>], w: usize, h: usize) -> Vec<u8> {
    let mut out = vec![0u8; w * h];
    for poly in polys {
        let pts: Vec<(f64, f64)> = poly.chunks_exact(2).map(|c| (c[0], c[1])).collect();
        if pts.len() < 3 {
            continue;
        }
        for y in 0..h {
            let yc = y as f64 + 0.5;
            let mut xs = Vec::new();
            for i in 0..pts.len() {
                let (a, b) = (pts[i], pts[(i + 1) % pts.len()]);
                if (a.1 <= yc) != (b.1 <= yc) {
                    xs.push(a.0 + (yc - a.1) / (b.1 - a.1) * (b.0 - a.0));
                }
            }
            xs.sort_by(f64::total_cmp);
            for pair in xs.chunks_exact(2) {
                let x0 = (pair[0] - 0.5).ceil().max(0.0) as usize;
                let x1 = ((pair[1] - 0.5).floor() + 1.0).clamp(0.0, w as f64) as usize;
                for x in x0..x1 {
                    out[y * w + x] ^= 1;
                }
            }
        }
    }
    out
}

impl Segmentation {
    pub fn from_mask(mask: &[u8], w: usize, h: usize) -> Self {
        Segmentation::Rle {
            size: [h, w],
            counts: RleCounts::Compressed(rle_to_string(&rle_encode(mask, w, h))),
        }
    }
    /// Row-major binary mask of an image `w x h`.
    pub fn to_mask(&self, w: usize, h: usize) -> Result<Vec<u8>, String> {
        match self {
            Segmentation::Polygons(p) => Ok(polygons_to_mask(p, w, h)),
            Segmentation::Rle { size, counts } => {
                if *size != [h, w] {
                    return Err(format!("RLE size {size:?} but image is {h}x{w}"));
                }
                let counts = match counts {
                    RleCounts::Raw(c) => c.clone(),
                    RleCounts::Compressed(s) => rle_from_string(s)?,
                };
                rle_decode(&counts, w, h)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rle_round_trips() {
        let (w, h) = (7, 5);
        let mask: Vec<u8> = (0..w * h).map(|i| ((i * 7919) % 11 < 4) as u8).collect();
        let counts = rle_encode(&mask, w, h);
        assert_eq!(rle_decode(&counts, w, h).unwrap(), mask);
        let s = rle_to_string(&counts);
        assert_eq!(rle_from_string(&s).unwrap(), counts);
    }

    #[test]
    fn rle_string_matches_pycocotools() {
        // pycocotools.mask.encode of a 4x4 Fortran mask with a 2x2 block at rows 1-2, cols 1-2.
        let mut m = vec![0u8; 16];
        for (y, x) in [(1, 1), (1, 2), (2, 1), (2, 2)] {
            m[y * 4 + x] = 1;
        }
        let counts = rle_encode(&m, 4, 4);
        assert_eq!(counts, vec![5, 2, 2, 2, 5]);
        assert_eq!(rle_to_string(&counts), "52203");
    }

    #[test]
    fn bad_rle_is_an_error() {
        assert!(rle_decode(&[3, 4], 3, 3).is_err());
        assert!(rle_from_string("5\u{7f}").is_err());
    }

    #[test]
    fn polygon_fill() {
        let m = polygons_to_mask(&[vec![1.0, 1.0, 4.0, 1.0, 4.0, 3.0, 1.0, 3.0]], 6, 5);
        assert_eq!(m.iter().map(|&v| v as usize).sum::<usize>(), 6);
    }
}
