//! Load generator for the host: N simulated boards, each a real TCP connection speaking the
//! real protocol, sending realistic frames (10 masked detections, keep maps) at a fixed rate.
//! Prints JSON: frames sent per board. Used by scripts/host_load.sh.
//!
//! usage: svit-loadgen ADDR BOARDS FPS SECONDS
//!
//! With ADDR `mqtt://HOST:PORT` the boards publish to that broker as `svit-edge run --mqtt`
//! does (hello retained on svit/load-NN/wire, then each frame at QoS 1); scripts/mqtt_load.sh.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use svit_e2e::{board_frame, board_hello};
use svit_protocol as proto;

/// One board publishing to a broker; returns the frames it published (a full client queue
/// counts as not sent).
fn mqtt_board(url: &str, b: usize, fps: f64, secs: f64) -> u64 {
    use svit_mqtt::QoS;
    let broker = svit_mqtt::Broker::parse(url).expect("broker URL");
    let name = format!("load-{b:02}");
    let (client, conn) = svit_mqtt::connect(&broker, &name, None, 1024).expect("broker");
    let wire = svit_mqtt::topic("svit", &name, "wire");
    std::thread::spawn(move || svit_mqtt::network(conn, |_| true));
    let hello = proto::encode(&board_hello(&name), proto::MAX_FRAME).unwrap();
    client
        .publish(wire.clone(), QoS::AtLeastOnce, true, hello)
        .unwrap();
    let period = Duration::from_secs_f64(1.0 / fps);
    let start = Instant::now();
    let (mut seq, mut sent) = (0u64, 0u64);
    while start.elapsed().as_secs_f64() < secs {
        let mut frame = board_frame(seq);
        if let proto::EdgeMsg::Frame(f) = &mut frame {
            f.capture_us = proto::clock::now_us();
        }
        let bytes = proto::encode(&frame, proto::MAX_FRAME).unwrap();
        if client
            .try_publish(wire.clone(), QoS::AtLeastOnce, false, bytes)
            .is_ok()
        {
            sent += 1;
        }
        seq += 1;
        let next = start + period * seq as u32;
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    // Let the queue drain before the process ends.
    std::thread::sleep(Duration::from_secs(2));
    let _ = client.disconnect();
    sent
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
            if addr.starts_with("mqtt://") {
                return std::thread::spawn(move || mqtt_board(&addr, b, fps, secs));
            }
            std::thread::spawn(move || -> u64 {
                let mut s = TcpStream::connect(&addr).expect("connect to host");
                let hello = board_hello(&format!("load-{b:02}"));
                s.write_all(&proto::encode(&hello, proto::MAX_FRAME).unwrap())
                    .unwrap();
                let period = Duration::from_secs_f64(1.0 / fps);
                let start = Instant::now();
                let mut seq = 0u64;
                while start.elapsed().as_secs_f64() < secs {
                    let mut frame = board_frame(seq);
                    // Captured now, so capture-to-host and capture-to-browser latencies are real.
                    if let proto::EdgeMsg::Frame(f) = &mut frame {
                        f.capture_us = proto::clock::now_us();
                    }
                    let bytes = proto::encode(&frame, proto::MAX_FRAME).unwrap();
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
