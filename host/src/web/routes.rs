//! The HTTP side: pages (embedded, no CDN), the JSON API, `/metrics`, and controls behind the
//! access rule (open on loopback without a token; otherwise `Authorization: Bearer TOKEN`).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use svit_protocol::HostMsg;

use super::shared::Shared;

/// Request bodies are a few bytes of JSON.
const MAX_BODY: usize = 4096;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(include_str!("page.html")) }))
        .route(
            "/boards/{name}",
            get(|| async { Html(include_str!("board.html")) }),
        )
        .route("/api/boards", get(boards))
        .route("/api/boards/{name}", get(board))
        .route("/api/boards/{name}/latest.jpg", get(latest))
        .route(
            "/api/boards/{name}/bundle",
            get(push_status)
                .post(push)
                .layer(DefaultBodyLimit::max(super::push::MAX_PUSH)),
        )
        .route("/api/boards/{name}/rollback", post(rollback))
        .route("/api/boards/{name}/{action}", post(control))
        .route("/api/recording", get(recording))
        .route("/metrics", get(metrics))
        .route("/ws", get(super::ws::handler))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(shared)
}

/// An error answer: the status and a JSON `{"error": ...}` saying what was wrong.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

fn unknown(shared: &Shared, name: &str) -> ApiError {
    let names = shared.state().names();
    ApiError(
        StatusCode::NOT_FOUND,
        format!("no board named {name:?}; boards: {names:?}"),
    )
}

async fn boards(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    Json(s.state().boards(svit_protocol::clock::now_us()))
}

async fn board(State(s): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    let detail = s.state().detail(&name, svit_protocol::clock::now_us());
    match detail {
        Some(d) => Json(d).into_response(),
        None => unknown(&s, &name).into_response(),
    }
}

#[derive(Deserialize)]
struct Block {
    block: Option<usize>,
}

async fn latest(
    State(s): State<Arc<Shared>>,
    Path(name): Path<String>,
    Query(q): Query<Block>,
) -> Result<Response, ApiError> {
    let thumb = s.state().latest_thumb(&name);
    let drawn = match thumb {
        Some(t) => Some(
            tokio::task::spawn_blocking(move || t.draw_jpeg(q.block))
                .await
                .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?,
        ),
        None => None,
    };
    match drawn {
        Some(Ok(jpeg)) => Ok(([(header::CONTENT_TYPE, "image/jpeg")], jpeg).into_response()),
        Some(Err(e)) => Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("drawing the thumbnail of {name}: {e:#}"),
        )),
        None if s.state().view(&name).is_some() => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no thumbnail from {name} yet (svit-edge run --thumbnail-every N)"),
        )),
        None => Err(unknown(&s, &name)),
    }
}

async fn recording(State(s): State<Arc<Shared>>) -> Result<impl IntoResponse, ApiError> {
    let path = s.recording.as_ref().ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            "not recording (svit-host listen --record FILE)".into(),
        )
    })?;
    let size = std::fs::metadata(path).map(|m| m.len()).ok();
    let records = s.state().records;
    Ok(Json(serde_json::json!({
        "path": path.display().to_string(),
        "size": size,
        "records": records,
    })))
}

async fn metrics(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    let text = s.metrics().encode();
    ([(header::CONTENT_TYPE, svit_metrics::CONTENT_TYPE)], text)
}

/// The access rule for controls.
fn authorize(s: &Shared, headers: &HeaderMap, peer: SocketAddr) -> Result<(), ApiError> {
    let refuse = |why: &str| {
        tracing::warn!("control from {peer} refused: {why}");
        Err(ApiError(StatusCode::UNAUTHORIZED, why.to_string()))
    };
    match &s.token {
        Some(token) => {
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            match given {
                None => {
                    refuse("controls need `Authorization: Bearer TOKEN` (the --http-token file)")
                }
                Some(g)
                    if bool::from(subtle::ConstantTimeEq::ct_eq(
                        g.as_bytes(),
                        token.as_bytes(),
                    )) =>
                {
                    Ok(())
                }
                Some(_) => refuse("wrong bearer token"),
            }
        }
        None if s.loopback => Ok(()),
        None => {
            refuse("controls are off: this web view serves beyond loopback without --http-token")
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Threshold {
    threshold: f32,
}

/// `{"budget_ms": 40}`, or `{"budget_ms": null}` for none.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Budget {
    budget_ms: Option<f32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Dense {
    dense: bool,
}

fn body<T: serde::de::DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("malformed request body: {e}"),
        )
    })
}

