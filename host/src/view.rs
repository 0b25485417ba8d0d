//! What the web view and the MQTT bridge show of each board, folded from the session's events:
//! the terminal monitor's per-board figures (`monitor::Monitor`, bounded histograms and rings)
//! plus the latest thumbnail with its frame, a minute of once-a-second samples and the recent
//! kept fraction of each gated block. Everything here is bounded per board.

use std::collections::{HashMap, VecDeque};

use serde::Serialize;
use svit_protocol::{EdgeMsg, Frame, Hello};

use crate::monitor::{quantile_ms, BoardView, Monitor};
use crate::record::Record;
use crate::report::STAGES;

/// Frames kept per board to find the one a thumbnail belongs to.
const RECENT: usize = 8;
/// Once-a-second samples for the sparklines: a minute.
const HISTORY: usize = 60;
/// Frames averaged for the per-block kept fractions.
const BLOCK_WINDOW: usize = 120;

#[derive(Default)]
pub struct State {
    pub mon: Monitor,
    extra: HashMap<String, Extra>,
    /// Board records seen: the records the recording holds.
    pub records: u64,
}

#[derive(Default)]
struct Extra {
    recent: VecDeque<Frame>,
    thumb: Option<(Frame, Vec<u8>)>,
    last_seen_us: u64,
    history: VecDeque<Sample>,
    block_kept: VecDeque<Vec<f32>>,
}

#[derive(Clone, Serialize)]
pub struct Sample {
    pub fps: f64,
    pub p50_ms: f64,
    pub kept: f64,
    pub gmacs: f64,
}

#[derive(Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

/// A board as `GET /api/boards` lists it: the fields of summary.json, and what a tile shows.
#[derive(Serialize)]
pub struct BoardJson {
    pub name: String,
    pub bundle: String,
    /// The bundle's manifest hash and the key that signed it, as the board checked it.
    pub bundle_hash: String,
    pub signed_by: Option<String>,
    pub connected: bool,
    pub frames: u64,
    pub missing: u64,
    pub dropped: u64,
    pub fps: f64,
    pub total_ms: Latency,
    pub kept_fraction: f64,
    pub gmacs: f64,
    pub threshold: f32,
    pub default_threshold: f32,
    pub keep_ratio: Option<f32>,
    pub budget_ms: Option<f32>,
    /// Under a budget: the fraction of the recent frames that held it.
    pub budget_hit_rate: Option<f64>,
    pub paused: bool,
    pub temperature_c: Option<f32>,
    pub throttled: Option<bool>,
    /// Seconds since the last message from the board.
    pub last_seen_s: Option<f64>,
    pub gated_blocks: usize,
    pub thumbnail_seq: Option<u64>,
    pub detections: Vec<Det>,
    pub history: Vec<Sample>,
}

#[derive(Clone, Serialize)]
pub struct Det {
    pub label: String,
    pub score: f32,
    pub bbox: [f32; 4],
}

/// `GET /api/boards/NAME`: the list's fields and per-stage latency histograms and per-block
/// kept fractions.
#[derive(Serialize)]
pub struct BoardDetail {
    #[serde(flatten)]
    pub board: BoardJson,
    pub stages: Vec<StageJson>,
    pub block_kept: Vec<f64>,
}

#[derive(Serialize)]
pub struct StageJson {
    pub stage: &'static str,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// `[upper bound ms, frames]`, doubling buckets from 0.25 ms.
    pub histogram: Vec<(f64, u64)>,
}

/// A per-frame update for `/ws`: what changed on a tile.
#[derive(Serialize)]
pub struct Update<'a> {
    pub board: &'a str,
    pub seq: u64,
    pub capture_us: u64,
    pub total_ms: f64,
    pub kept: f64,
    pub threshold: f32,
    pub detections: Vec<Det>,
    /// Set when this message brought a new thumbnail (`latest.jpg` changed).
    pub thumbnail_seq: Option<u64>,
}

fn detections(view: &BoardView, f: &Frame) -> Vec<Det> {
    f.detections
        .iter()
        .map(|d| Det {
            label: view
                .hello
                .model
                .labels
                .get(d.class as usize)
                .cloned()
                .unwrap_or_else(|| format!("class {}", d.class)),
            score: d.score,
            bbox: d.bbox,
        })
        .collect()
}

impl State {
    /// Folds one board record in; returns the update to stream, if it is one (and whether it
    /// brought a thumbnail).
    pub fn record(&mut self, r: &Record) -> Option<(bool, String)> {
        self.records += 1;
        self.mon.record(r);
        let extra = self.extra.entry(r.device.clone()).or_default();
        extra.last_seen_us = r.recv_us;
        let view = self.mon.boards.iter().find(|b| b.conn == r.conn)?;
        let (frame, thumbnail_seq) = match &r.msg {
            EdgeMsg::Frame(f) => {
                if extra.recent.len() == RECENT {
                    extra.recent.pop_front();
                }
                extra.recent.push_back(f.clone());
                if extra.block_kept.len() == BLOCK_WINDOW {
                    extra.block_kept.pop_front();
                }
                let tokens = view.hello.model.tokens.max(1) as f32;
                extra
                    .block_kept
                    .push_back(f.kept.iter().map(|&k| k as f32 / tokens).collect());
                (f, None)
            }
            EdgeMsg::Thumbnail(t) => {
                let f = extra.recent.iter().rev().find(|f| f.seq == t.seq)?;
                extra.thumb = Some((f.clone(), t.jpeg.clone()));
                (&extra.thumb.as_ref()?.0, Some(t.seq))
            }
            _ => return None,
        };
        let update = Update {
            board: &r.device,
            seq: frame.seq,
            capture_us: frame.capture_us,
            total_ms: frame.times.total_us() as f64 / 1000.0,
            kept: view.kept_now(),
            threshold: frame.threshold,
            detections: detections(view, frame),
            thumbnail_seq,
        };
        Some((
            thumbnail_seq.is_some(),
            serde_json::to_string(&update).ok()?,
        ))
    }

