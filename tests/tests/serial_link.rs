//! Edge and host over a serial line (`svit-edge run --serial`, `svit-host listen --serial`).
//! The UART and its cable are simulated: two pseudo-terminal pairs, with this test copying bytes
//! between their master sides (and injecting line noise). The edge and host are the real
//! binaries on the pseudo-terminals' device nodes.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serialport::{SerialPort, TTYPort};

use svit_e2e::{bin, signal, summary, tmp, workspace};

/// Two pty pairs and the copying threads: `edge_path` and `host_path` are what the programs
/// open; `noise` bytes are written towards the host before the next chunk from the edge.
struct Cable {
    edge_path: String,
    host_path: String,
    noise: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
}

impl Cable {
    fn new() -> Self {
        let (edge_master, edge_slave) = TTYPort::pair().expect("pty pair");
        let (host_master, host_slave) = TTYPort::pair().expect("pty pair");
        let stop = Arc::new(AtomicBool::new(false));
        let noise = Arc::new(Mutex::new(Vec::new()));
        let copy = |from: &TTYPort, to: &TTYPort, noise: Option<Arc<Mutex<Vec<u8>>>>| {
            let (mut from, mut to) = (
                from.try_clone_native().unwrap(),
                to.try_clone_native().unwrap(),
            );
            from.set_timeout(Duration::from_millis(20)).unwrap();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    if let Some(n) = &noise {
                        let junk = std::mem::take(&mut *n.lock().unwrap());
                        if !junk.is_empty() {
                            let _ = to.write_all(&junk);
                        }
                    }
                    match from.read(&mut buf) {
                        // Bytes towards an end no program holds open are lost, as on a cable.
                        Ok(n) => {
                            let _ = to.write_all(&buf[..n]);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                        // EIO while no program holds this end open.
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            });
        };
        copy(&edge_master, &host_master, Some(noise.clone()));
        copy(&host_master, &edge_master, None);
        // Only the programs hold the device ends open (the edge and host lock them).
        Cable {
            edge_path: edge_slave.name().unwrap(),
            host_path: host_slave.name().unwrap(),
            noise,
            stop,
        }
    }

    fn inject(&self, junk: &[u8]) {
        self.noise.lock().unwrap().extend_from_slice(junk);
    }
}

