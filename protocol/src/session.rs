//! The hello handshake and, with a key, the Noise handshake after it, sans-IO: the one place
//! they are written. TCP and serial drive it on both sides; each feeds every message it reads
//! and sends what comes out, then takes the session's [`Tx`]/[`Rx`] with `link()`.
//!
//! ```text
//! edge                         host
//! Hello(edge nonce)      ->
//!                        <-    Hello(nonce) [+ Auth(Noise psk, e)   with a key]
//! [Auth(Noise e, ee)     ->                                         with a key]
//! ```
//! Without a key the host's answer carries the edge's own nonce, so an edge on a serial line
//! tells an answer from a knock (a host Hello with any other nonce). With a key the host's nonce
//! is fresh, both hellos are the Noise prologue (altering either fails the handshake) and the
//! session is encrypted from there on (`secure`). A transport decides what a
//! [`Event::Refused`] means: a TCP connection closes, a serial line logs it and keeps listening.

use std::collections::BTreeMap;
use std::string::String;
use std::vec;
use std::vec::Vec;

use snow::HandshakeState;

use crate::secure::{halves, Rx, Tx, NOISE};
use crate::{auth, Auth, EdgeMsg, Hello, HelloError, HostMsg, Role};

/// The keys a host admits boards with.
#[derive(Clone, Debug, Default)]
pub enum Keys {
    /// No key: plaintext sessions.
    #[default]
    None,
    /// One key for every board (`--key FILE`).
    Shared(Vec<u8>),
    /// One key per board name (`--keys DIR`); a board without one is refused.
    PerBoard(BTreeMap<String, Vec<u8>>),
}

impl Keys {
    fn for_board(&self, device: &str) -> Result<Option<&[u8]>, HandshakeError> {
        match self {
            Keys::None => Ok(None),
            Keys::Shared(k) => Ok(Some(k)),
            Keys::PerBoard(m) => m
                .get(device)
                .map(|k| Some(k.as_slice()))
                .ok_or_else(|| HandshakeError::NoKeyFor(device.into())),
        }
    }
}

/// Both hellos, as the Noise prologue: what each side saw must be what the other sent.
fn prologue(edge: &Hello, host: &Hello) -> Vec<u8> {
    let mut p = b"svit-edge session v3".to_vec();
    for h in [edge, host] {
        p.extend(postcard::to_allocvec(h).unwrap_or_default());
    }
    p
}

fn noise(key: &[u8], prologue: &[u8], initiator: bool) -> Result<HandshakeState, snow::Error> {
    let psk = auth::psk(key);
    let b = snow::Builder::new(NOISE.parse()?)
        .psk(0, &psk)
        .prologue(prologue);
    if initiator {
        b.build_initiator()
    } else {
        b.build_responder()
    }
}

/// Runs one Noise handshake message through `hs`: reads `msg` if given, else writes one.
fn step_noise(hs: &mut HandshakeState, read: Option<&[u8]>) -> Result<Vec<u8>, snow::Error> {
    let mut buf = vec![0u8; 256];
    let n = match read {
        Some(m) => hs.read_message(m, &mut buf)?,
        None => hs.write_message(&[], &mut buf)?,
    };
    buf.truncate(n);
    Ok(buf)
}

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
    #[error("no key for board {0:?} (add a key file of that name to --keys)")]
    NoKeyFor(String),
    #[error("the Noise handshake failed: {0}")]
    Noise(String),
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
    link: Option<(Tx, Rx)>,
}

impl EdgeHandshake {
    pub fn new(ours: Hello, key: Option<Vec<u8>>) -> Self {
        EdgeHandshake {
            ours,
            key,
            host: None,
            link: None,
        }
    }

    /// The admitted session's two halves (plain without a key).
    pub fn link(&mut self) -> (Tx, Rx) {
        self.link.take().unwrap_or((Tx::Plain, Rx::Plain))
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
                let answer = noise(k, &prologue(&self.ours, &host), false).and_then(|mut hs| {
                    if step_noise(&mut hs, Some(&a.noise)).is_err() {
                        return Ok(None);
                    }
                    let answer = step_noise(&mut hs, None)?;
                    Ok(Some((answer, hs.into_stateless_transport_mode()?)))
                });
                match answer {
                    Ok(Some((noise, keys))) => {
                        self.link = Some(halves(keys));
                        Step {
                            send: vec![EdgeMsg::Auth(Auth { noise })],
                            event: Event::Admitted(host),
                        }
                    }
                    // A psk or prologue that differs fails the first message's tag.
                    Ok(None) => Step::refused(HandshakeError::KeyCheck("the host")),
                    Err(e) => Step::refused(HandshakeError::Noise(e.to_string())),
                }
            }
            other => {
                let got = other.kind();
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
    keys: Keys,
    /// The board's hello, once it came, and our answer to it (resent if the board repeats its
    /// hello: on a serial line the two may cross).
    board: Option<(Hello, Vec<HostMsg>)>,
    /// With a key: the Noise handshake, until the board's answer.
    noise: Option<HandshakeState>,
    link: Option<(Tx, Rx)>,
    admitted: bool,
}

impl HostHandshake {
    pub fn new(ours: Hello, keys: Keys) -> Self {
        HostHandshake {
            ours,
            keys,
            board: None,
            noise: None,
            link: None,
            admitted: false,
        }
    }

