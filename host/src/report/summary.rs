//! What a recording says per board: the figures of summary.json, computed from the recorded
//! frames only, and the per-stage breakdown the monitor and the plots show.

use serde::Serialize;
use std::collections::BTreeMap;
use svit_protocol::stats::Pct;
use svit_protocol::{EdgeMsg, Frame};

use crate::record::Record;

#[derive(Debug, Serialize)]
pub struct BoardSummary {
    pub device: String,
    pub bundle: String,
    /// The bundle's manifest hash and signing key id, as the board's hello named them.
    pub bundle_hash: String,
    pub signed_by: Option<String>,
    /// Tokens per image of the board's model.
    pub tokens: u16,
    pub frames: usize,
    /// Sequence numbers never received (lost between board and host).
    pub missing: u64,
    /// Frames the board took but never sent (`Frame::dropped_total`: replaced in a full queue,
    /// link slow or down), summed over board restarts.
    pub dropped_on_board: u64,
    /// Failed captures and frames the model failed on, as the board's last health reported.
    pub camera_errors: u64,
    pub inference_errors: u64,
    pub fps: f64,
    pub total_ms: Pct,
    pub backbone_ms: Pct,
    /// The model alone: embed, gates, gather/scatter, blocks, head.
    pub inference_ms: Pct,
    /// Camera time of a frame (for a triggered camera: exposure and readout).
    pub capture_ms: Pct,
    /// Per frame, decode + preprocess + postprocess + encode over inference (mean).
    pub outside_inference_fraction: f64,
    /// The board's latency budget (its last frame's), and the fraction of the frames run
    /// under a budget whose total held it.
    pub budget_ms: Option<f32>,
    pub budget_hit_rate: Option<f64>,
    /// How old frames were when inference began (camera capture time to inference start).
    pub age_ms: Pct,
    /// Capture done -> frame recorded by the host. Both clocks must agree (one machine, or
    /// boards with NTP): only meaningful then.
    pub capture_to_recv_ms: Pct,
    pub kept_fraction: f64,
    pub gmacs: f64,
    pub detections_per_frame: f64,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub boards: Vec<BoardSummary>,
    /// `svit-edge bench --connect` reports received, as the board wrote them.
    pub bench: Vec<BenchEntry>,
}

#[derive(Debug, Serialize)]
pub struct BenchEntry {
    pub device: String,
    pub recv_us: u64,
    pub report: svit_protocol::BenchReport,
}

pub fn total_ms(f: &Frame) -> f64 {
    ms(f.times.total_us())
}

pub(super) fn ms(us: u32) -> f64 {
    us as f64 / 1000.0
}

fn inference_ms(f: &Frame) -> f64 {
    ms(f.times.inference_us())
}

/// Decode, pre- and post-processing and the thumbnail's encoding.
fn outside_inference_ms(f: &Frame) -> f64 {
    ms(f.times.total_us() - f.times.inference_us() + f.times.encode)
}

pub fn backbone_ms(f: &Frame) -> f64 {
    ms(f.times.backbone_us())
}

pub fn kept_fraction(f: &Frame, tokens: u16) -> f64 {
    f.kept.iter().map(|&k| k as f64).sum::<f64>()
        / (tokens.max(1) as f64 * f.kept.len().max(1) as f64)
}

