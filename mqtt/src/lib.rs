//! The MQTT plumbing `svit-host` and `svit-edge` share (rumqttc, MQTT 3.1.1): broker URLs,
//! topic names, connecting with a clear error, and the network loop that reconnects with
//! backoff and logs an outage at most once a minute.
//!
//! Invariant: nobody waits on the broker but the network thread. Callers publish with
//! `try_publish` into rumqttc's bounded request queue and count what a full queue refuses.

use std::time::{Duration, Instant};

pub use rumqttc::{Client, LastWill, QoS};
use rumqttc::{Connection, Event, MqttOptions, Outgoing, Packet};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0:?}: expected mqtt://[USER:PASS@]HOST[:PORT]")]
    Url(String),
    #[error("MQTT QoS {0}: 0, 1 or 2")]
    Qos(u8),
    #[error("MQTT broker {0}: {1}")]
    Connect(String, String),
}

/// Where a broker is and how to log in.
#[derive(Debug, PartialEq)]
pub struct Broker {
    pub host: String,
    pub port: u16,
    pub login: Option<(String, String)>,
}

impl Broker {
    pub fn parse(url: &str) -> Result<Broker, Error> {
        let bad = || Error::Url(url.to_string());
        let rest = url.strip_prefix("mqtt://").ok_or_else(bad)?;
        let (login, hostport) = match rest.rsplit_once('@') {
            Some((l, h)) => {
                let (u, p) = l.split_once(':').ok_or_else(bad)?;
                (Some((u.to_string(), p.to_string())), h)
            }
            None => (None, rest),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| bad())?),
            None => (hostport, 1883),
        };
        if host.is_empty() || host.contains('/') {
            return Err(bad());
        }
        Ok(Broker {
            host: host.to_string(),
            port,
            login,
        })
    }

    fn name(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

pub fn qos(q: u8) -> Result<QoS, Error> {
    match q {
        0 => Ok(QoS::AtMostOnce),
        1 => Ok(QoS::AtLeastOnce),
        2 => Ok(QoS::ExactlyOnce),
        _ => Err(Error::Qos(q)),
    }
}

/// A board's name as one topic level: characters other than ASCII letters, digits, `-` and `_`
/// (MQTT's `+`, `#` and `/` among them) become `_`.
pub fn escape(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "_".into()
    } else {
        s
    }
}

/// `PREFIX/BOARD/LEAF`, the board's name escaped.
pub fn topic(prefix: &str, board: &str, leaf: &str) -> String {
    format!("{prefix}/{}/{leaf}", escape(board))
}

/// Connects and waits (at most 10 s) for the broker's answer, so a wrong address or refused
/// login is an error now. `queue`: publishes rumqttc holds before `try_publish` refuses.
pub fn connect(
    broker: &Broker,
    client_id: &str,
    will: Option<LastWill>,
    queue: usize,
) -> Result<(Client, Connection), Error> {
    let mut mo = MqttOptions::new(client_id, broker.host.clone(), broker.port);
    mo.set_keep_alive(Duration::from_secs(10));
    mo.set_max_packet_size(1 << 20, 1 << 20);
    if let Some(w) = will {
        mo.set_last_will(w);
    }
    if let Some((u, p)) = &broker.login {
        mo.set_credentials(u, p);
    }
    let (client, mut conn) = Client::new(mo, queue);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match conn.recv_timeout(left) {
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => return Ok((client, conn)),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(Error::Connect(broker.name(), e.to_string())),
            Err(_) => return Err(Error::Connect(broker.name(), "no answer in 10 s".into())),
        }
    }
}

/// What the network loop hands its owner.
pub enum Note {
    /// (Re)connected: subscribe and publish retained state again.
    Connected,
    Publish(String, Vec<u8>),
}

/// Drives the connection until `on` returns false or a requested disconnect has gone out
/// (after everything queued before it). The first `Connected` is sent at once.
pub fn network(mut conn: Connection, mut on: impl FnMut(Note) -> bool) {
    if !on(Note::Connected) {
        return;
    }
    let mut backoff = Duration::from_millis(250);
    let mut last_log: Option<Instant> = None;
    for ev in conn.iter() {
        let note = match ev {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                tracing::info!("MQTT: connected again");
                backoff = Duration::from_millis(250);
                Some(Note::Connected)
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                Some(Note::Publish(p.topic.to_string(), p.payload.to_vec()))
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(_) => None,
            Err(e) => {
                if last_log.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    tracing::warn!("MQTT: {e}; retrying (logged at most once a minute)");
                    last_log = Some(Instant::now());
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(10));
                None
            }
        };
        if let Some(n) = note {
            if !on(n) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        let b = Broker::parse("mqtt://u:p@broker.lan:1884").unwrap();
        assert_eq!((b.host.as_str(), b.port), ("broker.lan", 1884));
        assert_eq!(b.login, Some(("u".into(), "p".into())));
        assert_eq!(Broker::parse("mqtt://10.0.0.2").unwrap().port, 1883);
        for bad in ["broker:1883", "mqtt://", "mqtt://h:port", "mqtt://u@h"] {
            let e = Broker::parse(bad).expect_err(bad).to_string();
            assert!(e.contains("expected mqtt://"), "{e}");
        }
    }

    #[test]
    fn names_that_are_not_one_topic_level_are_escaped() {
        assert_eq!(escape("pi-desk_2"), "pi-desk_2");
        assert_eq!(escape("a/b+c#d e"), "a_b_c_d_e");
        assert_eq!(escape(""), "_");
        assert_eq!(topic("svit", "a/b", "wire"), "svit/a_b/wire");
    }
}
