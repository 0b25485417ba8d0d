//! The SViT-Edge wire: every message between `svit-edge` and `svit-host`, and its framing.
//!
//! Messages are postcard-encoded and COBS-framed (each frame ends with a 0 byte), over TCP or a
//! serial line. The first message each way is a [`Hello`] carrying [`PROTOCOL_VERSION`] and
//! [`schema_hash`] (a hash of the message types' postcard schema): a peer whose types differ is
//! refused with an error naming both sides, instead of misreading its bytes.
//!
//! Architecture invariant: no tokio, no tract, no std required (`default-features = false`
//! builds for `no_std + alloc`); I/O lives in the programs, decoding here is sans-IO.

#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use postcard_schema::Schema;
use serde::{Deserialize, Serialize};

#[cfg(feature = "std")]
pub mod auth;
pub mod bench;
#[cfg(feature = "std")]
pub mod clock;
pub mod frame;
pub mod model;
#[cfg(feature = "process")]
pub mod process;
pub mod push;
#[cfg(feature = "std")]
pub mod secure;
#[cfg(feature = "std")]
pub mod session;
pub mod stats;

pub use bench::BenchReport;
pub use frame::{decode_one, encode, DecodeError, Feed, FrameDecoder, Frames};
pub use model::ModelInfo;
pub use push::{Push, PushStatus};

/// Bump when the meaning of a message changes without its types changing.
/// 2: the hello carries the bundle's default threshold in [`ModelInfo`], answers without a key
/// carry the edge's nonce on every transport, `Bench` is typed.
/// 3: a key encrypts the session (Noise NNpsk0) instead of authenticating the hello only.
/// 4: bundles are pushed to running boards (`Push`, `PushStatus`); the hello names the bundle's
/// hash and signer.
pub const PROTOCOL_VERSION: u16 = 4;

/// Largest encoded message either side sends or accepts (a frame with 100 masked detections
/// and a thumbnail fits well below this).
pub const MAX_FRAME: usize = 512 * 1024;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Schema)]
pub enum Role {
    Edge,
    Host,
}

/// First message each way.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Schema)]
pub struct Hello {
    pub protocol_version: u16,
    pub schema_hash: u64,
    pub role: Role,
    /// Board name (hostname or `--name`), or the host tool's name.
    pub device: String,
    /// The board's model (all empty from the host).
    pub model: ModelInfo,
    /// Random, fresh per handshake: tells an answer from a knock and a restarted peer from a
    /// repeated hello (serial lines); with a key, part of the Noise prologue.
    pub nonce: [u8; 16],
}

/// One Noise handshake message of a keyed session (PROTOCOL.md, "Pre-shared key"): the host's
/// `psk, e`, the edge's `e, ee` answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Schema)]
pub struct Auth {
    pub noise: Vec<u8>,
}

/// A message of a keyed session after the handshake: `body` is the ChaCha20-Poly1305 sealed
/// postcard encoding of the message (or a piece of it), under the Noise transport key and
/// nonce `n`. Numbers only go up; a gap is a message lost on the way.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Schema)]
pub struct Sealed {
    pub n: u64,
    pub body: Vec<u8>,
}

/// Wall time of each stage of one frame, in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Schema)]
pub struct StageTimes {
    pub capture: u32,
    pub decode: u32,
    pub preprocess: u32,
    pub embed: u32,
    pub gates: u32,
    pub gather_scatter: u32,
    pub blocks: Vec<u32>,
    pub head: u32,
    pub postprocess: u32,
    pub encode: u32,
}

/// The one definition of the latency figures every report, monitor and bench shows
/// (PROTOCOL.md, "Latency").
impl StageTimes {
    /// The transformer backbone: embedding, gates, gather/scatter and every block.
    pub fn backbone_us(&self) -> u32 {
        self.embed + self.gates + self.gather_scatter + self.blocks.iter().sum::<u32>()
    }

    /// Every stage by name, in pipeline order (blocks summed), the thumbnail's encoding aside.
    pub fn stages(&self) -> [(&'static str, u32); 9] {
        [
            ("capture", self.capture),
            ("decode", self.decode),
            ("preprocess", self.preprocess),
            ("embed", self.embed),
            ("gates", self.gates),
            ("gather_scatter", self.gather_scatter),
            ("blocks", self.blocks.iter().sum()),
            ("head", self.head),
            ("postprocess", self.postprocess),
        ]
    }

    /// The model alone: backbone and head.
    pub fn inference_us(&self) -> u32 {
        self.backbone_us() + self.head
    }

    /// From a captured frame to its detections: decoding, pre-processing, the model and
    /// post-processing. Capture (which includes waiting for the camera) and the thumbnail's
    /// encoding are outside it.
    pub fn total_us(&self) -> u32 {
        self.decode + self.preprocess + self.inference_us() + self.postprocess
    }
}

/// An instance mask as a bitmap on a window of the model's stride-4 grid.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Schema)]
pub struct CompactMask {
    pub x0: u16,
    pub y0: u16,
    pub w: u16,
    pub h: u16,
    /// Cell size in frame pixels (x, y).
    pub cell: [f32; 2],
    /// Row-major, 1 bit per cell, LSB first.
    pub bits: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Schema)]
