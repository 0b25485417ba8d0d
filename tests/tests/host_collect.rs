//! Two real `svit-edge` processes stream to one real `svit-host` over loopback while it
//! records; the report built from the recording must agree with what the edges sent.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use svit_e2e::{bin, board_frame, board_hello, free_port, signal, summary, tmp, workspace};

/// `svit-host listen` on loopback `port`, recording into `rec`; callers add to it.
fn host_cmd(port: u16, rec: &Path) -> Command {
    let mut c = Command::new(bin("svit-host"));
    c.args([
        "listen",
        &format!("127.0.0.1:{port}"),
        "--quiet",
        "--record",
    ])
    .arg(rec)
    .stdout(Stdio::null());
    c
}

fn host(port: u16, rec: &Path) -> Child {
    host_cmd(port, rec).spawn().expect("start svit-host")
}

fn edge(port: u16, name: &str, camera: &str, frames: u32) -> Child {
    Command::new(bin("svit-edge"))
        .args([
            "run",
            "--camera",
            camera,
            "--name",
            name,
            "--frames",
            &frames.to_string(),
        ])
        .args(["--connect", &format!("127.0.0.1:{port}")])
        .current_dir(workspace())
        .stdout(Stdio::null())
        .spawn()
        .expect("start svit-edge")
}

/// A fresh directory and a host recording into `DIR/NAME.svrec` on a free port.
fn recording_host(dir: &Path, name: &str) -> (u16, std::path::PathBuf, Child) {
    let port = free_port();
    let rec = dir.join(format!("{name}.svrec"));
    let h = host(port, &rec);
    std::thread::sleep(Duration::from_millis(300));
    (port, rec, h)
}

#[test]
fn two_boards_one_host_nothing_lost() {
    let dir = tmp("two");
    let (port, rec, mut h) = recording_host(&dir, "run");
    let scene_dir = workspace().join("tests/data");
    let mut a = edge(port, "board-a", "synthetic", 8);
    let mut b = edge(port, "board-b", &format!("file:{}", scene_dir.display()), 8);
    assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
    std::thread::sleep(Duration::from_millis(500));
    signal(&h, "-TERM");
    assert!(h.wait().unwrap().success(), "host exits cleanly on SIGTERM");
    let s = summary(&rec, &dir.join("report"));
    let boards = s["boards"].as_array().unwrap();
    assert_eq!(boards.len(), 2, "{s}");
    for bd in boards {
        assert_eq!(bd["frames"], 8, "every frame sent is recorded: {bd}");
        assert_eq!(bd["missing"], 0);
        assert!(bd["total_ms"]["p50"].as_f64().unwrap() > 0.0);
        assert!(
            bd["kept_fraction"].as_f64().unwrap() > 0.0
                && bd["kept_fraction"].as_f64().unwrap() <= 1.0
        );
    }
    let html = std::fs::read_to_string(dir.join("report/index.html")).unwrap();
    for plot in [
        "latency_hist.svg",
        "stages.svg",
        "latency_vs_kept.svg",
        "fps.svg",
        "kept_per_block.svg",
    ] {
        assert!(html.contains(plot), "index.html shows {plot}");
        let svg = std::fs::read_to_string(dir.join("report").join(plot)).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("board-a") && svg.contains("board-b"));
    }
    let csv = std::fs::read_to_string(dir.join("report/frames.csv")).unwrap();
    for name in ["board-a", "board-b"] {
        let seqs: Vec<u64> = csv
            .lines()
            .filter(|l| l.starts_with(name))
            .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
            .collect();
        assert_eq!(seqs, (0..8).collect::<Vec<_>>(), "{name}");
    }
    // Frame 0 always carries a thumbnail: it renders with its masks and kept-token map.
    let png = dir.join("frame0.png");
    let st = Command::new(bin("svit-host"))
        .arg("render")
        .arg(&rec)
        .args([
            "--frame", "0", "--device", "board-b", "--block", "7", "--out",
        ])
        .arg(&png)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let img = std::fs::read(&png).unwrap();
    assert!(img.starts_with(b"\x89PNG") && img.len() > 1000);
    let st = Command::new(bin("svit-host"))
        .arg("render")
        .arg(&rec)
        .args(["--frame", "999", "--out"])
        .arg(&png)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!st.success(), "a frame that is not recorded is an error");
}

