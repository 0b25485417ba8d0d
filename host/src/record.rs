//! `.svrec` recordings: an 8-byte magic, then one COBS-framed postcard `Record` per received
//! message. Append-only and flushed often, so a kill -9 loses at most the last moment; a torn
//! final frame is detected on reading and skipped with a warning.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use svit_protocol::{EdgeMsg, FrameDecoder, MAX_FRAME};

pub const MAGIC: &[u8; 8] = b"SVREC01\n";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Receive time on the host, microseconds since the Unix epoch.
    pub recv_us: u64,
    /// Connection number on this host run (a board that reconnects gets a new one).
    pub conn: u32,
    /// The board's name from its hello.
    pub device: String,
    pub msg: EdgeMsg,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not an .svrec recording (bad magic)")]
    Magic { path: String },
}

pub struct Writer {
    out: BufWriter<File>,
    last_flush: Instant,
    pub records: u64,
}

impl Writer {
    pub fn create(path: &Path) -> Result<Self, RecordError> {
        let io = |source| RecordError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut f = File::create(path).map_err(io)?;
        f.write_all(MAGIC).map_err(io)?;
        Ok(Writer {
            out: BufWriter::new(f),
            last_flush: Instant::now(),
            records: 0,
        })
    }

    pub fn append(&mut self, r: &Record) -> std::io::Result<()> {
        let bytes = svit_protocol::encode(r, MAX_FRAME + 1024)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        self.out.write_all(&bytes)?;
        self.records += 1;
        if self.last_flush.elapsed() > Duration::from_millis(100) {
            self.flush()?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.last_flush = Instant::now();
        self.out.flush()?;
        self.out.get_ref().sync_data()
    }
}

pub struct Recording {
    pub records: Vec<Record>,
    /// Frames that could not be decoded (corruption) and bytes of a torn tail.
    pub bad_frames: usize,
    pub torn_tail_bytes: usize,
}

pub fn read(path: &Path) -> Result<Recording, RecordError> {
    let io = |source| RecordError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io)?;
    if !bytes.starts_with(MAGIC) {
        return Err(RecordError::Magic {
            path: path.display().to_string(),
        });
    }
    let mut dec = FrameDecoder::new(MAX_FRAME + 1024);
    let mut rec = Recording {
        records: Vec::new(),
        bad_frames: 0,
        torn_tail_bytes: 0,
    };
    for r in dec.frames::<Record>(&bytes[MAGIC.len()..]) {
        match r {
            Ok(r) => rec.records.push(r),
            Err(_) => rec.bad_frames += 1,
        }
    }
    rec.torn_tail_bytes = dec.pending();
    if rec.torn_tail_bytes > 0 {
        tracing::warn!(
            "{}: torn last record ({} bytes) skipped",
            path.display(),
            rec.torn_tail_bytes
        );
    }
    Ok(rec)
}