pub struct Detection {
    pub class: u16,
    pub score: f32,
    /// `[x0, y0, x1, y1]` in frame pixels.
    pub bbox: [f32; 4],
    pub mask: CompactMask,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Schema)]
pub struct Frame {
    /// Consecutive from 0 per edge run: a gap on the host is a frame lost on the way.
    pub seq: u64,
    /// Capture time, microseconds since the Unix epoch (edge clock): the camera's own stamp
    /// where it gives one (V4L2 buffers), else when the frame arrived.
    pub capture_us: u64,
    /// From the capture time to the start of inference, ms: how old the frame was when the
    /// model began on it.
    pub age_ms: f32,
    pub width: u16,
    pub height: u16,
    pub times: StageTimes,
    pub detections: Vec<Detection>,
    /// Tokens computed by each block.
    pub kept: Vec<u16>,
    /// Per gated block, which tokens it computed (1 bit per token, LSB first).
    pub keep_maps: Vec<Vec<u8>>,
    pub gmacs: f32,
    /// Frames dropped on the edge so far: taken from the camera but never sent (a newer frame
    /// replaced it in a full queue). The same count as [`Health::dropped_total`].
    pub dropped_total: u64,
    pub threshold: f32,
    /// The latency budget the board steers its pruning to (`--budget-ms`), if it has one.
    pub budget_ms: Option<f32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Schema)]
pub struct Thumbnail {
    pub seq: u64,
    pub jpeg: Vec<u8>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Schema)]
pub struct Health {
    pub uptime_s: u32,
    /// Degrees Celsius, when the board exposes a thermal zone.
    pub cpu_temp_c: Option<f32>,
    pub cpu_mhz: Option<u32>,
    /// Raspberry Pi `get_throttled` bits, when available.
    pub throttled: Option<u32>,
    pub mem_used_mb: u32,
    pub mem_total_mb: u32,
    /// As [`Frame::dropped_total`].
    pub dropped_total: u64,
    /// Captures that failed (no frame at all).
    pub camera_errors: u64,
    /// Frames the model failed on (counted apart from camera errors).
    pub inference_errors: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Schema)]
pub enum Level {
    Error,
    Warn,
    Info,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Schema)]
pub struct LogLine {
    pub level: Level,
    pub text: String,
}

/// Edge -> host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Schema)]
pub enum EdgeMsg {
    Hello(Hello),
    Auth(Auth),
    Frame(Frame),
    Thumbnail(Thumbnail),
    Health(Health),
    /// A warning or error on the board, for the host's log and recording.
    Log(LogLine),
    /// A `svit-edge bench` report (also written to disk as JSON).
    Bench(BenchReport),
    /// How a bundle push or rollback goes.
    Push(PushStatus),
    /// Any of the above in a keyed session.
    Sealed(Sealed),
}

/// Host -> edge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Schema)]
pub enum HostMsg {
    Hello(Hello),
    Auth(Auth),
    SetThreshold(f32),
    /// Fixed keep ratio at every gated block (`None` goes back to the threshold).
    SetKeepRatio(Option<f32>),
    /// Steer pruning to hold this latency budget, ms (`None`: the fixed threshold again).
    SetBudget(Option<f32>),
    Pause,
    Resume,
    Snapshot,
    /// A bundle push or rollback (`push`).
    Push(Push),
    /// Any of the above in a keyed session.
    Sealed(Sealed),
}

impl EdgeMsg {
    /// The message's kind, for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            EdgeMsg::Hello(_) => "hello",
            EdgeMsg::Auth(_) => "auth",
            EdgeMsg::Frame(_) => "frame",
            EdgeMsg::Thumbnail(_) => "thumbnail",
            EdgeMsg::Health(_) => "health",
            EdgeMsg::Log(_) => "log",
            EdgeMsg::Bench(_) => "bench",
            EdgeMsg::Push(_) => "push-status",
            EdgeMsg::Sealed(_) => "sealed",
        }
    }
}

impl HostMsg {
    /// The message's kind, for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            HostMsg::Hello(_) => "hello",
            HostMsg::Auth(_) => "auth",
            HostMsg::SetThreshold(_) => "set-threshold",
            HostMsg::SetKeepRatio(_) => "set-keep-ratio",
            HostMsg::SetBudget(_) => "set-budget",
            HostMsg::Pause => "pause",
            HostMsg::Resume => "resume",
            HostMsg::Snapshot => "snapshot",
            HostMsg::Push(p) => p.kind(),
            HostMsg::Sealed(_) => "sealed",
        }
    }
}

