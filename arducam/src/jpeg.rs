//! The project's one JPEG marker scanner (`no_std`, no allocation): the driver finds the image
//! in the FIFO with it, and the edge splits MJPEG streams and checks for Huffman tables with it.
//!
//! It walks marker segments by their lengths and entropy-coded data by its byte stuffing, so an
//! FF D9 inside a segment (a comment, a thumbnail in APP1) is not taken for the end.

use core::ops::Range;

/// Why `data` holds no complete image: whether a start (FF D8) and an end (FF D9) marker occur
/// at all after it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Incomplete {
    pub soi: bool,
    pub eoi: bool,
}

enum Walk {
    /// The image ends before this offset (after its EOI).
    End(usize),
    /// Another image starts here before this one ended: this one was torn.
    Restart(usize),
    /// The data ran out.
    Truncated,
}

/// From just after an SOI at `p`, to the image's end.
fn walk(data: &[u8], mut p: usize) -> Walk {
    loop {
        // At a marker, possibly after fill bytes (FF).
        while data.get(p) == Some(&0xFF) && data.get(p + 1) == Some(&0xFF) {
            p += 1;
        }
        let (Some(&0xFF), Some(&m)) = (data.get(p), data.get(p + 1)) else {
            return Walk::Truncated;
        };
        p += 2;
        match m {
            0xD9 => return Walk::End(p),
            0xD0..=0xD7 | 0x01 => continue,
            0xD8 => return Walk::Restart(p - 2),
            _ => {}
        }
        let Some(len) = data.get(p..p + 2) else {
            return Walk::Truncated;
        };
        p += u16::from_be_bytes([len[0], len[1]]) as usize;
        if m == 0xDA {
            // Entropy-coded data runs to the next FF that is not stuffing or a restart.
            loop {
                match data.get(p..p + 2) {
                    None => return Walk::Truncated,
                    Some([0xFF, n]) if *n != 0x00 && !(0xD0..=0xD7).contains(n) => break,
                    _ => p += 1,
                }
            }
        }
    }
}

fn find_soi(data: &[u8], from: usize) -> Option<usize> {
    data.get(from..)?
        .windows(2)
        .position(|w| w == [0xFF, 0xD8])
        .map(|at| from + at)
}

/// The complete images (SOI to EOI) in `data`, in order; bytes between images and torn images
/// are skipped.
pub fn images(data: &[u8]) -> Images<'_> {
    Images { data, at: 0 }
}

pub struct Images<'a> {
    data: &'a [u8],
    at: usize,
}

impl Iterator for Images<'_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        loop {
            let start = find_soi(self.data, self.at)?;
            match walk(self.data, start + 2) {
                Walk::End(end) => {
                    self.at = end;
                    return Some(start..end);
                }
                Walk::Restart(next) => self.at = next,
                Walk::Truncated => {
                    self.at = self.data.len();
                    return None;
                }
            }
        }
    }
}

/// The first complete image in `data`.
pub fn first_image(data: &[u8]) -> Result<Range<usize>, Incomplete> {
    images(data).next().ok_or_else(|| {
        let soi = find_soi(data, 0);
        Incomplete {
            soi: soi.is_some(),
            eoi: soi.is_some_and(|s| data[s + 2..].windows(2).any(|w| w == [0xFF, 0xD9])),
        }
    })
}

/// Whether the image defines Huffman tables (a DHT segment) before its scan; `None` when the
/// headers do not parse (the decoder will name the problem).
pub fn has_huffman_tables(jpeg: &[u8]) -> Option<bool> {
    let mut p = 2; // after SOI
    while let (Some(&0xFF), Some(&m)) = (jpeg.get(p), jpeg.get(p + 1)) {
        match m {
            0xC4 => return Some(true),
            0xDA => return Some(false),
            0xFF => p += 1, // fill byte
            _ => {
                let len = jpeg.get(p + 2..p + 4)?;
                p += 2 + u16::from_be_bytes([len[0], len[1]]) as usize;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_is_found_between_markers_with_junk_around() {
        let d = [0x00, 0xFF, 0xD8, 0xFF, 0xD9, 0, 0];
        assert_eq!(first_image(&d), Ok(1..5));
        assert_eq!(
            first_image(&[1, 2, 3]),
            Err(Incomplete {
                soi: false,
                eoi: false
            })
        );
        assert_eq!(
            first_image(&[0xFF, 0xD8, 0xFF, 0xDA, 0, 2, 1]),
            Err(Incomplete {
                soi: true,
                eoi: false
            })
        );
    }

    #[test]
    fn end_marker_inside_a_comment_or_stuffed_scan_is_not_the_end() {
        // SOI, COM holding FF D9, SOS with stuffed FF 00 and a restart marker, EOI.
        let d = [
            0xFF, 0xD8, 0xFF, 0xFE, 0x00, 0x04, 0xFF, 0xD9, 0xFF, 0xDA, 0x00, 0x02, 0x11, 0xFF,
            0x00, 0xFF, 0xD0, 0x22, 0xFF, 0xD9, 0xAA,
        ];
        assert_eq!(first_image(&d), Ok(0..20));
        // Cut before the real end: incomplete, though an FF D9 occurs in the comment.
        assert_eq!(
            first_image(&d[..12]),
            Err(Incomplete {
                soi: true,
                eoi: true
            })
        );
    }

    #[test]
    fn images_skip_torn_ones_and_junk() {
        let one = [0xFF, 0xD8, 0xFF, 0xD9];
        let mut d = [0u8; 16];
        d[..2].copy_from_slice(&[0xFF, 0xD8]); // torn: a new SOI follows
        d[2..6].copy_from_slice(&one);
        d[6..8].copy_from_slice(&[7, 7]);
        d[8..12].copy_from_slice(&one);
        d[12..14].copy_from_slice(&[0xFF, 0xD8]); // truncated
        let got: [Option<Range<usize>>; 3] = {
            let mut it = images(&d);
            [it.next(), it.next(), it.next()]
        };
        assert_eq!(got, [Some(2..6), Some(8..12), None]);
    }

    #[test]
    fn huffman_tables_are_found_before_the_scan() {
        let with = [0xFF, 0xD8, 0xFF, 0xC4, 0x00, 0x02, 0xFF, 0xDA];
        let without = [0xFF, 0xD8, 0xFF, 0xDB, 0x00, 0x02, 0xFF, 0xDA];
        assert_eq!(has_huffman_tables(&with), Some(true));
        assert_eq!(has_huffman_tables(&without), Some(false));
        assert_eq!(has_huffman_tables(&[0xFF, 0xD8, 0xFF]), None);
    }
}