pub fn summarize(records: &[Record]) -> Summary {
    let mut by_dev: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for r in records {
        by_dev.entry(&r.device).or_default().push(r);
    }
    let boards = by_dev
        .into_iter()
        .map(|(device, recs)| {
            let hello = recs.iter().rev().find_map(|r| {
                if let EdgeMsg::Hello(h) = &r.msg {
                    Some(h)
                } else {
                    None
                }
            });
            let tokens = hello.map_or(1, |h| h.model.tokens);
            let frames: Vec<(&Record, &Frame)> = recs
                .iter()
                .filter_map(|r| {
                    if let EdgeMsg::Frame(f) = &r.msg {
                        Some((*r, f))
                    } else {
                        None
                    }
                })
                .collect();
            let (mut missing, mut dropped, mut run_dropped) = (0u64, 0u64, 0u64);
            let mut last: Option<u64> = None;
            for (_, f) in &frames {
                match last {
                    Some(l) if f.seq > l => missing += f.seq - l - 1,
                    Some(_) => {
                        // The board restarted (sequence numbers begin again).
                        dropped += run_dropped;
                        run_dropped = 0;
                    }
                    None => {}
                }
                run_dropped = run_dropped.max(f.dropped_total);
                last = Some(f.seq);
            }
            dropped += run_dropped;
            let health = recs.iter().rev().find_map(|r| match &r.msg {
                EdgeMsg::Health(h) => Some(h),
                _ => None,
            });
            let n = frames.len().max(1) as f64;
            let span = match (frames.first(), frames.last()) {
                (Some(a), Some(b)) if b.0.recv_us > a.0.recv_us => {
                    (b.0.recv_us - a.0.recv_us) as f64 / 1e6
                }
                _ => 0.0,
            };
            BoardSummary {
                device: device.to_string(),
                bundle: hello.map(|h| h.model.bundle.clone()).unwrap_or_default(),
                bundle_hash: hello.map(|h| h.model.hash.clone()).unwrap_or_default(),
                signed_by: hello.and_then(|h| h.model.signed_by.clone()),
                tokens,
                frames: frames.len(),
                missing,
                dropped_on_board: dropped,
                camera_errors: health.map_or(0, |h| h.camera_errors),
                inference_errors: health.map_or(0, |h| h.inference_errors),
                fps: if span > 0.0 {
                    (frames.len() - 1) as f64 / span
                } else {
                    0.0
                },
                total_ms: Pct::of(&frames.iter().map(|(_, f)| total_ms(f)).collect::<Vec<_>>()),
                backbone_ms: Pct::of(
                    &frames
                        .iter()
                        .map(|(_, f)| backbone_ms(f))
                        .collect::<Vec<_>>(),
                ),
                inference_ms: Pct::of(
                    &frames
                        .iter()
                        .map(|(_, f)| inference_ms(f))
                        .collect::<Vec<_>>(),
                ),
                capture_ms: Pct::of(
                    &frames
                        .iter()
                        .map(|(_, f)| f.times.capture as f64 / 1000.0)
                        .collect::<Vec<_>>(),
                ),
                outside_inference_fraction: frames
                    .iter()
                    .map(|(_, f)| outside_inference_ms(f) / inference_ms(f).max(1e-3))
                    .sum::<f64>()
                    / n,
                budget_ms: frames.last().and_then(|(_, f)| f.budget_ms),
                budget_hit_rate: {
                    let under: Vec<bool> = frames
                        .iter()
                        .filter_map(|(_, f)| {
                            f.budget_ms.map(|b| f.times.total_us() as f32 / 1000.0 <= b)
                        })
                        .collect();
                    (!under.is_empty())
                        .then(|| under.iter().filter(|&&h| h).count() as f64 / under.len() as f64)
                },
                age_ms: Pct::of(
                    &frames
                        .iter()
                        .map(|(_, f)| f.age_ms as f64)
                        .collect::<Vec<_>>(),
                ),
                capture_to_recv_ms: Pct::of(
                    &frames
                        .iter()
                        .map(|(r, f)| (r.recv_us as f64 - f.capture_us as f64) / 1000.0)
                        .collect::<Vec<_>>(),
                ),
                kept_fraction: frames
                    .iter()
                    .map(|(_, f)| kept_fraction(f, tokens))
                    .sum::<f64>()
                    / n,
                gmacs: frames.iter().map(|(_, f)| f.gmacs as f64).sum::<f64>() / n,
                detections_per_frame: frames
                    .iter()
                    .map(|(_, f)| f.detections.len() as f64)
                    .sum::<f64>()
                    / n,
            }
        })
        .collect();
    let bench = records
        .iter()
        .filter_map(|r| match &r.msg {
            EdgeMsg::Bench(report) => Some(BenchEntry {
                device: r.device.clone(),
                recv_us: r.recv_us,
                report: report.clone(),
            }),
            _ => None,
        })
        .collect();
    Summary { boards, bench }
}

/// The stages shown side by side (monitor, plots): decode is shown with preprocessing.
pub const STAGES: [&str; 8] = [
    "capture",
    "preprocess",
    "embed",
    "gates",
    "gather/scatter",
    "blocks",
    "head",
    "postprocess",
];
pub fn stage_us(f: &Frame) -> [u32; 8] {
    let t = &f.times;
    [
        t.capture,
        t.decode + t.preprocess,
        t.embed,
        t.gates,
        t.gather_scatter,
        t.blocks.iter().sum(),
        t.head,
        t.postprocess,
    ]
}
