//! Boards over TCP, accepted or dialled: one thread per connection reads, checks the hello
//! (`svit_protocol::session`) and turns bytes into board events; a writer thread per connection
//! owns its write half and sends the control messages the session loop hands it. A broken board
//! only ends its own threads.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use svit_protocol::clock::now_us;
use svit_protocol::secure::{Rx, Tx};
use svit_protocol::session::{Event, Keys};
use svit_protocol::{EdgeMsg, FrameDecoder, HostMsg, MAX_FRAME};

use super::{encode_all, encode_control, handshake, hello_record, next_conn, CONTROL_QUEUE};

/// A board sends health every second: this long without a byte is a link that is gone without
/// a close (a board that lost power, a NAT that forgot the flow), not a quiet board.
const SILENCE: Duration = Duration::from_secs(10);
use crate::event::{send, BoardEvent, Events};
use crate::record::Record;

/// Accepts until `stop`; at most `max_boards` connections at once (others are closed).
/// With keys, a board must complete the Noise handshake with its key before anything it sends
/// is accepted, and everything after is sealed.
pub fn accept_loop(
    listener: TcpListener,
    tx: Events,
    stop: Arc<AtomicBool>,
    max_boards: u32,
    keys: Arc<Keys>,
) {
    let _ = listener.set_nonblocking(true);
    let active = Arc::new(AtomicU32::new(0));
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((s, peer)) => {
                let _ = s.set_nonblocking(false);
                if active.load(Ordering::Relaxed) >= max_boards {
                    tracing::warn!("refusing {peer}: already {max_boards} boards connected");
                    continue;
                }
                let (tx, stop, active, conn, keys) = (
                    tx.clone(),
                    stop.clone(),
                    active.clone(),
                    next_conn(),
                    keys.clone(),
                );
                active.fetch_add(1, Ordering::Relaxed);
                std::thread::spawn(move || {
                    board(s, conn, &tx, &stop, &keys);
                    active.fetch_sub(1, Ordering::Relaxed);
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Starts the connection's writer: it owns a clone of the socket and writes the control
/// messages it receives (a write that times out ends it; a stuck board must not stall the
/// session loop, whose sends never wait).
fn control_writer(s: &TcpStream, conn: u32, mut wire: Tx) -> Option<SyncSender<HostMsg>> {
    let mut w = s.try_clone().ok()?;
    let _ = w.set_write_timeout(Some(Duration::from_millis(500)));
    let (tx, rx) = mpsc::sync_channel::<HostMsg>(CONTROL_QUEUE);
    std::thread::spawn(move || {
        for msg in rx {
            let Some(bytes) = encode_control(&mut wire, &msg, conn) else {
                continue;
            };
            if let Err(e) = w.write_all(&bytes) {
                tracing::warn!("control to #{conn} not sent: {e}");
                break;
            }
        }
    });
    Some(tx)
}

/// Dials a board that listens (`svit-edge run --listen`), and again with backoff whenever the
/// link drops, until `stop`.
pub fn dial_loop(addr: String, tx: Events, stop: Arc<AtomicBool>, keys: Arc<Keys>) {
    let mut backoff = Duration::from_millis(100);
    while !stop.load(Ordering::Relaxed) {
        let target = addr.to_socket_addrs().ok().and_then(|mut a| a.next());
        match target.map(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2))) {
            Some(Ok(s)) => {
                backoff = Duration::from_millis(100);
                board(s, next_conn(), &tx, &stop, &keys);
            }
            failed => {
                let why = match failed {
                    Some(Err(e)) => e.to_string(),
                    _ => "address does not resolve".into(),
                };
                tracing::warn!("board {addr} unreachable ({why}); retrying in {backoff:?}");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

fn board(mut s: TcpStream, conn: u32, tx: &Events, stop: &AtomicBool, keys: &Keys) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(300)));
    let _ = s.set_nodelay(true);
    let mut dec = FrameDecoder::new(MAX_FRAME);
    let mut buf = vec![0u8; 64 * 1024];
    let mut device: Option<String> = None;
    let mut hs = handshake(keys);
    // The session's receiving half, once admitted.
    let mut rx: Option<Rx> = None;
    let hello_deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut last_rx = std::time::Instant::now();
    let reason = 'link: loop {
        // On stop, read what the kernel already holds (non-blocking) before ending, so frames
        // that arrived are recorded, not dropped with the socket.
        let stopping = stop.load(Ordering::Relaxed);
        if stopping {
            let _ = s.set_nonblocking(true);
        }
        let n = match s.read(&mut buf) {
            Ok(0) => break "board closed the connection".into(),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if stopping {
                    break "host stopping".to_string();
                }
                if device.is_some() && last_rx.elapsed() > SILENCE {
                    break format!(
                        "silent for {} s (link gone without a close?)",
                        SILENCE.as_secs()
                    );
                }
                if device.is_none() && std::time::Instant::now() > hello_deadline {
                    // Covers a board that never sends its hello or never proves the key.
                    send(
                        tx,
                        BoardEvent::Refused {
                            conn,
                            reason: "no hello within 5 s".into(),
                        },
                    );
                    return;
                }
                continue;
            }
            Err(e) => break format!("read error: {e}"),
        };
        last_rx = std::time::Instant::now();
        for msg in dec.frames::<EdgeMsg>(&buf[..n]) {
            match msg {
                Err(err) => {
                    // On TCP nothing but tampering garbles a frame of a keyed session.
                    if let (Some(d), Some(true)) = (&device, rx.as_ref().map(Rx::is_sealed)) {
                        break 'link refused(conn, d, format!("integrity failure: {err}"));
                    }
                    if device.is_none() {
                        send(
                            tx,
                            BoardEvent::Refused {
                                conn,
                                reason: format!("bad first frame: {err}"),
                            },
                        );
                        return;
                    }
                    tracing::warn!("board {conn}: {err}");
                }
                Ok(msg) => {
                    if let (Some(d), Some(rx)) = (&device, rx.as_mut()) {
                        // Nothing that fails to authenticate is recorded: the session ends.
                        let got = match rx.accept(msg) {
                            Ok(got) => got,
                            Err(e) => break 'link refused(conn, d, e.to_string()),
                        };
                        if got.missed > 0 {
                            tracing::warn!("board {d}: {} message(s) lost on the way", got.missed);
                        }
                        let Some(msg) = got.msg else { continue };
                        let rec = Record {
                            recv_us: now_us(),
                            conn,
                            device: d.clone(),
                            msg,
                        };
                        if !send(tx, BoardEvent::Msg(rec)) {
                            return;
                        }
                        continue;
                    }
                    let step = hs.on(msg);
                    if !step.send.is_empty() && s.write_all(&encode_all(&step.send)).is_err() {
                        return;
                    }
                    match step.event {
                        Event::Pending => {}
                        Event::Admitted(hello) => {
                            device = Some(hello.device.clone());
                            let rec = hello_record(conn, hello);
                            let (wire_tx, wire_rx) = hs.link();
                            rx = Some(wire_rx);
                            let control = control_writer(&s, conn, wire_tx);
                            send(tx, BoardEvent::Connected { rec, control });
                        }
                        Event::Refused(e) => {
                            let who = hs
                                .board()
                                .map_or(String::new(), |b| format!("board {}: ", b.device));
                            let reason = format!("{who}{e}");
                            send(tx, BoardEvent::Refused { conn, reason });
                            return;
                        }
                    }
                }
            }
        }
    };
    if dec.pending() > 0 {
        tracing::warn!(
            "board {conn}: discarded a torn frame of {} bytes",
            dec.pending()
        );
    }
    if let Some(device) = device {
        send(
            tx,
            BoardEvent::Disconnected {
                conn,
                device,
                reason,
            },
        );
    }
}

/// Why an admitted session ends over something that did not authenticate, logged with the
/// board's name (the caller closes the link and reports the disconnection).
fn refused(conn: u32, device: &str, reason: String) -> String {
    tracing::warn!("board {device} (#{conn}): {reason}; closing the link");
    reason
}
