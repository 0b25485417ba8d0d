//! Where frames go: a host over TCP (connecting out and reconnecting with backoff, or listening
//! for the host to connect), a serial line (`serial.rs`, sharing the `Outbox`) or stdout as JSON
//! lines. The sender only ever waits on its own queue: inference never waits on the link.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use svit_protocol::secure::{Rx, Tx};
use svit_protocol::session::{EdgeHandshake, Event};
use svit_protocol::{self as proto, EdgeMsg, FrameDecoder, HostMsg};

use crate::control::Control;
use crate::pipeline::Stats;
use crate::queue::Queue;

/// Prints one JSON line per frame (for scripts) until the queue closes.
pub fn stdout_loop(q: Arc<Queue<EdgeMsg>>, labels: Vec<String>) -> Result<()> {
    let mut out = std::io::stdout().lock();
    while let Some(msg) = q.pop() {
        if let EdgeMsg::Frame(f) = msg {
            let dets: Vec<_> = f
                .detections
                .iter()
                .map(|d| serde_json::json!({"label": labels.get(d.class as usize), "score": d.score, "bbox": d.bbox}))
                .collect();
            let line = serde_json::json!({
                "seq": f.seq, "kept": f.kept, "gmacs": f.gmacs, "total_ms": f.times.total_us() as f64 / 1000.0, "age_ms": f.age_ms,
                "threshold": f.threshold, "budget_ms": f.budget_ms,
                "dropped": f.dropped_total, "detections": dets,
            });
            writeln!(out, "{line}")?;
        }
    }
    out.flush()?;
    Ok(())
}

/// One TCP session after its handshake: the stream, its two halves (sealed with a key) and the
/// bytes that followed the handshake (control the host already sent).
struct Session {
    stream: TcpStream,
    tx: Tx,
    rx: Rx,
    leftover: Vec<u8>,
}

/// Says hello and runs the handshake (`svit_protocol::session`) to its end.
fn handshake(mut stream: TcpStream, hello: &proto::Hello, key: Option<&[u8]>) -> Result<Session> {
    let mut hs = EdgeHandshake::new(hello.clone(), key.map(<[u8]>::to_vec));
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(&encode(&mut Tx::Plain, &hs.hello())?)?;
    let mut dec = FrameDecoder::new(64 * 1024);
    let mut buf = [0u8; 4096];
    loop {
        let n = stream
            .read(&mut buf)
            .context("waiting for the host's hello")?;
        if n == 0 {
            bail!("host closed the connection during the hello (wrong key?)");
        }
        let mut frames = dec.frames::<HostMsg>(&buf[..n]);
        while let Some(msg) = frames.next() {
            let msg =
                msg.map_err(|e| anyhow::anyhow!("host sent a bad frame during the hello: {e}"))?;
            let step = hs.on(msg);
            for m in &step.send {
                stream.write_all(&encode(&mut Tx::Plain, m)?)?;
            }
            match step.event {
                Event::Pending => {}
                Event::Admitted(_) => {
                    let leftover = frames.rest().to_vec();
                    let (tx, rx) = hs.link();
                    return Ok(Session {
                        stream,
                        tx,
                        rx,
                        leftover,
                    });
                }
                Event::Refused(e) => bail!("host refused: {e}"),
            }
        }
    }
}

/// Our hello with a fresh nonce (one per handshake), naming the bundle running now.
pub fn fresh(hello: &proto::Hello, ctl: &Control) -> proto::Hello {
    let mut h = hello.clone();
    h.nonce = proto::auth::nonce();
    if let Some(model) = ctl.model_info() {
        h.model = model;
    }
    h
}

