//! A board on a serial line (`listen --serial /dev/ttyUSB0`): the host side of the repeated
//! hello described in `svit-edge`'s serial link and PROTOCOL.md.
//!
//! Without a session the host knocks with its Hello once a second, so a board that was already
//! streaming (to a host that since restarted) says hello again. A board Hello with a new nonce
//! starts a new session (the board restarted); one repeating the nonce we answered gets the same
//! answer again (our answer and its repeat crossed on the line). Silence for 3 s ends a session.
//! Frames outside a session and bytes that do not decode are skipped, not fatal: a serial line
//! carries boot noise and half frames.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use svit_protocol::clock::now_us;
use svit_protocol::secure::{Rx, Tx};
use svit_protocol::session::{Event, HostHandshake, Keys};
use svit_protocol::{self as proto, EdgeMsg, FrameDecoder, HostMsg, MAX_FRAME};

use super::{
    encode_all, encode_control, handshake, hello_record, next_conn, our_hello, CONTROL_QUEUE,
};
use crate::event::{send as emit, BoardEvent, Events};
use crate::record::Record;

const SILENCE: Duration = Duration::from_secs(3);

struct Session {
    conn: u32,
    hs: HostHandshake,
    /// Control messages for the board, written by this line's one writer (the line loop).
    control: Option<Receiver<HostMsg>>,
    /// The session's two halves, once admitted.
    wire: Option<(Tx, Rx)>,
}

impl Session {
    fn device(&self) -> String {
        self.hs
            .board()
            .map_or_else(String::new, |b| b.device.clone())
    }
}

