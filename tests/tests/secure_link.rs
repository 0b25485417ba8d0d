//! A keyed session seen from a relaying proxy on the path (`svit_e2e::relay`): real
//! `svit-edge` and `svit-host` processes, the proxy between them. Without a key the
//! thumbnails cross readable; with one nothing is, and a bit flipped on the way ends the
//! session with an integrity failure named in the host's log, the board reconnects, and
//! nothing altered is recorded.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use svit_e2e::relay::Relay;
use svit_e2e::{bin, free_port, signal, summary, tmp, workspace};

const KEY: &str = "correct horse battery staple\n";

fn host(port: u16, rec: &Path, key: Option<&Path>) -> Child {
    let mut c = Command::new(bin("svit-host"));
    c.args([
        "listen",
        &format!("127.0.0.1:{port}"),
        "--quiet",
        "--record",
    ])
    .arg(rec);
    if let Some(k) = key {
        c.arg("--key").arg(k);
    }
    c.stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start svit-host")
}

/// Board cam-1 on the synthetic camera at 20 frames/s, a thumbnail every other frame; `extra`
/// arguments after.
fn edge(port: u16, extra: &[&str], key: Option<&Path>) -> Child {
    let mut c = Command::new(bin("svit-edge"));
    c.args([
        "run",
        "--camera",
        "synthetic",
        "--name",
        "cam-1",
        "--fps",
        "20",
    ])
    .args([
        "--thumbnail-every",
        "0.1",
        "--connect",
        &format!("127.0.0.1:{port}"),
    ])
    .args(extra);
    if let Some(k) = key {
        c.arg("--key").arg(k);
    }
    c.current_dir(workspace())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start svit-edge")
}

/// One run through a relay: the board's bytes on the wire, the host's log, the report.
fn through_relay(
    name: &str,
    key: bool,
    flip_at: Option<usize>,
) -> (Vec<u8>, String, serde_json::Value) {
    let dir = tmp(name);
    let key_file = dir.join("key");
    std::fs::write(&key_file, KEY).unwrap();
    let key = key.then_some(key_file.as_path());
    let port = free_port();
    let rec = dir.join("run.svrec");
    let h = host(port, &rec, key);
    std::thread::sleep(Duration::from_millis(300));
    let relay = Relay::start(port, flip_at);
    let mut e = edge(relay.port, &["--frames", "40"], key);
    assert!(e.wait().unwrap().success(), "the edge exits cleanly");
    std::thread::sleep(Duration::from_millis(300));
    signal(&h, "-TERM");
    let out = h.wait_with_output().unwrap();
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    (relay.seen(), log, summary(&rec, &dir.join("report")))
}

fn has(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn without_a_key_the_relay_reads_thumbnails_and_with_one_it_reads_nothing() {
    let (plain, _, s) = through_relay("plain-relay", false, None);
    assert_eq!(s["boards"][0]["frames"], 40, "{s}");
    assert!(
        has(&plain, b"JFIF"),
        "thumbnails cross readable without a key"
    );

    let (sealed, log, s) = through_relay("sealed-relay", true, None);
    assert_eq!(s["boards"][0]["frames"], 40, "{s}\n{log}");
    assert!(
        sealed.len() > 20_000,
        "the relay saw the session: {} bytes",
        sealed.len()
    );
    assert!(
        !has(&sealed, b"JFIF"),
        "a thumbnail crossed readable with a key"
    );
    // The hello stays readable, so a mismatch is still named.
    assert!(has(&sealed, b"cam-1"));
}

#[test]
fn a_flipped_bit_ends_the_session_by_name_and_nothing_altered_is_recorded() {
    let (_, log, s) = through_relay("flip-relay", true, Some(15_000));
    assert!(log.contains("integrity failure"), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("cam-1") && l.contains("integrity failure")),
        "the log names the board: {log}"
    );
    let b = &s["boards"][0];
    assert_eq!(b["device"], "cam-1");
    assert!(
        log.matches("board cam-1 connected").count() >= 2,
        "the board reconnected: {log}"
    );
    let (frames, missing) = (
        b["frames"].as_u64().unwrap(),
        b["missing"].as_u64().unwrap(),
    );
    assert!(frames >= 5, "frames recorded before and after: {s}");
    assert_eq!(
        frames + missing,
        40,
        "every frame recorded or counted missing, none twice: {s}"
    );
}

#[test]
fn a_half_open_link_is_ended_by_the_host_and_the_board_comes_back() {
    use svit_e2e::relay::Faults;
    let dir = tmp("half-open");
    let port = free_port();
    let rec = dir.join("run.svrec");
    let h = host(port, &rec, None);
    std::thread::sleep(Duration::from_millis(300));
    // Every connection stops forwarding after 1 to 3 s, its sockets left open.
    let faults = Faults {
        seed: 3,
        half_open_every: Some(Duration::from_secs(2)),
        ..Faults::default()
    };
    let relay = Relay::with_faults(0, port, faults);
    let e = edge(relay.port, &[], None);
    let t = std::time::Instant::now();
    while relay
        .counts
        .half_open
        .load(std::sync::atomic::Ordering::Relaxed)
        < 2
        && t.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    // A second half-open link means the board came back after the first; then the host's
    // 10 s of silence for the second.
    std::thread::sleep(Duration::from_secs(11));
    signal(&e, "-TERM");
    let _ = e.wait_with_output();
    signal(&h, "-TERM");
    let out = h.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("cam-1") && log.contains("silent for 10 s"),
        "{log}"
    );
    assert!(
        log.matches("board cam-1 connected").count() >= 2,
        "the board came back: {log}"
    );
}
