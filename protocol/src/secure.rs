//! A keyed session after its handshake (`session`): every message sealed with the Noise
//! transport keys (`snow`, ChaCha20-Poly1305) and sent as [`Sealed`] with its nonce, the way
//! WireGuard carries Noise over a lossy link. Sans-IO: a transport encodes with [`Tx`] and
//! passes what it decodes through [`Rx`]; without a key both are plain.
//!
//! Nonces count up from 0 in each direction. One that does not authenticate is an integrity
//! failure; one at or below the last accepted is a replay or reordering; one above the next
//! expected means messages were lost (a serial line's torn frame), counted and reported. A
//! message longer than one Noise message (64 KiB) goes as several pieces, each sealed with a
//! "more follows" byte inside, so the split is authenticated too.

use std::sync::Arc;
use std::vec::Vec;

use serde::{de::DeserializeOwned, Serialize};
use snow::StatelessTransportState;

use crate::{encode, DecodeError, EdgeMsg, HostMsg, Sealed, MAX_FRAME};

/// The Noise protocol of a keyed session (PROTOCOL.md says why this one).
pub const NOISE: &str = "Noise_NNpsk0_25519_ChaChaPoly_SHA256";

/// Plaintext per sealed piece: a Noise message is at most 65535 bytes with its 16-byte tag,
/// and each piece carries one byte saying whether more follow.
const PIECE: usize = 65535 - 16 - 1;

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SecureError {
    #[error("integrity failure: message {n} does not authenticate (altered on the way)")]
    Integrity { n: u64 },
    #[error("replayed or reordered message: number {n}, expected {expected} or later")]
    Replay { n: u64, expected: u64 },
    #[error("a plaintext {0} message in an encrypted session")]
    Plaintext(&'static str),
    #[error("a sealed message that decodes to no message: {0}")]
    Decode(DecodeError),
    #[error("a sealed message in a session without a key (run both sides with --key)")]
    Unexpected,
}

/// Messages that can travel sealed: both directions.
pub trait Wire: Serialize + DeserializeOwned {
    fn seal(s: Sealed) -> Self;
    /// The sealed message inside, or the kind of the plaintext one.
    fn sealed(self) -> Result<Sealed, (&'static str, Self)>;
}

impl Wire for EdgeMsg {
    fn seal(s: Sealed) -> Self {
        EdgeMsg::Sealed(s)
    }
    fn sealed(self) -> Result<Sealed, (&'static str, Self)> {
        match self {
            EdgeMsg::Sealed(s) => Ok(s),
            m => Err((m.kind(), m)),
        }
    }
}

impl Wire for HostMsg {
    fn seal(s: Sealed) -> Self {
        HostMsg::Sealed(s)
    }
    fn sealed(self) -> Result<Sealed, (&'static str, Self)> {
        match self {
            HostMsg::Sealed(s) => Ok(s),
            m => Err((m.kind(), m)),
        }
    }
}

/// The transport keys of one session, shared by its sending and receiving halves.
pub(crate) type Keys = Arc<StatelessTransportState>;

/// The sending half of a session: encodes messages as wire bytes.
pub enum Tx {
    Plain,
    Sealed { keys: Keys, next: u64 },
}

impl Tx {
    /// `msg` as COBS frames ready to write: one, or with a key one per sealed piece.
    pub fn encode<M: Wire>(&mut self, msg: &M) -> Result<Vec<u8>, DecodeError> {
        let Tx::Sealed { keys, next } = self else {
            return encode(msg, MAX_FRAME);
        };
        let plain = postcard::to_allocvec(msg).map_err(|_| DecodeError::Malformed)?;
        if plain.len() > MAX_FRAME {
            return Err(DecodeError::Oversized { limit: MAX_FRAME });
        }
        let mut out = Vec::with_capacity(plain.len() + 64);
        let mut pieces = plain.chunks(PIECE).peekable();
        let mut piece = Vec::with_capacity(PIECE.min(plain.len()) + 1);
        let mut sealed = vec![0u8; PIECE.min(plain.len()) + 1 + 16];
        while let Some(chunk) = pieces.next() {
            piece.clear();
            piece.push(u8::from(pieces.peek().is_some()));
            piece.extend_from_slice(chunk);
            let len = keys
                .write_message(*next, &piece, &mut sealed)
                .map_err(|_| DecodeError::Malformed)?;
            out.extend(encode(
                &M::seal(Sealed {
                    n: *next,
                    body: sealed[..len].to_vec(),
                }),
                MAX_FRAME + 64,
            )?);
            *next += 1;
        }
        Ok(out)
    }
}

/// The receiving half of a session: what a transport decoded goes through [`Rx::accept`].
pub enum Rx {
    Plain,
    Sealed {
        keys: Keys,
        next: u64,
        /// Pieces of a message so far (bounded by `MAX_FRAME`).
        partial: Vec<u8>,
        opened: Vec<u8>,
    },
}

/// What one received wire message gave.
#[derive(Debug, PartialEq)]
pub struct Received<M> {
    /// The message, once whole (`None` while pieces of a long one arrive).
    pub msg: Option<M>,
    /// Messages lost just before this one (a gap in the nonces).
    pub missed: u64,
}

impl Rx {
    pub fn is_sealed(&self) -> bool {
        matches!(self, Rx::Sealed { .. })
    }

    pub fn accept<M: Wire>(&mut self, msg: M) -> Result<Received<M>, SecureError> {
        let Rx::Sealed {
            keys,
            next,
            partial,
            opened,
        } = self
        else {
            return match msg.sealed() {
                Ok(_) => Err(SecureError::Unexpected),
                Err((_, m)) => Ok(Received {
                    msg: Some(m),
                    missed: 0,
                }),
            };
        };
        let s = msg
            .sealed()
            .map_err(|(kind, _)| SecureError::Plaintext(kind))?;
        if s.n < *next {
            return Err(SecureError::Replay {
                n: s.n,
                expected: *next,
            });
        }
        opened.resize(s.body.len(), 0);
        let len = keys
            .read_message(s.n, &s.body, opened)
            .map_err(|_| SecureError::Integrity { n: s.n })?;
        let missed = s.n - *next;
        *next = s.n + 1;
        if missed > 0 {
            // The rest of a long message went missing with them.
            partial.clear();
        }
        let Some((&more, body)) = opened[..len].split_first() else {
            return Err(SecureError::Integrity { n: s.n });
        };
        if partial.len() + body.len() > MAX_FRAME {
            partial.clear();
            return Err(SecureError::Decode(DecodeError::Oversized {
                limit: MAX_FRAME,
            }));
        }
        partial.extend_from_slice(body);
        if more != 0 {
            return Ok(Received { msg: None, missed });
        }
        let m = postcard::from_bytes::<M>(partial).map_err(|_| DecodeError::Malformed);
        partial.clear();
        match m {
            // A sealed message inside a sealed one is nothing a peer sends.
            Ok(m) => match m.sealed() {
                Ok(_) => Err(SecureError::Decode(DecodeError::Malformed)),
                Err((_, m)) => Ok(Received {
                    msg: Some(m),
                    missed,
                }),
            },
            Err(e) => Err(SecureError::Decode(e)),
        }
    }
}

/// Whether a HOST:PORT resolves to this machine only (no key needed to keep it private).
pub fn is_loopback(addr: &str) -> bool {
    use std::net::ToSocketAddrs;
    addr.to_socket_addrs()
        .map(|mut a| a.all(|a| a.ip().is_loopback()))
        .unwrap_or(false)
}

/// Both halves over the same transport keys.
pub(crate) fn halves(keys: StatelessTransportState) -> (Tx, Rx) {
    let keys = Arc::new(keys);
    (
        Tx::Sealed {
            keys: keys.clone(),
            next: 0,
        },
        Rx::Sealed {
            keys,
            next: 0,
            partial: Vec::new(),
            opened: Vec::new(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Thumbnail;

    /// A keyed session run to its end: (edge tx, edge rx), (host tx, host rx).
    fn session() -> ((Tx, Rx), (Tx, Rx)) {
        let (edge, host) = crate::session::in_process(b"0123456789abcdef");
        assert!(
            matches!(host.1, Rx::Sealed { .. }),
            "the host admitted the board"
        );
        (edge, host)
    }

    fn wire(bytes: &[u8]) -> Vec<EdgeMsg> {
        let mut dec = crate::FrameDecoder::new(MAX_FRAME);
        dec.frames::<EdgeMsg>(bytes).map(|m| m.unwrap()).collect()
    }

    #[test]
    fn a_sealed_message_opens_and_hides_its_bytes() {
        let ((mut tx, _), (_, mut rx)) = session();
        let jpeg = b"\xff\xd8 a thumbnail nobody on the way may read".to_vec();
        let msg = EdgeMsg::Thumbnail(Thumbnail {
            seq: 7,
            jpeg: jpeg.clone(),
        });
        let bytes = tx.encode(&msg).unwrap();
        assert!(!bytes.windows(20).any(|w| w == &jpeg[4..24]));
        let got: Vec<_> = wire(&bytes)
            .into_iter()
            .map(|m| rx.accept(m).unwrap())
            .collect();
        assert_eq!(
            got,
            vec![Received {
                msg: Some(msg),
                missed: 0
            }]
        );
    }

    #[test]
    fn a_flipped_bit_a_replay_and_a_plaintext_message_are_refused_by_name() {
        let ((mut tx, _), (_, mut rx)) = session();
        let msg = EdgeMsg::Health(Default::default());
        let first = wire(&tx.encode(&msg).unwrap()).remove(0);
        let EdgeMsg::Sealed(mut bad) = wire(&tx.encode(&msg).unwrap()).remove(0) else {
            panic!("not sealed")
        };
        assert!(rx.accept(first.clone()).unwrap().msg.is_some());
        bad.body[3] ^= 0x10;
        assert_eq!(
            rx.accept(EdgeMsg::Sealed(bad)),
            Err(SecureError::Integrity { n: 1 })
        );
        assert_eq!(
            rx.accept(first),
            Err(SecureError::Replay { n: 0, expected: 1 })
        );
        assert_eq!(rx.accept(msg), Err(SecureError::Plaintext("health")));
    }

    #[test]
    fn lost_messages_are_counted_and_long_ones_travel_in_pieces() {
        let ((mut tx, _), (_, mut rx)) = session();
        let small = EdgeMsg::Health(Default::default());
        let _lost = tx.encode(&small).unwrap();
        let _lost = tx.encode(&small).unwrap();
        let got = wire(&tx.encode(&small).unwrap()).remove(0);
        assert_eq!(
            rx.accept(got).unwrap(),
            Received {
                msg: Some(small),
                missed: 2
            }
        );

        let big = EdgeMsg::Thumbnail(Thumbnail {
            seq: 1,
            jpeg: (0..200_000).map(|i| i as u8).collect(),
        });
        let pieces = wire(&tx.encode(&big).unwrap());
        assert_eq!(pieces.len(), 4);
        let mut out = Vec::new();
        for p in pieces {
            out.push(rx.accept(p).unwrap().msg);
        }
        assert_eq!(out, vec![None, None, None, Some(big)]);
    }

    #[test]
    fn the_host_talks_back_sealed_and_a_plain_session_refuses_sealed_messages() {
        let ((_, mut erx), (mut htx, _)) = session();
        let bytes = htx.encode(&HostMsg::Pause).unwrap();
        let mut dec = crate::FrameDecoder::new(MAX_FRAME);
        let m = dec.frames::<HostMsg>(&bytes).next().unwrap().unwrap();
        assert_eq!(erx.accept(m.clone()).unwrap().msg, Some(HostMsg::Pause));
        assert_eq!(Rx::Plain.accept(m), Err(SecureError::Unexpected));
    }
}
