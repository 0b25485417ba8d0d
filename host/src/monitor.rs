//! The live terminal monitor: per-board state folded from received records (bounded: HDR
//! histograms and short ring buffers), drawn with ratatui, and the keys that become control
//! messages. `Monitor` knows nothing of sockets or terminals, so a test drives it headless.

use std::collections::VecDeque;

use hdrhistogram::Histogram;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Sparkline, Table};
use ratatui::Frame as TuiFrame;
use svit_protocol::{EdgeMsg, Frame, Health, Hello, HostMsg};

use crate::record::Record;

/// Stages shown per board, in pipeline order.
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
const HISTORY: usize = 120;
const LOG_LINES: usize = 6;

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
            hello,
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
            threshold: f32::NAN,
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
        push_bounded(&mut self.recv_times, recv_us, HISTORY);
        let st = stage_us(f);
        for (h, v) in self.stages.iter_mut().zip(st) {
            h.saturating_record(v.max(1) as u64);
        }
        let total: u64 = st[1..].iter().map(|&v| v as u64).sum();
        self.total.saturating_record(total.max(1));
        push_bounded(&mut self.total_recent, total, HISTORY);
        let kept = crate::report::kept_fraction(f, self.hello.tokens);
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

    pub fn kept_now(&self) -> f64 {
        self.kept_recent.back().map_or(0.0, |&k| k as f64 / 100.0)
    }
}

fn push_bounded<T>(q: &mut VecDeque<T>, v: T, cap: usize) {
    if q.len() == cap {
        q.pop_front();
    }
    q.push_back(v);
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.value_at_quantile(q) as f64 / 1000.0
    }
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
            hello.device, hello.bundle
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
            '+' | '-' | 'd' | 'p' | 'r' | 's' => {
                let b = self.boards.get_mut(self.selected).filter(|b| b.connected)?;
                let cur = if b.threshold.is_finite() {
                    b.threshold
                } else {
                    0.5
                };
                let msg = match c {
                    '+' => HostMsg::SetThreshold(((cur + 0.1) * 10.0).round().min(10.0) / 10.0),
                    '-' => HostMsg::SetThreshold(((cur - 0.1) * 10.0).round().max(0.0) / 10.0),
                    'd' => HostMsg::SetThreshold(0.0),
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

    pub fn draw(&self, f: &mut TuiFrame) {
        let [title, table, detail, log] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(self.boards.len() as u16 + 3),
            Constraint::Min(10),
            Constraint::Length(LOG_LINES as u16 + 2),
        ])
        .areas(f.area());
        f.render_widget(
            Paragraph::new(format!(
                "svit-host: {} board(s)   j/k select  +/- threshold  d dense  p pause  r resume  s snapshot  q quit",
                self.boards.len()
            ))
            .style(Style::default().add_modifier(Modifier::BOLD)),
            title,
        );
        self.draw_table(f, table);
        if let Some(b) = self.boards.get(self.selected) {
            draw_detail(f, detail, b);
        }
        let lines: Vec<Line> = self.log.iter().map(|l| Line::from(l.as_str())).collect();
        f.render_widget(
            Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title("events")),
            log,
        );
    }

    fn draw_table(&self, f: &mut TuiFrame, area: Rect) {
        let header = Row::new([
            "board", "state", "fps", "p50 ms", "p95 ms", "p99 ms", "kept", "thr", "dropped",
            "missing", "temp", "throttle",
        ])
        .style(Style::default().add_modifier(Modifier::BOLD));
        let rows = self.boards.iter().enumerate().map(|(i, b)| {
            let state = match (b.connected, b.paused) {
                (false, _) => "gone",
                (true, true) => "paused",
                _ => "live",
            };
            let temp = b
                .health
                .as_ref()
                .and_then(|h| h.cpu_temp_c)
                .map_or("-".into(), |t| format!("{t:.0}C"));
            let throttle = b
                .health
                .as_ref()
                .and_then(|h| h.throttled)
                .map_or("-".into(), |t| format!("{t:#x}"));
            let row = Row::new([
                Cell::from(b.hello.device.clone()),
                Cell::from(state),
                Cell::from(format!("{:.1}", b.fps())),
                Cell::from(format!("{:.1}", ms(&b.total, 0.5))),
                Cell::from(format!("{:.1}", ms(&b.total, 0.95))),
                Cell::from(format!("{:.1}", ms(&b.total, 0.99))),
                Cell::from(format!("{:.2}", b.kept_now())),
                Cell::from(if b.threshold.is_finite() {
                    format!("{:.1}", b.threshold)
                } else {
                    "-".into()
                }),
                Cell::from(b.dropped_on_board.to_string()),
                Cell::from(b.missing.to_string()),
                Cell::from(temp),
                Cell::from(throttle),
            ]);
            if i == self.selected {
                row.style(Style::default().bg(Color::DarkGray))
            } else {
                row
            }
        });
        let widths = [
            Constraint::Length(18),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(5),
            Constraint::Length(4),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(5),
            Constraint::Length(8),
        ];
        f.render_widget(
            Table::new(rows, widths)
                .header(header)
                .block(Block::default().borders(Borders::ALL).title("boards")),
            area,
        );
    }
}