/// Power loss, as near as a test gets: the host is SIGKILLed at 20 points of a recording (the
/// delays from a fixed sequence, so a failure reproduces). Every time the recording opens,
/// holds at least the frames of its first flush, every frame from the first on with no gap,
/// and replays them all.
#[test]
fn recordings_survive_kill_9_at_twenty_points() {
    let mut lcg = 0x2545_f491_4f6c_dd1du64;
    for attempt in 0..20 {
        lcg = lcg
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delay = Duration::from_millis(lcg >> 54); // 0 to 1023 ms
        let dir = tmp(&format!("kill-{attempt}"));
        let (port, rec, mut h) = recording_host(&dir, "run");
        let mut e = edge(port, "board-k", "synthetic", 100_000);
        let t = Instant::now();
        // The first flush (100 ms after the first record) puts frames on disk; kill after it.
        while std::fs::metadata(&rec).map(|m| m.len()).unwrap_or(0) < 2_000
            && t.elapsed() < Duration::from_secs(120)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(delay);
        signal(&h, "-KILL");
        let _ = h.wait();
        let _ = e.kill();
        let _ = e.wait();
        let s = summary(&rec, &dir.join("report"));
        let bd = &s["boards"][0];
        let frames = bd["frames"].as_u64().unwrap_or(0);
        assert!(frames >= 1, "kill {attempt} after {delay:?}: {s}");
        assert_eq!(
            bd["missing"], 0,
            "kill {attempt} after {delay:?}: what was recorded is intact and contiguous"
        );
        let out = Command::new(bin("svit-host"))
            .arg("replay")
            .arg(&rec)
            .arg("--max-speed")
            .output()
            .unwrap();
        assert!(out.status.success(), "kill {attempt}: replay fails");
        let lines = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter(|l| l.starts_with('{'))
            .count();
        assert_eq!(
            lines as u64, frames,
            "kill {attempt}: replay shows every recorded frame"
        );
    }
}

#[test]
fn host_refuses_bad_peers_and_keeps_serving() {
    use std::io::Write;
    use svit_protocol as proto;
    let dir = tmp("bad");
    let (port, rec, mut h) = recording_host(&dir, "run");
    let addr = format!("127.0.0.1:{port}");
    // Garbage, an oversized frame, and a hello from another schema.
    let mut g = std::net::TcpStream::connect(&addr).unwrap();
    g.write_all(&[0xde, 0xad, 0xbe, 0xef, 0x00]).unwrap();
    let mut big = std::net::TcpStream::connect(&addr).unwrap();
    let _ = big.write_all(&vec![0x01u8; proto::MAX_FRAME + 10]);
    let mut wrong = std::net::TcpStream::connect(&addr).unwrap();
    let mut impostor = proto::Hello::new(proto::Role::Edge, "impostor");
    impostor.schema_hash ^= 0xff;
    let hello = proto::EdgeMsg::Hello(impostor);
    wrong
        .write_all(&proto::encode(&hello, proto::MAX_FRAME).unwrap())
        .unwrap();
    let mut e = edge(port, "board-ok", "synthetic", 5);
    assert!(e.wait().unwrap().success());
    std::thread::sleep(Duration::from_millis(300));
    signal(&h, "-TERM");
    assert!(h.wait().unwrap().success());
    let s = summary(&rec, &dir.join("report"));
    let boards = s["boards"].as_array().unwrap();
    assert_eq!(boards.len(), 1, "only the real board is recorded: {s}");
    assert_eq!(boards[0]["device"], "board-ok");
    assert_eq!(boards[0]["frames"], 5);
}

