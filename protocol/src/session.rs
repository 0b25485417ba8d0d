//! The hello/auth handshake, sans-IO: the one place it is written. TCP and serial drive it on
//! both sides; each feeds every message it reads and sends what comes out.
//!
//! ```text
//! edge                         host
//! Hello(edge nonce)      ->
//!                        <-    Hello(nonce) [+ Auth(mac over edge nonce)   with a key]
//! [Auth(mac over host nonce) -> with a key]
//! ```
//! Without a key the host's answer carries the edge's own nonce, so an edge on a serial line
//! tells an answer from a knock (a host Hello with any other nonce). With a key the host's nonce
//! is fresh and the edge's Auth covers it. A transport decides what a [`Step::Refused`] means: a
//! TCP connection closes, a serial line logs it and keeps listening.

use alloc::vec;
use alloc::vec::Vec;

use crate::{auth, Auth, EdgeMsg, Hello, HelloError, HostMsg, Role};

/// Why a handshake failed; each names what to check.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum HandshakeError {
    #[error(transparent)]
    Hello(#[from] HelloError),
    #[error("{0} failed the key check (a different --key?)")]
    KeyCheck(&'static str),
    #[error("expected the {0}'s key proof, got {1} (does it run with --key?)")]
    NoKeyProof(&'static str, &'static str),
    #[error("the {0} sent a key proof but we have no key (run both sides with --key)")]
    UnwantedAuth(&'static str),
    #[error("expected a hello, got {0}")]
    NotHello(&'static str),
}

/// What a message fed to a handshake asks of the transport: send `send` (in order), then act on
/// `event`.
#[derive(Debug, PartialEq)]
pub struct Step<M> {
    pub send: Vec<M>,
    pub event: Event,
}

#[derive(Debug, PartialEq)]
pub enum Event {
    /// Keep reading.
    Pending,
    /// The session is up with this peer.
    Admitted(Hello),
    /// This peer is not admitted.
    Refused(HandshakeError),
}

impl<M> Step<M> {
    fn pending() -> Self {
        Step {
            send: Vec::new(),
            event: Event::Pending,
        }
    }
    fn refused(e: impl Into<HandshakeError>) -> Self {
        Step {
            send: Vec::new(),
            event: Event::Refused(e.into()),
        }
    }
}

/// The edge's side. Made with a fresh nonce in `ours`; [`EdgeHandshake::hello`] is what to send
/// first (and again, on a serial line, until a host answers).
pub struct EdgeHandshake {
    ours: Hello,
    key: Option<Vec<u8>>,
    /// With a key: the host hello that answered, until its Auth arrives.
    host: Option<Hello>,
}

impl EdgeHandshake {
    pub fn new(ours: Hello, key: Option<Vec<u8>>) -> Self {
        EdgeHandshake {
            ours,
            key,
            host: None,
        }
    }

    pub fn hello(&self) -> EdgeMsg {
        EdgeMsg::Hello(self.ours.clone())
    }

    pub fn nonce(&self) -> [u8; 16] {
        self.ours.nonce
    }

    /// Feeds one message from the host. After a refusal the handshake waits for a new host hello
    /// (same nonce): a serial line may go on, a TCP link closes.
    pub fn on(&mut self, msg: HostMsg) -> Step<EdgeMsg> {
        match msg {
            HostMsg::Hello(h) => {
                self.host = None;
                if let Err(e) = h.check(Role::Host) {
                    return Step::refused(e);
                }
                match &self.key {
                    Some(_) => {
                        self.host = Some(h);
                        Step::pending()
                    }
                    None if h.nonce == self.ours.nonce => Step {
                        send: Vec::new(),
                        event: Event::Admitted(h),
                    },
                    // A knock: a host without a session (serial). Say hello now.
                    None => Step {
                        send: vec![self.hello()],
                        event: Event::Pending,
                    },
                }
            }
            HostMsg::Auth(a) => {
                let (Some(k), Some(host)) = (&self.key, self.host.take()) else {
                    return if self.key.is_none() {
                        Step::refused(HandshakeError::UnwantedAuth("host"))
                    } else {
                        Step::refused(HandshakeError::NotHello("a key proof"))
                    };
                };
                if !auth::verify(k, Role::Host, &self.ours.nonce, &a.mac) {
                    return Step::refused(HandshakeError::KeyCheck("the host"));
                }
                let mac = auth::mac(k, Role::Edge, &host.nonce);
                Step {
                    send: vec![EdgeMsg::Auth(Auth { mac })],
                    event: Event::Admitted(host),
                }
            }
            other => {
                let got = host_kind(&other);
                if self.key.is_some() && self.host.is_some() {
                    Step::refused(HandshakeError::NoKeyProof("host", got))
                } else {
                    Step::refused(HandshakeError::NotHello(got))
                }
            }
        }
    }
}

/// The host's side, one per board session. `ours` carries a fresh nonce (used with a key;
/// without one the answer carries the board's nonce).
pub struct HostHandshake {
    ours: Hello,
    key: Option<Vec<u8>>,
    /// The board's hello, once it came, and our answer to it (resent if the board repeats its
    /// hello: on a serial line the two may cross).
    board: Option<(Hello, Vec<HostMsg>)>,
    admitted: bool,
}

impl HostHandshake {
    pub fn new(ours: Hello, key: Option<Vec<u8>>) -> Self {
        HostHandshake {
            ours,
            key,
            board: None,
            admitted: false,
        }
    }

    /// Whether `hello` belongs to this session (the board repeating it), rather than starting a
    /// new one (the board restarted).
    pub fn is_for(&self, hello: &Hello) -> bool {
        self.board
            .as_ref()
            .is_some_and(|(b, _)| b.nonce == hello.nonce)
    }

    pub fn board(&self) -> Option<&Hello> {
        self.board.as_ref().map(|(b, _)| b)
    }

    pub fn is_admitted(&self) -> bool {
        self.admitted
    }

    /// Feeds one message from the board while it is not yet admitted (and its hellos after).
    pub fn on(&mut self, msg: EdgeMsg) -> Step<HostMsg> {
        match msg {
            EdgeMsg::Hello(h) => {
                if let Some((_, reply)) = self.board.as_ref().filter(|(b, _)| b.nonce == h.nonce) {
                    return Step {
                        send: reply.clone(),
                        event: Event::Pending,
                    };
                }
                if let Err(e) = h.check(Role::Edge) {
                    return Step::refused(e);
                }
                let mut ours = self.ours.clone();
                let mut reply = Vec::with_capacity(2);
                match &self.key {
                    Some(k) => {
                        reply.push(HostMsg::Hello(ours));
                        reply.push(HostMsg::Auth(Auth {
                            mac: auth::mac(k, Role::Host, &h.nonce),
                        }));
                    }
                    None => {
                        ours.nonce = h.nonce;
                        reply.push(HostMsg::Hello(ours));
                    }
                }
                self.admitted = self.key.is_none();
                self.board = Some((h.clone(), reply.clone()));
                Step {
                    send: reply,
                    event: if self.admitted {
                        Event::Admitted(h)
                    } else {
                        Event::Pending
                    },
                }
            }
            EdgeMsg::Auth(a) => {
                let Some(k) = &self.key else {
                    return Step::refused(HandshakeError::UnwantedAuth("board"));
                };
                let Some((board, _)) = self.board.as_ref().filter(|_| !self.admitted) else {
                    return Step::refused(HandshakeError::NotHello("auth"));
                };
                if !auth::verify(k, Role::Edge, &self.ours.nonce, &a.mac) {
                    return Step::refused(HandshakeError::KeyCheck("the board"));
                }
                self.admitted = true;
                Step {
                    send: Vec::new(),
                    event: Event::Admitted(board.clone()),
                }
            }
            other => {
                let got = edge_kind(&other);
                if self.board.is_some() {
                    Step::refused(HandshakeError::NoKeyProof("board", got))
                } else {
                    Step::refused(HandshakeError::NotHello(got))
                }
            }
        }
    }
}

/// A message's kind, for logs and errors.
pub fn edge_kind(m: &EdgeMsg) -> &'static str {
    match m {
        EdgeMsg::Hello(_) => "hello",
        EdgeMsg::Auth(_) => "auth",
        EdgeMsg::Frame(_) => "frame",
        EdgeMsg::Thumbnail(_) => "thumbnail",
        EdgeMsg::Health(_) => "health",
        EdgeMsg::Log(_) => "log",
        EdgeMsg::Bench(_) => "bench",
    }
}

pub fn host_kind(m: &HostMsg) -> &'static str {
    match m {
        HostMsg::Hello(_) => "hello",
        HostMsg::Auth(_) => "auth",
        HostMsg::SetThreshold(_) => "set-threshold",
        HostMsg::SetKeepRatio(_) => "set-keep-ratio",
        HostMsg::SetBudget(_) => "set-budget",
        HostMsg::Pause => "pause",
        HostMsg::Resume => "resume",
        HostMsg::Snapshot => "snapshot",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ModelInfo;

    fn edge(nonce: u8, key: Option<&[u8]>) -> EdgeHandshake {
        let mut h = Hello::edge("pi", ModelInfo::default());
        h.nonce = [nonce; 16];
        EdgeHandshake::new(h, key.map(<[u8]>::to_vec))
    }

    fn host(nonce: u8, key: Option<&[u8]>) -> HostHandshake {
        let mut h = Hello::new(Role::Host, "svit-host");
        h.nonce = [nonce; 16];
        HostHandshake::new(h, key.map(<[u8]>::to_vec))
    }

    /// Runs both sides against each other; returns what each ended with.
    fn meet(mut e: EdgeHandshake, mut h: HostHandshake) -> (Event, Event) {
        let mut to_host = vec![e.hello()];
        let (mut edge_ev, mut host_ev) = (Event::Pending, Event::Pending);
        for _ in 0..4 {
            let mut to_edge = Vec::new();
            for m in to_host.drain(..) {
                let s = h.on(m);
                to_edge.extend(s.send);
                if s.event != Event::Pending {
                    host_ev = s.event;
                }
            }
            for m in to_edge {
                let s = e.on(m);
                to_host.extend(s.send);
                if s.event != Event::Pending {
                    edge_ev = s.event;
                }
            }
        }
        (edge_ev, host_ev)
    }

    #[test]
    fn both_sides_admit_without_and_with_a_key() {
        for key in [None, Some(&b"0123456789abcdef"[..])] {
            let (e, h) = meet(edge(1, key), host(2, key));
            assert!(
                matches!(e, Event::Admitted(ref x) if x.role == Role::Host),
                "{key:?}"
            );
            assert!(
                matches!(h, Event::Admitted(ref x) if x.device == "pi"),
                "{key:?}"
            );
        }
    }

    #[test]
    fn a_wrong_key_is_refused_by_the_edge_first() {
        let (e, h) = meet(
            edge(1, Some(b"0123456789abcdef")),
            host(2, Some(b"fedcba9876543210")),
        );
        assert_eq!(e, Event::Refused(HandshakeError::KeyCheck("the host")));
        assert_eq!(
            h,
            Event::Pending,
            "the edge sends nothing to a host that fails"
        );
    }

    #[test]
    fn key_on_one_side_only_is_named() {
        let (e, _) = meet(edge(1, None), host(2, Some(b"0123456789abcdef")));
        assert_eq!(e, Event::Refused(HandshakeError::UnwantedAuth("host")));
        let mut h = host(2, Some(b"0123456789abcdef"));
        let _ = h.on(edge(1, None).hello());
        let s = h.on(EdgeMsg::Health(Default::default()));
        assert_eq!(
            s.event,
            Event::Refused(HandshakeError::NoKeyProof("board", "health"))
        );
    }

    #[test]
    fn knock_gets_a_hello_and_answer_admits() {
        let mut e = edge(1, None);
        let mut knock = Hello::new(Role::Host, "h");
        knock.nonce = [9; 16];
        let s = e.on(HostMsg::Hello(knock.clone()));
        assert_eq!(s.send, vec![e.hello()]);
        assert_eq!(s.event, Event::Pending);
        knock.nonce = e.nonce();
        assert!(matches!(
            e.on(HostMsg::Hello(knock)).event,
            Event::Admitted(_)
        ));
    }

    #[test]
    fn repeated_board_hello_gets_the_same_answer() {
        let mut h = host(2, Some(b"0123456789abcdef"));
        let e = edge(1, Some(b"0123456789abcdef"));
        let first = h.on(e.hello()).send;
        assert_eq!(first.len(), 2);
        assert!(h.is_for(match &e.hello() {
            EdgeMsg::Hello(x) => x,
            _ => unreachable!(),
        }));
        assert_eq!(h.on(e.hello()).send, first);
    }

    #[test]
    fn mismatched_hello_and_frames_first_are_refused() {
        let mut h = host(2, None);
        let mut bad = Hello::edge("pi", ModelInfo::default());
        bad.schema_hash ^= 1;
        assert!(matches!(
            h.on(EdgeMsg::Hello(bad)).event,
            Event::Refused(HandshakeError::Hello(HelloError::Schema { .. }))
        ));
        assert_eq!(
            h.on(EdgeMsg::Health(Default::default())).event,
            Event::Refused(HandshakeError::NotHello("health"))
        );
        let mut e = edge(1, None);
        assert_eq!(
            e.on(HostMsg::Pause).event,
            Event::Refused(HandshakeError::NotHello("pause"))
        );
    }
}
