//! Load generator for the host: N simulated boards, each a real TCP connection speaking the
//! real protocol, sending realistic frames (10 masked detections, keep maps) at a fixed rate.
//! Prints JSON: frames sent per board. Used by scripts/host_load.sh.
//!
//! usage: svit-loadgen ADDR BOARDS FPS SECONDS

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use svit_protocol::{self as proto, EdgeMsg};

fn frame(seq: u64) -> EdgeMsg {
    let det = |i: u16| proto::Detection {
        class: i % 6,
        score: 0.9,
        bbox: [10.0 * i as f32, 12.0, 10.0 * i as f32 + 40.0, 60.0],
        mask: proto::CompactMask {
            x0: 2 * i,
            y0: 3,
            w: 12,
            h: 14,
            cell: [4.0, 4.0],
            bits: vec![0xA5; 21],
        },
    };
    EdgeMsg::Frame(proto::Frame {
        seq,
        capture_us: seq * 33_333,
        width: 256,
        height: 256,
        times: proto::StageTimes {
            embed: 900,
            blocks: vec![3000; 8],
            head: 2000,
            ..Default::default()
        },
        detections: (0..10).map(det).collect(),
        kept: vec![256, 256, 140, 130, 100, 90, 70, 60],
        keep_maps: (0..8)
            .map(|b| if b < 2 { vec![] } else { vec![0x5A; 32] })
            .collect(),
        gmacs: 0.35,
        dropped_total: 0,
        threshold: 0.5,
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: svit-loadgen ADDR BOARDS FPS SECONDS");
        std::process::exit(2);
    }
    let addr = args[1].clone();
    let parse = |i: usize| {
        args[i]
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("argument {i} must be a number"))
    };
    let (boards, fps, secs) = (parse(2) as usize, parse(3), parse(4));
    let handles: Vec<_> = (0..boards)
        .map(|b| {
            let addr = addr.clone();
            std::thread::spawn(move || -> u64 {
                let mut s = TcpStream::connect(&addr).expect("connect to host");
                let hello = EdgeMsg::Hello(proto::Hello {
                    protocol_version: proto::PROTOCOL_VERSION,
                    schema_hash: proto::schema_hash(),
                    role: proto::Role::Edge,
                    device: format!("load-{b:02}"),
                    bundle: "loadgen".into(),
                    labels: (0..6).map(|i| format!("c{i}")).collect(),
                    input_size: 256,
                    tokens: 256,
                    blocks: 8,
                    nonce: [0; 16],
                });
                s.write_all(&proto::encode(&hello, proto::MAX_FRAME).unwrap())
                    .unwrap();
                let period = Duration::from_secs_f64(1.0 / fps);
                let start = Instant::now();
                let mut seq = 0u64;
                while start.elapsed().as_secs_f64() < secs {
                    let bytes = proto::encode(&frame(seq), proto::MAX_FRAME).unwrap();
                    if s.write_all(&bytes).is_err() {
                        break;
                    }
                    seq += 1;
                    let next = start + period * seq as u32;
                    if let Some(d) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(d);
                    }
                }
                let _ = s.flush();
                seq
            })
        })
        .collect();
    let sent: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap_or(0)).collect();
    println!("{{\"boards\": {boards}, \"fps\": {fps}, \"seconds\": {secs}, \"sent\": {sent:?}}}");
}