#[test]
fn pre_shared_key_admits_only_its_holders() {
    let dir = tmp("key");
    let (good, bad) = (dir.join("good.key"), dir.join("bad.key"));
    std::fs::write(&good, "correct horse battery staple\n").unwrap();
    std::fs::write(&bad, "another key of enough length\n").unwrap();
    let port = free_port();
    let rec = dir.join("run.svrec");
    let mut h = host_cmd(port, &rec)
        .arg("--key")
        .arg(&good)
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let with_key = |name: &str, key: Option<&Path>| {
        let mut c = Command::new(bin("svit-edge"));
        c.args([
            "run",
            "--camera",
            "synthetic",
            "--name",
            name,
            "--frames",
            "4",
            "--connect",
            &format!("127.0.0.1:{port}"),
        ]);
        if let Some(k) = key {
            c.arg("--key").arg(k);
        }
        c.current_dir(workspace())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut a = with_key("holder", Some(&good));
    let mut b = with_key("wrong-key", Some(&bad));
    let mut c = with_key("no-key", None);
    for e in [&mut a, &mut b, &mut c] {
        assert!(
            e.wait().unwrap().success(),
            "an edge refused by the host still exits cleanly"
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    signal(&h, "-TERM");
    assert!(h.wait().unwrap().success());
    let s = summary(&rec, &dir.join("report"));
    let names: Vec<&str> = s["boards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["device"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["holder"], "{s}");
    assert_eq!(s["boards"][0]["frames"], 4);
}

#[test]
fn a_board_killed_mid_frame_is_marked_gone_and_the_others_go_on() {
    use std::io::Write;
    use svit_protocol::{self as proto, FrameDecoder, HostMsg, MAX_FRAME};
    let dir = tmp("torn");
    let port = free_port();
    let rec = dir.join("run.svrec");
    let h = host_cmd(port, &rec)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start svit-host");
    std::thread::sleep(Duration::from_millis(300));
    let mut e = edge(port, "board-ok", "synthetic", 8);
    // A board that dies while sending its fourth frame.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(&proto::encode(&board_hello("board-torn"), MAX_FRAME).unwrap())
        .unwrap();
    // Take the host's reply first: closing with unread bytes would reset the connection, and a
    // reset may drop what the host has not read yet.
    let mut dec = FrameDecoder::new(MAX_FRAME);
    let mut buf = [0u8; 4096];
    let mut replied = false;
    while !replied {
        let n = std::io::Read::read(&mut s, &mut buf).unwrap();
        assert!(n > 0, "host closed before its hello");
        replied = dec.frames::<HostMsg>(&buf[..n]).any(|m| m.is_ok());
    }
    for seq in 0..3 {
        s.write_all(&proto::encode(&board_frame(seq), MAX_FRAME).unwrap())
            .unwrap();
    }
    let fourth = proto::encode(&board_frame(3), MAX_FRAME).unwrap();
    s.write_all(&fourth[..fourth.len() / 2]).unwrap();
    drop(s);
    assert!(e.wait().unwrap().success());
    std::thread::sleep(Duration::from_millis(300));
    signal(&h, "-TERM");
    let out = h.wait_with_output().unwrap();
    assert!(out.status.success(), "host exits cleanly on SIGTERM");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("discarded a torn frame"), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("board-torn") && l.contains("disconnected")),
        "{log}"
    );
    let s = summary(&rec, &dir.join("report"));
    let frames = |device: &str| {
        let b = s["boards"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["device"] == device)
            .unwrap_or_else(|| panic!("{device} in {s}"));
        (
            b["frames"].as_u64().unwrap(),
            b["missing"].as_u64().unwrap(),
        )
    };
    assert_eq!(frames("board-torn"), (3, 0), "its whole frames are kept");
    assert_eq!(frames("board-ok"), (8, 0), "the other board loses nothing");
}

/// The other direction: the board listens (`--listen`), the host dials it (`--board`). Frames
/// made before the host arrives wait in the board's bounded queue.
#[test]
fn host_dials_a_listening_board() {
    let dir = tmp("dial");
    let (edge_port, host_port) = (free_port(), free_port());
    let mut e = Command::new(bin("svit-edge"))
        .args([
            "run",
            "--camera",
            "sim-arducam",
            "--name",
            "board-l",
            "--frames",
            "6",
        ])
        .args(["--listen", &format!("127.0.0.1:{edge_port}")])
        .current_dir(workspace())
        .stdout(Stdio::null())
        .spawn()
        .expect("start svit-edge");
    let rec = dir.join("run.svrec");
    let mut h = Command::new(bin("svit-host"))
        .args(["listen", &format!("127.0.0.1:{host_port}"), "--quiet"])
        .args(["--board", &format!("127.0.0.1:{edge_port}"), "--record"])
        .arg(&rec)
        .stdout(Stdio::null())
        .spawn()
        .expect("start svit-host");
    assert!(e.wait().unwrap().success());
    std::thread::sleep(Duration::from_millis(500));
    signal(&h, "-TERM");
    assert!(h.wait().unwrap().success());
    let s = summary(&rec, &dir.join("report"));
    let bd = &s["boards"][0];
    assert_eq!(bd["device"], "board-l", "{s}");
    assert_eq!(bd["frames"], 6, "{s}");
    assert_eq!(bd["missing"], 0, "{s}");

    // Listening off loopback without a key is allowed but warned about loudly.
    let out = Command::new(bin("svit-edge"))
        .args(["run", "--frames", "1", "--listen", "0.0.0.0:0"])
        .current_dir(workspace())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("WITHOUT --key"), "{log}");
}

/// Dense against pruned, recorded separately, compared: pruning shows as fewer kept tokens and
/// GMACs in B than in A.
#[test]
fn compare_puts_dense_and_pruned_side_by_side() {
    let dir = tmp("compare");
    let mut recs = Vec::new();
    for (name, threshold) in [("dense", "0"), ("pruned", "0.7")] {
        let (port, rec, mut h) = recording_host(&dir, name);
        let st = Command::new(bin("svit-edge"))
            .args([
                "run",
                "--camera",
                "synthetic",
                "--name",
                "pi",
                "--frames",
                "5",
            ])
            .args([
                "--threshold",
                threshold,
                "--connect",
                &format!("127.0.0.1:{port}"),
            ])
            .current_dir(workspace())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
        std::thread::sleep(Duration::from_millis(300));
        signal(&h, "-TERM");
        assert!(h.wait().unwrap().success());
        recs.push(rec);
    }
    let out = Command::new(bin("svit-host"))
        .arg("compare")
        .args(&recs)
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let fig = &v[0]["figures"];
    assert_eq!(fig["kept fraction"]["a"], 1.0, "{v}");
    assert!(
        fig["kept fraction"]["b_over_a"].as_f64().unwrap() < 0.9,
        "{v}"
    );
    assert!(fig["GMACs"]["b_over_a"].as_f64().unwrap() < 0.9, "{v}");
    let table = Command::new(bin("svit-host"))
        .arg("compare")
        .args(&recs)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("B/A") && text.contains("kept fraction"),
        "{text}"
    );
}