/// `msg` as wire bytes for a session (plain during the handshake).
pub fn encode(tx: &mut Tx, msg: &EdgeMsg) -> Result<Vec<u8>> {
    tx.encode(msg).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Applies one message from the host; an error ends the session (a keyed session refuses what
/// does not authenticate, a replay, or plaintext control).
pub fn control(rx: &mut Rx, msg: HostMsg, ctl: &Control) -> Result<(), proto::secure::SecureError> {
    let got = rx.accept(msg)?;
    if got.missed > 0 {
        tracing::warn!(
            "{} control message(s) from the host lost on the way",
            got.missed
        );
    }
    if let Some(msg) = got.msg {
        match &msg {
            // Bundle bytes: the updater logs what becomes of them.
            HostMsg::Push(p) => tracing::debug!("control from host: {}", p.kind()),
            _ => tracing::info!("control from host: {msg:?}"),
        }
        ctl.apply(&msg);
    }
    Ok(())
}

fn spawn_control_reader(mut stream: TcpStream, ctl: Arc<Control>, mut rx: Rx, leftover: Vec<u8>) {
    std::thread::spawn(move || {
        let _ = stream.set_read_timeout(None);
        let mut dec = FrameDecoder::new(proto::push::MAX_CONTROL);
        let mut buf = [0u8; 1024];
        let mut first = Some(leftover);
        loop {
            let chunk = match first.take() {
                Some(l) => l,
                None => match stream.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        // The host closed or the link died: end it both ways, so the sender's
                        // next write fails and it reconnects now, not once buffers fill.
                        let _ = stream.shutdown(Shutdown::Both);
                        break;
                    }
                    Ok(n) => buf[..n].to_vec(),
                },
            };
            for msg in dec.frames::<HostMsg>(&chunk) {
                match msg {
                    Ok(msg) => {
                        if let Err(e) = control(&mut rx, msg, &ctl) {
                            // The sender sees the closed socket and reconnects.
                            tracing::warn!("link to the host ended: {e}");
                            let _ = stream.shutdown(Shutdown::Both);
                            return;
                        }
                    }
                    Err(err) => tracing::warn!("ignored a bad control frame: {err}"),
                }
            }
        }
    });
}

/// This board's side of any link (TCP here, `serial`, `mqtt`): what it sends, how it greets,
/// its key, the settings the host's control changes and the counters its health reports.
pub struct Endpoint {
    pub out: Arc<Queue<EdgeMsg>>,
    pub hello: proto::Hello,
    pub key: Option<Vec<u8>>,
    pub ctl: Arc<Control>,
    pub stats: Arc<Stats>,
}

/// How the edge meets its host.
pub enum Peer {
    /// `--connect HOST:PORT`: dial out, again with backoff whenever the link drops.
    Connect(String),
    /// `--listen ADDR`: wait for the host (`svit-host listen --board EDGE:PORT`) to dial in.
    Listen(TcpListener),
}

impl Peer {
    fn describe(&self) -> String {
        match self {
            Peer::Connect(a) => format!("host {a}"),
            Peer::Listen(l) => l
                .local_addr()
                .map_or("listener".into(), |a| format!("listener {a}")),
        }
    }

