//! A relaying TCP proxy, as someone or something on the path between a board and its host:
//! it forwards both ways and keeps a copy of what the board sent; it can flip one bit of it
//! (`Relay::start`), or run a whole fault profile (`Relay::with_faults`: added latency, a
//! bandwidth cap, flipped bytes, stalls, dropped and half-open connections) for the soak.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the relay keeps of the board's bytes, at most.
const KEEP: usize = 16 << 20;

/// Faults on the board-to-host direction of each connection; intervals are means (each one
/// drawn between half and one and a half of it).
#[derive(Clone, Debug, Default)]
pub struct Faults {
    pub seed: u64,
    /// Added to every chunk forwarded.
    pub latency: Duration,
    /// Bytes per second, at most.
    pub bytes_per_s: Option<u64>,
    /// One bit flipped per this many bytes.
    pub flip_every_bytes: Option<u64>,
    /// Forwarding stops for `stall` this often.
    pub stall_every: Option<Duration>,
    pub stall: Duration,
    /// The connection is closed both ways this often.
    pub drop_every: Option<Duration>,
    /// This often the relay stops forwarding and reading but keeps both sockets open.
    pub half_open_every: Option<Duration>,
}

/// What the faults did, for the soak's report.
#[derive(Debug, Default)]
pub struct Counts {
    pub connections: AtomicU64,
    pub bytes: AtomicU64,
    pub flips: AtomicU64,
    pub stalls: AtomicU64,
    pub drops: AtomicU64,
    pub half_open: AtomicU64,
}

pub struct Relay {
    pub port: u16,
    pub counts: Arc<Counts>,
    seen: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    /// Relays 127.0.0.1:`port` (a new free port) to 127.0.0.1:`upstream`. With `flip_at`, the
    /// bit 0x04 of that byte of the board-to-host stream (counted over all connections) is
    /// flipped, once.
    pub fn start(upstream: u16, flip_at: Option<usize>) -> Relay {
        Relay::run(0, upstream, None, flip_at)
    }

    /// Relays 127.0.0.1:`port` to 127.0.0.1:`upstream` with `faults` on every connection.
    pub fn with_faults(port: u16, upstream: u16, faults: Faults) -> Relay {
        Relay::run(port, upstream, Some(faults), None)
    }

