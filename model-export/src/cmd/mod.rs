//! One module per `svit-export` command: its clap `Args` and `run`.

pub mod bundle;
pub mod data;
pub mod eval;
pub mod quantize;
pub mod reference;
pub mod score;
pub mod sign;
pub mod targets;
pub mod train;
