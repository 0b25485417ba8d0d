//! `render`: one recorded frame as a picture: its thumbnail, the kept tokens of a chosen block
//! (pruned tokens darkened), instance masks tinted and boxes outlined in the class colour.

use std::path::Path;

use anyhow::{bail, Context, Result};
use svit_protocol::{bit, EdgeMsg, Frame, Hello};

use crate::record::Record;

const COLOURS: [[u8; 3]; 8] = [
    [230, 25, 75],
    [60, 180, 75],
    [255, 225, 25],
    [0, 130, 200],
    [245, 130, 48],
    [145, 30, 180],
    [70, 240, 240],
    [240, 50, 230],
];

pub fn colour(class: u16) -> [u8; 3] {
    COLOURS[class as usize % COLOURS.len()]
}

pub struct Rendered {
    pub width: u32,
    pub height: u32,
    pub legend: Vec<String>,
}

pub fn render(
    records: &[Record],
    device: Option<&str>,
    seq: u64,
    block: Option<usize>,
    out: &Path,
) -> Result<Rendered> {
    let on_device = |r: &&Record| device.is_none_or(|d| r.device == d);
    let (dev, frame): (&str, &Frame) = records
        .iter()
        .filter(on_device)
        .find_map(|r| {
            if let EdgeMsg::Frame(f) = &r.msg {
                (f.seq == seq).then_some((r.device.as_str(), f))
            } else {
                None
            }
        })
        .with_context(|| {
            format!(
                "no frame {seq} in the recording{}",
                device.map(|d| format!(" from {d}")).unwrap_or_default()
            )
        })?;
    let dev_recs = || records.iter().filter(move |r| r.device == dev);
    let jpeg = dev_recs().find_map(|r| match &r.msg {
        EdgeMsg::Thumbnail(t) if t.seq == seq => Some(&t.jpeg),
        _ => None,
    });
    let Some(jpeg) = jpeg else {
        let have: Vec<u64> = dev_recs()
            .filter_map(|r| {
                if let EdgeMsg::Thumbnail(t) = &r.msg {
                    Some(t.seq)
                } else {
                    None
                }
            })
            .take(20)
            .collect();
        bail!("frame {seq} of {dev} has no thumbnail; frames with one: {have:?}");
    };
    let hello: Option<&Hello> = dev_recs().find_map(|r| {
        if let EdgeMsg::Hello(h) = &r.msg {
            Some(h)
        } else {
            None
        }
    });
    let mut img = image::load_from_memory(jpeg)
        .context("decoding the thumbnail")?
        .to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);

    // Kept-token heatmap of the chosen block (default: the last one).
    let b = block.unwrap_or(frame.kept.len().saturating_sub(1));
    let map = frame.keep_maps.get(b).filter(|m| !m.is_empty());
    if let (Some(map), Some(hello)) = (map, hello) {
        let g = (hello.tokens as f64).sqrt().round() as usize;
        for y in 0..h {
            for x in 0..w {
                let t = (y * g / h) * g + x * g / w;
                if !bit(map, t) {
                    let p = img.get_pixel_mut(x as u32, y as u32);
                    p.0 = p.0.map(|v| (v as f32 * 0.35) as u8);
                }
            }
        }
    }
    let mut legend = Vec::new();
    for d in &frame.detections {
        let c = colour(d.class);
        let m = &d.mask;
        for j in 0..m.h as usize {
            for i in 0..m.w as usize {
                if !bit(&m.bits, j * m.w as usize + i) {
                    continue;
                }
                let x0 = ((m.x0 as usize + i) as f32 * m.cell[0]) as usize;
                let y0 = ((m.y0 as usize + j) as f32 * m.cell[1]) as usize;
                let x1 = (((m.x0 as usize + i + 1) as f32 * m.cell[0]) as usize).min(w);
                let y1 = (((m.y0 as usize + j + 1) as f32 * m.cell[1]) as usize).min(h);
                for y in y0..y1 {
                    for x in x0..x1 {
                        let p = img.get_pixel_mut(x as u32, y as u32);
                        for k in 0..3 {
                            p.0[k] = (p.0[k] as f32 * 0.55 + c[k] as f32 * 0.45) as u8;
                        }
                    }
                }
            }
        }
        let [bx0, by0, bx1, by1] = d.bbox.map(|v| v.max(0.0) as usize);
        for t in 0..2 {
            for x in bx0..bx1.min(w) {
                for y in [by0 + t, by1.saturating_sub(1 + t)] {
                    if y < h {
                        img.put_pixel(x as u32, y as u32, image::Rgb(c));
                    }
                }
            }
            for y in by0..by1.min(h) {
                for x in [bx0 + t, bx1.saturating_sub(1 + t)] {
                    if x < w {
                        img.put_pixel(x as u32, y as u32, image::Rgb(c));
                    }
                }
            }
        }
        let label = hello
            .and_then(|h| h.labels.get(d.class as usize))
            .cloned()
            .unwrap_or_else(|| format!("class {}", d.class));
        legend.push(format!(
            "{label} {:.2} rgb{:?} at {:?}",
            d.score,
            c,
            d.bbox.map(|v| v.round())
        ));
    }
    img.save(out)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(Rendered {
        width: w as u32,
        height: h as u32,
        legend,
    })
}
