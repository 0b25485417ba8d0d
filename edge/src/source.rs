//! Camera sources behind one trait. Each yields captured frames (RGB or JPEG bytes); decoding
//! is a separate, timed step of the capture thread.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum SourceError {
    #[error("camera {0} not found")]
    Missing(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("frame could not be decoded: {0}")]
    Corrupt(String),
    /// The camera answered but the frame is lost (timeout, corrupt FIFO, bus error).
    #[error("camera error: {0}")]
    Camera(String),
    #[error("{0}")]
    Config(String),
}

pub enum Pixels {
    Rgb {
        data: Vec<u8>,
        width: usize,
        height: usize,
    },
    Jpeg(Vec<u8>),
    /// YUYV 4:2:2 rows of `stride` bytes (V4L2 cameras without MJPEG).
    Yuyv {
        data: Vec<u8>,
        width: usize,
        height: usize,
        stride: usize,
    },
}

pub struct Captured {
    pub pixels: Pixels,
    /// Microseconds since the Unix epoch at capture.
    pub capture_us: u64,
    pub capture_time: Duration,
}

pub trait FrameSource: Send {
    fn describe(&self) -> String;
    fn capture(&mut self) -> Result<Captured, SourceError>;
}

pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Decodes a captured frame to interleaved RGB.
#[cfg(test)]
pub fn to_rgb(p: Pixels) -> Result<(Vec<u8>, usize, usize), SourceError> {
    decode_rgb(p, Vec::new())
}

/// `to_rgb` into `buf` (reused: a frame loop that hands its buffers back allocates no new ones
/// for JPEG or YUYV frames).
pub fn decode_rgb(p: Pixels, mut buf: Vec<u8>) -> Result<(Vec<u8>, usize, usize), SourceError> {
    match p {
        Pixels::Rgb {
            data,
            width,
            height,
        } => Ok((data, width, height)),
        Pixels::Jpeg(mut bytes) => {
            if lacks_huffman_tables(&bytes) {
                bytes = with_avi1_marker(&bytes);
            }
            let (w, h) = decode_jpeg(&bytes, &mut buf)?;
            Ok((buf, w, h))
        }
        Pixels::Yuyv {
            data,
            width,
            height,
            stride,
        } => {
            crate::v4l2::yuyv_to_rgb(&data, width, height, stride, &mut buf)?;
            Ok((buf, width, height))
        }
    }
}

/// The largest JPEG side decoded (4K UHD fits): a garbage header cannot make a board allocate
/// more than 48 MB for one frame.
pub const MAX_JPEG_SIDE: usize = 4096;

/// Baseline or progressive JPEG (colour or grey) -> RGB in `out`, by zune-jpeg directly: the
/// `image` crate's decoder copies the input and allocates the output for every frame.
fn decode_jpeg(bytes: &[u8], out: &mut Vec<u8>) -> Result<(usize, usize), SourceError> {
    use zune_jpeg::zune_core::{
        bytestream::ZCursor, colorspace::ColorSpace, options::DecoderOptions,
    };
    let corrupt = |e: zune_jpeg::errors::DecodeErrors| SourceError::Corrupt(format!("JPEG: {e}"));
    let options = DecoderOptions::default()
        .set_strict_mode(false)
        .set_max_width(MAX_JPEG_SIDE)
        .set_max_height(MAX_JPEG_SIDE)
        .jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut d = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    d.decode_headers().map_err(corrupt)?;
    let (w, h) = d
        .dimensions()
        .ok_or_else(|| SourceError::Corrupt("JPEG without a frame header".into()))?;
    out.clear();
    out.resize(w * h * 3, 0);
    d.decode_into(out).map_err(corrupt)?;
    Ok((w, h))
}

/// Many USB (UVC) cameras send MJPEG frames without Huffman tables (no DHT segment): MJPEG
/// means "the default tables of JPEG Annex K". Decoders know this only from an `AVI1` APP0
/// segment, which such cameras often leave out too. True when `jpeg` reaches its scan without
/// a DHT segment.
fn lacks_huffman_tables(jpeg: &[u8]) -> bool {
    let mut p = 2; // after SOI
    while let (Some(&0xFF), Some(&m)) = (jpeg.get(p), jpeg.get(p + 1)) {
        match m {
            0xC4 => return false,
            0xDA => return true,
            0xFF => p += 1, // fill byte
            _ => {
                let Some(len) = jpeg.get(p + 2..p + 4) else {
                    return false;
                };
                p += 2 + u16::from_be_bytes([len[0], len[1]]) as usize;
            }
        }
    }
    false // malformed: let the decoder name the problem
}

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

