//! What `listen`, `demo` and `replay` show while they run: the ratatui monitor when stdout is a
//! terminal, otherwise JSON lines per frame, a JSON summary line per period, or nothing. A
//! consumer of the session's events; owns the terminal (and reads its keys on a thread of
//! their own, `spawn_keys`) and gives it back on drop, also on an error path.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use ratatui::crossterm::event::{self as term, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::DefaultTerminal;
use svit_protocol::EdgeMsg;

use crate::event::{Action, BoardEvent, Consumer, Event};
use crate::monitor::Monitor;
use crate::record::Record;

/// While the monitor owns the screen, log lines would tear it: the log writer drops them (the
/// monitor's event panel shows connects, disconnects and refusals instead).
pub static SCREEN_TAKEN: AtomicBool = AtomicBool::new(false);

pub enum Output {
    Monitor {
        term: DefaultTerminal,
        mon: Monitor,
        last_draw: Instant,
    },
    JsonLines,
    /// One JSON line per period: `report::Summary` of the frames received in that period.
    Periodic {
        every: Duration,
        since: Instant,
        /// The latest hello of each device (a board that reconnects replaces its own).
        hellos: Vec<Record>,
        window: VecDeque<Record>,
    },
    Quiet,
}

/// What to print when stdout is not a terminal (or, for `Quiet` and `Summary`, even when it is).
#[derive(Clone, Copy, Debug)]
pub enum Script {
    /// One JSON line per frame (the monitor instead on a terminal).
    Lines,
    /// One JSON summary line every this many seconds.
    Summary(f64),
    Quiet,
}

/// Frames held for one periodic summary; beyond it the oldest of the period are dropped (the
/// recording still has them).
const WINDOW_FRAMES: usize = 50_000;

pub struct Live(pub Output);

impl Live {
    pub fn new(script: Script) -> Result<Self> {
        let out = if let Script::Quiet = script {
            Output::Quiet
        } else if let Script::Summary(secs) = script {
            Output::Periodic {
                every: Duration::from_secs_f64(secs.max(0.1)),
                since: Instant::now(),
                hellos: Vec::new(),
                window: VecDeque::new(),
            }
        } else if std::io::stdout().is_terminal() {
            let term = ratatui::try_init()?;
            SCREEN_TAKEN.store(true, Ordering::Relaxed);
            Output::Monitor {
                term,
                mon: Monitor::default(),
                last_draw: Instant::now() - Duration::from_secs(1),
            }
        } else {
            Output::JsonLines
        };
        Ok(Live(out))
    }

    /// Whether this output reads keys (the monitor on a terminal).
    pub fn takes_keys(&self) -> bool {
        matches!(self.0, Output::Monitor { .. })
    }

    pub fn note(&mut self, line: String) {
        if let Output::Monitor { mon, .. } = &mut self.0 {
            mon.note(line);
        }
    }

    fn record(&mut self, r: &Record) {
        match &mut self.0 {
            Output::Monitor { mon, .. } => mon.record(r),
            Output::JsonLines => {
                if let EdgeMsg::Frame(f) = &r.msg {
                    println!("{}", frame_line(&r.device, f));
                }
            }
            Output::Periodic { hellos, window, .. } => match &r.msg {
                EdgeMsg::Hello(_) => match hellos.iter_mut().find(|h| h.device == r.device) {
                    Some(h) => *h = r.clone(),
                    None => hellos.push(r.clone()),
                },
                EdgeMsg::Frame(_) => {
                    if window.len() == WINDOW_FRAMES {
                        window.pop_front();
                    }
                    window.push_back(r.clone());
                }
                _ => {}
            },
            Output::Quiet => {}
        }
    }

    /// Prints the period's summary line and starts the next period.
    fn flush_period(&mut self) {
        if let Output::Periodic {
            since,
            hellos,
            window,
            ..
        } = &mut self.0
        {
            let seconds = since.elapsed().as_secs_f64();
            let mut recs = hellos.clone();
            recs.extend(window.drain(..));
            let s = crate::report::summarize(&recs);
            let line = serde_json::json!({ "period_s": seconds, "boards": s.boards });
            println!("{line}");
            *since = Instant::now();
        }
    }

    /// Redraws (at most ten times a second) and ends a summary period that is due.
    fn tick(&mut self) -> Result<()> {
        if let Output::Periodic { every, since, .. } = &self.0 {
            if since.elapsed() >= *every {
                self.flush_period();
            }
        }
        if let Output::Monitor {
            term,
            mon,
            last_draw,
        } = &mut self.0
        {
            if last_draw.elapsed() >= Duration::from_millis(100) {
                *last_draw = Instant::now();
                term.draw(|f| mon.draw(f))?;
            }
        }
        Ok(())
    }
}

impl Consumer for Live {
    fn on(&mut self, ev: &Event) -> Result<Vec<Action>> {
        match ev {
            Event::Board(BoardEvent::Connected { rec, .. } | BoardEvent::Msg(rec)) => {
                self.record(rec)
            }
            Event::Board(BoardEvent::Refused { conn, reason }) => {
                self.note(format!("connection #{conn} refused: {reason}"))
            }
            Event::Board(BoardEvent::Disconnected { conn, reason, .. }) => {
                if let Output::Monitor { mon, .. } = &mut self.0 {
                    mon.disconnected(*conn, reason);
                }
            }
            Event::Key(c) => {
                if let Output::Monitor { mon, .. } = &mut self.0 {
                    let mut out: Vec<Action> = mon
                        .key(*c)
                        .map(|(conn, msg)| Action::Control(conn, msg))
                        .into_iter()
                        .collect();
                    if mon.quit {
                        out.push(Action::Quit);
                    }
                    return Ok(out);
                }
            }
            Event::Tick => self.tick()?,
            Event::Stop => {}
        }
        Ok(Vec::new())
    }
}

/// Reads the terminal's keys into the session's events until `stop` (arrows as j/k, Esc and
/// Ctrl-C as q).
pub fn spawn_keys(tx: SyncSender<Event>, stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match term::poll(Duration::from_millis(100)) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(_) => return,
            }
            let Ok(term::Event::Key(k)) = term::read() else {
                continue;
            };
            if k.kind != KeyEventKind::Press {
                continue;
            }
            let c = match k.code {
                KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => 'q',
                KeyCode::Char(c) => c,
                KeyCode::Down => 'j',
                KeyCode::Up => 'k',
                KeyCode::Esc => 'q',
                _ => continue,
            };
            if tx.send(Event::Key(c)).is_err() {
                return;
            }
        }
    });
}

impl Drop for Live {
    fn drop(&mut self) {
        // The last, partial period is reported too.
        if matches!(&self.0, Output::Periodic { window, .. } if !window.is_empty()) {
            self.flush_period();
        }
        if let Output::Monitor { .. } = self.0 {
            ratatui::restore();
            SCREEN_TAKEN.store(false, Ordering::Relaxed);
        }
    }
}

/// The JSON line printed per frame by `listen` and `replay`.
fn frame_line(device: &str, f: &svit_protocol::Frame) -> serde_json::Value {
    serde_json::json!({
        "device": device, "seq": f.seq, "detections": f.detections.len(),
        "total_ms": crate::report::total_ms(f), "age_ms": f.age_ms, "kept": f.kept, "gmacs": f.gmacs, "dropped": f.dropped_total,
    })
}