    fn run(port: u16, upstream: u16, faults: Option<Faults>, flip_at: Option<usize>) -> Relay {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the relay");
        let port = listener.local_addr().expect("relay address").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let (s, st, c) = (seen.clone(), stop.clone(), counts.clone());
        std::thread::spawn(move || {
            let total = Arc::new(AtomicUsize::new(0));
            let _ = listener.set_nonblocking(true);
            while !st.load(Ordering::Relaxed) {
                let Ok((board, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let _ = board.set_nonblocking(false);
                let Ok(host) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let n = c.connections.fetch_add(1, Ordering::Relaxed);
                let (b2, h2) = (board.try_clone().unwrap(), host.try_clone().unwrap());
                std::thread::spawn(move || pipe(h2, b2, |_| Verdict::Forward));
                let (s, total, c) = (s.clone(), total.clone(), c.clone());
                let mut faults = faults.clone().map(|f| Injector::new(f, n, c.clone()));
                std::thread::spawn(move || {
                    pipe(board, host, |chunk| {
                        let start = total.fetch_add(chunk.len(), Ordering::SeqCst);
                        if let Some(at) =
                            flip_at.filter(|&at| at >= start && at < start + chunk.len())
                        {
                            chunk[at - start] ^= 0x04;
                        }
                        c.bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                        let mut seen = s.lock().unwrap();
                        if seen.len() + chunk.len() <= KEEP {
                            seen.extend_from_slice(chunk);
                        }
                        drop(seen);
                        faults.as_mut().map_or(Verdict::Forward, |f| f.apply(chunk))
                    })
                });
            }
        });
        Relay {
            port,
            counts,
            seen,
            stop,
        }
    }

    /// Everything the board sent through the relay so far.
    pub fn seen(&self) -> Vec<u8> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

enum Verdict {
    Forward,
    /// Close both ways.
    Drop,
    /// Stop forwarding and reading, sockets left open.
    HalfOpen,
}

/// One connection's faults: a small xorshift generator, so a seed replays a soak.
struct Injector {
    f: Faults,
    rng: u64,
    counts: Arc<Counts>,
    started: Instant,
    next_flip: u64,
    bytes: u64,
    next_stall: Option<Instant>,
    drop_at: Option<Instant>,
    half_open_at: Option<Instant>,
}

impl Injector {
    fn new(f: Faults, conn: u64, counts: Arc<Counts>) -> Injector {
        let mut i = Injector {
            rng: (f.seed ^ (conn + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1,
            f,
            counts,
            started: Instant::now(),
            next_flip: 0,
            bytes: 0,
            next_stall: None,
            drop_at: None,
            half_open_at: None,
        };
        i.next_flip = i.f.flip_every_bytes.map_or(u64::MAX, |b| i.around(b));
        let now = i.started;
        i.next_stall = i.f.stall_every.map(|d| now + i.around_d(d));
        i.drop_at = i.f.drop_every.map(|d| now + i.around_d(d));
        i.half_open_at = i.f.half_open_every.map(|d| now + i.around_d(d));
        i
    }

    fn next(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// Between half and one and a half of `mean`.
    fn around(&mut self, mean: u64) -> u64 {
        mean / 2 + self.next() % mean.max(1)
    }

    fn around_d(&mut self, mean: Duration) -> Duration {
        Duration::from_millis(self.around(mean.as_millis() as u64))
    }

    fn apply(&mut self, chunk: &mut [u8]) -> Verdict {
        let now = Instant::now();
        if self.drop_at.is_some_and(|t| now >= t) {
            self.counts.drops.fetch_add(1, Ordering::Relaxed);
            return Verdict::Drop;
        }
        if self.half_open_at.is_some_and(|t| now >= t) {
            self.counts.half_open.fetch_add(1, Ordering::Relaxed);
            return Verdict::HalfOpen;
        }
        let end = self.bytes + chunk.len() as u64;
        while self.next_flip < end {
            let at = (self.next_flip - self.bytes) as usize;
            chunk[at] ^= 1 << (self.next() % 8);
            self.counts.flips.fetch_add(1, Ordering::Relaxed);
            let every = self.f.flip_every_bytes.unwrap_or(u64::MAX);
            self.next_flip += self.around(every);
        }
        self.bytes = end;
        if let (Some(t), Some(every)) = (self.next_stall, self.f.stall_every) {
            if now >= t {
                self.counts.stalls.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(self.f.stall);
                self.next_stall = Some(Instant::now() + self.around_d(every));
            }
        }
        let mut wait = self.f.latency;
        if let Some(bps) = self.f.bytes_per_s {
            wait += Duration::from_secs_f64(chunk.len() as f64 / bps as f64);
        }
        std::thread::sleep(wait);
        Verdict::Forward
    }
}

/// Copies `from` to `to` until either end closes or `tap` says otherwise, letting `tap` see
/// (and change) each chunk first.
fn pipe(mut from: TcpStream, mut to: TcpStream, mut tap: impl FnMut(&mut [u8]) -> Verdict) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => match tap(&mut buf[..n]) {
                Verdict::Forward => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                Verdict::Drop => {
                    let _ = to.shutdown(Shutdown::Both);
                    let _ = from.shutdown(Shutdown::Both);
                    return;
                }
                Verdict::HalfOpen => {
                    // Both sockets stay open and nobody reads: as a peer that lost power
                    // behind a NAT looks. Held until the other side gives up.
                    std::thread::sleep(Duration::from_secs(600));
                    return;
                }
            },
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
