//! Frames between the camera and the model: JPEG (MJPEG) and YUYV decoding to RGB into reused
//! buffers, MJPEG stream splitting, and the thumbnails' JPEG encoding.

use std::ops::Range;

use svit_arducam::jpeg;
use thiserror::Error;

/// A frame that could not be decoded; the capture loop counts it and goes on.
#[derive(Debug, Error)]
pub enum CodecError {
    #[error("JPEG: {0}")]
    Jpeg(String),
    #[error("{len} bytes for a {width}x{height} {packing:?} frame")]
    Yuv422 {
        len: usize,
        width: usize,
        height: usize,
        packing: Packing,
    },
}

/// The byte order of packed YUV 4:2:2: YUYV (USB cameras) or UYVY (Jetson YUV sensors, HDMI
/// bridges).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Packing {
    Yuyv,
    Uyvy,
}

/// A captured frame's pixels, as the camera gave them.
pub enum Pixels {
    Rgb {
        data: Vec<u8>,
        width: usize,
        height: usize,
    },
    Jpeg(Vec<u8>),
    /// Packed YUV 4:2:2 rows of `stride` bytes (V4L2 cameras without MJPEG).
    Yuv422 {
        data: Vec<u8>,
        width: usize,
        height: usize,
        stride: usize,
        packing: Packing,
    },
}

/// Decodes a captured frame to interleaved RGB.
#[cfg(test)]
pub fn to_rgb(p: Pixels) -> Result<(Vec<u8>, usize, usize), CodecError> {
    decode_rgb(p, Vec::new())
}

/// `to_rgb` into `buf` (reused: a frame loop that hands its buffers back allocates no new ones
/// for JPEG or YUYV frames).
pub fn decode_rgb(p: Pixels, mut buf: Vec<u8>) -> Result<(Vec<u8>, usize, usize), CodecError> {
    match p {
        Pixels::Rgb {
            data,
            width,
            height,
        } => Ok((data, width, height)),
        Pixels::Jpeg(mut bytes) => {
            if jpeg::has_huffman_tables(&bytes) == Some(false) {
                bytes = with_avi1_marker(&bytes);
            }
            let (w, h) = decode_jpeg(&bytes, &mut buf)?;
            Ok((buf, w, h))
        }
        Pixels::Yuv422 {
            data,
            width,
            height,
            stride,
            packing,
        } => {
            yuv422_to_rgb(&data, width, height, stride, packing, &mut buf)?;
            Ok((buf, width, height))
        }
    }
}

/// The largest JPEG side decoded (4K UHD fits): a garbage header cannot make a board allocate
/// more than 48 MB for one frame.
pub const MAX_JPEG_SIDE: usize = 4096;

/// Baseline or progressive JPEG (colour or grey) -> RGB in `out`, by zune-jpeg directly: the
/// `image` crate's decoder copies the input and allocates the output for every frame.
fn decode_jpeg(bytes: &[u8], out: &mut Vec<u8>) -> Result<(usize, usize), CodecError> {
    use zune_jpeg::zune_core::{
        bytestream::ZCursor, colorspace::ColorSpace, options::DecoderOptions,
    };
    let corrupt = |e: zune_jpeg::errors::DecodeErrors| CodecError::Jpeg(e.to_string());
    let options = DecoderOptions::default()
        .set_strict_mode(false)
        .set_max_width(MAX_JPEG_SIDE)
        .set_max_height(MAX_JPEG_SIDE)
        .jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut d = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    d.decode_headers().map_err(corrupt)?;
    let (w, h) = d
        .dimensions()
        .ok_or_else(|| CodecError::Jpeg("no frame header".into()))?;
    out.clear();
    out.resize(w * h * 3, 0);
    d.decode_into(out).map_err(corrupt)?;
    Ok((w, h))
}