    /// The admitted session's two halves (plain without a key).
    pub fn link(&mut self) -> (Tx, Rx) {
        self.link.take().unwrap_or((Tx::Plain, Rx::Plain))
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
                let key = match self.keys.for_board(&h.device) {
                    Ok(k) => k,
                    Err(e) => return Step::refused(e),
                };
                let mut ours = self.ours.clone();
                let mut reply = Vec::with_capacity(2);
                self.noise = None;
                match key {
                    Some(k) => {
                        let first = noise(k, &prologue(&h, &ours), true).and_then(|mut hs| {
                            let m = step_noise(&mut hs, None)?;
                            Ok((m, hs))
                        });
                        let (noise, hs) = match first {
                            Ok(x) => x,
                            Err(e) => return Step::refused(HandshakeError::Noise(e.to_string())),
                        };
                        self.noise = Some(hs);
                        reply.push(HostMsg::Hello(ours));
                        reply.push(HostMsg::Auth(Auth { noise }));
                    }
                    None => {
                        ours.nonce = h.nonce;
                        reply.push(HostMsg::Hello(ours));
                    }
                }
                self.admitted = self.noise.is_none();
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
                if matches!(self.keys, Keys::None) {
                    return Step::refused(HandshakeError::UnwantedAuth("board"));
                }
                let (Some((board, _)), Some(mut hs)) = (
                    self.board.as_ref().filter(|_| !self.admitted),
                    self.noise.take(),
                ) else {
                    return Step::refused(HandshakeError::NotHello("auth"));
                };
                if step_noise(&mut hs, Some(&a.noise)).is_err() {
                    return Step::refused(HandshakeError::KeyCheck("the board"));
                }
                match hs.into_stateless_transport_mode() {
                    Ok(keys) => self.link = Some(halves(keys)),
                    Err(e) => return Step::refused(HandshakeError::Noise(e.to_string())),
                }
                self.admitted = true;
                Step {
                    send: Vec::new(),
                    event: Event::Admitted(board.clone()),
                }
            }
            other => {
                let got = other.kind();
                if self.board.is_some() {
                    Step::refused(HandshakeError::NoKeyProof("board", got))
                } else {
                    Step::refused(HandshakeError::NotHello(got))
                }
            }
        }
    }
}

/// A keyed session between a board and a host in this process, run to its end: the board's
/// `(Tx, Rx)`, then the host's. For tests, fuzzing and the cost benchmark.
pub fn in_process(key: &[u8]) -> ((Tx, Rx), (Tx, Rx)) {
    let mut board = EdgeHandshake::new(
        Hello::edge("pi", crate::ModelInfo::default()),
        Some(key.into()),
    );
    let mut host = HostHandshake::new(Hello::new(Role::Host, "h"), Keys::Shared(key.into()));
    let mut back = Vec::new();
    for m in host.on(board.hello()).send {
        back.extend(board.on(m).send);
    }
    for m in back {
        host.on(m);
    }
    (board.link(), host.link())
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
        HostHandshake::new(h, key.map_or(Keys::None, |k| Keys::Shared(k.to_vec())))
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

    #[test]
    fn per_board_keys_admit_their_board_only_and_an_altered_hello_fails_the_handshake() {
        let keys = Keys::PerBoard(BTreeMap::from([(
            "pi".to_string(),
            b"0123456789abcdef".to_vec(),
        )]));
        let mut h = HostHandshake::new(Hello::new(Role::Host, "h"), keys.clone());
        let (e, _) = meet(
            edge(1, Some(b"0123456789abcdef")),
            HostHandshake::new(Hello::new(Role::Host, "h"), keys.clone()),
        );
        assert!(matches!(e, Event::Admitted(_)));
        let mut other = Hello::edge("cam-2", ModelInfo::default());
        other.nonce = [3; 16];
        assert_eq!(
            h.on(EdgeMsg::Hello(other)).event,
            Event::Refused(HandshakeError::NoKeyFor("cam-2".into()))
        );
        // A relay that rewrites the host's hello on the way: the prologues differ.
        let mut e = edge(1, Some(b"0123456789abcdef"));
        let reply = h.on(e.hello()).send;
        let mut steps = Vec::new();
        for m in reply {
            let m = match m {
                HostMsg::Hello(mut x) => {
                    x.device = "not-the-host".into();
                    HostMsg::Hello(x)
                }
                m => m,
            };
            steps.push(e.on(m).event);
        }
        assert_eq!(
            steps.pop(),
            Some(Event::Refused(HandshakeError::KeyCheck("the host")))
        );
    }
}
