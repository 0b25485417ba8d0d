//! The web view (`listen --http ADDR`): a live page per board, a JSON API, `/metrics` for
//! Prometheus and a websocket of per-frame updates, served by axum on its own tokio runtime.
//!
//! It is one more `event::Consumer`: the session loop hands it every event; it folds them into
//! `crate::view::State` and `svit_metrics::Metrics` behind short locks, and offers each frame's update
//! to a broadcast channel that never waits (a client that falls behind loses updates, collection
//! and recording never stall). Controls from the page come back as `Action::Control` at the
//! next event (ticks come ten times a second), as the terminal monitor's keys do.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use svit_metrics::Metrics;
use svit_protocol::{EdgeMsg, HostMsg};
use tokio::sync::broadcast;

use crate::event::{Action, BoardEvent, Consumer, Event};

mod push;
mod routes;
mod shared;
mod ws;

use shared::{Pushed, Shared};

/// Updates buffered for websocket clients before a slow one starts losing them.
const UPDATES: usize = 1024;

pub struct Options {
    pub addr: SocketAddr,
    /// Bearer token for controls (`--http-token FILE`); needed off loopback.
    pub token: Option<String>,
    /// Websocket updates per second per board, per client.
    pub ws_rate: f64,
    /// The session's recording, for `/api/recording`.
    pub recording: Option<PathBuf>,
}

pub struct Web {
    shared: Arc<Shared>,
    controls: Receiver<(u32, HostMsg)>,
    ticks: u32,
}

/// Binds `opts.addr` (an error now, not later, if it is taken) and serves it on a thread.
pub fn start(opts: Options) -> Result<Web> {
    let listener = std::net::TcpListener::bind(opts.addr)
        .with_context(|| format!("binding the web view to {}", opts.addr))?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let (tx, controls) = mpsc::channel();
    let shared = Arc::new(Shared {
        state: Mutex::default(),
        metrics: Mutex::new(Metrics::new(env!("CARGO_PKG_VERSION"))),
        updates: broadcast::channel(UPDATES).0,
        controls: Mutex::new(tx),
        loopback: local.ip().is_loopback(),
        token: opts.token,
        ws_rate: opts.ws_rate,
        recording: opts.recording,
        pushes: Mutex::default(),
    });
    if !shared.loopback && shared.token.is_none() {
        tracing::warn!(
            "web view on {local} without --http-token: controls are refused (read-only)"
        );
    }
    let app = routes::router(shared.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("web")
        .enable_all()
        .build()
        .context("starting the web view's runtime")?;
    std::thread::Builder::new()
        .name("web".into())
        .spawn(move || {
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => return tracing::error!("web view: {e}"),
                };
                let listener = axum::serve::ListenerExt::tap_io(listener, limit_send_buffer);
                let app = app.into_make_service_with_connect_info::<SocketAddr>();
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!("web view stopped: {e}");
                }
            })
        })
        .context("starting the web view's thread")?;
    tracing::info!("web view on http://{local}/");
    Ok(Web {
        shared,
        controls,
        ticks: 0,
    })
}

/// Send buffer of each HTTP and websocket connection. The kernel would otherwise grow it to
/// megabytes for a client that never reads, and only once it is full does a send wait (and,
/// after `ws::STALL`, the client get dropped).
const SEND_BUFFER: libc::c_int = 64 * 1024;

fn limit_send_buffer(tcp: &mut tokio::net::TcpStream) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid socket descriptor, and a c_int option of its stated size.
    let rc = unsafe {
        libc::setsockopt(
            tcp.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&SEND_BUFFER as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::debug!("SO_SNDBUF: {}", std::io::Error::last_os_error());
    }
}

impl Consumer for Web {
    fn on(&mut self, ev: &Event) -> Result<Vec<Action>> {
        match ev {
            Event::Board(BoardEvent::Connected { rec, .. }) => {
                if let EdgeMsg::Hello(h) = &rec.msg {
                    self.shared.metrics().up(&rec.device, &h.model.bundle, true);
                }
                self.shared.pushes().connected(&rec.device, rec.conn);
                self.shared.state().record(rec);
            }
            Event::Board(BoardEvent::Msg(rec)) => {
                if let EdgeMsg::Push(p) = &rec.msg {
                    self.shared.pushes().answer(&rec.device, p);
                }
                let tokens = {
                    let mut st = self.shared.state();
                    let update = st.record(rec);
                    // Serialised only while someone listens; send never waits.
                    if self.shared.updates.receiver_count() > 0 {
                        if let Some((thumbnail, json)) = update {
                            let board = rec.device.clone();
                            let pushed = Pushed {
                                board,
                                thumbnail,
                                json,
                            };
                            let _ = self.shared.updates.send(Arc::new(pushed));
                        }
                    }
                    st.view(&rec.device).map(|b| b.hello.model.tokens)
                };
                let mut m = self.shared.metrics();
                match &rec.msg {
                    EdgeMsg::Frame(f) => m.frame(&rec.device, f, tokens.unwrap_or(1)),
                    EdgeMsg::Health(h) => m.health(&rec.device, h),
                    _ => {}
                }
            }
            Event::Board(BoardEvent::Disconnected {
                conn,
                device,
                reason,
            }) => {
                self.shared.pushes().disconnected(device);
                let mut st = self.shared.state();
                st.mon.disconnected(*conn, reason);
                let bundle = st.view(device).map(|b| b.hello.model.bundle.clone());
                drop(st);
                self.shared
                    .metrics()
                    .up(device, &bundle.unwrap_or_default(), false);
            }
            Event::Tick => {
                self.ticks += 1;
                if self.ticks % 10 == 0 {
                    self.shared.state().sample();
                }
            }
            _ => {}
        }
        let pushed = self.shared.pushes().due();
        Ok(self
            .controls
            .try_iter()
            .chain(pushed)
            .map(|(conn, msg)| Action::Control(conn, msg))
            .collect())
    }
}
