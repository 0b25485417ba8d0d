//! `svit-edge run --metrics ADDR`: this board's own figures for Prometheus, named as the host's
//! `/metrics` names them (`svit_metrics`), for fleets scraped board by board. The inference
//! thread folds each frame in; health is sampled when scraped.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use svit_metrics::Metrics;
use svit_protocol::Frame;

use crate::pipeline::Stats;

pub struct Exporter {
    name: String,
    tokens: u16,
    m: Mutex<Metrics>,
}

impl Exporter {
    pub fn frame(&self, f: &Frame) {
        if let Ok(mut m) = self.m.lock() {
            m.frame(&self.name, f, self.tokens);
        }
    }
}

/// Binds `addr` and answers `GET /metrics` on a thread; everything else is a 404.
pub fn serve(
    addr: SocketAddr,
    name: &str,
    bundle: &str,
    tokens: u16,
    stats: Arc<Stats>,
) -> Result<Arc<Exporter>> {
    let server = tiny_http::Server::http(addr)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("serving metrics on {addr}"))?;
    let mut m = Metrics::new(env!("CARGO_PKG_VERSION"));
    m.up(name, bundle, true);
    let exporter = Arc::new(Exporter {
        name: name.to_string(),
        tokens,
        m: Mutex::new(m),
    });
    let ex = exporter.clone();
    let started = Instant::now();
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for req in server.incoming_requests() {
                let page = (req.method() == &tiny_http::Method::Get && req.url() == "/metrics")
                    .then(|| {
                        let h = crate::health::sample(started, &stats);
                        let mut m = ex.m.lock().unwrap_or_else(|e| e.into_inner());
                        m.health(&ex.name, &h);
                        m.encode()
                    });
                let answer = match page {
                    Some(text) => tiny_http::Response::from_string(text).with_header(
                        tiny_http::Header::from_bytes("Content-Type", svit_metrics::CONTENT_TYPE)
                            .expect("static header"),
                    ),
                    None => tiny_http::Response::from_string("only GET /metrics here\n")
                        .with_status_code(404),
                };
                if let Err(e) = req.respond(answer) {
                    tracing::debug!("metrics scrape: {e}");
                }
            }
        })?;
    tracing::info!("metrics on http://{addr}/metrics");
    Ok(exporter)
}
