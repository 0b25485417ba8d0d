//! `svit-edge run --mqtt URL`: the board publishes straight to a broker. Each wire message
//! (the same COBS-framed postcard bytes as over TCP) is one publish on `PREFIX/BOARD/wire`, at
//! QoS 1; the hello is also retained there, so a host that subscribes later knows the board
//! and its schema. `PREFIX/BOARD/availability` is `online`, retained, with `offline` as the
//! last will. Control messages arrive on `PREFIX/BOARD/control`.
//!
//! While the broker is away rumqttc keeps at most `QUEUE` publishes; beyond that frames are
//! dropped and counted (`Frame::dropped_total`), so inference never waits, and the host sees the
//! gap in sequence numbers.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use svit_mqtt::{Broker, LastWill, Note, QoS};
use svit_protocol::secure::Tx;
use svit_protocol::{self as proto, EdgeMsg, FrameDecoder, HostMsg};

use crate::link::{encode, fresh, Next, Outbox};
use crate::pipeline::{Control, Queue, Stats};

/// Publishes rumqttc holds while the broker is slow or away.
const QUEUE: usize = 64;

pub struct Target {
    pub broker: Broker,
    pub prefix: String,
}

pub fn mqtt_loop(
    target: Target,
    q: Arc<Queue<EdgeMsg>>,
    hello: proto::Hello,
    ctl: Arc<Control>,
    stats: Arc<Stats>,
) -> Result<u64> {
    let topic = |leaf: &str| svit_mqtt::topic(&target.prefix, &hello.device, leaf);
    let (wire, control, avail) = (topic("wire"), topic("control"), topic("availability"));
    let will = LastWill::new(avail.clone(), "offline", QoS::AtLeastOnce, true);
    let id = format!("svit-edge-{}", svit_mqtt::escape(&hello.device));
    let (client, conn) = svit_mqtt::connect(&target.broker, &id, Some(will), QUEUE)?;
    tracing::info!("streaming to the MQTT broker on {wire}");
    // No key on this path yet: the broker's own TLS and accounts protect it.
    let hello_bytes = encode(&mut Tx::Plain, &EdgeMsg::Hello(fresh(&hello)))?;
    let network = {
        let (client, wire, control, avail, ctl) = (
            client.clone(),
            wire.clone(),
            control.clone(),
            avail.clone(),
            ctl.clone(),
        );
        let mut dec = FrameDecoder::new(4096);
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
                                        tracing::info!("control from MQTT: {m:?}");
                                        ctl.apply(&m);
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
    loop {
        match out.next(Duration::from_millis(200)) {
            Next::Send(msg) => {
                let sent = encode(&mut Tx::Plain, &msg)
                    .map(|bytes| client.try_publish(wire.clone(), QoS::AtLeastOnce, false, bytes));
                if !matches!(sent, Ok(Ok(()))) {
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
