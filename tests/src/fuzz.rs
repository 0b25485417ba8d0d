//! The bodies of the fuzz targets (`fuzz/`, run by `scripts/fuzz.sh` on nightly): each takes
//! arbitrary bytes and must return without a panic, a hang or unbounded memory, and checks
//! what must hold whatever the bytes. `tests/fuzz_corpus.rs` replays every file of each
//! target's corpus (`fuzz/corpus/NAME/`) through them on stable, as regression tests.

use svit_protocol::secure::Rx;
use svit_protocol::session::{in_process, EdgeHandshake, Event, HostHandshake, Keys};
use svit_protocol::{self as proto, EdgeMsg, FrameDecoder, Hello, HostMsg, ModelInfo, Role};

/// A target: arbitrary bytes in, a panic only on a bug.
pub type Target = fn(&[u8]);

/// Every target by name, as `fuzz/fuzz_targets/NAME.rs` calls it.
pub const TARGETS: &[(&str, Target)] = &[
    ("edge_stream", edge_stream),
    ("host_stream", host_stream),
    ("host_handshake", host_handshake),
    ("edge_handshake", edge_handshake),
    ("sealed_session", sealed_session),
    ("jpeg_split", jpeg_split),
];

const KEY: &[u8] = b"0123456789abcdef";
/// A small cap, so the oversized-frame path is reached with small inputs.
const CAP: usize = 1024;

/// Splits `data` at a point its first byte chooses: the same bytes arriving in two reads.
fn two_reads(data: &[u8]) -> [&[u8]; 2] {
    let at = data.first().map_or(0, |&b| b as usize).min(data.len());
    [&data[..at], &data[at..]]
}

/// A board's bytes as the host reads them: frames, then messages.
pub fn edge_stream(data: &[u8]) {
    let mut dec = FrameDecoder::new(CAP);
    for chunk in two_reads(data) {
        for m in dec.frames::<EdgeMsg>(chunk).flatten() {
            // Whatever decodes encodes again (the recorder writes it back).
            proto::encode(&m, proto::MAX_FRAME).expect("a decoded message encodes");
        }
        assert!(dec.pending() <= CAP, "the decoder holds more than its cap");
    }
    let _ = proto::decode_one::<EdgeMsg>(data);
}

/// The host's bytes as a board reads them.
pub fn host_stream(data: &[u8]) {
    let mut dec = FrameDecoder::new(CAP);
    for chunk in two_reads(data) {
        for msg in dec.frames::<HostMsg>(chunk).flatten() {
            proto::encode(&msg, proto::MAX_FRAME).expect("a decoded message encodes");
        }
        assert!(dec.pending() <= CAP);
    }
}

fn keys(mode: u8) -> (Keys, Option<Vec<u8>>) {
    match mode % 3 {
        0 => (Keys::None, None),
        1 => (Keys::Shared(KEY.into()), Some(KEY.into())),
        _ => (
            Keys::PerBoard([("pi".to_string(), KEY.to_vec())].into()),
            Some(KEY.into()),
        ),
    }
}

/// The host's handshake fed what a board (or anyone) sends: after a real board's hello when the
/// mode byte says so, then the decoded messages; then, if admitted, the session's receiver.
pub fn host_handshake(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (keys, key) = keys(mode);
    let mut host = HostHandshake::new(Hello::new(Role::Host, "h"), keys);
    let mut board = EdgeHandshake::new(Hello::edge("pi", ModelInfo::default()), key);
    let mut msgs = Vec::new();
    if mode & 4 != 0 {
        msgs.push(board.hello());
    }
    msgs.extend(FrameDecoder::new(CAP).frames::<EdgeMsg>(rest).flatten());
    let mut rx: Option<Rx> = None;
    for m in msgs {
        if let Some(rx) = rx.as_mut() {
            let _ = rx.accept(m);
            continue;
        }
        let step = host.on(m);
        for out in &step.send {
            proto::encode(out, proto::MAX_FRAME).expect("handshake messages encode");
            // Let the real board answer, so the Noise path is reached too.
            if mode & 8 != 0 {
                let _ = board.on(out.clone());
            }
        }
        if let Event::Admitted(_) = step.event {
            rx = Some(host.link().1);
        }
    }
}

