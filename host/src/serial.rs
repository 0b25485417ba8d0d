//! A board on a serial line (`listen --serial /dev/ttyUSB0`): the host side of the repeated
//! hello described in `svit-edge`'s serial link and PROTOCOL.md.
//!
//! Without a session the host knocks with its Hello once a second, so a board that was already
//! streaming (to a host that since restarted) says hello again. A board Hello with a new nonce
//! starts a new session (the board restarted); one repeating the nonce we answered gets the same
//! answer again (our answer and its repeat crossed on the line). Silence for 3 s ends a session.
//! Frames outside a session and bytes that do not decode are skipped, not fatal: a serial line
//! carries boot noise and half frames.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use svit_protocol::{self as proto, EdgeMsg, FrameDecoder, MAX_FRAME};

use crate::collector::{host_hello, host_reply, next_conn, now_us, HostEvent};
use crate::record::Record;

const SILENCE: Duration = Duration::from_secs(3);

struct Session {
    conn: u32,
    hello: proto::Hello,
    /// Our nonce for this session (the board's Auth must cover it).
    nonce: [u8; 16],
    /// Our answer (Hello, and Auth with a key), resent if the board repeats its hello.
    reply: Vec<u8>,
    /// False until the board proved the key.
    admitted: bool,
}

/// Reads boards on `path` until `stop`, reopening the port if it goes away (an adapter
/// unplugged).
pub fn serial_loop(
    path: String,
    baud: u32,
    tx: SyncSender<HostEvent>,
    stop: Arc<AtomicBool>,
    key: Option<Arc<Vec<u8>>>,
) {
    let mut warned = false;
    while !stop.load(Ordering::Relaxed) {
        match serialport::new(&path, baud)
            .timeout(Duration::from_millis(100))
            .open()
        {
            Ok(port) => {
                warned = false;
                if let Err(e) = line(port, &path, &tx, &stop, key.as_deref().map(Vec::as_slice)) {
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
    tx: &SyncSender<HostEvent>,
    stop: &AtomicBool,
    key: Option<&[u8]>,
) -> std::io::Result<()> {
    let mut dec = FrameDecoder::new(MAX_FRAME);
    let mut buf = vec![0u8; 16 * 1024];
    let mut session: Option<Session> = None;
    let mut last_knock: Option<Instant> = None;
    let mut last_rx = Instant::now();
    // A refused board repeats its hello every second: report it once per nonce.
    let mut refused: Option<[u8; 16]> = None;
    let end = |s: Option<Session>, reason: &str| {
        if let Some(s) = s.filter(|s| s.admitted) {
            let _ = tx.send(HostEvent::Disconnected {
                conn: s.conn,
                device: s.hello.device,
                reason: format!("{reason} on {path}"),
            });
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
            let knock = proto::encode(&host_hello(proto::auth::nonce()), MAX_FRAME);
            send(&mut *port, &knock.expect("hello fits"))?;
            last_knock = Some(Instant::now());
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
            match msg {
                EdgeMsg::Hello(h) => {
                    if let Some(s) = session.as_ref().filter(|s| s.hello.nonce == h.nonce) {
                        send(&mut *port, &s.reply)?;
                        continue;
                    }
                    end(session.take(), "board said hello again (restarted?)");
                    if let Err(e) = h.check(proto::Role::Edge) {
                        if refused.replace(h.nonce) != Some(h.nonce) {
                            let _ = tx.send(HostEvent::Refused {
                                conn: next_conn(),
                                reason: format!("{} on {path}: {e}", h.device),
                            });
                        }
                        continue;
                    }
                    // Without a key our answer carries the board's nonce, which tells it from a
                    // knock; with one it must be fresh (the board's Auth covers it).
                    let nonce = if key.is_some() {
                        proto::auth::nonce()
                    } else {
                        h.nonce
                    };
                    let reply = host_reply(nonce, &h, key);
                    send(&mut *port, &reply)?;
                    let s = Session {
                        conn: next_conn(),
                        hello: h,
                        nonce,
                        reply,
                        admitted: false,
                    };
                    session = Some(if key.is_none() {
                        admit(s, &*port, tx)
                    } else {
                        s
                    });
                }
                EdgeMsg::Auth(a) => match session.take() {
                    Some(s) if !s.admitted => {
                        let ok = key.is_some_and(|k| {
                            proto::auth::verify(k, proto::Role::Edge, &s.nonce, &a.mac)
                        });
                        if ok {
                            session = Some(admit(s, &*port, tx));
                        } else {
                            let _ = tx.send(HostEvent::Refused {
                                conn: s.conn,
                                reason: format!(
                                    "board {} on {path} failed the key check",
                                    s.hello.device
                                ),
                            });
                        }
                    }
                    other => session = other,
                },
                msg => match &session {
                    Some(s) if s.admitted => {
                        let rec = Record {
                            recv_us: now_us(),
                            conn: s.conn,
                            device: s.hello.device.clone(),
                            msg,
                        };
                        if tx.send(HostEvent::Msg(rec)).is_err() {
                            return Ok(());
                        }
                    }
                    // Not (yet) from a board we admitted: the knock will bring its hello.
                    _ => {}
                },
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

fn admit(mut s: Session, port: &dyn serialport::SerialPort, tx: &SyncSender<HostEvent>) -> Session {
    s.admitted = true;
    let control = port
        .try_clone()
        .ok()
        .map(|c| Box::new(c) as Box<dyn Write + Send>);
    let _ = tx.send(HostEvent::Connected {
        conn: s.conn,
        hello: s.hello.clone(),
        control,
    });
    s
}
