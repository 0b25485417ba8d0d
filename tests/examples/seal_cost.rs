//! What `--key` costs per message: encoding and decoding plain (no key, the baseline) against
//! sealing and opening in a keyed session (Noise, ChaCha20-Poly1305), for a frame with ten
//! masked detections and keep maps, a thumbnail and a snapshot-sized JPEG. Prints JSON.
//!
//!     cargo run -p svit-e2e --example seal_cost > runs/bench/seal_cost.json

use std::time::Instant;

use svit_e2e::board_frame;
use svit_protocol::secure::{Rx, Tx};
use svit_protocol::session::in_process;
use svit_protocol::{self as proto, EdgeMsg, FrameDecoder, Thumbnail, MAX_FRAME};

const KEY: &[u8] = b"a key of at least sixteen bytes";

fn session() -> (Tx, Rx) {
    let ((tx, _), (_, rx)) = in_process(KEY);
    (tx, rx)
}

fn thumb(bytes: usize) -> EdgeMsg {
    EdgeMsg::Thumbnail(Thumbnail {
        seq: 1,
        jpeg: (0..bytes).map(|i| (i * 31 % 251) as u8).collect(),
    })
}

/// Mean microseconds of `f` over enough runs to take about 0.3 s.
fn time(mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    let mut n = 0u32;
    while t.elapsed().as_secs_f64() < 0.3 || n < 10 {
        f();
        n += 1;
    }
    t.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn main() {
    let mut rows = Vec::new();
    for (name, msg) in [
        ("frame, 10 masked detections", board_frame(1234)),
        ("thumbnail, 8 kB", thumb(8 << 10)),
        ("snapshot, 200 kB", thumb(200 << 10)),
    ] {
        let plain = proto::encode(&msg, MAX_FRAME).expect("encodes");
        let encode_plain = time(|| {
            std::hint::black_box(proto::encode(&msg, MAX_FRAME).expect("encodes"));
        });
        let decode_plain = time(|| {
            let mut d = FrameDecoder::new(MAX_FRAME);
            std::hint::black_box(d.frames::<EdgeMsg>(&plain).count());
        });
        let (mut tx, _) = session();
        let sealed = tx.encode(&msg).expect("seals");
        let seal = time(|| {
            std::hint::black_box(tx.encode(&msg).expect("seals"));
        });
        // Opening needs fresh nonces in order: seal a run of messages, then open them all
        // as a host reads them (frames, then the session's receiver).
        let (mut tx, mut rx) = session();
        let n = if plain.len() > 100_000 { 100 } else { 1000 };
        let wire: Vec<Vec<u8>> = (0..n).map(|_| tx.encode(&msg).expect("seals")).collect();
        let t = Instant::now();
        for b in &wire {
            let mut d = FrameDecoder::new(MAX_FRAME);
            for m in d.frames::<EdgeMsg>(b) {
                std::hint::black_box(rx.accept(m.expect("decodes")).expect("opens"));
            }
        }
        let open = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        rows.push(serde_json::json!({
            "message": name,
            "plain_bytes": plain.len(),
            "sealed_bytes": sealed.len(),
            "encode_plain_us": encode_plain,
            "seal_us": seal,
            "decode_plain_us": decode_plain,
            "open_us": open,
        }));
    }
    println!(
        "{}",
        serde_json::json!({ "noise": proto::secure::NOISE, "messages": rows })
    );
}
