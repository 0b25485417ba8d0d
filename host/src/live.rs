//! What `listen`, `demo` and `replay` show while they run: the ratatui monitor when stdout is a
//! terminal, otherwise JSON lines per frame, a JSON summary line per period, or nothing. Owns
//! the terminal and gives it back on drop, also on an error path.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::DefaultTerminal;
use svit_protocol::{EdgeMsg, Hello, HostMsg};

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

    pub fn connected(&mut self, conn: u32, hello: &Hello) {
        if let Output::Monitor { mon, .. } = &mut self.0 {
            mon.connected(conn, hello.clone());
        }
    }

    pub fn note(&mut self, line: String) {
        if let Output::Monitor { mon, .. } = &mut self.0 {
            mon.note(line);
        }
    }

    pub fn disconnected(&mut self, conn: u32, reason: &str) {
        if let Output::Monitor { mon, .. } = &mut self.0 {
            mon.disconnected(conn, reason);
        }
    }

    pub fn record(&mut self, r: &Record) {
        match &mut self.0 {
            Output::Monitor { mon, .. } => mon.record(r),
            Output::JsonLines => {
                if let EdgeMsg::Frame(f) = &r.msg {
                    println!("{}", crate::frame_line(&r.device, f));
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

    /// Handles pending keys and redraws at most ten times a second. Returns control messages
    /// to send and whether the user asked to quit.
    pub fn tick(&mut self) -> Result<(Vec<(u32, HostMsg)>, bool)> {
        if let Output::Periodic { every, since, .. } = &self.0 {
            if since.elapsed() >= *every {
                self.flush_period();
            }
        }
        let Output::Monitor {
            term,
            mon,
            last_draw,
        } = &mut self.0
        else {
            return Ok((Vec::new(), false));
        };
        let mut out = Vec::new();
        while event::poll(Duration::ZERO)? {
            if let Event::Key(k) = event::read()? {
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
                out.extend(mon.key(c));
            }
        }
        if last_draw.elapsed() >= Duration::from_millis(100) {
            *last_draw = Instant::now();
            term.draw(|f| mon.draw(f))?;
        }
        Ok((out, mon.quit))
    }
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