impl Drop for Cable {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serial_host(cable: &Cable, rec: &Path, key: Option<&Path>) -> Child {
    let mut c = Command::new(bin("svit-host"));
    c.args([
        "listen",
        "127.0.0.1:0",
        "--quiet",
        "--serial",
        &cable.host_path,
    ])
    .arg("--record")
    .arg(rec);
    if let Some(k) = key {
        c.arg("--key").arg(k);
    }
    c.stdout(Stdio::null()).spawn().expect("start svit-host")
}

fn serial_edge(cable: &Cable, frames: u32, fps: u32, key: Option<&Path>) -> Child {
    let mut c = Command::new(bin("svit-edge"));
    c.args(["run", "--name", "uart-board", "--thumbnail-every", "0"])
        .args(["--frames", &frames.to_string(), "--fps", &fps.to_string()])
        .args(["--serial", &cable.edge_path, "--baud", "115200"]);
    if let Some(k) = key {
        c.arg("--key").arg(k);
    }
    c.current_dir(workspace())
        .stdout(Stdio::null())
        .spawn()
        .expect("start svit-edge")
}

/// Sequence numbers of the frames in a recording, from the report's frames.csv.
fn recorded_seqs(rec: &Path, out: &Path) -> Vec<u64> {
    summary(rec, out);
    let csv = std::fs::read_to_string(out.join("frames.csv")).unwrap();
    csv.lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect()
}

/// The edge starts before any host (it repeats its hello), the line carries noise, the host
/// is stopped mid-stream and another one started (its knock makes the edge say hello again):
/// each recording holds a contiguous run of frames, and the second one the last frame.
#[test]
fn serial_line_survives_noise_and_a_host_restart() {
    let dir = tmp("serial");
    let cable = Cable::new();
    cable.inject(b"U-Boot 2024.01 ... booting\r\n\x13\x37\xff\xfe");
    let frames = 50;
    let mut e = serial_edge(&cable, frames, 10, None);
    std::thread::sleep(Duration::from_millis(1500));

    let rec1 = dir.join("first.svrec");
    let mut h1 = serial_host(&cable, &rec1, None);
    std::thread::sleep(Duration::from_millis(2000));
    signal(&h1, "-TERM");
    assert!(
        h1.wait().unwrap().success(),
        "host exits cleanly on SIGTERM"
    );
    cable.inject(&[0x41; 300]); // garbage longer than any hello, then a lone frame end
    cable.inject(&[0x00]);

    let rec2 = dir.join("second.svrec");
    let mut h2 = serial_host(&cable, &rec2, None);
    assert!(e.wait().unwrap().success(), "edge finishes its frames");
    std::thread::sleep(Duration::from_millis(500));
    signal(&h2, "-TERM");
    assert!(h2.wait().unwrap().success());

    let first = recorded_seqs(&rec1, &dir.join("r1"));
    let second = recorded_seqs(&rec2, &dir.join("r2"));
    assert!(!first.is_empty(), "the first host got frames");
    assert!(!second.is_empty(), "the second host got frames");
    for run in [&first, &second] {
        assert!(
            run.windows(2).all(|w| w[1] == w[0] + 1),
            "a session's frames are contiguous: {run:?}"
        );
    }
    assert_eq!(
        first[0], 0,
        "frames made before the host came were queued, not lost"
    );
    assert!(second[0] > *first.last().unwrap());
    assert_eq!(*second.last().unwrap(), frames as u64 - 1);
    let s = summary(&rec2, &dir.join("r2"));
    assert_eq!(s["boards"][0]["device"], "uart-board", "{s}");
}

/// With a key on the line, a board holding another key gets nothing through; the owner's does.
#[test]
fn serial_line_checks_the_key() {
    let dir = tmp("serial-key");
    let (good, bad) = (dir.join("good.key"), dir.join("bad.key"));
    std::fs::write(&good, "a shared secret of the owner\n").unwrap();
    std::fs::write(&bad, "somebody else's secret\n").unwrap();
    let cable = Cable::new();
    let rec = dir.join("run.svrec");
    let mut h = serial_host(&cable, &rec, Some(&good));
    let mut intruder = serial_edge(&cable, 3, 10, Some(&bad));
    let out = intruder.wait().unwrap();
    assert!(out.success(), "an unanswered board stops cleanly");
    let mut owner = serial_edge(&cable, 5, 10, Some(&good));
    assert!(owner.wait().unwrap().success());
    std::thread::sleep(Duration::from_millis(500));
    signal(&h, "-TERM");
    assert!(h.wait().unwrap().success());
    let seqs = recorded_seqs(&rec, &dir.join("report"));
    assert_eq!(seqs, vec![0, 1, 2, 3, 4], "only the owner's frames");
}

/// A port that is not there is named, with what to check.
#[test]
fn missing_serial_port_is_named() {
    let out = Command::new(bin("svit-edge"))
        .args(["run", "--frames", "1", "--serial", "/dev/ttyNOPE9"])
        .current_dir(workspace())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("/dev/ttyNOPE9") && err.contains("no such device"),
        "{err}"
    );
}

/// A bundle pushed to a board on the serial line, through the host's web API.
#[test]
fn a_bundle_is_pushed_over_the_serial_line() {
    let cable = Cable::new();
    let dir = svit_e2e::tmp("serial-push");
    let web = format!("127.0.0.1:{}", svit_e2e::free_port());
    let _edge = svit_e2e::Kill(
        Command::new(bin("svit-edge"))
            .args([
                "run",
                "--name",
                "uart-board",
                "--thumbnail-every",
                "0",
                "--fps",
                "10",
            ])
            .args(["--serial", &cable.edge_path, "--store"])
            .arg(dir.join("store"))
            .current_dir(workspace())
            .stdout(Stdio::null())
            .spawn()
            .expect("start svit-edge"),
    );
    std::thread::sleep(Duration::from_millis(1500));
    let _host = svit_e2e::Kill(
        Command::new(bin("svit-host"))
            .args([
                "listen",
                "127.0.0.1:0",
                "--quiet",
                "--serial",
                &cable.host_path,
            ])
            .args(["--http", &web])
            .stdout(Stdio::null())
            .spawn()
            .expect("start svit-host"),
    );
    svit_e2e::wait_for(Duration::from_secs(120), "the board on the line", || {
        svit_e2e::web_board(&web, "uart-board")
    });
    let out = svit_e2e::host_api(&["push", "models/demo", "--board", "uart-board"], &web);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(svit_e2e::last_json(&out)["state"], "switched");
}
