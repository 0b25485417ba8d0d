//! The MQTT bridge (`listen --mqtt URL`): one more `event::Consumer`. Per board it publishes
//! each frame's detections, stats every few seconds, retained availability, debounced
//! per-label events and retained Home Assistant discovery configurations (`topics.rs`); it
//! takes `PREFIX/BOARD/set/{threshold,budget,pause,resume,snapshot}` and hands them to the session as
//! control messages.
//!
//! Invariant: the session loop never waits on the broker. Publishes go into rumqttc's bounded
//! request queue with `try_publish` (a full queue drops the message and counts it); the network
//! runs on the bridge's own thread, which reconnects with backoff and logs an outage at most
//! once a minute.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::json;
use svit_mqtt::{Client, LastWill, Note, QoS};
use svit_protocol::{EdgeMsg, HostMsg};

use crate::event::{Action, BoardEvent, Consumer, Event};
use crate::view::State;

mod topics;

/// Requests rumqttc queues before `try_publish` starts dropping.
const QUEUE: usize = 4096;
/// Frames a new per-label count must hold before it is an event.
const DEBOUNCE: u32 = 3;

pub struct Options {
    /// `mqtt://[USER:PASS@]HOST[:PORT]`.
    pub url: String,
    pub prefix: String,
    /// QoS of the per-frame detections (stats and events go at 0, availability and discovery
    /// at 1).
    pub qos: u8,
    /// Home Assistant's discovery prefix; `None`: no discovery.
    pub discovery: Option<String>,
    pub stats_every: Duration,
}

pub struct Bridge {
    client: Client,
    notes: Receiver<Note>,
    state: State,
    opts: Options,
    frames_qos: QoS,
    last_stats: Instant,
    events: HashMap<String, Debounce>,
    dropped: u64,
    network: std::thread::JoinHandle<()>,
}

/// Connects (an unreachable broker or refused login is an error now), then runs the network on
/// a thread.
pub fn start(opts: Options) -> Result<Bridge> {
    let broker = svit_mqtt::Broker::parse(&opts.url)?;
    let frames_qos = svit_mqtt::qos(opts.qos)?;
    let will = LastWill::new(
        topics::bridge_availability(&opts.prefix),
        "offline",
        QoS::AtLeastOnce,
        true,
    );
    let id = format!("svit-host-{}", std::process::id());
    let (client, conn) = svit_mqtt::connect(&broker, &id, Some(will), QUEUE)?;
    tracing::info!("MQTT: connected to {}:{}", broker.host, broker.port);
    let (tx, notes) = mpsc::channel();
    let network = std::thread::Builder::new()
        .name("mqtt".into())
        .spawn(move || svit_mqtt::network(conn, |n| tx.send(n).is_ok()))?;
    Ok(Bridge {
        client,
        notes,
        state: State::default(),
        frames_qos,
        last_stats: Instant::now(),
        events: HashMap::new(),
        dropped: 0,
        network,
        opts,
    })
}

