//! `svit-edge` as a real process on the shipped demo bundle and the synthetic camera (or the
//! ArduCAM driver on the simulated module), streaming over loopback TCP to a receiver written
//! against the protocol crate.

use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use svit_e2e::{bin, greet, read_messages, send, workspace};
use svit_protocol::{EdgeMsg, HostMsg};

// The pipeline is under test here, not the model: the shipped demo model is still weakly
// trained (BENCHMARKS.md), so detections are asked for down to score 0.1.
fn spawn_edge(port: u16, frames: u32) -> std::process::Child {
    spawn_edge_on(port, frames, "synthetic")
}

fn spawn_edge_on(port: u16, frames: u32, camera: &str) -> std::process::Child {
    Command::new(bin("svit-edge"))
        .args([
            "run",
            "--camera",
            camera,
            "--frames",
            &frames.to_string(),
            "--score-threshold",
            "0.1",
        ])
        .args(["--connect", &format!("127.0.0.1:{port}")])
        .current_dir(workspace())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start svit-edge")
}

#[test]
fn edge_streams_frames_with_continuous_sequence_numbers() {
    stream_and_check("synthetic", 12);
}

/// The real driver over the simulated module, with a capture that stalls every 4th time and a
/// corrupt JPEG every 5th: those frames are skipped and counted, the stream goes on.
#[test]
fn edge_on_the_simulated_arducam_skips_bad_frames_and_goes_on() {
    let stderr = stream_and_check("sim-arducam:res=320x240,stall-every=4,corrupt-every=5", 12);
    let errors: u64 = stderr
        .lines()
        .filter(|l| l.contains("stopped"))
        .find_map(|l| l.split("camera_errors=").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.trim_matches(|c: char| !c.is_ascii_digit()).parse().ok())
        .unwrap_or_else(|| panic!("no final stats in the edge log:\n{stderr}"));
    assert!(
        errors >= 3,
        "stalls and corrupt frames are counted: {errors}"
    );
    assert!(stderr.contains("no frame captured") && stderr.contains("no complete JPEG"));
}

/// Streams `n` frames from `camera`, checks them, returns the edge's log.
fn stream_and_check(camera: &str, n: u64) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let edge = spawn_edge_on(port, n as u32, camera);
    let (mut s, _) = listener.accept().unwrap();
    let h = greet(&mut s);
    h.check(svit_protocol::Role::Edge).unwrap();
    assert_eq!(h.model.labels.len(), 6);
    let (msgs, errors) = read_messages(&mut s, Duration::from_secs(120), |_| false);
    assert_eq!(errors, 0);
    let frames: Vec<_> = msgs
        .iter()
        .filter_map(|m| {
            if let EdgeMsg::Frame(f) = m {
                Some(f)
            } else {
                None
            }
        })
        .collect();
    let seqs: Vec<u64> = frames.iter().map(|f| f.seq).collect();
    assert_eq!(seqs, (0..n).collect::<Vec<_>>(), "every frame, in order");
    assert!(
        frames.iter().filter(|f| !f.detections.is_empty()).count() as u64 >= n / 2,
        "synthetic scenes always hold objects"
    );
    for f in &frames {
        assert_eq!(f.kept.len(), h.model.blocks as usize);
        assert!(f.kept.iter().all(|&k| k >= 1 && k <= h.model.tokens));
        assert!(f.times.embed > 0 && f.times.blocks.iter().sum::<u32>() > 0 && f.gmacs > 0.0);
        for d in &f.detections {
            assert!(d.score >= 0.1 && (d.class as usize) < h.model.labels.len());
            assert!(d.bbox[0] < d.bbox[2] && d.bbox[1] < d.bbox[3]);
        }
    }
    assert!(
        msgs.iter().any(|m| matches!(m, EdgeMsg::Health(_))),
        "health is sent every second"
    );
    let out = edge.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}");
    log
}

