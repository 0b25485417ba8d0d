//! Boards that publish straight to a broker (`svit-edge run --mqtt`), taken in as any other
//! link (`listen --mqtt-subscribe URL`): the board's retained or live hello on
//! `PREFIX/BOARD/wire` opens a session (checked by the protocol's handshake, as over TCP), its
//! later messages become `BoardEvent::Msg`s, `offline` on its availability topic or a new hello
//! ends the session. Control messages are published on `PREFIX/BOARD/control`.
//!
//! QoS 1 may deliver a frame twice after a reconnect: a frame whose sequence number is not above
//! the last one of its session is dropped here, so the recording holds each frame once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::Arc;

use anyhow::Result;
use svit_mqtt::{Client, Note, QoS};
use svit_protocol::clock::now_us;
use svit_protocol::session::{Event, Keys};
use svit_protocol::{self as proto, EdgeMsg, FrameDecoder, HostMsg, MAX_FRAME};

use super::{handshake, hello_record, next_conn, CONTROL_QUEUE};
use crate::event::{send, BoardEvent, Events};
use crate::record::Record;

pub struct Subscribe {
    pub url: String,
    pub prefix: String,
    /// Topic levels of the boards to take (MQTT wildcards allowed; default `+`, every board).
    pub boards: Vec<String>,
}

/// One board's session over the broker.
struct Session {
    conn: u32,
    device: String,
    last_seq: Option<u64>,
}

/// Connects now (errors are the caller's), then takes boards on a thread until `stop`.
pub fn start(sub: Subscribe, tx: Events, stop: Arc<AtomicBool>) -> Result<()> {
    let broker = svit_mqtt::Broker::parse(&sub.url)?;
    let id = format!("svit-host-sub-{}", std::process::id());
    let (client, conn) = svit_mqtt::connect(&broker, &id, None, 256)?;
    tracing::info!("MQTT: taking boards from {}:{}", broker.host, broker.port);
    std::thread::Builder::new()
        .name("mqtt-boards".into())
        .spawn(move || {
            let mut boards: HashMap<String, Session> = HashMap::new();
            let mut decoder = FrameDecoder::new(MAX_FRAME);
            svit_mqtt::network(conn, |note| {
                if stop.load(Ordering::Relaxed) {
                    return false;
                }
                match note {
                    Note::Connected => {
                        for b in &sub.boards {
                            for leaf in ["wire", "availability"] {
                                let t = format!("{}/{b}/{leaf}", sub.prefix);
                                if let Err(e) = client.try_subscribe(t, QoS::AtLeastOnce) {
                                    tracing::warn!("MQTT: subscribing: {e}");
                                }
                            }
                        }
                        true
                    }
                    Note::Publish(topic, payload) => on_publish(
                        &sub.prefix,
                        &client,
                        &tx,
                        &mut boards,
                        &mut decoder,
                        &topic,
                        &payload,
                    ),
                }
            });
            for (_, s) in boards.drain() {
                let reason = "host stopping".into();
                send(
                    &tx,
                    BoardEvent::Disconnected {
                        conn: s.conn,
                        device: s.device,
                        reason,
                    },
                );
            }
        })?;
    Ok(())
}

/// Handles one publish; false once the session loop is gone.
fn on_publish(
    prefix: &str,
    client: &Client,
    tx: &Events,
    boards: &mut HashMap<String, Session>,
    decoder: &mut FrameDecoder,
    topic: &str,
    payload: &[u8],
) -> bool {
    let Some((level, leaf)) = topic
        .strip_prefix(prefix)
        .and_then(|t| t.strip_prefix('/'))
        .and_then(|t| t.rsplit_once('/'))
    else {
        return true;
    };
    if leaf == "availability" {
        if payload == b"offline" {
            if let Some(s) = boards.remove(level) {
                let reason = "offline (its availability topic)".into();
                return send(
                    tx,
                    BoardEvent::Disconnected {
                        conn: s.conn,
                        device: s.device,
                        reason,
                    },
                );
            }
        }
        return true;
    }
    // One message per publish: a torn one must not run into the next.
    *decoder = FrameDecoder::new(MAX_FRAME);
    for msg in decoder.frames::<EdgeMsg>(payload) {
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("MQTT {topic}: bad message ignored: {e}");
                continue;
            }
        };
        if let EdgeMsg::Hello(_) = &msg {
            if let Some(old) = boards.remove(level) {
                let reason = "the board started again".into();
                send(
                    tx,
                    BoardEvent::Disconnected {
                        conn: old.conn,
                        device: old.device,
                        reason,
                    },
                );
            }
            let conn = next_conn();
            match handshake(&Keys::None).on(msg).event {
                Event::Admitted(hello) => {
                    let control =
                        control_writer(client.clone(), format!("{prefix}/{level}/control"));
                    boards.insert(
                        level.to_string(),
                        Session {
                            conn,
                            device: hello.device.clone(),
                            last_seq: None,
                        },
                    );
                    let rec = hello_record(conn, hello);
                    if !send(
                        tx,
                        BoardEvent::Connected {
                            rec,
                            control: Some(control),
                        },
                    ) {
                        return false;
                    }
                }
                Event::Refused(e) => {
                    send(
                        tx,
                        BoardEvent::Refused {
                            conn,
                            reason: format!("{topic}: {e}"),
                        },
                    );
                }
                Event::Pending => {}
            }
            continue;
        }
        let Some(s) = boards.get_mut(level) else {
            continue; // Frames before the hello: a late subscriber waits for the retained one.
        };
        if let EdgeMsg::Frame(f) = &msg {
            if s.last_seq.is_some_and(|l| f.seq <= l) {
                continue; // A QoS 1 duplicate.
            }
            s.last_seq = Some(f.seq);
        }
        let rec = Record {
            recv_us: now_us(),
            conn: s.conn,
            device: s.device.clone(),
            msg,
        };
        if !send(tx, BoardEvent::Msg(rec)) {
            return false;
        }
    }
    true
}

/// Publishes the board's control messages; the session loop's sends never wait.
fn control_writer(client: Client, topic: String) -> SyncSender<HostMsg> {
    let (tx, rx) = mpsc::sync_channel::<HostMsg>(CONTROL_QUEUE);
    std::thread::spawn(move || {
        for msg in rx {
            let Ok(bytes) = proto::encode(&msg, MAX_FRAME) else {
                continue;
            };
            if let Err(e) = client.try_publish(topic.clone(), QoS::AtLeastOnce, false, bytes) {
                tracing::warn!("control on {topic} not sent: {e}");
            }
        }
    });
    tx
}