/// `POST /api/boards/NAME/{threshold,dense,budget,pause,resume,snapshot}`: the control
/// messages the terminal monitor's keys send.
async fn control(
    State(s): State<Arc<Shared>>,
    Path((name, action)): Path<(String, String)>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    authorize(&s, &headers, peer)?;
    let mut st = s.state();
    let Some(b) = st.mon.boards.iter_mut().find(|b| b.hello.device == name) else {
        drop(st);
        return Err(unknown(&s, &name));
    };
    if !b.connected {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("{name} is not connected"),
        ));
    }
    let msg = match action.as_str() {
        "threshold" => {
            let t = body::<Threshold>(&bytes)?.threshold;
            if !(0.0..=1.0).contains(&t) {
                return Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    format!("threshold {t} is outside [0, 1]"),
                ));
            }
            HostMsg::SetThreshold(t)
        }
        "budget" => match body::<Budget>(&bytes)?.budget_ms {
            Some(ms) if !(ms.is_finite() && ms > 0.0) => {
                return Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    format!("budget_ms {ms} is not a positive number of milliseconds (null: none)"),
                ))
            }
            ms => HostMsg::SetBudget(ms),
        },
        "dense" => match body::<Dense>(&bytes)?.dense {
            true => HostMsg::SetThreshold(0.0),
            false => HostMsg::SetThreshold(b.hello.model.threshold),
        },
        "pause" => {
            b.paused = true;
            HostMsg::Pause
        }
        "resume" => {
            b.paused = false;
            HostMsg::Resume
        }
        "snapshot" => HostMsg::Snapshot,
        other => {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!(
                "no control {other:?}; controls: threshold, dense, budget, pause, resume, snapshot"
            ),
            ))
        }
    };
    let conn = b.conn;
    let sent = format!("{msg:?}");
    st.mon.note(format!("{name}: web sent {sent}"));
    drop(st);
    let queued = s
        .controls
        .lock()
        .map_err(|_| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "control queue poisoned".into(),
            )
        })?
        .send((conn, msg));
    if queued.is_err() {
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the session is ending".into(),
        ));
    }
    tracing::info!("{peer}: {name} {sent}");
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "board": name, "sent": sent })),
    )
        .into_response())
}

#[derive(Deserialize)]
struct PushQuery {
    /// The bundle file's name, for logs and status.
    name: Option<String>,
}

/// The board's connection, if it is connected; 404 for a board never seen.
fn board_conn(s: &Shared, name: &str) -> Result<Option<u32>, ApiError> {
    let st = s.state();
    match st.view(name) {
        Some(b) => Ok(b.connected.then_some(b.conn)),
        None => {
            drop(st);
            Err(unknown(s, name))
        }
    }
}

fn push_error(e: super::push::PushError) -> ApiError {
    let code = match e {
        super::push::PushError::Busy(_) => StatusCode::CONFLICT,
        super::push::PushError::Empty => StatusCode::BAD_REQUEST,
    };
    ApiError(code, e.to_string())
}

/// `POST /api/boards/NAME/bundle?name=FILE` with a bundle `.tar` as the body: pushes it to the
/// board (now, or when it connects); `GET` the same path for how it goes.
async fn push(
    State(s): State<Arc<Shared>>,
    Path(board): Path<String>,
    Query(q): Query<PushQuery>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    authorize(&s, &headers, peer)?;
    let conn = board_conn(&s, &board)?;
    let name = q.name.unwrap_or_else(|| "bundle.tar".into());
    s.pushes()
        .push(&board, conn, name, bytes)
        .map_err(push_error)?;
    tracing::info!("{peer}: push to {board}");
    let status = s.pushes().status(&board);
    Ok((StatusCode::ACCEPTED, Json(status)).into_response())
}

async fn push_status(
    State(s): State<Arc<Shared>>,
    Path(board): Path<String>,
) -> Result<Response, ApiError> {
    board_conn(&s, &board)?;
    let status = s.pushes().status(&board);
    match status {
        Some(st) => Ok(Json(st).into_response()),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no push to {board} since this host started"),
        )),
    }
}

/// `POST /api/boards/NAME/rollback`: the board goes back to its previous bundle.
async fn rollback(
    State(s): State<Arc<Shared>>,
    Path(board): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&s, &headers, peer)?;
    let conn = board_conn(&s, &board)?
        .ok_or_else(|| ApiError(StatusCode::CONFLICT, format!("{board} is not connected")))?;
    s.pushes().rollback(&board, conn).map_err(push_error)?;
    tracing::info!("{peer}: rollback of {board}");
    let status = s.pushes().status(&board);
    Ok((StatusCode::ACCEPTED, Json(status)).into_response())
}
