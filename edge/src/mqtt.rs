//! `svit-edge run --mqtt URL`: the board publishes straight to a broker. Each wire message
//! (the same COBS-framed postcard bytes as over TCP) is one publish on `PREFIX/BOARD/wire`, at
//! QoS 1; the hello is also retained there, so a host that subscribes later knows the board
//! and its schema. `PREFIX/BOARD/availability` is `online`, retained, with `offline` as the
//! last will. Control messages arrive on `PREFIX/BOARD/control`.
//!
//! While the broker is away rumqttc keeps at most `QUEUE` publishes; beyond that frames are
//! dropped and counted (`Frame::dropped_total`), so inference never waits, and the host sees the
//! gap in sequence numbers.
//!
//! With `--key` the session is the protocol's (`svit_protocol::session`): a host's Hello and
//! Noise message on the control topic start one (again whenever a host restarts), the board
//! answers on the wire topic, and from then on both directions are sealed. Until a host has
//! done so, frames have no one to be sealed for: they are dropped and counted. QoS 1 may
//! deliver a control message twice; the second is a replay and is ignored.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use std::sync::Mutex;
use svit_mqtt::{Broker, LastWill, Note, QoS};

use svit_protocol::secure::{Rx, SecureError, Tx};
use svit_protocol::session::{EdgeHandshake, Event};
use svit_protocol::{self as proto, EdgeMsg, FrameDecoder, HostMsg};

use crate::control::Control;
use crate::link::{encode, fresh, Endpoint, Next, Outbox};

/// Publishes rumqttc holds while the broker is slow or away.
const QUEUE: usize = 64;

pub struct Target {
    pub broker: Broker,
    pub prefix: String,
}

/// The board's side of the broker link: plain, or a keyed session's state.
enum Link {
    Plain,
    /// With a key: the handshake (one hello for the process, answered by each host that comes)
    /// and, once a host answered, the session's halves.
    Keyed {
        hs: Box<EdgeHandshake>,
        session: Option<(Tx, Rx)>,
    },
}

impl Link {
    /// One message from the control topic: applied, or handshake steps to publish on the wire.
    fn on_control(&mut self, msg: HostMsg, ctl: &Control) -> Vec<EdgeMsg> {
        let Link::Keyed { hs, session } = self else {
            tracing::info!("control from MQTT: {msg:?}");
            ctl.apply(&msg);
            return Vec::new();
        };
        if let (Some((_, rx)), HostMsg::Sealed(_)) = (session.as_mut(), &msg) {
            match crate::link::control(rx, msg, ctl) {
                Ok(()) | Err(SecureError::Replay { .. }) => {}
                Err(e) => {
                    tracing::warn!("session with the host over MQTT ended: {e}");
                    *session = None;
                }
            }
            return Vec::new();
        }
        if matches!(msg, HostMsg::Hello(_)) {
            // A host starting a session (or knocking after it ended ours): the old one is over.
            *session = None;
        }
        let step = hs.on(msg);
        match step.event {
            Event::Admitted(_) => {
                tracing::info!("a host opened a session over MQTT");
                *session = Some(hs.link());
            }
            Event::Refused(e) => tracing::warn!("host over MQTT: {e}"),
            Event::Pending => {}
        }
        step.send
    }

    /// Whether a key is set and no host has a session yet: say hello again.
    fn awaiting_host(&self) -> bool {
        matches!(self, Link::Keyed { session: None, .. })
    }

    /// `msg` as wire bytes, or `None` when a key is set and no host has a session yet.
    fn encode(&mut self, msg: &EdgeMsg) -> Option<Result<Vec<u8>>> {
        match self {
            Link::Plain => Some(encode(&mut Tx::Plain, msg)),
            Link::Keyed { session, .. } => session.as_mut().map(|(tx, _)| encode(tx, msg)),
        }
    }
}

