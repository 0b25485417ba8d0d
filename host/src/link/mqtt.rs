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
use svit_protocol::secure::{Rx, SecureError, Tx};
use svit_protocol::session::{Event, HostHandshake, Keys};
use svit_protocol::{EdgeMsg, FrameDecoder, HostMsg, MAX_FRAME};

use super::{encode_all, encode_control, handshake, hello_record, next_conn, CONTROL_QUEUE};
use crate::event::{send, BoardEvent, Events};
use crate::record::Record;

pub struct Subscribe {
    pub url: String,
    pub prefix: String,
    /// Topic levels of the boards to take (MQTT wildcards allowed; default `+`, every board).
    pub boards: Vec<String>,
    /// With a key, each board's session is the protocol's keyed one, over the two topics.
    pub keys: Keys,
}

/// One board's session over the broker.
struct Session {
    conn: u32,
    device: String,
    last_seq: Option<u64>,
    hs: Box<HostHandshake>,
    /// The session's receiving half, once admitted.
    rx: Option<Rx>,
}

/// Reports an admitted session's end; false once the session loop is gone.
fn end(tx: &Events, s: Session, reason: &str) -> bool {
    !s.hs.is_admitted()
        || send(
            tx,
            BoardEvent::Disconnected {
                conn: s.conn,
                device: s.device,
                reason: reason.into(),
            },
        )
}

/// Publishes handshake messages (plain) on a board's control topic.
fn publish(client: &Client, topic: &str, msgs: &[HostMsg]) {
    if msgs.is_empty() {
        return;
    }
    if let Err(e) = client.try_publish(topic, QoS::AtLeastOnce, false, encode_all(msgs)) {
        tracing::warn!("MQTT: {topic}: {e}");
    }
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
                        &sub,
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
                end(&tx, s, "host stopping");
            }
        })?;
    Ok(())
}

/// Handles one publish; false once the session loop is gone.
fn on_publish(
    sub: &Subscribe,
    client: &Client,
    tx: &Events,
    boards: &mut HashMap<String, Session>,
    decoder: &mut FrameDecoder,
    topic: &str,
    payload: &[u8],
) -> bool {
    let (prefix, keys) = (&sub.prefix, &sub.keys);
    let Some((level, leaf)) = topic
        .strip_prefix(prefix.as_str())
        .and_then(|t| t.strip_prefix('/'))
        .and_then(|t| t.rsplit_once('/'))
    else {
        return true;
    };
    if leaf == "availability" {
        if payload == b"offline" {
            if let Some(s) = boards.remove(level) {
                return end(tx, s, "offline (its availability topic)");
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
        let control_topic = format!("{prefix}/{level}/control");
        if let EdgeMsg::Hello(h) = &msg {
            // A pending session's hello again (the board repeats it until a host answers) gets
            // the same answer; any other hello starts a new session.
            if !boards
                .get(level)
                .is_some_and(|s| !s.hs.is_admitted() && s.hs.is_for(h))
            {
                if let Some(old) = boards.remove(level) {
                    if !end(tx, old, "the board started again") {
                        return false;
                    }
                }
                boards.insert(
                    level.to_string(),
                    Session {
                        conn: next_conn(),
                        device: h.device.clone(),
                        last_seq: None,
                        hs: Box::new(handshake(keys)),
                        rx: None,
                    },
                );
            }
        }
        let Some(s) = boards.get_mut(level) else {
            continue; // Frames before the hello: a late subscriber waits for the retained one.
        };
        if !s.hs.is_admitted() || matches!(msg, EdgeMsg::Hello(_)) {
            // Until the handshake is done only its messages count: the rest is the board's
            // previous session still draining from the broker.
            if !matches!(msg, EdgeMsg::Hello(_) | EdgeMsg::Auth(_)) {
                continue;
            }
            let step = s.hs.on(msg);
            publish(client, &control_topic, &step.send);
            match step.event {
                Event::Admitted(hello) => {
                    let (wire_tx, wire_rx) = s.hs.link();
                    s.rx = Some(wire_rx);
                    let control = control_writer(client.clone(), control_topic, wire_tx, s.conn);
                    let rec = hello_record(s.conn, hello);
                    let ev = BoardEvent::Connected {
                        rec,
                        control: Some(control),
                    };
                    if !send(tx, ev) {
                        return false;
                    }
                }
                Event::Refused(e) => {
                    let reason = format!("{topic}: {e}");
                    send(
                        tx,
                        BoardEvent::Refused {
                            conn: s.conn,
                            reason,
                        },
                    );
                    boards.remove(level);
                }
                Event::Pending => {}
            }
            continue;
        }
        let got = match s.rx.as_mut().map(|rx| rx.accept(msg)) {
            Some(Ok(got)) => got,
            // QoS 1 delivers again after a reconnect: a sealed duplicate is a replay.
            Some(Err(SecureError::Replay { .. })) | None => continue,
            Some(Err(e)) => {
                // Nothing that fails to authenticate is recorded. The knock makes the board
                // drop its side and say hello again.
                tracing::warn!("board {} over MQTT: {e}; ending the session", s.device);
                publish(
                    client,
                    &control_topic,
                    &[HostMsg::Hello(super::our_hello())],
                );
                let old = boards.remove(level).expect("looked up above");
                if !end(tx, old, &e.to_string()) {
                    return false;
                }
                continue;
            }
        };
        if got.missed > 0 {
            tracing::warn!(
                "board {}: {} message(s) lost on the way",
                s.device,
                got.missed
            );
        }
        let Some(msg) = got.msg else { continue };
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
fn control_writer(client: Client, topic: String, mut wire: Tx, conn: u32) -> SyncSender<HostMsg> {
    let (tx, rx) = mpsc::sync_channel::<HostMsg>(CONTROL_QUEUE);
    std::thread::spawn(move || {
        for msg in rx {
            let Some(bytes) = encode_control(&mut wire, &msg, conn) else {
                continue;
            };
            if let Err(e) = client.try_publish(topic.clone(), QoS::AtLeastOnce, false, bytes) {
                tracing::warn!("control on {topic} not sent: {e}");
            }
        }
    });
    tx
}
