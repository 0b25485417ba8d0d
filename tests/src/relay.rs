//! A relaying TCP proxy, as someone on the path between a board and its host would run one:
//! it forwards both ways, keeps a copy of what the board sent, and can flip one bit of it.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the relay keeps of the board's bytes, at most.
const KEEP: usize = 16 << 20;

pub struct Relay {
    pub port: u16,
    seen: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    /// Relays 127.0.0.1:`port` (a new free port) to 127.0.0.1:`upstream`. With `flip_at`, the
    /// bit 0x04 of that byte of the board-to-host stream (counted over all connections) is
    /// flipped, once.
    pub fn start(upstream: u16, flip_at: Option<usize>) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let port = listener.local_addr().expect("relay address").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (seen.clone(), stop.clone());
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
                let (b2, h2) = (board.try_clone().unwrap(), host.try_clone().unwrap());
                std::thread::spawn(move || pipe(h2, b2, |_| {}));
                let (s, total) = (s.clone(), total.clone());
                std::thread::spawn(move || {
                    pipe(board, host, |chunk| {
                        let start = total.fetch_add(chunk.len(), Ordering::SeqCst);
                        if let Some(at) =
                            flip_at.filter(|&at| at >= start && at < start + chunk.len())
                        {
                            chunk[at - start] ^= 0x04;
                        }
                        let mut seen = s.lock().unwrap();
                        if seen.len() + chunk.len() <= KEEP {
                            seen.extend_from_slice(chunk);
                        }
                    })
                });
            }
        });
        Relay { port, seen, stop }
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

/// Copies `from` to `to` until either end closes, letting `tap` see (and change) each chunk.
fn pipe(mut from: TcpStream, mut to: TcpStream, mut tap: impl FnMut(&mut [u8])) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tap(&mut buf[..n]);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