pub fn mqtt_loop(target: Target, end: Endpoint) -> Result<u64> {
    let Endpoint {
        out: q,
        hello,
        key,
        ctl,
        stats,
    } = end;

    let topic = |leaf: &str| svit_mqtt::topic(&target.prefix, &hello.device, leaf);
    let (wire, control, avail) = (topic("wire"), topic("control"), topic("availability"));
    let will = LastWill::new(avail.clone(), "offline", QoS::AtLeastOnce, true);
    let id = format!("svit-edge-{}", svit_mqtt::escape(&hello.device));
    let (client, conn) = svit_mqtt::connect(&target.broker, &id, Some(will), QUEUE)?;
    tracing::info!("streaming to the MQTT broker on {wire}");
    let hs = EdgeHandshake::new(fresh(&hello, &ctl), key.clone());
    let hello_bytes = encode(&mut Tx::Plain, &hs.hello())?;
    let link = Arc::new(Mutex::new(match key {
        Some(_) => Link::Keyed {
            hs: Box::new(hs),
            session: None,
        },
        None => Link::Plain,
    }));
    let network = {
        let (client, wire, control, avail, ctl, link, hello_bytes) = (
            client.clone(),
            wire.clone(),
            control.clone(),
            avail.clone(),
            ctl.clone(),
            link.clone(),
            hello_bytes.clone(),
        );
        let mut dec = FrameDecoder::new(proto::push::MAX_CONTROL);
        std::thread::Builder::new()
            .name("mqtt".into())
            .spawn(move || {
                svit_mqtt::network(conn, |note| {
                    match note {
                        Note::Connected => {
                            let _ = client.try_subscribe(control.clone(), QoS::AtLeastOnce);
                            let _ = client.try_publish(
                                wire.clone(),
                                QoS::AtLeastOnce,
                                true,
                                hello_bytes.clone(),
                            );
                            let _ =
                                client.try_publish(avail.clone(), QoS::AtLeastOnce, true, "online");
                        }
                        Note::Publish(t, payload) if t == control => {
                            for msg in dec.frames::<HostMsg>(&payload) {
                                match msg {
                                    Ok(m) => {
                                        let mut l = link.lock().unwrap_or_else(|p| p.into_inner());
                                        for answer in l.on_control(m, &ctl) {
                                            let Ok(b) = encode(&mut Tx::Plain, &answer) else {
                                                continue;
                                            };
                                            let _ = client.try_publish(
                                                wire.clone(),
                                                QoS::AtLeastOnce,
                                                false,
                                                b,
                                            );
                                        }
                                    }
                                    Err(e) => {
                                        tracing::warn!("ignored a bad control message on {t}: {e}")
                                    }
                                }
                            }
                        }
                        Note::Publish(..) => {}
                    }
                    true
                })
            })?
    };
    let mut out = Outbox::new(q, stats.clone());
    let mut last_hello = Instant::now();
    loop {
        // A host may have missed the hello (it answered before we subscribed, or it restarted):
        // with a key and no session, say it again every second.
        if last_hello.elapsed() >= Duration::from_secs(1)
            && link
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .awaiting_host()
        {
            let _ = client.try_publish(wire.clone(), QoS::AtLeastOnce, true, hello_bytes.clone());
            last_hello = Instant::now();
        }
        match out.next(Duration::from_millis(200)) {
            Next::Send(msg) => {
                let bytes = link.lock().unwrap_or_else(|p| p.into_inner()).encode(&msg);
                let sent = bytes.map(|b| {
                    b.map(|b| client.try_publish(wire.clone(), QoS::AtLeastOnce, false, b))
                });
                if !matches!(sent, Some(Ok(Ok(())))) {
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            Next::Idle => {}
            Next::Done => break,
        }
    }
    let _ = client.try_publish(avail, QoS::AtLeastOnce, true, "offline");
    let _ = client.try_disconnect();
    let deadline = Instant::now() + Duration::from_secs(3);
    while !network.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(0)
}
