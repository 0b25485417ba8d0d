//! `svit-export targets`: the printable target sheet (PDF, A4 or Letter) with the six shapes as
//! the scene generator draws them (`svit_scenes::sheet`), a 50 mm scale bar and how far to hold
//! it. The shapes are one JPEG image on the page; bar and text are PDF vector and Helvetica.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use svit_scenes::sheet;

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Paper {
    A4,
    Letter,
}

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "targets.pdf")]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value = "a4")]
    pub paper: Paper,
}

/// PDF points per millimetre.
const PT: f32 = 72.0 / 25.4;
/// Pixels per millimetre of the shapes' image (about 150 dpi).
const PX_PER_MM: f32 = 6.0;

pub fn run(a: Args) -> Result<()> {
    let (page_w, page_h) = match a.paper {
        Paper::A4 => (210.0, 297.0),
        Paper::Letter => (215.9, 279.4),
    };
    let pdf = sheet_pdf(page_w, page_h)?;
    std::fs::write(&a.out, pdf).with_context(|| format!("writing {}", a.out.display()))?;
    println!(
        "{}: print at 100% (no fit to page), check the bar measures 50 mm",
        a.out.display()
    );
    Ok(())
}

fn sheet_pdf(page_w: f32, page_h: f32) -> Result<Vec<u8>> {
    let (rgb, w, h) = sheet::render(PX_PER_MM);
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 92)
        .encode(&rgb, w as u32, h as u32, image::ExtendedColorType::Rgb8)
        .context("encoding the sheet")?;
    // The shapes' area centred, 12 mm from the top; bar and notes below it.
    let x0 = (page_w - sheet::WIDTH_MM) / 2.0;
    let top = page_h - 12.0;
    let y0 = top - sheet::HEIGHT_MM;
    let mut c = String::new();
    c += &format!(
        "q {:.2} 0 0 {:.2} {:.2} {:.2} cm /Im0 Do Q\n",
        sheet::WIDTH_MM * PT,
        sheet::HEIGHT_MM * PT,
        x0 * PT,
        y0 * PT
    );
    let bar_y = (y0 - 8.0) * PT;
    c += &format!(
        "0 g 0 G 1.5 w {:.2} {bar_y:.2} m {:.2} {bar_y:.2} l S\n",
        x0 * PT,
        (x0 + 50.0) * PT
    );
    for tick in [0.0, 10.0, 20.0, 30.0, 40.0, 50.0] {
        let x = (x0 + tick) * PT;
        c += &format!(
            "0.75 w {x:.2} {bar_y:.2} m {x:.2} {:.2} l S\n",
            bar_y + 2.0 * PT
        );
    }
    let text = |c: &mut String, x: f32, y: f32, size: f32, s: &str| {
        *c += &format!(
            "BT /F1 {size} Tf {:.2} {:.2} Td ({}) Tj ET\n",
            x * PT,
            y * PT,
            escape(s)
        );
    };
    text(
        &mut c,
        x0 + 53.0,
        y0 - 9.0,
        9.0,
        "50 mm: if it does not measure 50 mm, print at 100% (no fit to page)",
    );
    let notes = [
        "SViT-Edge target sheet: the six shapes of the demo model (circle, square, triangle; star, ring, cross; twice).",
        "Hold it 25 to 40 cm from a camera with about a 60 degree field of view (Raspberry Pi Camera v2, ArduCAM OV2640):",
        "each shape then spans a seventh to a fifth of the picture, as in training. Even light, no glare; any background.",
        "Good: a box and label on each shape in svit-host (monitor, web view), few tokens kept around the sheet.",
    ];
    for (i, n) in notes.iter().enumerate() {
        text(&mut c, x0, y0 - 17.0 - 5.0 * i as f32, 8.0, n);
    }
    Ok(pdf(page_w * PT, page_h * PT, w, h, &jpeg, &c))
}

/// A PDF string literal's special characters.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('(', "\\(")
        .replace(')', "\\)")
}

/// A one-page PDF: an RGB JPEG image as `/Im0`, Helvetica as `/F1`, and `content`.
fn pdf(w_pt: f32, h_pt: f32, img_w: usize, img_h: usize, jpeg: &[u8], content: &str) -> Vec<u8> {
    let mut out: Vec<u8> = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    let mut obj = |out: &mut Vec<u8>, body: &[u8]| {
        offsets.push(out.len());
        let _ = writeln!(out, "{} 0 obj", offsets.len());
        out.extend_from_slice(body);
        out.extend_from_slice(b"\nendobj\n");
    };
    obj(&mut out, b"<< /Type /Catalog /Pages 2 0 R >>");
    obj(&mut out, b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>");
    obj(
        &mut out,
        format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {w_pt:.2} {h_pt:.2}] \
             /Resources << /XObject << /Im0 4 0 R >> /Font << /F1 5 0 R >> >> /Contents 6 0 R >>"
        )
        .as_bytes(),
    );
    let mut image = format!(
        "<< /Type /XObject /Subtype /Image /Width {img_w} /Height {img_h} /ColorSpace /DeviceRGB \
         /BitsPerComponent 8 /Filter /DCTDecode /Length {} >>\nstream\n",
        jpeg.len()
    )
    .into_bytes();
    image.extend_from_slice(jpeg);
    image.extend_from_slice(b"\nendstream");
    obj(&mut out, &image);
    obj(
        &mut out,
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    );
    let stream = format!(
        "<< /Length {} >>\nstream\n{content}endstream",
        content.len()
    );
    obj(&mut out, stream.as_bytes());
    let xref = out.len();
    let _ = write!(out, "xref\n0 {}\n0000000000 65535 f \n", offsets.len() + 1);
    for o in &offsets {
        let _ = writeln!(out, "{o:010} 00000 n ");
    }
    let _ = write!(
        out,
        "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
        offsets.len() + 1
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_xref_points_at_every_object() {
        let pdf = sheet_pdf(210.0, 297.0).unwrap();
        let find = |needle: &[u8]| {
            pdf.windows(needle.len())
                .rposition(|w| w == needle)
                .unwrap()
        };
        let tail = std::str::from_utf8(&pdf[find(b"startxref\n")..]).unwrap();
        let start: usize = tail.lines().nth(1).unwrap().parse().unwrap();
        assert!(pdf[start..].starts_with(b"xref\n0 7\n"));
        let table = std::str::from_utf8(&pdf[start..find(b"trailer")]).unwrap();
        for (i, line) in table.lines().skip(3).enumerate() {
            let off: usize = line[..10].parse().unwrap();
            let head = format!("{} 0 obj", i + 1);
            assert!(pdf[off..].starts_with(head.as_bytes()), "object {}", i + 1);
        }
        assert!(pdf.ends_with(b"%%EOF\n"));
    }
}