/// Many USB (UVC) cameras send MJPEG frames without Huffman tables (no DHT segment): MJPEG
/// means "the default tables of JPEG Annex K". Decoders know this only from an `AVI1` APP0
/// segment, which such cameras often leave out too.
///
/// `jpeg` with an `AVI1` APP0 segment after its SOI, which tells the decoder to use the
/// default Huffman tables.
fn with_avi1_marker(jpeg: &[u8]) -> Vec<u8> {
    const APP0_AVI1: [u8; 9] = [0xFF, 0xE0, 0x00, 0x07, b'A', b'V', b'I', b'1', 0x00];
    let mut out = Vec::with_capacity(jpeg.len() + APP0_AVI1.len());
    out.extend_from_slice(&jpeg[..2.min(jpeg.len())]);
    out.extend_from_slice(&APP0_AVI1);
    out.extend_from_slice(jpeg.get(2..).unwrap_or_default());
    out
}

/// Packed YUV 4:2:2 (BT.601, limited range, as cameras send it) -> interleaved RGB.
pub fn yuv422_to_rgb(
    src: &[u8],
    width: usize,
    height: usize,
    stride: usize,
    packing: Packing,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    let stride = stride.max(width * 2);
    if width % 2 != 0 || height == 0 || src.len() < stride * (height - 1) + width * 2 {
        return Err(CodecError::Yuv422 {
            len: src.len(),
            width,
            height,
            packing,
        });
    }
    // Byte positions of Y0, U, Y1, V in each 4-byte group.
    let [y0, u, y1, v] = match packing {
        Packing::Yuyv => [0, 1, 2, 3],
        Packing::Uyvy => [1, 0, 3, 2],
    };
    out.clear();
    out.reserve(width * height * 3);
    // Fixed point, 8 fractional bits.
    let px = |y: i32, u: i32, v: i32, out: &mut Vec<u8>| {
        let c = 298 * (y - 16);
        out.push(((c + 409 * v + 128) >> 8).clamp(0, 255) as u8);
        out.push(((c - 100 * u - 208 * v + 128) >> 8).clamp(0, 255) as u8);
        out.push(((c + 516 * u + 128) >> 8).clamp(0, 255) as u8);
    };
    for row in src.chunks(stride).take(height) {
        for q in row[..width * 2].chunks_exact(4) {
            let (cu, cv) = (q[u] as i32 - 128, q[v] as i32 - 128);
            px(q[y0] as i32, cu, cv, out);
            px(q[y1] as i32, cu, cv, out);
        }
    }
    Ok(())
}

/// The byte ranges of the complete JPEG images in an MJPEG stream, in order (the one marker
/// scanner, `svit_arducam::jpeg`; bytes between images and torn images are skipped).
pub fn jpeg_frames(data: &[u8]) -> Vec<Range<usize>> {
    jpeg::images(data).collect()
}

/// RGB -> JPEG (thumbnails for the host's live view use quality 75).
pub fn encode_jpeg(
    rgb: &[u8],
    w: usize,
    h: usize,
    quality: u8,
) -> Result<Vec<u8>, image::ImageError> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality).encode(
        rgb,
        w as u32,
        h as u32,
        image::ExtendedColorType::Rgb8,
    )?;
    Ok(out)
}

