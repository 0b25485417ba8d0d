//! COBS framing with a length cap: one sans-IO decoder for TCP, serial, replay and fuzzing.

use alloc::vec::Vec;
use core::marker::PhantomData;
use serde::{de::DeserializeOwned, Serialize};

#[derive(Clone, Debug, PartialEq)]
pub enum DecodeError {
    /// The frame grew past the cap before its delimiter; its bytes were discarded.
    Oversized { limit: usize },
    /// Not valid COBS, or not a message of the expected type.
    Malformed,
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DecodeError::Oversized { limit } => {
                write!(f, "frame larger than {limit} bytes, discarded")
            }
            DecodeError::Malformed => write!(
                f,
                "malformed frame (bad COBS or not a protocol message), discarded"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for DecodeError {}

/// Encodes one message as a COBS frame ending in 0. Errors if it would exceed `limit`.
pub fn encode<T: Serialize>(msg: &T, limit: usize) -> Result<Vec<u8>, DecodeError> {
    let v = postcard::to_allocvec_cobs(msg).map_err(|_| DecodeError::Malformed)?;
    if v.len() > limit {
        return Err(DecodeError::Oversized { limit });
    }
    Ok(v)
}

/// Decodes one complete frame (with or without its trailing 0).
pub fn decode_one<T: DeserializeOwned>(frame: &[u8]) -> Result<T, DecodeError> {
    let mut buf = frame.to_vec();
    if buf.last() != Some(&0) {
        buf.push(0);
    }
    postcard::from_bytes_cobs(&mut buf).map_err(|_| DecodeError::Malformed)
}

/// What one call to [`FrameDecoder::feed`] found.
#[derive(Debug, PartialEq)]
pub enum Feed<'a, T> {
    /// All input consumed, no complete frame yet.
    Pending,
    Message {
        msg: T,
        rest: &'a [u8],
    },
    Error {
        err: DecodeError,
        rest: &'a [u8],
    },
}

/// Accumulates bytes into frames. Memory is bounded by `limit`; an oversized frame is skipped
/// up to its delimiter and reported once, and decoding resumes with the next frame.
pub struct FrameDecoder {
    buf: Vec<u8>,
    limit: usize,
    overflow: bool,
}

impl FrameDecoder {
    pub fn new(limit: usize) -> Self {
        FrameDecoder {
            buf: Vec::new(),
            limit,
            overflow: false,
        }
    }

    /// Bytes held for an incomplete frame (a torn tail at end of stream).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Feeds input; call again with `rest` until it returns `Pending`.
    pub fn feed<'a, T: DeserializeOwned>(&mut self, mut input: &'a [u8]) -> Feed<'a, T> {
        loop {
            let Some(end) = input.iter().position(|&b| b == 0) else {
                self.take(input);
                return Feed::Pending;
            };
            self.take(&input[..end]);
            let rest = &input[end + 1..];
            if self.overflow {
                self.overflow = false;
                self.buf.clear();
                return Feed::Error {
                    err: DecodeError::Oversized { limit: self.limit },
                    rest,
                };
            }
            if self.buf.is_empty() {
                // A lone delimiter: keep-alive or resynchronisation, not a message.
                input = rest;
                continue;
            }
            self.buf.push(0);
            let res = postcard::from_bytes_cobs::<T>(&mut self.buf);
            self.buf.clear();
            return match res {
                Ok(msg) => Feed::Message { msg, rest },
                Err(_) => Feed::Error {
                    err: DecodeError::Malformed,
                    rest,
                },
            };
        }
    }

    /// The messages (or frame errors) in `input`, in order; bytes of an incomplete last frame
    /// are kept for the next call. The loop every reader runs over [`feed`](Self::feed).
    pub fn frames<'d, 'a, T: DeserializeOwned>(&'d mut self, input: &'a [u8]) -> Frames<'d, 'a, T> {
        Frames {
            dec: self,
            input,
            _msg: PhantomData,
        }
    }

    fn take(&mut self, bytes: &[u8]) {
        if self.overflow {
            return;
        }
        if self.buf.len() + bytes.len() > self.limit {
            self.overflow = true;
            self.buf = Vec::new(); // give the memory back, not just the length
        } else {
            self.buf.extend_from_slice(bytes);
        }
    }
}