#[test]
fn edge_survives_a_garbage_peer_and_a_host_that_goes_away() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut edge = spawn_edge(port, 400);
    // 1: a peer that answers the hello with garbage is refused.
    let (mut s, _) = listener.accept().unwrap();
    s.write_all(&[0x13, 0x37, 0xff, 0x00]).unwrap();
    drop(s);
    // 2: a real host that takes a few frames, then vanishes.
    let (mut s, _) = listener.accept().unwrap();
    greet(&mut s);
    let mut n = 0;
    let (msgs, _) = read_messages(&mut s, Duration::from_secs(120), |m| {
        n += matches!(m, EdgeMsg::Frame(_)) as usize;
        n >= 3
    });
    let last = msgs
        .iter()
        .rev()
        .find_map(|m| {
            if let EdgeMsg::Frame(f) = m {
                Some(f.seq)
            } else {
                None
            }
        })
        .unwrap();
    drop(s);
    std::thread::sleep(Duration::from_millis(1500));
    // 3: the host comes back; the edge reconnects and reports what it dropped meanwhile.
    // An oversized control frame is refused; the control after it still applies.
    let (mut s, _) = listener.accept().unwrap();
    greet(&mut s);
    s.write_all(&[0x01; 64 * 1024]).unwrap();
    s.write_all(&[0x00]).unwrap();
    send(&mut s, &HostMsg::SetThreshold(0.0));
    let (msgs, _) = read_messages(
        &mut s,
        Duration::from_secs(120),
        |m| matches!(m, EdgeMsg::Frame(f) if f.threshold == 0.0),
    );
    let f = msgs
        .iter()
        .rev()
        .find_map(|m| {
            if let EdgeMsg::Frame(f) = m {
                Some(f)
            } else {
                None
            }
        })
        .expect("frames after reconnect");
    assert!(f.seq > last, "sequence numbers go on across reconnects");
    assert_eq!(f.threshold, 0.0, "control message applied");
    assert!(
        f.kept.iter().all(|&k| k == 256),
        "threshold 0 runs dense: {:?}",
        f.kept
    );
    // A fixed keep ratio (the monitor's `[`/`]`) replaces the threshold at every gated block.
    send(&mut s, &HostMsg::SetKeepRatio(Some(0.25)));
    let (msgs, _) = read_messages(
        &mut s,
        Duration::from_secs(120),
        |m| matches!(m, EdgeMsg::Frame(f) if f.kept.iter().any(|&k| k < 256)),
    );
    let Some(EdgeMsg::Frame(f)) = msgs.last() else {
        panic!("no frame after SetKeepRatio")
    };
    let gated: Vec<u16> = f.kept.iter().copied().filter(|&k| k < 256).collect();
    assert!(
        !gated.is_empty() && gated.iter().all(|&k| k == 64),
        "keep ratio 0.25 of 256 tokens at each gated block: {:?}",
        f.kept
    );
    let _ = edge.kill();
    let _ = edge.wait();
}

#[test]
fn sigterm_stops_the_edge_after_sending_what_is_queued() {
    use std::io::Read;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut edge = spawn_edge(port, 100_000);
    let (mut s, _) = listener.accept().unwrap();
    greet(&mut s);
    // Read until the edge closes the link, sending SIGTERM after the third frame.
    let mut n = 0;
    let (msgs, _) = read_messages(&mut s, Duration::from_secs(120), |m| {
        n += matches!(m, EdgeMsg::Frame(_)) as usize;
        if n == 3 && matches!(m, EdgeMsg::Frame(_)) {
            svit_e2e::signal(&edge, "-TERM");
        }
        false
    });
    let t = std::time::Instant::now();
    let status = loop {
        if let Some(st) = edge.try_wait().unwrap() {
            break st;
        }
        if t.elapsed() > Duration::from_secs(30) {
            let _ = edge.kill();
            panic!("the edge did not stop within 30 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut log = String::new();
    edge.stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(status.success(), "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("stopped"))
        .expect("a stop line");
    let stat = |key: &str| -> u64 {
        let at = line
            .find(&format!("{key}="))
            .unwrap_or_else(|| panic!("{key} in {line}"));
        let v = &line[at + key.len() + 1..];
        v.split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let got: Vec<u64> = msgs
        .iter()
        .filter_map(|m| match m {
            EdgeMsg::Frame(f) => Some(f.seq),
            _ => None,
        })
        .collect();
    assert!(got.len() >= 3);
    assert_eq!(stat("dropped_before_send"), 0, "{log}");
    assert_eq!(
        got,
        (0..stat("frames")).collect::<Vec<_>>(),
        "every frame inferred before the stop reached the host, in order"
    );
}