impl Bridge {
    /// Sends what is queued (the offline availability of a stop among it), then disconnects;
    /// waits at most 3 s for a broker that is away.
    pub fn close(mut self) {
        // What the last will would say: every board offline, and the bridge.
        for name in self.state.names() {
            let topic = self.topic(&name, "availability");
            self.publish(topic, QoS::AtLeastOnce, true, b"offline".to_vec());
        }
        let bridge = topics::bridge_availability(&self.opts.prefix);
        self.publish(bridge, QoS::AtLeastOnce, true, b"offline".to_vec());
        let _ = self.client.try_disconnect();
        let deadline = Instant::now() + Duration::from_secs(3);
        while !self.network.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn publish(&mut self, topic: String, qos: QoS, retain: bool, payload: Vec<u8>) {
        if self
            .client
            .try_publish(topic, qos, retain, payload)
            .is_err()
        {
            self.dropped += 1;
            if self.dropped.is_power_of_two() {
                tracing::warn!(
                    "MQTT: {} messages dropped (the broker is not keeping up or away)",
                    self.dropped
                );
            }
        }
    }

    fn topic(&self, board: &str, leaf: &str) -> String {
        topics::board(&self.opts.prefix, board, leaf)
    }

    /// The board's retained availability, and with `discover` its discovery configurations.
    fn announce(&mut self, board: &str, discover: bool) {
        let Some(view) = self.state.view(board) else {
            return;
        };
        let (model, online) = (view.hello.model.clone(), view.connected);
        let avail = if online { "online" } else { "offline" };
        self.publish(
            self.topic(board, "availability"),
            QoS::AtLeastOnce,
            true,
            avail.into(),
        );
        if let Some(ha) = self.opts.discovery.clone().filter(|_| discover) {
            for (topic, cfg) in topics::discovery(&ha, &self.opts.prefix, board, &model) {
                self.publish(topic, QoS::AtLeastOnce, true, cfg.to_string().into_bytes());
            }
        }
    }

    fn frame(&mut self, board: &str, f: &svit_protocol::Frame) {
        let Some(view) = self.state.view(board) else {
            return;
        };
        let label = |c: u16| {
            view.hello
                .model
                .labels
                .get(c as usize)
                .cloned()
                .unwrap_or_else(|| format!("class {c}"))
        };
        let dets: Vec<_> = f
            .detections
            .iter()
            .map(|d| json!({"label": label(d.class), "score": d.score, "box": d.bbox}))
            .collect();
        let mut counts = BTreeMap::new();
        for d in &f.detections {
            *counts.entry(label(d.class)).or_insert(0u32) += 1;
        }
        let msg = json!({
            "seq": f.seq, "capture_us": f.capture_us, "threshold": f.threshold,
            "kept": view.kept_now(), "total_ms": f.times.total_us() as f64 / 1000.0,
            "detections": dets,
        });
        self.publish(
            self.topic(board, "detections"),
            self.frames_qos,
            false,
            msg.to_string().into_bytes(),
        );
        let changes = self
            .events
            .entry(board.to_string())
            .or_default()
            .observe(counts);
        for (label, previous, count) in changes {
            let change = if count > previous { "entered" } else { "left" };
            let ev = json!({"label": label, "count": count, "previous": previous, "change": change, "seq": f.seq});
            self.publish(
                self.topic(board, "events"),
                QoS::AtMostOnce,
                false,
                ev.to_string().into_bytes(),
            );
        }
    }

    fn stats(&mut self) {
        let now = svit_protocol::clock::now_us();
        for b in self.state.boards(now) {
            let mut v = serde_json::to_value(&b).unwrap_or_default();
            let counts = self
                .events
                .get(&b.name)
                .map(|d| d.current.clone())
                .unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.remove("history");
                o.remove("detections");
                o.insert("counts".into(), json!(counts));
            }
            self.publish(
                self.topic(&b.name, "stats"),
                QoS::AtMostOnce,
                false,
                v.to_string().into_bytes(),
            );
        }
    }

    /// A message on `PREFIX/BOARD/set/ACTION`, as a control for that board's connection.
    fn control(&mut self, topic: &str, payload: &[u8]) -> Result<Option<(u32, HostMsg)>, String> {
        let rest = topic
            .strip_prefix(&format!("{}/", self.opts.prefix))
            .ok_or("not under the prefix")?;
        let (board, action) = rest.split_once("/set/").ok_or("not a set topic")?;
        let view = self
            .state
            .mon
            .boards
            .iter()
            .find(|b| topics::escape(&b.hello.device) == board)
            .ok_or_else(|| format!("no board {board}"))?;
        if !view.connected {
            return Err(format!("{board} is not connected"));
        }
        let text = std::str::from_utf8(payload)
            .map_err(|_| "payload is not UTF-8")?
            .trim();
        let msg = match action {
            "threshold" => {
                let t: f32 = text
                    .parse()
                    .map_err(|_| format!("threshold {text:?} is not a number"))?;
                if !(0.0..=1.0).contains(&t) {
                    return Err(format!("threshold {t} is outside [0, 1]"));
                }
                HostMsg::SetThreshold(t)
            }
            // A number of milliseconds, or "none" (or empty) for no budget.
            "budget" if text.is_empty() || text.eq_ignore_ascii_case("none") => {
                HostMsg::SetBudget(None)
            }
            "budget" => {
                let ms: f32 = text
                    .parse()
                    .map_err(|_| format!("budget {text:?} is not a number of milliseconds"))?;
                if !(ms.is_finite() && ms > 0.0) {
                    return Err(format!("budget {ms} ms is not positive"));
                }
                HostMsg::SetBudget(Some(ms))
            }
            "pause" => HostMsg::Pause,
            "resume" => HostMsg::Resume,
            "snapshot" => HostMsg::Snapshot,
            other => {
                return Err(format!(
                    "no control {other:?} (threshold, budget, pause, resume, snapshot)"
                ))
            }
        };
        Ok(Some((view.conn, msg)))
    }

