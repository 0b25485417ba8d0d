//! `/ws`: per-frame updates as JSON text messages, at most `ws_rate` a second per board for each
//! client. Each client reads the broadcast at its own pace: one that falls behind skips
//! updates (the broadcast's lag), one whose socket stops taking data for `STALL` is dropped
//! with a log line. Neither ever holds up the session loop.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use tokio::sync::broadcast::error::RecvError;

use super::shared::Shared;

/// How long a send may wait on a client's full socket before the client is dropped.
const STALL: Duration = Duration::from_secs(3);

pub async fn handler(
    ws: WebSocketUpgrade,
    State(s): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    // Clients only listen: at most small control frames come the other way.
    ws.max_message_size(4096)
        .on_upgrade(move |socket| serve(socket, s, peer))
}

async fn serve(mut socket: WebSocket, s: Arc<Shared>, peer: SocketAddr) {
    let mut rx = s.updates.subscribe();
    let gap = Duration::from_secs_f64(1.0 / s.ws_rate.max(0.1));
    let mut last: HashMap<String, Instant> = HashMap::new();
    let mut skipped = 0u64;
    tracing::info!("websocket client {peer} connected");
    loop {
        tokio::select! {
            msg = socket.recv() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            },
            update = rx.recv() => match update {
                Ok(u) => {
                    // A new thumbnail always goes out; plain frames at the client's rate.
                    if !u.thumbnail && last.get(&u.board).is_some_and(|t| t.elapsed() < gap) {
                        continue;
                    }
                    last.insert(u.board.clone(), Instant::now());
                    let send = socket.send(Message::Text(u.json.as_str().into()));
                    match tokio::time::timeout(STALL, send).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => break,
                        Err(_) => {
                            tracing::warn!("websocket client {peer} dropped: it stopped reading and its buffer is full");
                            return;
                        }
                    }
                }
                Err(RecvError::Lagged(n)) => skipped += n,
                Err(RecvError::Closed) => break,
            },
        }
    }
    tracing::info!("websocket client {peer} left ({skipped} updates skipped while it lagged)");
}
