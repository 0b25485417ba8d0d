//! Board links: TCP (`tcp`: accepted, or dialled to boards that listen), serial lines
//! (`serial`) and boards on an MQTT broker (`mqtt`). Each link runs the protocol's handshake (`svit_protocol::session`) and turns
//! what a board sends into `BoardEvent`s for the session loop.

pub mod mqtt;
pub mod serial;
pub mod tcp;

use std::sync::atomic::{AtomicU32, Ordering};

use svit_protocol::clock::now_us;
use svit_protocol::secure::Tx;
use svit_protocol::session::{HostHandshake, Keys};
use svit_protocol::{self as proto, EdgeMsg, HostMsg, MAX_FRAME};

use crate::record::Record;

/// Control messages waiting for one board's writer; beyond it the session loop reports the
/// message as not sent instead of waiting.
pub const CONTROL_QUEUE: usize = 16;

/// This host's hello, with a fresh nonce.
pub fn our_hello() -> proto::Hello {
    let mut h = proto::Hello::new(proto::Role::Host, "svit-host");
    h.nonce = proto::auth::nonce();
    h
}

/// A new handshake for one board session.
pub fn handshake(keys: &Keys) -> HostHandshake {
    HostHandshake::new(our_hello(), keys.clone())
}

/// Encodes the messages a handshake step asks to send (plain: the session starts after them).
pub fn encode_all(msgs: &[HostMsg]) -> Vec<u8> {
    msgs.iter()
        .flat_map(|m| proto::encode(m, MAX_FRAME).expect("handshake messages are small"))
        .collect()
}

/// Encodes a control message for a session; one that cannot be is logged and skipped.
pub fn encode_control(tx: &mut Tx, msg: &HostMsg, conn: u32) -> Option<Vec<u8>> {
    tx.encode(msg)
        .map_err(|e| tracing::warn!("control to #{conn} not sent: {e}"))
        .ok()
}

/// Connection numbers, unique across accepted, dialled and serial links.
pub fn next_conn() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A board's hello as the first record of its session.
pub fn hello_record(conn: u32, hello: proto::Hello) -> Record {
    Record {
        recv_us: now_us(),
        conn,
        device: hello.device.clone(),
        msg: EdgeMsg::Hello(hello),
    }
}
