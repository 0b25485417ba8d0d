//! Bundle pushes and rollbacks asked for through the HTTP API (`POST /api/boards/NAME/bundle`,
//! `.../rollback`), carried out by the session loop: each board's transfer offers the tar, sends
//! chunks a window ahead of the board's answers (`svit_protocol::push`), re-offers when answers
//! stop (a lost message, a reconnect: the board answers with what it already holds, so the
//! transfer resumes there) and keeps the board's last word for `GET .../bundle`.
//!
//! Memory: one tar per board with a push under way, each at most `MAX_PUSH` bytes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use serde::Serialize;
use sha2::{Digest, Sha256};
use svit_protocol::push::{short_hash, CHUNK, WINDOW};
use svit_protocol::{HostMsg, Push, PushStatus};

/// The largest bundle the API takes.
pub const MAX_PUSH: usize = 512 << 20;

/// Answers stop for this long: offer again.
const QUIET: Duration = Duration::from_secs(3);
/// A board loading and checking a bundle may stay quiet this long (a Pi Zero loads slowly).
const CHECKING: Duration = Duration::from_secs(120);
/// A rollback not answered in this time has failed (it is not sent twice: twice goes back and
/// forth).
const ROLLBACK: Duration = Duration::from_secs(120);

/// What the API says of a board's push (`GET /api/boards/NAME/bundle`).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum State {
    /// The board is not connected: the push goes on when it is.
    Waiting,
    Sending,
    /// The board holds every byte and is checking and loading it.
    Checking,
    Switched {
        seq: u64,
        bundle: String,
        hash: String,
    },
    RolledBack {
        seq: u64,
        bundle: String,
        hash: String,
        reason: String,
    },
    Refused {
        reason: String,
    },
}

impl State {
    pub fn finished(&self) -> bool {
        matches!(
            self,
            State::Switched { .. } | State::RolledBack { .. } | State::Refused { .. }
        )
    }
}

#[derive(Serialize)]
pub struct Status {
    pub board: String,
    /// `push` or `rollback`.
    pub kind: &'static str,
    /// The bundle tar's name as given, size and SHA-256 (short).
    pub name: String,
    pub size: u64,
    pub sha256: String,
    /// Bytes the board has acknowledged.
    pub received: u64,
    /// Where the board resumed an earlier, interrupted transfer of the same bundle.
    pub resumed_from: Option<u64>,
    /// Bundle bytes this host sent (resends included): at most the size when nothing was lost.
    pub bytes_sent: u64,
    pub seconds: f64,
    #[serde(flatten)]
    pub state: State,
}

struct Transfer {
    /// None for a rollback.
    tar: Option<Bytes>,
    sha256: [u8; 32],
    name: String,
    conn: Option<u32>,
    acked: u64,
    sent: u64,
    /// An offer (or rollback) went out and its answer has not come.
    offered: bool,
    /// Send an offer at the next `due` (a new push, a reconnect).
    offer_now: bool,
    /// Last answer, or the offer it waits for.
    heard: Instant,
    started: Instant,
    resumed_from: Option<u64>,
    bytes_sent: u64,
    state: State,
}

#[derive(Default)]
pub struct Pushes {
    by_board: HashMap<String, Transfer>,
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("a push to {0} is under way (GET /api/boards/{0}/bundle); wait for it to end")]
    Busy(String),
    #[error("an empty bundle")]
    Empty,
}

impl Pushes {
    /// A new push of `tar` to `board` (connection `conn`, if connected). The same bundle again
    /// while it is under way is the same push (a client that lost its host asks again).
    pub fn push(
        &mut self,
        board: &str,
        conn: Option<u32>,
        name: String,
        tar: Bytes,
    ) -> Result<(), PushError> {
        if tar.is_empty() {
            return Err(PushError::Empty);
        }
        let sha256: [u8; 32] = Sha256::digest(&tar).into();
        if let Some(t) = self.by_board.get(board) {
            if !t.state.finished() && (t.tar.is_none() || t.sha256 != sha256) {
                return Err(PushError::Busy(board.into()));
            }
            if !t.state.finished() {
                return Ok(());
            }
        }
        tracing::info!(
            "pushing {name} ({} bytes, sha256 {}) to {board}",
            tar.len(),
            short_hash(&sha256)
        );
        self.by_board
            .insert(board.into(), Transfer::new(Some(tar), sha256, name, conn));
        Ok(())
    }

    pub fn rollback(&mut self, board: &str, conn: u32) -> Result<(), PushError> {
        if self
            .by_board
            .get(board)
            .is_some_and(|t| !t.state.finished())
        {
            return Err(PushError::Busy(board.into()));
        }
        let t = Transfer::new(None, [0; 32], String::new(), Some(conn));
        self.by_board.insert(board.into(), t);
        Ok(())
    }

