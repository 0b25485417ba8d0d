//! What the wire says of a board's bundle: in its hello, and after a push switched it.

use alloc::string::String;
use alloc::vec::Vec;
use postcard_schema::Schema;
use serde::{Deserialize, Serialize};

/// What a host needs to know of a board's bundle to show its frames.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Schema)]
pub struct ModelInfo {
    /// Bundle name and class labels.
    pub bundle: String,
    pub labels: Vec<String>,
    /// Model input side and token count, so the host can draw token heatmaps.
    pub input_size: u16,
    pub tokens: u16,
    pub blocks: u16,
    /// The bundle's default gate threshold (the monitor's `+`/`-` start from it).
    pub threshold: f32,
    /// The first 8 bytes, in hex, of the SHA-256 of the bundle's manifest (which pins every
    /// file): tells two bundles of the same name apart.
    pub hash: String,
    /// The key id (`svit-export keygen`) of the trusted key that signed it, if checked.
    pub signed_by: Option<String>,
}