    /// Once a second: a sparkline sample per connected board.
    pub fn sample(&mut self) {
        for b in &self.mon.boards {
            let extra = self.extra.entry(b.hello.device.clone()).or_default();
            if extra.history.len() == HISTORY {
                extra.history.pop_front();
            }
            extra.history.push_back(Sample {
                fps: if b.connected { b.fps() } else { 0.0 },
                p50_ms: quantile_ms(&b.total, 0.5),
                kept: b.kept_now(),
                gmacs: extra.recent.back().map_or(0.0, |f| f.gmacs as f64),
            });
        }
    }

    pub fn names(&self) -> Vec<String> {
        self.mon
            .boards
            .iter()
            .map(|b| b.hello.device.clone())
            .collect()
    }

    pub fn view(&self, name: &str) -> Option<&BoardView> {
        self.mon.boards.iter().find(|b| b.hello.device == name)
    }

    pub fn boards(&self, now_us: u64) -> Vec<BoardJson> {
        self.mon
            .boards
            .iter()
            .map(|b| self.board(b, now_us))
            .collect()
    }

    fn board(&self, b: &BoardView, now_us: u64) -> BoardJson {
        let extra = self.extra.get(&b.hello.device);
        let last = extra.and_then(|e| e.recent.back());
        BoardJson {
            name: b.hello.device.clone(),
            bundle: b.hello.model.bundle.clone(),
            bundle_hash: b.hello.model.hash.clone(),
            signed_by: b.hello.model.signed_by.clone(),
            connected: b.connected,
            frames: b.frames,
            missing: b.missing,
            dropped: b.dropped_on_board,
            fps: b.fps(),
            total_ms: Latency {
                p50: quantile_ms(&b.total, 0.5),
                p90: quantile_ms(&b.total, 0.9),
                p99: quantile_ms(&b.total, 0.99),
            },
            kept_fraction: b.kept_now(),
            gmacs: last.map_or(0.0, |f| f.gmacs as f64),
            threshold: b.threshold,
            default_threshold: b.hello.model.threshold,
            keep_ratio: b.keep_ratio,
            budget_ms: b.budget_ms,
            budget_hit_rate: b.budget_ms.map(|_| b.budget_hit_rate()),
            paused: b.paused,
            temperature_c: b.health.as_ref().and_then(|h| h.cpu_temp_c),
            throttled: b
                .health
                .as_ref()
                .and_then(|h| h.throttled)
                .map(|t| t & 0xF != 0),
            last_seen_s: extra.map(|e| now_us.saturating_sub(e.last_seen_us) as f64 / 1e6),
            gated_blocks: last.map_or(0, |f| f.keep_maps.len()),
            thumbnail_seq: extra.and_then(|e| e.thumb.as_ref()).map(|t| t.0.seq),
            detections: last.map(|f| detections(b, f)).unwrap_or_default(),
            history: extra
                .map(|e| e.history.iter().cloned().collect())
                .unwrap_or_default(),
        }
    }

    pub fn detail(&self, name: &str, now_us: u64) -> Option<BoardDetail> {
        let b = self.view(name)?;
        let stages = STAGES
            .iter()
            .zip(&b.stages)
            .map(|(stage, h)| StageJson {
                stage,
                p50_ms: quantile_ms(h, 0.5),
                p99_ms: quantile_ms(h, 0.99),
                histogram: h
                    .iter_log(250, 2.0)
                    .map(|v| {
                        (
                            v.value_iterated_to() as f64 / 1000.0,
                            v.count_since_last_iteration(),
                        )
                    })
                    .collect(),
            })
            .collect();
        let window = self.extra.get(name).map(|e| &e.block_kept);
        let blocks = window.and_then(|w| w.back()).map_or(0, |v| v.len());
        let block_kept = (0..blocks)
            .map(|i| {
                let w = window.map(|w| w.iter().filter_map(|v| v.get(i)).collect::<Vec<_>>());
                let w = w.unwrap_or_default();
                w.iter().map(|&&v| v as f64).sum::<f64>() / w.len().max(1) as f64
            })
            .collect();
        Some(BoardDetail {
            board: self.board(b, now_us),
            stages,
            block_kept,
        })
    }

    /// The latest thumbnail with its frame and the board's hello, copied out so the drawing
    /// happens outside the lock the session loop takes.
    pub fn latest_thumb(&self, name: &str) -> Option<Thumb> {
        let (frame, jpeg) = self.extra.get(name)?.thumb.clone()?;
        let hello = self.view(name)?.hello.clone();
        Some(Thumb { frame, jpeg, hello })
    }
}

pub struct Thumb {
    frame: Frame,
    jpeg: Vec<u8>,
    hello: Hello,
}

impl Thumb {
    /// Drawn as `svit-host render` draws a frame, as a JPEG.
    pub fn draw_jpeg(&self, block: Option<usize>) -> anyhow::Result<Vec<u8>> {
        let (img, _) = crate::render::draw(&self.frame, &self.jpeg, Some(&self.hello), block)?;
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85).encode_image(&img)?;
        Ok(out)
    }
}