fn draw_detail(f: &mut TuiFrame, area: Rect, b: &BoardView) {
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(area);
    let [stages, dets] = Layout::vertical([
        Constraint::Length(STAGES.len() as u16 + 3),
        Constraint::Min(3),
    ])
    .areas(left);
    let rows = STAGES.iter().zip(&b.stages).map(|(name, h)| {
        Row::new([
            name.to_string(),
            format!("{:.2}", ms(h, 0.5)),
            format!("{:.2}", ms(h, 0.95)),
            format!("{:.2}", ms(h, 0.99)),
            format!("{:.2}", if h.is_empty() { 0.0 } else { h.mean() / 1000.0 }),
        ])
    });
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(15),
                Constraint::Length(8),
                Constraint::Length(8),
                Constraint::Length(8),
                Constraint::Length(8),
            ],
        )
        .header(
            Row::new(["stage", "p50 ms", "p95 ms", "p99 ms", "mean"])
                .style(Style::default().add_modifier(Modifier::BOLD)),
        )
        .block(Block::default().borders(Borders::ALL).title(format!(
            "{}: latency per stage (all frames)",
            b.hello.device
        ))),
        stages,
    );
    let det_lines: Vec<Line> = if b.last_detections.is_empty() {
        vec![Line::from("no detections in the last frame")]
    } else {
        b.last_detections
            .iter()
            .map(|(l, s)| Line::from(format!("{l:<10} {s:.2}")))
            .collect()
    };
    f.render_widget(
        Paragraph::new(det_lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title("latest detections"),
        ),
        dets,
    );
    let [lat, kept] =
        Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(right);
    let recent: Vec<u64> = b.total_recent.iter().copied().collect();
    f.render_widget(
        Sparkline::default()
            .data(&recent)
            .block(Block::default().borders(Borders::ALL).title(format!(
                "latency, last {} frames (max {:.1} ms)",
                recent.len(),
                recent.iter().max().copied().unwrap_or(0) as f64 / 1000.0
            ))),
        lat,
    );
    let kept_recent: Vec<u64> = b.kept_recent.iter().copied().collect();
    f.render_widget(
        Sparkline::default().data(&kept_recent).max(100).block(
            Block::default()
                .borders(Borders::ALL)
                .title(format!("kept tokens, now {:.0}%", b.kept_now() * 100.0)),
        ),
        kept,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    use svit_protocol::{CompactMask, Detection, Role, StageTimes};

    fn hello(device: &str) -> Hello {
        Hello {
            protocol_version: svit_protocol::PROTOCOL_VERSION,
            schema_hash: svit_protocol::schema_hash(),
            role: Role::Edge,
            device: device.into(),
            bundle: "demo".into(),
            labels: vec!["circle".into(), "star".into()],
            input_size: 256,
            tokens: 256,
            blocks: 2,
            nonce: [0; 16],
        }
    }

    fn frame(seq: u64, total_ms: u32) -> Frame {
        Frame {
            seq,
            capture_us: 0,
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
}
