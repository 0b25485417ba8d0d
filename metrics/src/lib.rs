//! Board figures in the Prometheus exposition format, named as Prometheus recommends (base
//! units, `_total` counters, one label per board, never one per frame). The host folds every
//! board's messages into one `Metrics`; `svit-edge run --metrics` folds its own.
//!
//! Invariant: a family's label set is bounded by the boards and stages, so a long run's
//! exposition does not grow with the frames.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use svit_protocol::{Frame, Health};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Board {
    board: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Stage {
    board: String,
    stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Build {
    version: String,
    bundle: String,
}

type F64Gauge = Gauge<f64, AtomicU64>;

fn stage_histogram() -> Histogram {
    // 100 µs .. about 3.3 s, doubling.
    Histogram::new(exponential_buckets(1e-4, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    frames: Family<Board, Counter>,
    missing: Family<Board, Counter>,
    dropped: Family<Board, Counter>,
    stages: Family<Stage, Histogram, fn() -> Histogram>,
    kept: Family<Board, F64Gauge>,
    gmacs: Family<Board, F64Gauge>,
    temperature: Family<Board, F64Gauge>,
    throttled: Family<Board, Gauge>,
    up: Family<Board, Gauge>,
    build: Family<Build, Gauge>,
    version: String,
    /// Per board: the last sequence number and the board's own dropped count, to turn them
    /// into counters that only grow (a board that restarts counts from 0 again).
    last: HashMap<String, (Option<u64>, u64)>,
}

impl Metrics {
    /// `version`: of the program serving the figures (`svit_build_info`).
    pub fn new(version: &str) -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            frames: Family::default(),
            missing: Family::default(),
            dropped: Family::default(),
            stages: Family::new_with_constructor(stage_histogram as fn() -> Histogram),
            kept: Family::default(),
            gmacs: Family::default(),
            temperature: Family::default(),
            throttled: Family::default(),
            up: Family::default(),
            build: Family::default(),
            version: version.to_string(),
            last: HashMap::new(),
            registry: Registry::default(),
        };
        registry.register(
            "svit_frames",
            "Frames received with detections",
            m.frames.clone(),
        );
        registry.register(
            "svit_frames_missing",
            "Frames never received: gaps in the board's sequence numbers",
            m.missing.clone(),
        );
        registry.register(
            "svit_frames_dropped",
            "Frames the board took from its camera but never sent",
            m.dropped.clone(),
        );
        registry.register_with_unit(
            "svit_stage_duration",
            "Time of each stage of a frame; total is decode to postprocess",
            Unit::Seconds,
            m.stages.clone(),
        );
        registry.register(
            "svit_kept_fraction",
            "Fraction of the tokens the gated blocks computed, last frame",
            m.kept.clone(),
        );
        registry.register(
            "svit_gmacs",
            "Multiply-accumulates of the last frame, in billions",
            m.gmacs.clone(),
        );
        registry.register_with_unit(
            "svit_board_temperature",
            "CPU temperature the board last reported",
            Unit::Celsius,
            m.temperature.clone(),
        );
        registry.register(
            "svit_board_throttled",
            "1 while the board reports throttling or under-voltage now",
            m.throttled.clone(),
        );
        registry.register(
            "svit_board_up",
            "1 while the board is connected",
            m.up.clone(),
        );
        registry.register(
            "svit_build_info",
            "The serving program's version and each board's bundle",
            m.build.clone(),
        );
        Metrics { registry, ..m }
    }

    fn key(board: &str) -> Board {
        Board {
            board: board.to_string(),
        }
    }

    /// A board connected (or went away) running `bundle`.
    pub fn up(&mut self, board: &str, bundle: &str, up: bool) {
        self.up.get_or_create(&Self::key(board)).set(up as i64);
        self.build
            .get_or_create(&Build {
                version: self.version.clone(),
                bundle: bundle.to_string(),
            })
            .set(1);
        if up {
            // A new connection numbers its frames from wherever the board is.
            self.last.entry(board.to_string()).or_default().0 = None;
        }
    }

    /// One frame of `board`, whose model has `tokens` tokens per image.
    pub fn frame(&mut self, board: &str, f: &Frame, tokens: u16) {
        let key = Self::key(board);
        self.frames.get_or_create(&key).inc();
        let (last_seq, last_dropped) = self.last.entry(board.to_string()).or_default();
        let gap = last_seq.map_or(0, |l| f.seq.saturating_sub(l + 1));
        // Created at 0 with the board's first frame: "none missing" is a figure too.
        self.missing.get_or_create(&key).inc_by(gap);
        *last_seq = Some(f.seq);
        let new = f
            .dropped_total
            .checked_sub(*last_dropped)
            .unwrap_or(f.dropped_total);
        self.dropped.get_or_create(&key).inc_by(new);
        *last_dropped = f.dropped_total;
        let total = ("total", f.times.total_us());
        // `svit_stage_duration_seconds{stage}`: each of `StageTimes::stages`, and the total.
        for (stage, us) in f.times.stages().into_iter().chain([total]) {
            self.stages
                .get_or_create(&Stage {
                    board: board.to_string(),
                    stage,
                })
                .observe(us as f64 / 1e6);
        }
        let gated: u32 = f.kept.iter().map(|&k| k as u32).sum();
        let kept = gated as f64 / (tokens.max(1) as f64 * f.kept.len().max(1) as f64);
        self.kept.get_or_create(&key).set(kept);
        self.gmacs.get_or_create(&key).set(f.gmacs as f64);
    }

    pub fn health(&mut self, board: &str, h: &Health) {
        let key = Self::key(board);
        if let Some(t) = h.cpu_temp_c {
            self.temperature.get_or_create(&key).set(t as f64);
        }
        if let Some(bits) = h.throttled {
            // The low bits are "now" (Raspberry Pi get_throttled); the high ones "since boot".
            self.throttled
                .get_or_create(&key)
                .set((bits & 0xF != 0) as i64);
        }
    }

    /// The exposition in the Prometheus text format 0.0.4 (`CONTENT_TYPE`), which every
    /// scraper and `promtool check metrics` read.
    pub fn encode(&self) -> String {
        let mut om = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut om, &self.registry);
        openmetrics_to_prometheus(&om)
    }
}

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// prometheus-client writes OpenMetrics, where a counter's family is named without `_total`
/// and `# UNIT` and `# EOF` lines exist; the Prometheus text format names the family as its
/// samples and has neither line.
fn openmetrics_to_prometheus(om: &str) -> String {
    let counters: Vec<&str> = om
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(om.len());
    for line in om.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let family = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let name = rest.split(' ').next()?;
            counters
                .contains(&name)
                .then(|| (*p, name, &rest[name.len()..]))
        });
        match family {
            Some((p, name, rest)) => out.push_str(&format!("{p}{name}_total{rest}")),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use svit_protocol::StageTimes;

    fn frame(seq: u64, dropped: u64) -> Frame {
        Frame {
            seq,
            capture_us: 0,
            age_ms: 0.0,
            width: 64,
            height: 64,
            times: StageTimes {
                decode: 1000,
                preprocess: 2000,
                blocks: vec![3000, 4000],
                ..Default::default()
            },
            detections: Vec::new(),
            kept: vec![64, 32],
            keep_maps: Vec::new(),
            gmacs: 1.5,
            dropped_total: dropped,
            threshold: 0.5,
            budget_ms: None,
        }
    }

    #[test]
    fn counters_grow_across_gaps_and_board_restarts() {
        let mut m = Metrics::new("0.1.0");
        m.up("pi", "demo", true);
        m.frame("pi", &frame(0, 0), 64);
        m.frame("pi", &frame(3, 2), 64);
        // The board restarted: its own counts start again.
        m.up("pi", "demo", true);
        m.frame("pi", &frame(0, 1), 64);
        let text = m.encode();
        for line in [
            "svit_frames_total{board=\"pi\"} 3",
            "svit_frames_missing_total{board=\"pi\"} 2",
            "svit_frames_dropped_total{board=\"pi\"} 3",
            "svit_kept_fraction{board=\"pi\"} 0.75",
            "svit_stage_duration_seconds_count{board=\"pi\",stage=\"total\"} 3",
            "svit_stage_duration_seconds_sum{board=\"pi\",stage=\"total\"} 0.03",
            "svit_build_info{version=\"0.1.0\",bundle=\"demo\"} 1",
            "svit_board_up{board=\"pi\"} 1",
            "# TYPE svit_frames_total counter",
        ] {
            assert!(text.contains(line), "no `{line}` in\n{text}");
        }
        assert!(!text.contains("# EOF") && !text.contains("# UNIT"));
    }
}
