//! The live terminal monitor: per-board state folded from received records (bounded: HDR
//! histograms and short ring buffers) and the keys that become control messages; `draw` draws
//! it with ratatui. `Monitor` knows nothing of sockets or terminals, so a test drives it
//! headless.

use std::collections::VecDeque;

use hdrhistogram::Histogram;
use svit_protocol::{EdgeMsg, Frame, Health, Hello, HostMsg};

use crate::record::Record;
use crate::report::{stage_us, STAGES};

mod draw;

const HISTORY: usize = 120;
const LOG_LINES: usize = 6;

pub struct BoardView {
    pub conn: u32,
    pub hello: Hello,
    pub connected: bool,
    pub frames: u64,
    pub missing: u64,
    last_seq: Option<u64>,
    pub dropped_on_board: u64,
    /// Frames per second over the recent window of receive times.
    recv_times: VecDeque<u64>,
    pub stages: Vec<Histogram<u64>>,
    pub total: Histogram<u64>,
    pub total_recent: VecDeque<u64>,
    pub kept_recent: VecDeque<u64>,
    pub last_detections: Vec<(String, f32)>,
    pub health: Option<Health>,
    pub threshold: f32,
    /// The fixed keep ratio this monitor last set (frames do not carry it).
    pub keep_ratio: Option<f32>,
    /// The board's latency budget, as its last frame said, and whether the recent frames held
    /// it.
    pub budget_ms: Option<f32>,
    budget_recent: VecDeque<bool>,
    pub paused: bool,
}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 60 s at 3 significant digits: a few tens of kB per histogram, whatever the run length.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("static histogram bounds")
}

impl BoardView {
    fn new(conn: u32, hello: Hello) -> Self {
        BoardView {
            conn,
            threshold: hello.model.threshold,
            connected: true,
            frames: 0,
            missing: 0,
            last_seq: None,
            dropped_on_board: 0,
            recv_times: VecDeque::new(),
            stages: (0..STAGES.len()).map(|_| histogram()).collect(),
            total: histogram(),
            total_recent: VecDeque::new(),
            kept_recent: VecDeque::new(),
            last_detections: Vec::new(),
            health: None,
            hello,
            keep_ratio: None,
            budget_ms: None,
            budget_recent: VecDeque::new(),
            paused: false,
        }
    }

    fn frame(&mut self, recv_us: u64, f: &Frame) {
        self.frames += 1;
        if let Some(l) = self.last_seq {
            if f.seq > l {
                self.missing += f.seq - l - 1;
            }
        }
        self.last_seq = Some(f.seq);
        self.dropped_on_board = f.dropped_total;
        self.threshold = f.threshold;
        if f.budget_ms != self.budget_ms {
            self.budget_recent.clear();
        }
        self.budget_ms = f.budget_ms;
        if let Some(b) = f.budget_ms {
            let held = f.times.total_us() as f32 / 1000.0 <= b;
            push_bounded(&mut self.budget_recent, held, HISTORY);
        }
        push_bounded(&mut self.recv_times, recv_us, HISTORY);
        let st = stage_us(f);
        for (h, v) in self.stages.iter_mut().zip(st) {
            h.saturating_record(v.max(1) as u64);
        }
        let total = f.times.total_us() as u64;
        self.total.saturating_record(total.max(1));
        push_bounded(&mut self.total_recent, total, HISTORY);
        let kept = crate::report::kept_fraction(f, self.hello.model.tokens);
        push_bounded(
            &mut self.kept_recent,
            (kept * 100.0).round() as u64,
            HISTORY,
        );
        self.last_detections = f
            .detections
            .iter()
            .take(8)
            .map(|d| {
                let label = self
                    .hello
                    .model
                    .labels
                    .get(d.class as usize)
                    .cloned()
                    .unwrap_or_else(|| format!("class {}", d.class));
                (label, d.score)
            })
            .collect();
    }

    pub fn fps(&self) -> f64 {
        match (self.recv_times.front(), self.recv_times.back()) {
            (Some(a), Some(b)) if b > a => {
                (self.recv_times.len() - 1) as f64 / ((b - a) as f64 / 1e6)
            }
            _ => 0.0,
        }
    }