    /// One link with the hello done. A listener gives up after a second without a host, so the
    /// caller can notice shutdown.
    fn open(&self, hello: &proto::Hello, key: Option<&[u8]>) -> Result<Session> {
        let s = match self {
            Peer::Connect(addr) => {
                TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?
            }
            Peer::Listen(l) => {
                l.set_nonblocking(true)?;
                let deadline = Instant::now() + Duration::from_secs(1);
                loop {
                    match l.accept() {
                        Ok((s, peer)) => {
                            s.set_nonblocking(false)?;
                            tracing::info!("host {peer} connected");
                            break s;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            if Instant::now() > deadline {
                                bail!(NoHostYet);
                            }
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(e) => return Err(e).context("accepting a host"),
                    }
                }
            }
        };
        s.set_nodelay(true)?;
        s.set_write_timeout(Some(Duration::from_secs(5)))?;
        handshake(s, hello, key)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("no host has connected yet")]
struct NoHostYet;

/// The sender's side of the queue, shared by the TCP and serial links: health once a second,
/// otherwise the oldest queued message; a message whose write failed is kept to go first on
/// the next link (encoded again for that link's session).
pub struct Outbox {
    q: Arc<Queue<EdgeMsg>>,
    stats: Arc<Stats>,
    started: Instant,
    last_health: Instant,
    pending: Option<EdgeMsg>,
}

pub enum Next {
    Send(EdgeMsg),
    /// Nothing to send within the wait.
    Idle,
    /// The queue closed and everything in it went out.
    Done,
}

impl Outbox {
    pub fn new(q: Arc<Queue<EdgeMsg>>, stats: Arc<Stats>) -> Self {
        Outbox {
            q,
            stats,
            started: Instant::now(),
            last_health: Instant::now() - Duration::from_secs(2),
            pending: None,
        }
    }

    pub fn next(&mut self, wait: Duration) -> Next {
        if let Some(m) = self.pending.take() {
            return Next::Send(m);
        }
        Next::Send(if self.last_health.elapsed() >= Duration::from_secs(1) {
            self.last_health = Instant::now();
            EdgeMsg::Health(crate::health::sample(self.started, &self.stats))
        } else {
            match self.q.pop_timeout(wait) {
                Some(m) => m,
                None if self.q.is_closed() => return Next::Done,
                None => return Next::Idle,
            }
        })
    }

    /// Keeps `msg` to be sent first once a link is back.
    pub fn retry(&mut self, msg: EdgeMsg) {
        self.pending = Some(msg);
    }

    /// Whether the run is over (queue closed or stop asked): no point waiting for a link.
    pub fn finished(&self, ctl: &Control) -> bool {
        self.q.is_closed() || ctl.stop.load(Ordering::Relaxed)
    }

    /// Drops what is still queued (no link to flush it to) and returns how many messages that was.
    pub fn abandon(&mut self) -> u64 {
        let mut lost = self.pending.take().map_or(0, |_| 1);
        while self.q.pop_timeout(Duration::ZERO).is_some() {
            lost += 1;
        }
        lost
    }
}

/// Sends queued messages to the peer, re-establishing the link when it drops; returns when the
/// queue closes and everything queued has been flushed (or no host is there for the final
/// flush), with the number of messages that could not be delivered. `hello` is this edge's
/// greeting; with `key`, host and edge prove they share it.
pub fn tcp_loop(peer: Peer, end: Endpoint) -> Result<u64> {
    let Endpoint {
        out: q,
        hello,
        key,
        ctl,
        stats,
    } = end;

    let mut out = Outbox::new(q, stats);
    let mut backoff = Duration::from_millis(100);
    let addr = peer.describe();
    loop {
        let Session {
            mut stream,
            mut tx,
            rx,
            leftover,
        } = match peer.open(&fresh(&hello, &ctl), key.as_deref()) {
            Ok(s) => {
                backoff = Duration::from_millis(100);
                tracing::info!("streaming to {addr}");
                s
            }
            Err(e) => {
                // Shutting down with no host to flush to: report what is lost, do not hang.
                if out.finished(&ctl) {
                    let lost = out.abandon();
                    tracing::warn!("stopping with {addr} unreachable ({e:#}); {lost} queued messages not delivered");
                    return Ok(lost);
                }
                if e.is::<NoHostYet>() {
                    continue;
                }
                tracing::warn!("host {addr} unreachable ({e:#}); retrying in {backoff:?}");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if let Ok(r) = stream.try_clone() {
            spawn_control_reader(r, ctl.clone(), rx, leftover);
        }
        loop {
            let msg = match out.next(Duration::from_millis(200)) {
                Next::Send(m) => m,
                Next::Idle => continue,
                Next::Done => {
                    let _ = stream.flush();
                    let _ = stream.shutdown(Shutdown::Write);
                    return Ok(0);
                }
            };
            let bytes = match encode(&mut tx, &msg) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!("message not sent: {e}");
                    continue;
                }
            };
            if let Err(e) = stream.write_all(&bytes) {
                tracing::warn!("link to {addr} lost: {e}");
                out.retry(msg);
                break;
            }
        }
    }
}