/// Holds a software camera to a frame rate, as a real sensor would be.
pub struct Pacer {
    period: Option<Duration>,
    next: Instant,
}

impl Pacer {
    pub fn new(fps: Option<f32>) -> Self {
        Pacer {
            period: fps
                .filter(|f| *f > 0.0)
                .map(|f| Duration::from_secs_f32(1.0 / f)),
            next: Instant::now(),
        }
    }
    pub fn wait(&mut self) {
        if let Some(p) = self.period {
            let now = Instant::now();
            if self.next > now {
                std::thread::sleep(self.next - now);
            }
            self.next = self.next.max(now) + p;
        }
    }
}

/// Synthetic scenes (the training generator on another seed).
pub struct Synthetic {
    cfg: svit_scenes::SceneConfig,
    seed: u64,
    index: u64,
    pacer: Pacer,
}

impl Synthetic {
    pub fn new(size: usize, seed: u64, fps: Option<f32>) -> Self {
        Synthetic {
            cfg: svit_scenes::SceneConfig::square(size),
            seed,
            index: 0,
            pacer: Pacer::new(fps),
        }
    }
}

impl FrameSource for Synthetic {
    fn describe(&self) -> String {
        format!(
            "synthetic scenes {}x{} seed {}",
            self.cfg.width, self.cfg.height, self.seed
        )
    }
    fn capture(&mut self) -> Result<Captured, SourceError> {
        self.pacer.wait();
        let t = Instant::now();
        let s = svit_scenes::generate(&self.cfg, self.seed, self.index);
        self.index += 1;
        Ok(Captured {
            pixels: Pixels::Rgb {
                data: s.rgb,
                width: s.width,
                height: s.height,
            },
            capture_us: now_us(),
            capture_time: t.elapsed(),
        })
    }
}

/// A missing file is a missing camera; other failures name the file.
fn file_error(path: &Path, e: std::io::Error) -> SourceError {
    match e.kind() {
        std::io::ErrorKind::NotFound => SourceError::Missing(path.display().to_string()),
        _ => SourceError::Io {
            path: path.to_path_buf(),
            source: e,
        },
    }
}

/// A file, or a folder of images played in name order, looping.
pub struct Files {
    files: Vec<PathBuf>,
    index: usize,
    pacer: Pacer,
}

impl Files {
    pub fn open(path: &Path, fps: Option<f32>) -> Result<Self, SourceError> {
        let io = |e| file_error(path, e);
        let meta = std::fs::metadata(path).map_err(io)?;
        let files = if meta.is_dir() {
            svit_runtime::preprocess::image_files(path).map_err(io)?
        } else {
            vec![path.to_path_buf()]
        };
        if files.is_empty() {
            return Err(SourceError::Config(format!(
                "{}: no .jpg, .jpeg or .png files",
                path.display()
            )));
        }
        Ok(Files {
            files,
            index: 0,
            pacer: Pacer::new(fps),
        })
    }
}

impl FrameSource for Files {
    fn describe(&self) -> String {
        format!("{} image file(s), looping", self.files.len())
    }
    fn capture(&mut self) -> Result<Captured, SourceError> {
        self.pacer.wait();
        let t = Instant::now();
        let path = &self.files[self.index % self.files.len()];
        self.index += 1;
        let bytes = std::fs::read(path).map_err(|source| SourceError::Io {
            path: path.clone(),
            source,
        })?;
        let pixels = if bytes.starts_with(&[0xFF, 0xD8]) {
            Pixels::Jpeg(bytes)
        } else {
            let img = image::load_from_memory(&bytes)
                .map_err(|e| SourceError::Corrupt(format!("{}: {e}", path.display())))?
                .to_rgb8();
            let (width, height) = (img.width() as usize, img.height() as usize);
            Pixels::Rgb {
                data: img.into_raw(),
                width,
                height,
            }
        };
        Ok(Captured {
            pixels,
            capture_us: now_us(),
            capture_time: t.elapsed(),
        })
    }
}

/// A video of JPEG frames (`.mjpeg`/`.mjpg`, as `ffmpeg -i in.mp4 -c:v mjpeg -f mjpeg out.mjpeg`
/// writes it), played in order, looping.
pub struct MjpegFile {
    path: PathBuf,
    data: Vec<u8>,
    frames: Vec<std::ops::Range<usize>>,
    index: usize,
    pacer: Pacer,
}

/// Files larger than this are refused rather than read into memory.
const MAX_VIDEO: u64 = 512 << 20;