/// FNV-1a over the `Debug` rendering of both message schemas: changes whenever a field,
/// variant or type of either direction changes.
pub fn schema_hash() -> u64 {
    struct Fnv(u64);
    impl core::fmt::Write for Fnv {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            for b in s.bytes() {
                self.0 ^= b as u64;
                self.0 = self.0.wrapping_mul(0x0000_0100_0000_01B3);
            }
            Ok(())
        }
    }
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    let _ = core::fmt::write(
        &mut h,
        format_args!("{:?}{:?}", EdgeMsg::SCHEMA, HostMsg::SCHEMA),
    );
    h.0
}

/// Why a peer's hello is refused.
#[derive(Clone, Debug, PartialEq)]
pub enum HelloError {
    Version { ours: u16, theirs: u16 },
    Schema { ours: u64, theirs: u64 },
    Role { expected: Role },
}

impl core::fmt::Display for HelloError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HelloError::Version { ours, theirs } => {
                write!(f, "protocol version mismatch: we speak {ours}, the peer speaks {theirs}; update the older side")
            }
            HelloError::Schema { ours, theirs } => write!(
                f,
                "message schema mismatch: ours is {ours:016x}, the peer's is {theirs:016x}; build both from the same svit-protocol"
            ),
            HelloError::Role { expected } => write!(f, "the peer is not a {expected:?}"),
        }
    }
}

impl core::error::Error for HelloError {}

impl Hello {
    /// A hello of this build: version and schema hash filled in, no model, a zero nonce (the
    /// handshake puts a fresh one in).
    pub fn new(role: Role, device: impl Into<String>) -> Hello {
        Hello {
            protocol_version: PROTOCOL_VERSION,
            schema_hash: schema_hash(),
            role,
            device: device.into(),
            model: ModelInfo::default(),
            nonce: [0; 16],
        }
    }

    /// A board's hello.
    pub fn edge(device: impl Into<String>, model: ModelInfo) -> Hello {
        Hello {
            model,
            ..Hello::new(Role::Edge, device)
        }
    }

    /// Checks a received hello against this build.
    pub fn check(&self, expected: Role) -> Result<(), HelloError> {
        if self.protocol_version != PROTOCOL_VERSION {
            return Err(HelloError::Version {
                ours: PROTOCOL_VERSION,
                theirs: self.protocol_version,
            });
        }
        if self.schema_hash != schema_hash() {
            return Err(HelloError::Schema {
                ours: schema_hash(),
                theirs: self.schema_hash,
            });
        }
        if self.role != expected {
            return Err(HelloError::Role { expected });
        }
        Ok(())
    }
}

/// Packs booleans LSB first (keep maps, mask bitmaps).
pub fn pack_bits(bits: impl IntoIterator<Item = bool>) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, b) in bits.into_iter().enumerate() {
        if i % 8 == 0 {
            out.push(0);
        }
        if b {
            *out.last_mut().expect("pushed above") |= 1 << (i % 8);
        }
    }
    out
}

/// Bit `i` of a packed bitmap (false past the end).
pub fn bit(bits: &[u8], i: usize) -> bool {
    bits.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    pub fn sample_frame() -> EdgeMsg {
        EdgeMsg::Frame(Frame {
            seq: 42,
            capture_us: 1_700_000_000_000_000,
            age_ms: 12.5,
            width: 256,
            height: 256,
            times: StageTimes {
                embed: 900,
                blocks: vec![1000, 800, 400],
                ..Default::default()
            },
            detections: vec![Detection {
                class: 3,
                score: 0.9,
                bbox: [1.0, 2.0, 30.0, 40.0],
                mask: CompactMask {
                    x0: 0,
                    y0: 0,
                    w: 3,
                    h: 2,
                    cell: [4.0, 4.0],
                    bits: pack_bits([true, false, true, true, true, false]),
                },
            }],
            kept: vec![256, 256, 120],
            keep_maps: vec![pack_bits((0..256).map(|i| i % 3 == 0))],
            gmacs: 0.4,
            dropped_total: 2,
            threshold: 0.5,
            budget_ms: None,
        })
    }

    #[test]
    fn schema_hash_is_stable_within_a_build() {
        assert_eq!(schema_hash(), schema_hash());
        assert_ne!(schema_hash(), 0);
    }

    #[test]
    fn hello_mismatches_name_both_sides() {
        let mut h = Hello::new(Role::Edge, "pi");
        assert_eq!(h.check(Role::Edge), Ok(()));
        assert!(matches!(h.check(Role::Host), Err(HelloError::Role { .. })));
        h.schema_hash ^= 1;
        let e = h.check(Role::Edge).unwrap_err();
        assert!(alloc::format!("{e}").contains(&alloc::format!("{:016x}", schema_hash())));
        h.protocol_version = 99;
        assert_eq!(
            h.check(Role::Edge),
            Err(HelloError::Version {
                ours: PROTOCOL_VERSION,
                theirs: 99
            })
        );
    }

    #[test]
    fn bits_round_trip() {
        let v: Vec<bool> = (0..19).map(|i| i % 4 == 1).collect();
        let p = pack_bits(v.iter().copied());
        assert_eq!(p.len(), 3);
        assert!((0..19).all(|i| bit(&p, i) == v[i]));
        assert!(!bit(&p, 100));
    }
}