/// The board's handshake fed what a host (or anyone) sends.
pub fn edge_handshake(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (keys, key) = keys(mode);
    let mut board = EdgeHandshake::new(Hello::edge("pi", ModelInfo::default()), key);
    let mut msgs = Vec::new();
    if mode & 4 != 0 {
        let mut host = HostHandshake::new(Hello::new(Role::Host, "h"), keys);
        msgs.extend(host.on(board.hello()).send);
    }
    msgs.extend(FrameDecoder::new(CAP).frames::<HostMsg>(rest).flatten());
    let mut rx: Option<Rx> = None;
    for m in msgs {
        match rx.as_mut() {
            Some(rx) => {
                let _ = rx.accept(m);
            }
            None => {
                if let Event::Admitted(_) = board.on(m).event {
                    rx = Some(board.link().1);
                }
            }
        }
    }
}

/// A keyed session whose wire the bytes control: each byte sends a message of a size it picks,
/// and delivers it, drops it, sends an earlier one again, or flips a bit of it. Whatever
/// arrives, the receiver must accept only messages that were sent, each at most once, in order.
pub fn sealed_session(data: &[u8]) {
    let ((mut tx, _), (_, mut rx)) = in_process(KEY);
    let mut sent: Vec<(u64, Vec<EdgeMsg>)> = Vec::new();
    let mut last_accepted: Option<u64> = None;
    // 64 messages of up to 135 kB each reach every path; more only costs memory.
    for (i, &op) in data.iter().take(64).enumerate() {
        let seq = i as u64;
        let len = (op as usize & 0x0f) * 9000;
        let msg = EdgeMsg::Thumbnail(proto::Thumbnail {
            seq,
            jpeg: vec![op; len],
        });
        let bytes = tx.encode(&msg).expect("a thumbnail seals");
        let wire: Vec<EdgeMsg> = FrameDecoder::new(proto::MAX_FRAME)
            .frames::<EdgeMsg>(&bytes)
            .map(|m| m.expect("a sealed message decodes"))
            .collect();
        sent.push((seq, wire.clone()));
        let deliver = match op >> 6 {
            0 | 1 => wire,
            2 => Vec::new(),
            // An earlier message again (a replay), or this one with a bit flipped.
            _ if op & 0x10 != 0 => sent[(op as usize >> 1) % sent.len()].1.clone(),
            _ => wire
                .into_iter()
                .map(|m| match m {
                    EdgeMsg::Sealed(mut s) => {
                        let at = op as usize % s.body.len();
                        s.body[at] ^= 1 << (op % 8);
                        EdgeMsg::Sealed(s)
                    }
                    m => m,
                })
                .collect(),
        };
        for m in deliver {
            if let Ok(got) = rx.accept(m) {
                if let Some(EdgeMsg::Thumbnail(t)) = got.msg {
                    assert!(t.seq <= seq, "a message that was never sent");
                    assert!(
                        last_accepted.is_none_or(|l| t.seq > l),
                        "accepted twice or out of order"
                    );
                    assert_eq!(t.jpeg, vec![data[t.seq as usize]; t.jpeg.len()], "altered");
                    last_accepted = Some(t.seq);
                }
            }
        }
    }
}

/// The JPEG marker scan the ArduCAM driver finds its frame with and the edge splits MJPEG
/// streams with: every image found lies in the input after the previous one, starts with SOI
/// and ends with EOI; the first is the one `first_image` gives; the Huffman-table check of any
/// image returns.
pub fn jpeg_split(data: &[u8]) {
    use svit_arducam::jpeg;
    let mut after = 0;
    let mut first = None;
    for r in jpeg::images(data) {
        assert!(
            after <= r.start && r.start + 4 <= r.end && r.end <= data.len(),
            "{r:?}"
        );
        assert_eq!(data[r.start..r.start + 2], [0xFF, 0xD8]);
        assert_eq!(data[r.end - 2..r.end], [0xFF, 0xD9]);
        let _ = jpeg::has_huffman_tables(&data[r.clone()]);
        first.get_or_insert(r.clone());
        after = r.end;
    }
    match jpeg::first_image(data) {
        Ok(r) => assert_eq!(Some(r), first),
        Err(why) => {
            assert!(first.is_none());
            assert_eq!(why.soi, data.windows(2).any(|w| w == [0xFF, 0xD8]));
        }
    }
}