    pub fn status(&self, board: &str) -> Option<Status> {
        let t = self.by_board.get(board)?;
        Some(Status {
            board: board.into(),
            kind: if t.tar.is_some() { "push" } else { "rollback" },
            name: t.name.clone(),
            size: t.size(),
            sha256: short_hash(&t.sha256),
            received: t.acked,
            resumed_from: t.resumed_from,
            bytes_sent: t.bytes_sent,
            seconds: t.started.elapsed().as_secs_f64(),
            state: t.state.clone(),
        })
    }

    pub fn connected(&mut self, board: &str, conn: u32) {
        if let Some(t) = self.by_board.get_mut(board).filter(|t| !t.state.finished()) {
            t.conn = Some(conn);
            // A rollback already sent is not sent again.
            if t.tar.is_some() {
                t.offer_due();
            }
        }
    }

    pub fn disconnected(&mut self, board: &str) {
        if let Some(t) = self.by_board.get_mut(board).filter(|t| !t.state.finished()) {
            t.conn = None;
            if t.tar.is_some() {
                t.state = State::Waiting;
            }
        }
    }

    /// A board's answer.
    pub fn answer(&mut self, board: &str, status: &PushStatus) {
        let Some(t) = self.by_board.get_mut(board).filter(|t| !t.state.finished()) else {
            return;
        };
        t.heard = Instant::now();
        match status {
            PushStatus::Want { sha256, offset } if *sha256 == t.sha256 && t.tar.is_some() => {
                let offset = (*offset).min(t.size());
                if t.offered {
                    t.offered = false;
                    t.sent = offset;
                    if offset > 0 && t.resumed_from.is_none() && t.acked == 0 {
                        t.resumed_from = Some(offset);
                    }
                }
                t.acked = offset;
                t.sent = t.sent.max(offset);
                t.state = State::Sending;
            }
            PushStatus::Want { .. } => {}
            PushStatus::Checking { sha256 } if *sha256 == t.sha256 => {
                t.acked = t.size();
                t.state = State::Checking;
            }
            PushStatus::Checking { .. } => {}
            PushStatus::Switched { model, seq } => {
                t.acked = t.size();
                t.state = State::Switched {
                    seq: *seq,
                    bundle: model.bundle.clone(),
                    hash: model.hash.clone(),
                };
            }
            PushStatus::RolledBack { model, seq, reason } => {
                t.state = State::RolledBack {
                    seq: *seq,
                    bundle: model.bundle.clone(),
                    hash: model.hash.clone(),
                    reason: reason.clone(),
                };
            }
            PushStatus::Refused { reason } => {
                t.state = State::Refused {
                    reason: reason.clone(),
                }
            }
        }
    }

    /// What to send now: offers that are due and chunks within each window.
    pub fn due(&mut self) -> Vec<(u32, HostMsg)> {
        let mut out = Vec::new();
        for t in self.by_board.values_mut() {
            let Some(conn) = t.conn.filter(|_| !t.state.finished()) else {
                continue;
            };
            let quiet = t.heard.elapsed();
            let Some(tar) = t.tar.clone() else {
                if !t.offered {
                    t.offered = true;
                    t.heard = Instant::now();
                    out.push((conn, HostMsg::Push(Push::Rollback)));
                } else if quiet > ROLLBACK {
                    t.state = State::Refused {
                        reason: "the board did not answer the rollback".into(),
                    };
                }
                continue;
            };
            let limit = match t.state {
                State::Checking => CHECKING,
                _ => QUIET,
            };
            if t.offer_now || quiet >= limit {
                t.offer_now = false;
                t.offered = true;
                t.heard = Instant::now();
                if matches!(t.state, State::Waiting) {
                    t.state = State::Sending;
                }
                let offer = Push::Offer {
                    sha256: t.sha256,
                    size: t.size(),
                    name: t.name.clone(),
                };
                out.push((conn, HostMsg::Push(offer)));
                continue;
            }
            if t.offered {
                continue;
            }
            while t.sent < t.size() && t.sent < t.acked + WINDOW * CHUNK as u64 {
                let end = (t.sent + CHUNK as u64).min(t.size());
                let data = tar[t.sent as usize..end as usize].to_vec();
                t.bytes_sent += data.len() as u64;
                out.push((
                    conn,
                    HostMsg::Push(Push::Chunk {
                        offset: t.sent,
                        data,
                    }),
                ));
                t.sent = end;
            }
        }
        out
    }
}

impl Transfer {
    fn new(tar: Option<Bytes>, sha256: [u8; 32], name: String, conn: Option<u32>) -> Transfer {
        let mut t = Transfer {
            tar,
            sha256,
            name,
            conn,
            acked: 0,
            sent: 0,
            offered: false,
            offer_now: false,
            heard: Instant::now(),
            started: Instant::now(),
            resumed_from: None,
            bytes_sent: 0,
            state: if conn.is_some() {
                State::Sending
            } else {
                State::Waiting
            },
        };
        if t.tar.is_some() {
            t.offer_due();
        }
        t
    }

    fn size(&self) -> u64 {
        self.tar.as_ref().map_or(0, |t| t.len() as u64)
    }

    /// The next `due` sends an offer.
    fn offer_due(&mut self) {
        self.offer_now = true;
    }
}
