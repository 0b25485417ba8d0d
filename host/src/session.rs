//! The host's session loop: one stream of events (`event::Event`) from board links, keys and a
//! clock, handed to every output in turn. An output is an `event::Consumer`; adding one (a web
//! view, MQTT, metrics) is one more consumer, and nothing in the loop changes.
//!
//! Invariant: on stop (signal, `--duration`, quit key) the board threads drain what their
//! sockets already hold and the loop records it before the outputs close.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use svit_protocol::{EdgeMsg, HostMsg};

use crate::event::{Action, BoardEvent, Consumer, Event};
use crate::record::{self, Record};
use crate::{link, live};

/// Boards the host reaches itself, besides those that connect to it.
#[derive(Default)]
pub struct Outbound {
    /// Boards that listen (`svit-edge run --listen`): HOST:PORT.
    pub dial: Vec<String>,
    /// Serial ports with a board on the other end.
    pub serial: Vec<String>,
    pub baud: u32,
    /// Boards that publish to a broker (`svit-edge run --mqtt`).
    pub mqtt: Option<link::mqtt::Subscribe>,
}

pub struct Options<'a> {
    pub record: Option<&'a Path>,
    pub duration: Option<f64>,
    pub max_boards: u32,
    pub script: live::Script,
    /// The keys boards are admitted with (`--key`, `--keys`); with one, sessions are encrypted.
    pub keys: svit_protocol::session::Keys,
    pub reach: Outbound,
    /// The web view (`--http`), if on.
    pub web: Option<crate::web::Options>,
    /// The MQTT bridge (`--mqtt`), if on.
    pub mqtt: Option<crate::mqtt::Options>,
}

/// Runs the session until `stop`, the duration, or the quit key; returns the hellos and the
/// most recent frames (for the table printed at exit).
pub fn run(listener: TcpListener, mut opts: Options, stop: Arc<AtomicBool>) -> Result<Vec<Record>> {
    // Bound first: a taken port is an error before any board is accepted.
    let mut web = opts.web.take().map(crate::web::start).transpose()?;
    let mut bridge = opts.mqtt.take().map(crate::mqtt::start).transpose()?;
    let (tx, rx) = mpsc::sync_channel::<Event>(4096);
    if let Some(sub) = opts.reach.mqtt.take() {
        link::mqtt::start(sub, tx.clone(), stop.clone())?;
    }
    start_links(listener, &opts, &tx, &stop);
    spawn_clock(tx.clone(), stop.clone());
    let live = live::Live::new(opts.script)?;
    if live.takes_keys() {
        live::spawn_keys(tx.clone(), stop.clone());
    }
    drop(tx);
    let mut recorder = opts.record.map(Recorder::create).transpose()?;
    let mut kept = Kept::default();
    let mut live = live;
    let started = Instant::now();
    let mut controls: HashMap<u32, SyncSender<HostMsg>> = HashMap::new();
    // Once stopping, the board threads drain their sockets and this loop records what they
    // still send, until the channel stays quiet (at most 2 s, for a board that never pauses).
    let mut draining: Option<Instant> = None;
    loop {
        if draining.is_some_and(|t| t.elapsed() > Duration::from_secs(2)) {
            break;
        }
        let mut ev = match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(ev) => ev,
            Err(mpsc::RecvTimeoutError::Timeout) if draining.is_some() => break,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let ending = match &mut ev {
            Event::Stop => true,
            Event::Tick => opts
                .duration
                .is_some_and(|d| started.elapsed().as_secs_f64() >= d),
            Event::Board(b) => {
                track(b, &mut controls);
                false
            }
            Event::Key(_) => false,
        };
        // While draining, only what boards still send is taken in.
        if draining.is_some() && !matches!(ev, Event::Board(_)) {
            continue;
        }
        let mut actions = Vec::new();
        if let Some(r) = recorder.as_mut() {
            actions.extend(r.on(&ev)?);
        }
        actions.extend(kept.on(&ev)?);
        actions.extend(live.on(&ev)?);
        if let Some(w) = web.as_mut() {
            actions.extend(w.on(&ev)?);
        }
        if let Some(b) = bridge.as_mut() {
            actions.extend(b.on(&ev)?);
        }
        let mut quit = ending;
        for a in actions {
            match a {
                Action::Control(conn, msg) => {
                    if let Err(why) = send_control(&controls, conn, msg) {
                        live.note(format!("control to #{conn} not sent: {why}"));
                    }
                }
                Action::Quit => quit = true,
            }
        }
        if quit && draining.is_none() {
            draining = Some(Instant::now());
            stop.store(true, Ordering::Relaxed);
        }
    }
    drop(live);
    stop.store(true, Ordering::Relaxed);
    if let Some(b) = bridge {
        b.close();
    }
    if let Some(r) = recorder {
        r.close()?;
    }
    Ok(kept.into_records())
}