    /// The fraction of the recent frames (under the current budget) that held it.
    pub fn budget_hit_rate(&self) -> f64 {
        let n = self.budget_recent.len().max(1) as f64;
        self.budget_recent.iter().filter(|&&h| h).count() as f64 / n
    }

    pub fn kept_now(&self) -> f64 {
        self.kept_recent.back().map_or(0.0, |&k| k as f64 / 100.0)
    }
}

/// Quantile `q` of a histogram of µs, in ms (0 when empty).
pub fn quantile_ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.value_at_quantile(q) as f64 / 1000.0
    }
}

fn push_bounded<T>(q: &mut VecDeque<T>, v: T, cap: usize) {
    if q.len() == cap {
        q.pop_front();
    }
    q.push_back(v);
}

#[derive(Default)]
pub struct Monitor {
    pub boards: Vec<BoardView>,
    pub selected: usize,
    pub log: VecDeque<String>,
    pub quit: bool,
}

impl Monitor {
    pub fn connected(&mut self, conn: u32, hello: Hello) {
        self.note(format!(
            "{} connected (bundle {})",
            hello.device, hello.model.bundle
        ));
        // A board that reconnects keeps its panel (matched by name).
        if let Some(b) = self
            .boards
            .iter_mut()
            .find(|b| b.hello.device == hello.device)
        {
            b.conn = conn;
            b.connected = true;
            b.hello = hello;
            b.last_seq = None;
        } else {
            self.boards.push(BoardView::new(conn, hello));
        }
    }

    pub fn disconnected(&mut self, conn: u32, reason: &str) {
        if let Some(b) = self.boards.iter_mut().find(|b| b.conn == conn) {
            b.connected = false;
            let name = b.hello.device.clone();
            self.note(format!("{name} disconnected: {reason}"));
        }
    }

    pub fn note(&mut self, line: String) {
        push_bounded(&mut self.log, line, LOG_LINES);
    }

    pub fn record(&mut self, r: &Record) {
        if let EdgeMsg::Hello(h) = &r.msg {
            if !self.boards.iter().any(|b| b.conn == r.conn) {
                self.connected(r.conn, h.clone());
            }
            return;
        }
        let Some(b) = self.boards.iter_mut().find(|b| b.conn == r.conn) else {
            return;
        };
        match &r.msg {
            EdgeMsg::Frame(f) => b.frame(r.recv_us, f),
            EdgeMsg::Health(h) => b.health = Some(h.clone()),
            EdgeMsg::Bench(_) => {
                let line = format!("{}: bench report received (in the report)", b.hello.device);
                self.note(line);
            }
            EdgeMsg::Log(l) => {
                let line = format!("{}: {:?}: {}", b.hello.device, l.level, l.text);
                self.note(line);
            }
            EdgeMsg::Push(p) => {
                use svit_protocol::PushStatus;
                let line = match p {
                    PushStatus::Switched { model, seq }
                    | PushStatus::RolledBack { model, seq, .. } => {
                        b.hello.model = model.clone();
                        format!(
                            "{}: bundle {} ({}) from frame {seq}",
                            b.hello.device, model.bundle, model.hash
                        )
                    }
                    PushStatus::Refused { reason } => {
                        format!("{}: push refused: {reason}", b.hello.device)
                    }
                    _ => return,
                };
                self.note(line);
            }
            _ => {}
        }
    }