/// Synthetic scene `i` (seed `seed`) as a 64x64 JPEG, for tests of the frame paths.
#[cfg(test)]
pub fn test_jpeg(seed: u64, i: u64) -> Vec<u8> {
    let s = svit_scenes::generate(&svit_scenes::SceneConfig::square(64), seed, i);
    encode_jpeg(&s.rgb, 64, 64, 80).expect("encodable")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mjpeg_videos_split_into_their_frames() {
        let jpegs: Vec<Vec<u8>> = (0..3).map(|i| test_jpeg(9, i)).collect();
        // Noise between frames, an FF D9 inside a comment segment, a torn last frame.
        let mut video = b"junk".to_vec();
        video.extend(&jpegs[0]);
        let mut commented = jpegs[1][..2].to_vec();
        commented.extend([0xFF, 0xFE, 0x00, 0x06, 0xFF, 0xD9, 0xFF, 0xD9]);
        commented.extend(&jpegs[1][2..]);
        video.extend(&commented);
        video.extend(&jpegs[2]);
        video.extend(&jpegs[0][..jpegs[0].len() / 2]);
        let frames = jpeg_frames(&video);
        assert_eq!(frames.len(), 3, "{frames:?}");
        assert_eq!(&video[frames[0].clone()], &jpegs[0][..]);
        assert_eq!(&video[frames[1].clone()], &commented[..]);
        assert_eq!(&video[frames[2].clone()], &jpegs[2][..]);
    }

    #[test]
    fn mjpeg_frames_without_huffman_tables_decode_with_the_default_ones() {
        let s = svit_scenes::generate(&svit_scenes::SceneConfig::square(64), 9, 1);
        let jpeg = encode_jpeg(&s.rgb, 64, 64, 80).unwrap();
        let want = to_rgb(Pixels::Jpeg(jpeg.clone())).unwrap();
        assert_eq!(jpeg::has_huffman_tables(&jpeg), Some(true));
        // Drop every DHT segment, as a UVC camera sends its MJPEG frames.
        let mut stripped = jpeg[..2].to_vec();
        let mut p = 2;
        while jpeg[p + 1] != 0xDA {
            let len = 2 + u16::from_be_bytes([jpeg[p + 2], jpeg[p + 3]]) as usize;
            if jpeg[p + 1] != 0xC4 {
                stripped.extend_from_slice(&jpeg[p..p + len]);
            }
            p += len;
        }
        stripped.extend_from_slice(&jpeg[p..]);
        assert!(stripped.len() < jpeg.len());
        assert_eq!(jpeg::has_huffman_tables(&stripped), Some(false));
        // The encoder used the default tables, so the pixels are the same.
        assert_eq!(to_rgb(Pixels::Jpeg(stripped)).unwrap().0, want.0);
        // Garbage is still a decode error, not a panic.
        assert!(to_rgb(Pixels::Jpeg(vec![0xFF, 0xD8, 0xFF])).is_err());
        assert!(to_rgb(Pixels::Jpeg(vec![0xFF, 0xD8, 0xFF, 0xDA])).is_err());
    }

    /// The direct zune-jpeg decode gives what the `image` crate gives, for colour and grey
    /// JPEGs, into a reused buffer of another size.
    #[test]
    fn jpeg_decodes_like_the_image_crate_into_a_reused_buffer() {
        let s = svit_scenes::generate(&svit_scenes::SceneConfig::square(48), 9, 2);
        let grey: Vec<u8> = s.rgb.chunks_exact(3).map(|p| p[1]).collect();
        let mut jpegs = vec![encode_jpeg(&s.rgb, 48, 48, 80).unwrap()];
        let mut g = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut g, 80)
            .encode(&grey, 48, 48, image::ExtendedColorType::L8)
            .unwrap();
        jpegs.push(g);
        for jpeg in &jpegs {
            let want = image::load_from_memory(jpeg).unwrap().into_rgb8();
            let (rgb, w, h) = decode_rgb(Pixels::Jpeg(jpeg.clone()), vec![7; 100_000]).unwrap();
            assert_eq!((w, h), (48, 48));
            assert_eq!(rgb, want.into_raw());
        }
        // A header that claims 60000 x 60000 pixels (10 GB of RGB) is refused, not allocated.
        let mut huge = jpegs[0].clone();
        let sof = huge.windows(2).position(|m| m == [0xFF, 0xC0]).unwrap();
        huge[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]);
        let e = decode_rgb(Pixels::Jpeg(huge), Vec::new()).unwrap_err();
        assert!(matches!(e, CodecError::Jpeg(_)), "{e}");
    }
}