impl MjpegFile {
    pub fn open(path: &Path, fps: Option<f32>) -> Result<Self, SourceError> {
        let io = |e| file_error(path, e);
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len > MAX_VIDEO {
            return Err(SourceError::Config(format!(
                "{}: {len} bytes is more than the {MAX_VIDEO} a video source reads; cut it \
                 shorter or extract frames into a folder",
                path.display()
            )));
        }
        let data = std::fs::read(path).map_err(io)?;
        let frames = jpeg_frames(&data);
        if frames.is_empty() {
            return Err(SourceError::Config(format!(
                "{}: no complete JPEG frame in it (is it MJPEG?)",
                path.display()
            )));
        }
        Ok(MjpegFile {
            path: path.to_path_buf(),
            data,
            frames,
            index: 0,
            pacer: Pacer::new(fps),
        })
    }
}

impl FrameSource for MjpegFile {
    fn describe(&self) -> String {
        format!(
            "{} ({} JPEG frames), looping",
            self.path.display(),
            self.frames.len()
        )
    }
    fn capture(&mut self) -> Result<Captured, SourceError> {
        self.pacer.wait();
        let t = Instant::now();
        let r = self.frames[self.index % self.frames.len()].clone();
        self.index += 1;
        Ok(Captured {
            pixels: Pixels::Jpeg(self.data[r].to_vec()),
            capture_us: now_us(),
            capture_time: t.elapsed(),
        })
    }
}

/// The byte ranges of the complete JPEG images (SOI to EOI) in `data`, in order. Walks the
/// marker segments by their lengths and the entropy-coded data by its byte stuffing, so an
/// FF D9 inside a segment is not taken for the end; bytes between images and a torn last image
/// are skipped.
pub fn jpeg_frames(data: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut i = 0;
    'next: while let Some(at) = data[i..].windows(2).position(|w| w == [0xFF, 0xD8]) {
        let start = i + at;
        let mut p = start + 2;
        loop {
            // At a marker (possibly after fill bytes 0xFF).
            while data.get(p) == Some(&0xFF) && data.get(p + 1) == Some(&0xFF) {
                p += 1;
            }
            let (Some(&0xFF), Some(&m)) = (data.get(p), data.get(p + 1)) else {
                break 'next;
            };
            p += 2;
            match m {
                0xD9 => {
                    out.push(start..p);
                    i = p;
                    continue 'next;
                }
                0xD0..=0xD7 | 0x01 => continue,
                0xD8 => {
                    // A new image before this one ended: this one was torn.
                    i = p - 2;
                    continue 'next;
                }
                _ => {}
            }
            let Some(len) = data
                .get(p..p + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
            else {
                break 'next;
            };
            p += len;
            if m == 0xDA {
                // Entropy-coded data runs to the next FF that is not stuffing or a restart.
                loop {
                    match data.get(p..p + 2) {
                        None => break 'next,
                        Some([0xFF, n]) if *n != 0x00 && !(0xD0..=0xD7).contains(n) => break,
                        _ => p += 1,
                    }
                }
            }
        }
    }
    out
}

/// `key=value,key=value` camera options, checked against the keys a camera knows.
pub struct Options<'a>(Vec<(&'a str, &'a str)>);

impl<'a> Options<'a> {
    pub fn parse(spec: &'a str, known: &[&str]) -> Result<Self, SourceError> {
        let mut v = Vec::new();
        for part in spec.split(',').filter(|p| !p.is_empty()) {
            let (k, val) = part.split_once('=').ok_or_else(|| {
                SourceError::Config(format!("camera option {part:?} is not key=value"))
            })?;
            if !known.contains(&k) {
                return Err(SourceError::Config(format!(
                    "unknown camera option {k:?} (known: {})",
                    known.join(", ")
                )));
            }
            v.push((k, val));
        }
        Ok(Options(v))
    }
    pub fn get(&self, k: &str) -> Option<&'a str> {
        self.0
            .iter()
            .rev()
            .find(|(key, _)| *key == k)
            .map(|(_, v)| *v)
    }
    pub fn number<T: std::str::FromStr>(&self, k: &str) -> Result<Option<T>, SourceError> {
        self.get(k)
            .map(|v| {
                v.parse().map_err(|_| {
                    SourceError::Config(format!("camera option {k}={v} is not a number"))
                })
            })
            .transpose()
    }
}

fn is_video(path: &str) -> bool {
    let ext = Path::new(path).extension().and_then(|e| e.to_str());
    matches!(
        ext.map(str::to_ascii_lowercase).as_deref(),
        Some("mjpeg" | "mjpg")
    )
}

