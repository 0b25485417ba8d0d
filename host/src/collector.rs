//! Accepts boards: one thread per connection, each checking the hello and turning bytes into
//! `HostEvent`s on a bounded channel. A broken board only ends its own thread.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::Duration;

use svit_protocol::{self as proto, EdgeMsg, FrameDecoder, HostMsg, MAX_FRAME};

use crate::record::Record;

pub enum HostEvent {
    Connected {
        conn: u32,
        hello: proto::Hello,
        /// The link's write side, for control messages (writes time out rather than block).
        control: Option<Box<dyn Write + Send>>,
    },
    Msg(Record),
    Refused {
        conn: u32,
        reason: String,
    },
    Disconnected {
        conn: u32,
        device: String,
        reason: String,
    },
}

pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

pub fn host_hello(nonce: [u8; 16]) -> HostMsg {
    HostMsg::Hello(proto::Hello {
        protocol_version: proto::PROTOCOL_VERSION,
        schema_hash: proto::schema_hash(),
        role: proto::Role::Host,
        device: "svit-host".into(),
        bundle: String::new(),
        labels: Vec::new(),
        input_size: 0,
        tokens: 0,
        blocks: 0,
        nonce,
    })
}

/// Our answer to a board's hello: our Hello with `nonce`, and with a key our proof over the
/// board's nonce.
pub fn host_reply(nonce: [u8; 16], board: &proto::Hello, key: Option<&[u8]>) -> Vec<u8> {
    let mut reply = proto::encode(&host_hello(nonce), MAX_FRAME).expect("hello fits");
    if let Some(k) = key {
        let a = HostMsg::Auth(proto::Auth {
            mac: proto::auth::mac(k, proto::Role::Host, &board.nonce),
        });
        reply.extend(proto::encode(&a, MAX_FRAME).expect("auth fits"));
    }
    reply
}

/// Accepts until `stop`; at most `max_boards` connections at once (others are closed).
/// With `key`, a board must prove it holds the same pre-shared key before anything it sends
/// is accepted.
pub fn accept_loop(
    listener: TcpListener,
    tx: SyncSender<HostEvent>,
    stop: Arc<AtomicBool>,
    max_boards: u32,
    key: Option<Arc<Vec<u8>>>,
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
                let (tx, stop, active, conn, key) = (
                    tx.clone(),
                    stop.clone(),
                    active.clone(),
                    next_conn(),
                    key.clone(),
                );
                active.fetch_add(1, Ordering::Relaxed);
                std::thread::spawn(move || {
                    board(s, conn, &tx, &stop, key.as_deref().map(Vec::as_slice));
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

/// A clone of the socket for control writes; a stuck board must not freeze the monitor.
fn control_half(s: &TcpStream) -> Option<Box<dyn Write + Send>> {
    let c = s.try_clone().ok()?;
    let _ = c.set_write_timeout(Some(Duration::from_millis(200)));
    Some(Box::new(c))
}

/// Connection numbers, unique across accepted, dialled and serial links.
pub fn next_conn() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Dials a board that listens (`svit-edge run --listen`), and again with backoff whenever the
/// link drops, until `stop`.
pub fn dial_loop(
    addr: String,
    tx: SyncSender<HostEvent>,
    stop: Arc<AtomicBool>,
    key: Option<Arc<Vec<u8>>>,
) {
    let mut backoff = Duration::from_millis(100);
    while !stop.load(Ordering::Relaxed) {
        let target = addr.to_socket_addrs().ok().and_then(|mut a| a.next());
        match target.map(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2))) {
            Some(Ok(s)) => {
                backoff = Duration::from_millis(100);
                board(
                    s,
                    next_conn(),
                    &tx,
                    &stop,
                    key.as_deref().map(Vec::as_slice),
                );
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

fn board(
    mut s: TcpStream,
    conn: u32,
    tx: &SyncSender<HostEvent>,
    stop: &AtomicBool,
    key: Option<&[u8]>,
) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(300)));
    let _ = s.set_nodelay(true);
    let mut dec = FrameDecoder::new(MAX_FRAME);
    let mut buf = vec![0u8; 64 * 1024];
    let mut device: Option<String> = None;
    // With a key: the board's hello and our nonce, until its Auth arrives.
    let mut awaiting_auth: Option<(proto::Hello, [u8; 16])> = None;
    let hello_deadline = std::time::Instant::now() + Duration::from_secs(5);
    let reason = loop {
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
                if device.is_none() && std::time::Instant::now() > hello_deadline {
                    // Covers a board that never sends its hello or never proves the key.
                    let _ = tx.send(HostEvent::Refused {
                        conn,
                        reason: "no hello within 5 s".into(),
                    });
                    return;
                }
                continue;
            }
            Err(e) => break format!("read error: {e}"),
        };
        for msg in dec.frames::<EdgeMsg>(&buf[..n]) {
            match msg {
                Err(err) => {
                    if device.is_none() {
                        let _ = tx.send(HostEvent::Refused {
                            conn,
                            reason: format!("bad first frame: {err}"),
                        });
                        return;
                    }
                    tracing::warn!("board {conn}: {err}");
                }
                Ok(msg) => {
                    if let Some((hello, nonce)) = awaiting_auth.take() {
                        let ok = matches!(&msg, EdgeMsg::Auth(a) if key.is_some_and(|k| proto::auth::verify(k, proto::Role::Edge, &nonce, &a.mac)));
                        if !ok {
                            let _ = tx.send(HostEvent::Refused {
                                conn,
                                reason: format!("board {} failed the key check", hello.device),
                            });
                            return;
                        }
                        device = Some(hello.device.clone());
                        let _ = tx.send(HostEvent::Connected {
                            conn,
                            hello,
                            control: control_half(&s),
                        });
                        continue;
                    }
                    match (&device, msg) {
                        (None, EdgeMsg::Hello(h)) => {
                            if let Err(e) = h.check(proto::Role::Edge) {
                                let _ = tx.send(HostEvent::Refused {
                                    conn,
                                    reason: e.to_string(),
                                });
                                return;
                            }
                            let nonce = proto::auth::nonce();
                            if s.write_all(&host_reply(nonce, &h, key)).is_err() {
                                return;
                            }
                            if key.is_some() {
                                awaiting_auth = Some((h, nonce));
                            } else {
                                device = Some(h.device.clone());
                                let _ = tx.send(HostEvent::Connected {
                                    conn,
                                    hello: h,
                                    control: control_half(&s),
                                });
                            }
                        }
                        (None, other) => {
                            let _ = tx.send(HostEvent::Refused {
                                conn,
                                reason: format!("expected a hello, got {}", kind(&other)),
                            });
                            return;
                        }
                        (Some(d), msg) => {
                            let rec = Record {
                                recv_us: now_us(),
                                conn,
                                device: d.clone(),
                                msg,
                            };
                            if tx.send(HostEvent::Msg(rec)).is_err() {
                                return;
                            }
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
        let _ = tx.send(HostEvent::Disconnected {
            conn,
            device,
            reason,
        });
    }
}

pub fn kind(m: &EdgeMsg) -> &'static str {
    match m {
        EdgeMsg::Hello(_) => "hello",
        EdgeMsg::Auth(_) => "auth",
        EdgeMsg::Frame(_) => "frame",
        EdgeMsg::Thumbnail(_) => "thumbnail",
        EdgeMsg::Health(_) => "health",
        EdgeMsg::Log(_) => "log",
        EdgeMsg::Bench(_) => "bench",
    }
}