    /// A key press: `Some((conn, message))` when it asks a board to change something.
    pub fn key(&mut self, c: char) -> Option<(u32, HostMsg)> {
        let n = self.boards.len();
        match c {
            'q' => {
                self.quit = true;
                None
            }
            'j' | 'J' => {
                self.selected = (self.selected + 1) % n.max(1);
                None
            }
            'k' | 'K' => {
                self.selected = (self.selected + n.max(1) - 1) % n.max(1);
                None
            }
            '+' | '-' | 'd' | '[' | ']' | 't' | '<' | '>' | 'n' | 'p' | 'r' | 's' => {
                let b = self.boards.get_mut(self.selected).filter(|b| b.connected)?;
                let cur = b.threshold;
                // Tenths, so repeated presses land on round values.
                let step =
                    |v: f32, d: f32, lo: f32| ((v + d) * 10.0).round().clamp(lo, 10.0) / 10.0;
                let msg = match c {
                    '+' => HostMsg::SetThreshold(step(cur, 0.1, 0.0)),
                    '-' => HostMsg::SetThreshold(step(cur, -0.1, 0.0)),
                    'd' => HostMsg::SetThreshold(0.0),
                    // A fixed keep ratio at every gated block instead of the threshold.
                    '[' | ']' => {
                        let d = if c == ']' { 0.1 } else { -0.1 };
                        let r = step(b.keep_ratio.unwrap_or(0.5), d, 1.0);
                        b.keep_ratio = Some(r);
                        HostMsg::SetKeepRatio(Some(r))
                    }
                    't' => {
                        b.keep_ratio = None;
                        HostMsg::SetKeepRatio(None)
                    }
                    // A latency budget 10% tighter or looser, from the board's p95 at first.
                    '<' | '>' => {
                        let from = b
                            .budget_ms
                            .unwrap_or_else(|| quantile_ms(&b.total, 0.95) as f32);
                        let f = if c == '<' { 0.9 } else { 1.1 };
                        HostMsg::SetBudget(Some((from * f * 10.0).round().max(1.0) / 10.0))
                    }
                    'n' => HostMsg::SetBudget(None),
                    'p' => {
                        b.paused = true;
                        HostMsg::Pause
                    }
                    'r' => {
                        b.paused = false;
                        HostMsg::Resume
                    }
                    _ => HostMsg::Snapshot,
                };
                let conn = b.conn;
                let device = b.hello.device.clone();
                self.note(format!("{device}: sent {msg:?}"));
                Some((conn, msg))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    use svit_protocol::{CompactMask, Detection, ModelInfo, StageTimes};

    fn hello(device: &str) -> Hello {
        Hello::edge(
            device,
            ModelInfo {
                bundle: "demo".into(),
                labels: vec!["circle".into(), "star".into()],
                input_size: 256,
                tokens: 256,
                blocks: 2,
                threshold: 0.5,
                ..Default::default()
            },
        )
    }

    fn frame(seq: u64, total_ms: u32) -> Frame {
        Frame {
            seq,
            capture_us: 0,
            age_ms: 0.0,
            width: 256,
            height: 256,
            times: StageTimes {
                capture: 500,
                decode: 0,
                preprocess: 100,
                embed: 1000,
                gates: 200,
                gather_scatter: 100,
                blocks: vec![total_ms * 1000 - 1500, 0],
                head: 100,
                postprocess: 0,
                encode: 0,
            },
            detections: vec![Detection {
                class: 1,
                score: 0.87,
                bbox: [1.0, 2.0, 30.0, 40.0],
                mask: CompactMask {
                    x0: 0,
                    y0: 0,
                    w: 0,
                    h: 0,
                    cell: [4.0, 4.0],
                    bits: vec![],
                },
            }],
            kept: vec![256, 128],
            keep_maps: vec![],
            gmacs: 0.3,
            dropped_total: 2,
            threshold: 0.5,
            budget_ms: None,
        }
    }

    fn screen(m: &Monitor) -> String {
        let mut t = Terminal::new(TestBackend::new(110, 40)).unwrap();
        t.draw(|f| m.draw(f)).unwrap();
        let buf = t.backend().buffer().clone();
        (0..buf.area.height)
            .map(|y| {
                (0..buf.area.width)
                    .map(|x| buf[(x, y)].symbol().to_string())
                    .collect::<String>()
                    + "\n"
            })
            .collect()
    }

    fn rec(conn: u32, recv_us: u64, msg: EdgeMsg) -> Record {
        Record {
            recv_us,
            conn,
            device: String::new(),
            msg,
        }
    }

    #[test]
    fn monitor_shows_boards_latency_detections_and_sends_control() {
        let mut m = Monitor::default();
        m.connected(1, hello("pi-kitchen"));
        m.connected(2, hello("jetson-door"));
        // Board 1: 20 frames at 10 fps, 20 ms each, frame 7 lost on the way.
        for seq in (0..21).filter(|&s| s != 7) {
            m.record(&rec(1, seq * 100_000, EdgeMsg::Frame(frame(seq, 20))));
        }
        let s = screen(&m);
        assert!(s.contains("pi-kitchen") && s.contains("jetson-door"), "{s}");
        assert!(s.contains("star"), "latest detection label shown:\n{s}");
        assert!(s.contains("0.87"));
        // 20 frames received over 2 s (one lost): 19 intervals / 2 s.
        assert!(s.contains("9.5"), "fps from receive times:\n{s}");
        assert!(s.contains("20.0"), "p50 latency:\n{s}");
        assert_eq!(m.boards[0].missing, 1);
        assert!((m.boards[0].kept_now() - 0.75).abs() < 0.01);

        // Keys act on the selected board.
        assert_eq!(m.key('+'), Some((1, HostMsg::SetThreshold(0.6))));
        assert_eq!(m.key('j'), None);
        assert_eq!(m.key('d'), Some((2, HostMsg::SetThreshold(0.0))));
        assert_eq!(m.key('p'), Some((2, HostMsg::Pause)));
        m.disconnected(2, "board closed the connection");
        assert_eq!(m.key('r'), None, "nothing is sent to a board that is gone");
        let s = screen(&m);
        assert!(s.contains("gone") && s.contains("disconnected"), "{s}");
        m.key('q');
        assert!(m.quit);
    }

    /// The monitor's total latency and summary.json's are one definition (decode included):
    /// on the same records their p50 agree to the histogram's resolution (0.1%), and so to the
    /// 0.1 ms the monitor shows.
    #[test]
    fn monitor_total_p50_is_the_summary_p50() {
        let mut records = vec![rec(1, 0, EdgeMsg::Hello(hello("pi")))];
        for seq in 0..41u64 {
            let EdgeMsg::Frame(mut f) = EdgeMsg::Frame(frame(seq, 15 + (seq * 7 % 11) as u32))
            else {
                unreachable!()
            };
            // A JPEG camera: decoding is part of the total.
            f.times.decode = 2_000 + 97 * (seq as u32 % 13);
            records.push(rec(1, 100_000 * (seq + 1), EdgeMsg::Frame(f)));
        }
        for r in &mut records {
            r.device = "pi".into();
        }
        let mut m = Monitor::default();
        for r in &records {
            m.record(r);
        }
        let monitor = quantile_ms(&m.boards[0].total, 0.5);
        let summary = crate::report::summarize(&records).boards[0].total_ms.p50;
        assert!(
            (monitor - summary).abs() <= 1e-3 * summary,
            "monitor {monitor} ms, summary.json {summary} ms"
        );
        assert_eq!(format!("{monitor:.1}"), format!("{summary:.1}"));
    }

    #[test]
    fn threshold_keys_start_from_the_bundle_default_and_keep_ratio_keys_send_ratios() {
        let mut m = Monitor::default();
        let mut h = hello("pi");
        h.model.threshold = 0.3;
        m.connected(1, h);
        // No frame yet: the hello's threshold is the starting point.
        assert_eq!(m.key('+'), Some((1, HostMsg::SetThreshold(0.4))));
        assert_eq!(m.key(']'), Some((1, HostMsg::SetKeepRatio(Some(0.6)))));
        assert_eq!(m.key('['), Some((1, HostMsg::SetKeepRatio(Some(0.5)))));
        for _ in 0..9 {
            m.key('[');
        }
        assert_eq!(m.boards[0].keep_ratio, Some(0.1), "the ratio stops at 0.1");
        assert_eq!(m.key('t'), Some((1, HostMsg::SetKeepRatio(None))));
    }

    #[test]
    fn budget_is_shown_with_its_hit_rate_and_keys_set_it() {
        let mut m = Monitor::default();
        m.connected(1, hello("pi"));
        for seq in 0..10u64 {
            let EdgeMsg::Frame(mut f) = EdgeMsg::Frame(frame(seq, if seq < 8 { 15 } else { 25 }))
            else {
                unreachable!()
            };
            f.budget_ms = Some(20.0);
            m.record(&rec(1, seq * 100_000, EdgeMsg::Frame(f)));
        }
        assert!((m.boards[0].budget_hit_rate() - 0.8).abs() < 1e-9);
        let s = screen(&m);
        assert!(s.contains("20ms 80%"), "{s}");
        assert_eq!(m.key('<'), Some((1, HostMsg::SetBudget(Some(18.0)))));
        assert_eq!(m.key('>'), Some((1, HostMsg::SetBudget(Some(22.0)))));
        assert_eq!(m.key('n'), Some((1, HostMsg::SetBudget(None))));
    }
}