/// Parses `--camera`: `synthetic`, `file:PATH`, `sim-arducam[:OPTS]`, `arducam[:OPTS]`,
/// `v4l[:PATH,OPTS]`.
/// `fps` paces the cameras that would otherwise run as fast as they can.
pub fn open(
    spec: &str,
    size: usize,
    fps: Option<f32>,
) -> Result<Box<dyn FrameSource>, SourceError> {
    match spec.split_once(':') {
        None if spec == "synthetic" => Ok(Box::new(Synthetic::new(size, 424_242, fps))),
        Some(("file", path)) if is_video(path) => {
            Ok(Box::new(MjpegFile::open(Path::new(path), fps)?))
        }
        Some(("file", path)) => Ok(Box::new(Files::open(Path::new(path), fps)?)),
        None if spec == "sim-arducam" => crate::arducam::open_sim("", fps),
        Some(("sim-arducam", opts)) => crate::arducam::open_sim(opts, fps),
        #[cfg(target_os = "linux")]
        None if spec == "arducam" => crate::arducam::open_linux("", fps),
        #[cfg(target_os = "linux")]
        Some(("arducam", opts)) => crate::arducam::open_linux(opts, fps),
        #[cfg(target_os = "linux")]
        None if spec == "v4l" => crate::v4l2::open("", fps),
        #[cfg(target_os = "linux")]
        Some(("v4l", opts)) => crate::v4l2::open(opts, fps),
        _ => Err(SourceError::Config(format!(
            "unknown camera {spec:?}: use synthetic, file:PATH, sim-arducam[:OPTS], \
             arducam[:spi=..,i2c=..,led=..] or v4l[:/dev/videoN,res=WxH,fps=N,format=mjpeg|yuyv]"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_frames_differ_and_have_the_size_asked() {
        let mut s = Synthetic::new(64, 1, None);
        let a = to_rgb(s.capture().unwrap().pixels).unwrap();
        let b = to_rgb(s.capture().unwrap().pixels).unwrap();
        assert_eq!((a.1, a.2), (64, 64));
        assert_ne!(a.0, b.0);
    }

    #[test]
    fn mjpeg_frames_without_huffman_tables_decode_with_the_default_ones() {
        let s = svit_scenes::generate(&svit_scenes::SceneConfig::square(64), 9, 1);
        let jpeg = crate::pipeline::encode_jpeg(&s.rgb, 64, 64, 80).unwrap();
        let want = to_rgb(Pixels::Jpeg(jpeg.clone())).unwrap();
        assert!(!lacks_huffman_tables(&jpeg));
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
        assert!(lacks_huffman_tables(&stripped));
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
        let mut jpegs = vec![crate::pipeline::encode_jpeg(&s.rgb, 48, 48, 80).unwrap()];
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
        assert!(matches!(e, SourceError::Corrupt(_)), "{e}");
    }

    #[test]
    fn mjpeg_videos_split_into_their_frames() {
        let jpegs: Vec<Vec<u8>> = (0..3)
            .map(|i| {
                let s = svit_scenes::generate(&svit_scenes::SceneConfig::square(64), 9, i);
                crate::pipeline::encode_jpeg(&s.rgb, 64, 64, 80).unwrap()
            })
            .collect();
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

        let dir = std::env::temp_dir().join(format!("svit-mjpeg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("clip.mjpeg");
        std::fs::write(&path, &video).unwrap();
        let mut src = open(&format!("file:{}", path.display()), 64, None).unwrap();
        assert!(src.describe().contains("3 JPEG frames"));
        let decoded: Vec<_> = (0..4)
            .map(|_| to_rgb(src.capture().unwrap().pixels).unwrap())
            .collect();
        assert_eq!(decoded[0].0, decoded[3].0, "loops back to the first frame");
        assert_ne!(decoded[0].0, decoded[1].0);
        std::fs::write(&path, b"no frames here").unwrap();
        let e = open(&format!("file:{}", path.display()), 64, None)
            .err()
            .unwrap();
        assert!(e.to_string().contains("no complete JPEG frame"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_and_corrupt_files_are_named() {
        assert!(
            matches!(open("file:/nonexistent/cam", 64, None), Err(SourceError::Missing(p)) if p.contains("nonexistent"))
        );
        assert!(matches!(open("usb", 64, None), Err(SourceError::Config(_))));
        assert!(matches!(
            to_rgb(Pixels::Jpeg(vec![0xFF, 0xD8, 1, 2, 3])),
            Err(SourceError::Corrupt(_))
        ));
    }
}