fn start_links(
    listener: TcpListener,
    opts: &Options,
    tx: &SyncSender<Event>,
    stop: &Arc<AtomicBool>,
) {
    let key = Arc::new(opts.keys.clone());
    for addr in opts.reach.dial.clone() {
        let (tx, stop, key) = (tx.clone(), stop.clone(), key.clone());
        std::thread::spawn(move || link::tcp::dial_loop(addr, tx, stop, key));
    }
    for path in opts.reach.serial.clone() {
        let (tx, stop, key) = (tx.clone(), stop.clone(), key.clone());
        let baud = opts.reach.baud;
        std::thread::spawn(move || link::serial::serial_loop(path, baud, tx, stop, key));
    }
    let (tx, stop, max) = (tx.clone(), stop.clone(), opts.max_boards);
    std::thread::spawn(move || link::tcp::accept_loop(listener, tx, stop, max, key));
}

/// Ticks ten times a second; turns the stop flag (a signal) into a `Stop` event and ends.
fn spawn_clock(tx: SyncSender<Event>, stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            if tx.send(Event::Tick).is_err() {
                return;
            }
        }
        let _ = tx.send(Event::Stop);
    });
}

/// Keeps the control channels of connected boards.
fn track(b: &mut BoardEvent, controls: &mut HashMap<u32, SyncSender<HostMsg>>) {
    match b {
        BoardEvent::Connected { rec, control } => {
            if let EdgeMsg::Hello(h) = &rec.msg {
                tracing::info!(
                    "board {} connected (#{}, bundle {})",
                    h.device,
                    rec.conn,
                    h.model.bundle
                );
            }
            if let Some(c) = control.take() {
                controls.insert(rec.conn, c);
            }
        }
        BoardEvent::Disconnected {
            conn,
            device,
            reason,
        } => {
            tracing::info!("board {device} (#{conn}) disconnected: {reason}");
            controls.remove(conn);
        }
        BoardEvent::Refused { conn, reason } => {
            tracing::warn!("connection #{conn} refused: {reason}");
        }
        BoardEvent::Msg(_) => {}
    }
}

/// Hands a control message to the board's writer without waiting.
fn send_control(
    controls: &HashMap<u32, SyncSender<HostMsg>>,
    conn: u32,
    msg: HostMsg,
) -> Result<(), &'static str> {
    let c = controls.get(&conn).ok_or("board not connected")?;
    c.try_send(msg).map_err(|e| match e {
        TrySendError::Full(_) => "the board is not taking control messages",
        TrySendError::Disconnected(_) => "the link's writer has ended",
    })
}

/// The recording: every board message, the hello first.
struct Recorder {
    path: PathBuf,
    w: record::Writer,
}

impl Recorder {
    fn create(path: &Path) -> Result<Self> {
        Ok(Recorder {
            path: path.to_path_buf(),
            w: record::Writer::create(path)?,
        })
    }

    fn close(mut self) -> Result<()> {
        self.w.flush().context("flushing the recording")?;
        tracing::info!(
            records = self.w.records,
            "recording closed: {}",
            self.path.display()
        );
        Ok(())
    }
}

impl Consumer for Recorder {
    fn on(&mut self, ev: &Event) -> Result<Vec<Action>> {
        if let Some(rec) = board_record(ev) {
            self.w.append(rec).context("writing the recording")?;
        }
        Ok(Vec::new())
    }
}

/// The record an event carries, if any.
pub fn board_record(ev: &Event) -> Option<&Record> {
    match ev {
        Event::Board(BoardEvent::Connected { rec, .. } | BoardEvent::Msg(rec)) => Some(rec),
        _ => None,
    }
}

/// Frames kept in memory for the summary printed at exit.
const SUMMARY_FRAMES: usize = 100_000;

/// For the table at exit: hellos, and the most recent frames (bounded; the recording keeps
/// everything).
#[derive(Default)]
struct Kept {
    hellos: Vec<Record>,
    recent: std::collections::VecDeque<Record>,
}

impl Consumer for Kept {
    fn on(&mut self, ev: &Event) -> Result<Vec<Action>> {
        match board_record(ev) {
            Some(
                r @ Record {
                    msg: EdgeMsg::Hello(_),
                    ..
                },
            ) => self.hellos.push(r.clone()),
            Some(
                r @ Record {
                    msg: EdgeMsg::Frame(_),
                    ..
                },
            ) => {
                if self.recent.len() == SUMMARY_FRAMES {
                    self.recent.pop_front();
                }
                self.recent.push_back(r.clone());
            }
            _ => {}
        }
        Ok(Vec::new())
    }
}

impl Kept {
    fn into_records(self) -> Vec<Record> {
        if self.recent.len() == SUMMARY_FRAMES {
            tracing::info!("the table covers the last {SUMMARY_FRAMES} frames; `svit-host report` covers the whole recording");
        }
        let mut v = self.hellos;
        v.extend(self.recent);
        v
    }
}