/// Reads boards on `path` until `stop`, reopening the port if it goes away (an adapter
/// unplugged).
pub fn serial_loop(path: String, baud: u32, tx: Events, stop: Arc<AtomicBool>, keys: Arc<Keys>) {
    let mut warned = false;
    while !stop.load(Ordering::Relaxed) {
        match serialport::new(&path, baud)
            .timeout(Duration::from_millis(100))
            .open()
        {
            Ok(port) => {
                warned = false;
                if let Err(e) = line(port, &path, &tx, &stop, &keys) {
                    tracing::warn!("serial {path}: {e}; reopening");
                }
            }
            Err(e) => {
                if !warned {
                    tracing::warn!("serial {path}: {e} (is the adapter plugged in, and is the user in the `dialout` group?); retrying");
                    warned = true;
                }
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn line(
    mut port: Box<dyn serialport::SerialPort>,
    path: &str,
    tx: &Events,
    stop: &AtomicBool,
    keys: &Keys,
) -> std::io::Result<()> {
    let mut dec = FrameDecoder::new(MAX_FRAME);
    let mut buf = vec![0u8; 16 * 1024];
    let mut session: Option<Session> = None;
    let mut last_knock: Option<Instant> = None;
    let mut last_rx = Instant::now();
    let mut refused: Option<Option<[u8; 16]>> = None;
    let end = |s: Option<Session>, reason: &str| {
        if let Some(s) = s.filter(|s| s.hs.is_admitted()) {
            emit(
                tx,
                BoardEvent::Disconnected {
                    conn: s.conn,
                    device: s.device(),
                    reason: format!("{reason} on {path}"),
                },
            );
        }
    };
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        // On stop, take what the port already holds, then end (as the TCP boards do).
        if stopping && port.bytes_to_read().unwrap_or(0) == 0 {
            end(session, "host stopping");
            return Ok(());
        }
        // Knock only with no session at all: a knock's nonce must not reach a board that is
        // answering our session's hello.
        if session.is_none() && last_knock.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            send(&mut *port, &encode_all(&[HostMsg::Hello(our_hello())]))?;
            last_knock = Some(Instant::now());
        }
        if let Some(s) = session.as_mut() {
            if let (Some(rx), Some((wire, _))) = (s.control.as_ref(), s.wire.as_mut()) {
                while let Ok(msg) = rx.try_recv() {
                    if let Some(bytes) = encode_control(wire, &msg, s.conn) {
                        send(&mut *port, &bytes)?;
                    }
                }
            }
        }
        let n = match port.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => 0,
            Err(e) => {
                end(session, "read error");
                return Err(e);
            }
        };
        if n == 0 {
            if session.is_some() && last_rx.elapsed() > SILENCE {
                end(session.take(), "silent for 3 s");
            }
            continue;
        }
        last_rx = Instant::now();
        for msg in dec.frames::<EdgeMsg>(&buf[..n]) {
            let msg = match msg {
                Ok(msg) => msg,
                Err(err) => {
                    tracing::debug!("serial {path}: skipped bytes: {err}");
                    continue;
                }
            };
            // A hello with a new nonce starts a new session (the board restarted).
            if let EdgeMsg::Hello(h) = &msg {
                if !session.as_ref().is_some_and(|s| s.hs.is_for(h)) {
                    end(session.take(), "board said hello again (restarted?)");
                    session = Some(Session {
                        conn: next_conn(),
                        hs: handshake(keys),
                        control: None,
                        wire: None,
                    });
                }
            }
            match session.as_mut() {
                // The board's Noise answer repeated: the session stands.
                Some(s) if s.hs.is_admitted() && matches!(msg, EdgeMsg::Auth(_)) => {}
                Some(s) if s.hs.is_admitted() && !matches!(msg, EdgeMsg::Hello(_)) => {
                    let Some((_, rx)) = s.wire.as_mut() else {
                        continue;
                    };
                    // Nothing that fails to authenticate is recorded: the session ends, and
                    // the next knock starts another.
                    let got = match rx.accept(msg) {
                        Ok(got) => got,
                        Err(e) => {
                            tracing::warn!(
                                "board {} on {path}: {e}; ending the session",
                                s.device()
                            );
                            end(session.take(), &e.to_string());
                            continue;
                        }
                    };
                    if got.missed > 0 {
                        tracing::warn!(
                            "board {}: {} message(s) lost on the line",
                            s.device(),
                            got.missed
                        );
                    }
                    let Some(msg) = got.msg else { continue };
                    let rec = Record {
                        recv_us: now_us(),
                        conn: s.conn,
                        device: s.device(),
                        msg,
                    };
                    if !emit(tx, BoardEvent::Msg(rec)) {
                        return Ok(());
                    }
                }
                Some(s) if matches!(msg, EdgeMsg::Hello(_) | EdgeMsg::Auth(_)) => {
                    let step = s.hs.on(msg);
                    send(&mut *port, &encode_all(&step.send))?;
                    match step.event {
                        Event::Pending => {}
                        Event::Admitted(hello) => {
                            s.wire = Some(s.hs.link());
                            s.control = Some(admit(s.conn, hello, tx));
                        }
                        Event::Refused(e) => {
                            let nonce = s.hs.board().map(|b| b.nonce);
                            // A refused board repeats its hello every second: report it once.
                            if nonce.is_none() || refused.replace(nonce) != Some(nonce) {
                                let reason = format!("{} on {path}: {e}", s.device());
                                emit(
                                    tx,
                                    BoardEvent::Refused {
                                        conn: s.conn,
                                        reason,
                                    },
                                );
                            }
                            session = None;
                        }
                    }
                }
                // Not (yet) from a board we admitted: the knock will bring its hello.
                _ => {}
            }
        }
    }
}

/// Writes a frame; a line nobody drains (no board attached) times out, which is not an error.
fn send(port: &mut dyn serialport::SerialPort, bytes: &[u8]) -> std::io::Result<()> {
    match port.write_all(bytes) {
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Ok(()),
        r => r,
    }
}

/// Reports the board connected; returns the receiving end of its control channel.
fn admit(conn: u32, hello: proto::Hello, tx: &Events) -> Receiver<HostMsg> {
    let (ctl, rx) = mpsc::sync_channel(CONTROL_QUEUE);
    let rec = hello_record(conn, hello);
    emit(
        tx,
        BoardEvent::Connected {
            rec,
            control: Some(ctl),
        },
    );
    rx
}