/// `svit-edge bench --connect`: the profile travels to the host, is recorded and lands in the
/// report.
#[test]
fn bench_results_reach_the_host_report() {
    let dir = tmp("bench");
    let (port, rec, mut h) = recording_host(&dir, "bench");
    let st = Command::new(bin("svit-edge"))
        .args(["bench", "--frames", "3", "--warmup", "1"])
        .args([
            "--name",
            "benchy",
            "--connect",
            &format!("127.0.0.1:{port}"),
        ])
        .current_dir(workspace())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    std::thread::sleep(Duration::from_millis(300));
    signal(&h, "-TERM");
    assert!(h.wait().unwrap().success());
    let s = summary(&rec, &dir.join("report"));
    let b = &s["bench"][0];
    assert_eq!(b["device"], "benchy", "{s}");
    let configs = b["report"]["configs"].as_array().unwrap();
    // Without --thresholds the bench compares the dense pass with the bundle's threshold.
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(workspace().join("models/demo/manifest.json")).unwrap(),
    )
    .unwrap();
    let thresholds: Vec<f64> = configs
        .iter()
        .map(|c| c["threshold"].as_f64().unwrap())
        .collect();
    assert_eq!(
        thresholds,
        [0.0, manifest["defaults"]["threshold"].as_f64().unwrap()]
    );
    assert!(configs
        .iter()
        .all(|c| c["total_ms"]["p50"].as_f64().unwrap() > 0.0));
    let html = std::fs::read_to_string(dir.join("report/index.html")).unwrap();
    assert!(html.contains("bench from benchy"));

    // No host listening: the bench says the report was not delivered.
    let out = Command::new(bin("svit-edge"))
        .args([
            "bench",
            "--frames",
            "1",
            "--warmup",
            "0",
            "--thresholds",
            "0",
        ])
        .args(["--connect", &format!("127.0.0.1:{}", free_port())])
        .current_dir(workspace())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not delivered"));
}

/// For scripts: `--summary-every` prints one JSON summary line per period instead of a line per
/// frame; the periods split the frames between them, each frame counted once.
#[test]
fn periodic_summary_lines_count_every_frame_once() {
    let port = free_port();
    let h = Command::new(bin("svit-host"))
        .args([
            "listen",
            &format!("127.0.0.1:{port}"),
            "--summary-every",
            "0.4",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start svit-host");
    std::thread::sleep(Duration::from_millis(300));
    let mut e = edge(port, "board-s", "synthetic", 12);
    assert!(e.wait().unwrap().success());
    std::thread::sleep(Duration::from_millis(600));
    signal(&h, "-TERM");
    let out = h.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert!(lines.len() >= 2, "expected several periods:\n{text}");
    let mut frames = 0;
    for l in &lines {
        assert!(l["period_s"].as_f64().unwrap() > 0.0, "{l}");
        for b in l["boards"].as_array().unwrap() {
            assert_eq!(b["device"], "board-s", "{l}");
            let n = b["frames"].as_u64().unwrap();
            assert!(
                n == 0 || b["total_ms"]["p50"].as_f64().unwrap() > 0.0,
                "{l}"
            );
            frames += n;
        }
    }
    assert_eq!(frames, 12, "{text}");
}
