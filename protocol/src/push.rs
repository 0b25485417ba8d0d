//! Moving a bundle onto a running board (PROTOCOL.md, "Pushing a bundle"): the host offers a
//! bundle `.tar` by SHA-256 and size, the board says from which byte it wants it (what it
//! already holds of the same offer, so a transfer resumes after a reconnect), the host sends
//! chunks of at most [`CHUNK`] bytes, a few ahead of the board's answers, and the board reports
//! what became of it.

use alloc::string::String;
use alloc::vec::Vec;
use postcard_schema::Schema;
use serde::{Deserialize, Serialize};

use crate::model::ModelInfo;

/// Largest chunk of bundle bytes in one message.
pub const CHUNK: usize = 16 * 1024;

/// Chunks the host sends ahead of the board's answers.
pub const WINDOW: u64 = 8;

/// Largest message the board reads from the host: a chunk and its envelope (sealed, framed).
pub const MAX_CONTROL: usize = CHUNK + 1024;

/// Host -> edge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Schema)]
pub enum Push {
    /// A bundle `.tar` of `size` bytes with this SHA-256; the board answers `Want` (or
    /// `Refused`: no store, no space, too large, busy).
    Offer {
        sha256: [u8; 32],
        size: u64,
        name: String,
    },
    /// Bytes of the offered tar from `offset`.
    Chunk { offset: u64, data: Vec<u8> },
    /// Go back to the bundle that ran before the last switch.
    Rollback,
}

/// Edge -> host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Schema)]
pub enum PushStatus {
    /// Send the offered tar from `offset` on: the board holds every byte before it.
    Want { sha256: [u8; 32], offset: u64 },
    /// All bytes are in; the board is verifying hashes and signature and loading the model.
    Checking { sha256: [u8; 32] },
    /// The board runs the new bundle from frame `seq` on.
    Switched { model: ModelInfo, seq: u64 },
    /// Not taken, the running bundle is unchanged: why.
    Refused { reason: String },
    /// The board went back to its previous bundle (asked for, or the new one failed its first
    /// frames), from frame `seq` on.
    RolledBack {
        model: ModelInfo,
        seq: u64,
        reason: String,
    },
}

impl Push {
    pub fn kind(&self) -> &'static str {
        match self {
            Push::Offer { .. } => "push-offer",
            Push::Chunk { .. } => "push-chunk",
            Push::Rollback => "rollback",
        }
    }
}

/// The short form of a SHA-256 shown to people (the first 8 bytes in hex).
pub fn short_hash(sha256: &[u8]) -> String {
    use core::fmt::Write;
    let mut s = String::new();
    for b in sha256.iter().take(8) {
        let _ = write!(s, "{b:02x}");
    }
    s
}
