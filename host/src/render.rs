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
    let (img, legend) = draw(frame, jpeg, hello, block)?;
    img.save(out)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(Rendered {
        width: img.width(),
        height: img.height(),
        legend,
    })
}

/// A frame's thumbnail with the kept tokens of `block` (default: the last), masks, boxes and
/// labels drawn on it; and a legend line per detection.
pub fn draw(
    frame: &Frame,
    jpeg: &[u8],
    hello: Option<&Hello>,
    block: Option<usize>,
) -> Result<(image::RgbImage, Vec<String>)> {
    let mut img = image::load_from_memory(jpeg)
        .context("decoding the thumbnail")?
        .to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);

    // Kept-token heatmap of the chosen block (default: the last one).
    let b = block.unwrap_or(frame.kept.len().saturating_sub(1));
    let map = frame.keep_maps.get(b).filter(|m| !m.is_empty());
    if let (Some(map), Some(hello)) = (map, hello) {
        let g = (hello.model.tokens as f64).sqrt().round() as usize;
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
                        for (v, c) in p.0.iter_mut().zip(c) {
                            *v = (*v as f32 * 0.55 + c as f32 * 0.45) as u8;
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
            .and_then(|h| h.model.labels.get(d.class as usize))
            .cloned()
            .unwrap_or_else(|| format!("class {}", d.class));
        let text = format!("{label} {:.2}", d.score);
        draw_label(&mut img, bx0, by0, &text, c);
        legend.push(format!(
            "{label} {:.2} rgb{:?} at {:?}",
            d.score,
            c,
            d.bbox.map(|v| v.round())
        ));
    }
    Ok((img, legend))
}

/// 3x5 pixel glyphs (rows top to bottom, 3 bits each, MSB left) for labels: letters (either
/// case), digits, '.', '-' and space; anything else is drawn as a box.
fn glyph(ch: char) -> [u8; 5] {
    const LETTERS: [[u8; 5]; 26] = [
        [2, 5, 7, 5, 5],
        [6, 5, 6, 5, 6],
        [3, 4, 4, 4, 3],
        [6, 5, 5, 5, 6],
        [7, 4, 6, 4, 7],
        [7, 4, 6, 4, 4],
        [3, 4, 5, 5, 3],
        [5, 5, 7, 5, 5],
        [7, 2, 2, 2, 7],
        [1, 1, 1, 5, 2],
        [5, 5, 6, 5, 5],
        [4, 4, 4, 4, 7],
        [5, 7, 7, 5, 5],
        [6, 5, 5, 5, 5],
        [2, 5, 5, 5, 2],
        [6, 5, 6, 4, 4],
        [2, 5, 5, 6, 3],
        [6, 5, 6, 5, 5],
        [3, 4, 2, 1, 6],
        [7, 2, 2, 2, 2],
        [5, 5, 5, 5, 7],
        [5, 5, 5, 5, 2],
        [5, 5, 7, 7, 5],
        [5, 5, 2, 5, 5],
        [5, 5, 2, 2, 2],
        [7, 1, 2, 4, 7],
    ];
    const DIGITS: [[u8; 5]; 10] = [
        [7, 5, 5, 5, 7],
        [2, 6, 2, 2, 7],
        [6, 1, 2, 4, 7],
        [6, 1, 2, 1, 6],
        [5, 5, 7, 1, 1],
        [7, 4, 6, 1, 6],
        [3, 4, 7, 5, 7],
        [7, 1, 2, 2, 2],
        [7, 5, 7, 5, 7],
        [7, 5, 7, 1, 6],
    ];
    match ch.to_ascii_lowercase() {
        c @ 'a'..='z' => LETTERS[c as usize - 'a' as usize],
        c @ '0'..='9' => DIGITS[c as usize - '0' as usize],
        '.' => [0, 0, 0, 0, 2],
        '-' | '_' => [0, 0, 7, 0, 0],
        ' ' => [0; 5],
        _ => [7, 5, 5, 5, 7],
    }
}

/// Writes `text` at 2x scale on a bar of the class colour, above the box when there is room.
fn draw_label(img: &mut image::RgbImage, x: usize, y: usize, text: &str, bg: [u8; 3]) {
    const SCALE: usize = 2;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (tw, th) = (
        text.chars().count() * 4 * SCALE + SCALE,
        5 * SCALE + 2 * SCALE,
    );
    let y0 = if y >= th { y - th } else { y };
    // Dark text on light colours, light text on dark ones.
    let luma = 0.299 * bg[0] as f32 + 0.587 * bg[1] as f32 + 0.114 * bg[2] as f32;
    let fg = if luma > 140.0 {
        [0, 0, 0]
    } else {
        [255, 255, 255]
    };
    for yy in y0..(y0 + th).min(h) {
        for xx in x..(x + tw).min(w) {
            img.put_pixel(xx as u32, yy as u32, image::Rgb(bg));
        }
    }
    for (i, ch) in text.chars().enumerate() {
        for (row, bits) in glyph(ch).iter().enumerate() {
            for col in 0..3 {
                if bits & (4 >> col) == 0 {
                    continue;
                }
                for dy in 0..SCALE {
                    for dx in 0..SCALE {
                        let px = x + SCALE + (i * 4 + col) * SCALE + dx;
                        let py = y0 + SCALE + row * SCALE + dy;
                        if px < w && py < h {
                            img.put_pixel(px as u32, py as u32, image::Rgb(fg));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod label_tests {
    use super::*;

    #[test]
    fn labels_are_drawn_in_the_box_colour_with_readable_text() {
        let mut img = image::RgbImage::new(64, 32);
        draw_label(&mut img, 2, 20, "star 0.9", [255, 255, 0]);
        // The bar sits above y=20, in the class colour, with dark glyph pixels on it.
        let bar: Vec<_> = (2..60).map(|x| img.get_pixel(x, 8).0).collect();
        assert!(bar.contains(&[255, 255, 0]) && bar.contains(&[0, 0, 0]));
        assert_eq!(
            img.get_pixel(2, 6).0,
            [255, 255, 0],
            "bar is 14 px tall, ending at y=20"
        );
        assert_eq!(img.get_pixel(2, 5).0, [0, 0, 0]);
        assert_eq!(
            img.get_pixel(2, 25).0,
            [0, 0, 0],
            "nothing drawn below the bar"
        );
        // 'i' and 'l' differ: glyphs are distinct.
        assert_ne!(glyph('i'), glyph('l'));
        assert_eq!(glyph('S'), glyph('s'));
    }
}