/// Iterator from [`FrameDecoder::frames`].
pub struct Frames<'d, 'a, T> {
    dec: &'d mut FrameDecoder,
    input: &'a [u8],
    _msg: PhantomData<fn() -> T>,
}

impl<'a, T> Frames<'_, 'a, T> {
    /// The input after the last message returned (empty once the iterator has ended).
    pub fn rest(&self) -> &'a [u8] {
        self.input
    }
}

impl<T: DeserializeOwned> Iterator for Frames<'_, '_, T> {
    type Item = Result<T, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (item, rest) = match self.dec.feed(self.input) {
            Feed::Pending => (None, &[][..]),
            Feed::Message { msg, rest } => (Some(Ok(msg)), rest),
            Feed::Error { err, rest } => (Some(Err(err)), rest),
        };
        self.input = rest;
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EdgeMsg, MAX_FRAME};
    use alloc::vec;

    fn log(text: &str) -> EdgeMsg {
        EdgeMsg::Log(crate::LogLine {
            level: crate::Level::Warn,
            text: text.into(),
        })
    }

    fn frames() -> Vec<EdgeMsg> {
        vec![
            crate::tests::sample_frame(),
            log("{}"),
            crate::tests::sample_frame(),
        ]
    }

    fn drain(dec: &mut FrameDecoder, input: &[u8]) -> Vec<Result<EdgeMsg, DecodeError>> {
        dec.frames(input).collect()
    }

    #[test]
    fn round_trip_in_arbitrary_chunks() {
        let msgs = frames();
        let bytes: Vec<u8> = msgs
            .iter()
            .flat_map(|m| encode(m, MAX_FRAME).unwrap())
            .collect();
        for chunk in [1, 3, 7, 64, bytes.len()] {
            let mut dec = FrameDecoder::new(MAX_FRAME);
            let got: Vec<EdgeMsg> = bytes
                .chunks(chunk)
                .flat_map(|c| drain(&mut dec, c))
                .map(|r| r.unwrap())
                .collect();
            assert_eq!(got, msgs, "chunk size {chunk}");
            assert_eq!(dec.pending(), 0);
        }
    }

    #[test]
    fn garbage_is_reported_and_skipped() {
        let mut bytes = vec![0x07, 0xff, 0x13, 0x00];
        bytes.extend(encode(&frames()[0], MAX_FRAME).unwrap());
        let mut dec = FrameDecoder::new(MAX_FRAME);
        let got = drain(&mut dec, &bytes);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], Err(DecodeError::Malformed));
        assert_eq!(got[1], Ok(frames()[0].clone()));
    }

    #[test]
    fn oversized_frame_is_refused_with_bounded_memory() {
        let mut dec = FrameDecoder::new(64);
        let big = vec![1u8; 10_000];
        assert_eq!(drain(&mut dec, &big), vec![]);
        assert!(dec.pending() <= 64);
        let mut tail = vec![0u8];
        tail.extend(encode(&log("ok"), 64).unwrap());
        let got = drain(&mut dec, &tail);
        assert_eq!(
            got,
            vec![Err(DecodeError::Oversized { limit: 64 }), Ok(log("ok"))]
        );
        assert_eq!(
            encode(&crate::tests::sample_frame(), 16),
            Err(DecodeError::Oversized { limit: 16 })
        );
    }

    #[test]
    fn torn_tail_stays_pending() {
        let bytes = encode(&frames()[0], MAX_FRAME).unwrap();
        let mut dec = FrameDecoder::new(MAX_FRAME);
        assert!(drain(&mut dec, &bytes[..bytes.len() / 2]).is_empty());
        assert!(dec.pending() > 0);
    }
}