    fn notes(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        while let Ok(note) = self.notes.try_recv() {
            match note {
                Note::Connected => {
                    let set = format!("{}/+/set/+", self.opts.prefix);
                    if let Err(e) = self.client.try_subscribe(set, QoS::AtLeastOnce) {
                        tracing::warn!("MQTT: subscribing to controls: {e}");
                    }
                    let bridge = topics::bridge_availability(&self.opts.prefix);
                    self.publish(bridge, QoS::AtLeastOnce, true, b"online".to_vec());
                    for name in self.state.names() {
                        self.announce(&name, true);
                    }
                }
                Note::Publish(topic, payload) => match self.control(&topic, &payload) {
                    Ok(Some((conn, msg))) => {
                        tracing::info!("MQTT {topic}: {msg:?}");
                        actions.push(Action::Control(conn, msg));
                    }
                    Ok(None) => {}
                    Err(why) => tracing::warn!("MQTT control on {topic} ignored: {why}"),
                },
            }
        }
        actions
    }
}

impl Consumer for Bridge {
    fn on(&mut self, ev: &Event) -> Result<Vec<Action>> {
        match ev {
            Event::Board(BoardEvent::Connected { rec, .. }) => {
                self.state.record(rec);
                self.announce(&rec.device, true);
            }
            Event::Board(BoardEvent::Msg(rec)) => {
                self.state.record(rec);
                match &rec.msg {
                    EdgeMsg::Frame(f) => self.frame(&rec.device, f),
                    // Another bundle: discovery names it (the device's model and firmware).
                    EdgeMsg::Push(
                        svit_protocol::PushStatus::Switched { .. }
                        | svit_protocol::PushStatus::RolledBack { .. },
                    ) => self.announce(&rec.device, true),
                    _ => {}
                }
            }
            Event::Board(BoardEvent::Disconnected {
                conn,
                device,
                reason,
            }) => {
                self.state.mon.disconnected(*conn, reason);
                self.announce(device, false);
            }
            Event::Tick if self.last_stats.elapsed() >= self.opts.stats_every => {
                self.last_stats = Instant::now();
                self.stats();
            }
            _ => {}
        }
        Ok(self.notes())
    }
}

/// Per-label counts that must hold `DEBOUNCE` frames before they replace the published ones.
#[derive(Default)]
struct Debounce {
    current: BTreeMap<String, u32>,
    candidate: BTreeMap<String, u32>,
    streak: u32,
}

impl Debounce {
    /// The labels whose count changed, as (label, previous, now), once the change has held.
    fn observe(&mut self, counts: BTreeMap<String, u32>) -> Vec<(String, u32, u32)> {
        if counts == self.current {
            self.streak = 0;
            return Vec::new();
        }
        if counts == self.candidate {
            self.streak += 1;
        } else {
            self.candidate = counts;
            self.streak = 1;
        }
        if self.streak < DEBOUNCE {
            return Vec::new();
        }
        let labels: std::collections::BTreeSet<&String> =
            self.current.keys().chain(self.candidate.keys()).collect();
        let changes = labels
            .into_iter()
            .filter_map(|l| {
                let (a, b) = (
                    self.current.get(l).copied().unwrap_or(0),
                    self.candidate.get(l).copied().unwrap_or(0),
                );
                (a != b).then(|| (l.clone(), a, b))
            })
            .collect();
        self.current = self.candidate.clone();
        self.streak = 0;
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(v: &[(&str, u32)]) -> BTreeMap<String, u32> {
        v.iter().map(|(l, n)| (l.to_string(), *n)).collect()
    }

    #[test]
    fn a_count_is_an_event_only_once_it_holds() {
        let mut d = Debounce::default();
        let two = counts(&[("star", 2)]);
        assert!(d.observe(two.clone()).is_empty());
        assert!(d.observe(counts(&[])).is_empty(), "a one-frame blip resets");
        assert!(d.observe(two.clone()).is_empty());
        assert!(d.observe(two.clone()).is_empty());
        assert_eq!(d.observe(two.clone()), vec![("star".into(), 0, 2)]);
        assert!(d.observe(two).is_empty());
        for _ in 0..2 {
            assert!(d.observe(counts(&[("ring", 1)])).is_empty());
        }
        assert_eq!(
            d.observe(counts(&[("ring", 1)])),
            vec![("ring".into(), 0, 1), ("star".into(), 2, 0)]
        );
    }
}
