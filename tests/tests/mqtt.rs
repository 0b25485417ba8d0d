//! The host's MQTT bridge against a real Mosquitto (Debian's `mosquitto`, started here on a
//! free loopback port) with its own command-line clients: topics and payloads, retained
//! availability and Home Assistant discovery, the control round trip, the last will, and
//! clear errors for a bad URL or an unreachable broker.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use svit_e2e::{bin, free_port, has_tool, read_as, signal, tmp, wait_for, SimBoard};
use svit_protocol::HostMsg;

/// A Mosquitto broker for one test, stopped when dropped.
struct Broker {
    port: u16,
    child: Child,
}

impl Broker {
    fn start() -> Option<Broker> {
        Self::start_with(&[])
    }

    /// With extra arguments (`-c CONFIG`: then the config names the port, `listener PORT`).
    fn start_with(config: &[&str]) -> Option<Broker> {
        // Debian puts the broker in /usr/sbin, outside a user's PATH.
        let exe = ["/usr/sbin/mosquitto", "mosquitto"]
            .into_iter()
            .find(|p| Command::new(p).arg("-h").output().is_ok());
        if !has_tool("mosquitto_sub", "--help", "mosquitto-clients") || exe.is_none() {
            eprintln!("mosquitto not installed: skipping (apt-get install mosquitto)");
            return None;
        }
        let port = match config {
            [_, path] => std::fs::read_to_string(path).ok()?.lines().find_map(|l| {
                l.strip_prefix("listener ")?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })?,
            _ => free_port(),
        };
        let args: Vec<String> = if config.is_empty() {
            vec!["-p".into(), port.to_string()]
        } else {
            config.iter().map(|a| a.to_string()).collect()
        };
        let child = Command::new(exe?)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        wait_for(Duration::from_secs(10), "mosquitto to listen", || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Some(Broker { port, child })
    }
    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
    /// `mosquitto_sub -v` on `topics` into `out` for `secs` seconds.
    fn subscribe(&self, topics: &[&str], secs: u32, out: &Path) -> Child {
        // Line-buffered: the file is read while it runs.
        let mut c = Command::new("stdbuf");
        c.args(["-oL", "mosquitto_sub", "-p", &self.port.to_string(), "-v"])
            .args(["-W", &secs.to_string()]);
        for t in topics {
            c.args(["-t", t]);
        }
        c.stdout(std::fs::File::create(out).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }
    /// The retained message on `topic`, if any (waits up to 3 s).
    fn retained(&self, topic: &str) -> String {
        let out = Command::new("mosquitto_sub")
            .args([
                "-p",
                &self.port.to_string(),
                "-t",
                topic,
                "-C",
                "1",
                "-W",
                "3",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
    fn publish(&self, topic: &str, payload: &str) {
        let st = Command::new("mosquitto_pub")
            .args(["-p", &self.port.to_string(), "-t", topic, "-m", payload])
            .status()
            .unwrap();
        assert!(st.success());
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn host(broker: &Broker, port: u16, log: &Path) -> Child {
    let child = Command::new(bin("svit-host"))
        .args(["listen", &format!("127.0.0.1:{port}"), "--quiet"])
        .args(["--mqtt", &broker.url(), "--mqtt-stats-every", "1"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(20), "the host to listen", || {
        TcpStream::connect(("127.0.0.1", port)).ok()
    });
    child
}

fn lines<'a>(text: &'a str, topic: &str) -> Vec<&'a str> {
    text.lines()
        .filter_map(|l| l.strip_prefix(topic)?.strip_prefix(' '))
        .collect()
}

#[test]
fn the_host_bridges_boards_to_mosquitto_and_takes_controls() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let dir = tmp("mqtt-bridge");
    let (port, log, seen) = (free_port(), dir.0.join("host.log"), dir.0.join("sub.txt"));
    let mut sub = broker.subscribe(&["svit/#", "homeassistant/#"], 25, &seen);
    std::thread::sleep(Duration::from_millis(300));
    let mut h = host(&broker, port, &log);
    // A name that is not one topic level: escaped.
    let mut board = SimBoard::connect(port, "desk/pi #1");
    board.stream(0, 12);

    broker.publish("svit/desk_pi__1/set/threshold", "0.35");
    let (got, _) = read_as::<HostMsg>(&mut board.0, Duration::from_secs(10), |_| true);
    assert_eq!(
        got.first(),
        Some(&HostMsg::SetThreshold(0.35)),
        "the control round trip"
    );
    broker.publish("svit/desk_pi__1/set/budget", "40");
    let (got, _) = read_as::<HostMsg>(&mut board.0, Duration::from_secs(10), |_| true);
    assert_eq!(got.first(), Some(&HostMsg::SetBudget(Some(40.0))));
    broker.publish("svit/desk_pi__1/set/budget", "none");
    let (got, _) = read_as::<HostMsg>(&mut board.0, Duration::from_secs(10), |_| true);
    assert_eq!(got.first(), Some(&HostMsg::SetBudget(None)));
    broker.publish("svit/desk_pi__1/set/threshold", "lots");
    broker.publish("svit/desk_pi__1/set/budget", "-3");
    broker.publish("svit/desk_pi__1/set/reboot", "");
    wait_for(Duration::from_secs(10), "a stats message", || {
        let t = std::fs::read_to_string(&seen).ok()?;
        (!lines(&t, "svit/desk_pi__1/stats").is_empty()).then_some(())
    });
    assert_eq!(broker.retained("svit/desk_pi__1/availability"), "online");
    assert_eq!(broker.retained("svit/bridge/availability"), "online");
    let number = broker.retained("homeassistant/number/svit_desk_pi__1/threshold/config");
    let number: serde_json::Value = serde_json::from_str(&number).expect("retained discovery");
    assert_eq!(number["command_topic"], "svit/desk_pi__1/set/threshold");
    assert_eq!(number["device"]["name"], "desk/pi #1");

    // A clean stop marks the board offline (retained).
    signal(&h, "-TERM");
    assert!(h.wait().unwrap().success());
    assert_eq!(broker.retained("svit/desk_pi__1/availability"), "offline");
    let _ = sub.kill();
    let _ = sub.wait();

    let t = std::fs::read_to_string(&seen).unwrap();
    let dets = lines(&t, "svit/desk_pi__1/detections");
    assert_eq!(dets.len(), 12, "one message per frame at QoS 1");
    for (i, d) in dets.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(d).unwrap();
        assert_eq!(v["seq"], i as u64);
        assert_eq!(v["detections"].as_array().unwrap().len(), 10);
        assert_eq!(v["detections"][0]["label"], "c0");
        assert_eq!(v["detections"][0]["box"].as_array().unwrap().len(), 4);
    }
    let stats: serde_json::Value =
        serde_json::from_str(lines(&t, "svit/desk_pi__1/stats")[0]).unwrap();
    assert_eq!(stats["frames"], 12);
    assert_eq!(stats["counts"]["c0"], 2, "{stats}");
    let events = lines(&t, "svit/desk_pi__1/events");
    assert!(
        events
            .iter()
            .any(|e| e.contains("\"change\":\"entered\"") && e.contains("\"label\":\"c3\"")),
        "{events:?}"
    );
    assert!(!lines(&t, "homeassistant/sensor/svit_desk_pi__1/count_c5/config").is_empty());
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("\"lots\" is not a number"), "{logged}");
    assert!(logged.contains("no control \"reboot\""), "{logged}");
    assert!(logged.contains("budget -3 ms is not positive"), "{logged}");
}

#[test]
fn the_last_will_marks_the_bridge_offline_and_bad_brokers_are_named() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let dir = tmp("mqtt-will");
    let port = free_port();
    let mut h = host(&broker, port, &dir.0.join("host.log"));
    let _board = SimBoard::connect(port, "cam");
    wait_for(Duration::from_secs(10), "the bridge online", || {
        (broker.retained("svit/bridge/availability") == "online").then_some(())
    });
    signal(&h, "-KILL");
    let _ = h.wait();
    wait_for(Duration::from_secs(30), "the last will", || {
        (broker.retained("svit/bridge/availability") == "offline").then_some(())
    });

    let start = |url: &str| {
        Command::new(bin("svit-host"))
            .args(["listen", "127.0.0.1:0", "--quiet", "--mqtt", url])
            .output()
            .unwrap()
    };
    let out = start("broker.lan:1883");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected mqtt://"));
    let out = start(&format!("mqtt://127.0.0.1:{}", free_port()));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("MQTT broker 127.0.0.1"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A real board (`svit-edge --mqtt`, synthetic camera, demo bundle) -> Mosquitto -> a host
/// that subscribes and records; the broker is restarted mid-stream. Every frame is recorded at
/// most once, and what the outage lost shows as sequence gaps.
#[test]
fn a_board_streams_through_the_broker_and_survives_a_broker_restart() {
    let Some(mut broker) = Broker::start() else {
        return;
    };
    let dir = tmp("mqtt-board");
    let rec = dir.0.join("rec.svrec");
    let web = format!("127.0.0.1:{}", free_port());
    let mut h = Command::new(bin("svit-host"))
        .args([
            "listen",
            "127.0.0.1:0",
            "--quiet",
            "--mqtt-subscribe",
            &broker.url(),
        ])
        .args(["--http", &web])
        .arg("--record")
        .arg(&rec)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.0.join("host.log")).unwrap())
        .spawn()
        .unwrap();
    let frames = 300u64;
    let mut edge = Command::new(bin("svit-edge"))
        .args([
            "run",
            "--camera",
            "synthetic",
            "--fps",
            "20",
            "--name",
            "mq-board",
        ])
        .args([
            "--frames",
            &frames.to_string(),
            "--mqtt",
            &broker.url(),
            "--bundle",
        ])
        .arg(svit_e2e::workspace().join("models/demo"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.0.join("edge.log")).unwrap())
        .spawn()
        .unwrap();
    wait_for(
        Duration::from_secs(60),
        "the board's hello, retained",
        || (!broker.retained("svit/mq-board/wire").is_empty()).then_some(()),
    );
    // A control from the host's web API reaches the board through the broker.
    let sent = wait_for(Duration::from_secs(20), "the board on the host", || {
        let r = svit_e2e::http(&web, "POST", "/api/boards/mq-board/snapshot", &[], b"");
        (r.status == 202).then_some(r)
    });
    assert!(sent.text().contains("Snapshot"));
    std::thread::sleep(Duration::from_secs(2));
    // The broker goes away for 5 s (longer than the board's outbox holds) and comes back on
    // the same port, empty.
    let port = broker.port;
    let _ = broker.child.kill();
    let _ = broker.child.wait();
    std::thread::sleep(Duration::from_secs(5));
    broker.child = Command::new(
        ["/usr/sbin/mosquitto", "mosquitto"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists() || *p == "mosquitto")
            .unwrap(),
    )
    .args(["-p", &port.to_string()])
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    assert!(edge.wait().unwrap().success(), "the board ends on its own");
    std::thread::sleep(Duration::from_secs(2));
    signal(&h, "-TERM");
    assert!(h.wait().unwrap().success());
    let edge_log = std::fs::read_to_string(dir.0.join("edge.log")).unwrap();
    let host_log = std::fs::read_to_string(dir.0.join("host.log")).unwrap();
    assert!(
        edge_log.contains("control from MQTT: Snapshot"),
        "{edge_log}\nhost:\n{host_log}"
    );
    let s = svit_e2e::summary(&rec, &dir.0.join("report"));
    let b = &s["boards"][0];
    let (got, missing) = (
        b["frames"].as_u64().unwrap(),
        b["missing"].as_u64().unwrap(),
    );
    // Frames before and after the outage arrived; what it lost (the board's full outbox, and
    // what the empty broker held for the host) shows as a gap.
    assert!(got >= 30, "{b}");
    assert!(missing > 0, "the outage's frames show as a gap: {b}");
    // No frame twice, the last one there: every sequence number is recorded once or missing.
    assert_eq!(got + missing, frames, "{b}");
}

/// A broker that wants a login: wrong credentials stop `listen` at start with the broker's
/// reason; the right ones connect.
#[test]
fn refused_credentials_are_named_at_start() {
    let dir = tmp("mqtt-login");
    let passwd = dir.0.join("passwd");
    let made = Command::new("mosquitto_passwd")
        .args(["-b", "-c", passwd.to_str().unwrap(), "board", "s3cret"])
        .status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("mosquitto_passwd not available: skipping");
        return;
    }
    let conf = dir.0.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {} 127.0.0.1\nallow_anonymous false\npassword_file {}\n",
            free_port(),
            passwd.display()
        ),
    )
    .unwrap();
    let Some(broker) = Broker::start_with(&["-c", conf.to_str().unwrap()]) else {
        return;
    };
    let start = |login: &str| {
        Command::new(bin("svit-host"))
            .args([
                "listen",
                "127.0.0.1:0",
                "--quiet",
                "--duration",
                "1",
                "--mqtt",
            ])
            .arg(format!("mqtt://{login}@127.0.0.1:{}", broker.port))
            .output()
            .unwrap()
    };
    let out = start("board:wrong");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("MQTT broker 127.0.0.1") && err.contains("refused"),
        "{err}"
    );
    let out = start("board:s3cret");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("MQTT: connected"));
}

/// With `--key` on both sides the session over the broker is the protocol's keyed one: the
/// broker (and anyone subscribed) sees the hellos and sealed bytes, no thumbnail; the host
/// records the frames; a control reaches the board; a board with another key is refused.
#[test]
fn a_keyed_board_through_the_broker_is_sealed_end_to_end() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let dir = tmp("mqtt-keyed");
    let (key, other) = (dir.0.join("key"), dir.0.join("other"));
    std::fs::write(&key, "correct horse battery staple\n").unwrap();
    std::fs::write(&other, "another key of enough length\n").unwrap();
    let rec = dir.0.join("rec.svrec");
    let web = format!("127.0.0.1:{}", free_port());
    let h = Command::new(bin("svit-host"))
        .args([
            "listen",
            "127.0.0.1:0",
            "--quiet",
            "--mqtt-subscribe",
            &broker.url(),
        ])
        .args(["--http", &web, "--key"])
        .arg(&key)
        .arg("--record")
        .arg(&rec)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.0.join("host.log")).unwrap())
        .spawn()
        .unwrap();
    let wire = dir.0.join("wire.txt");
    let mut sub = broker.subscribe(&["svit/+/wire"], 30, &wire);
    let board = |name: &str, key: &Path, log: &str| {
        Command::new(bin("svit-edge"))
            .args([
                "run",
                "--camera",
                "synthetic",
                "--fps",
                "10",
                "--name",
                name,
            ])
            .args([
                "--frames",
                "80",
                "--thumbnail-every",
                "0.2",
                "--mqtt",
                &broker.url(),
            ])
            .arg("--key")
            .arg(key)
            .arg("--bundle")
            .arg(svit_e2e::workspace().join("models/demo"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.0.join(log)).unwrap())
            .spawn()
            .unwrap()
    };
    wait_for(Duration::from_secs(30), "the host's web view", || {
        TcpStream::connect(&web).ok()
    });
    let mut good = board("kq-board", &key, "edge.log");
    let mut bad = board("kq-wrong", &other, "wrong.log");
    let sent = wait_for(
        Duration::from_secs(30),
        "the keyed board on the host",
        || {
            let r = svit_e2e::http(&web, "POST", "/api/boards/kq-board/snapshot", &[], b"");
            (r.status == 202).then_some(r)
        },
    );
    assert!(sent.text().contains("Snapshot"));
    assert!(good.wait().unwrap().success());
    let _ = bad.kill();
    let _ = bad.wait();
    std::thread::sleep(Duration::from_secs(1));
    let _ = sub.kill();
    let _ = sub.wait();
    signal(&h, "-TERM");
    let out = h.wait_with_output().unwrap();
    assert!(out.status.success());
    let host_log = std::fs::read_to_string(dir.0.join("host.log")).unwrap();
    let edge_log = std::fs::read_to_string(dir.0.join("edge.log")).unwrap();
    assert!(
        edge_log.contains("control from host: Snapshot"),
        "{edge_log}\n{host_log}"
    );
    let wrong_log = std::fs::read_to_string(dir.0.join("wrong.log")).unwrap();
    assert!(
        wrong_log.contains("failed the key check"),
        "the wrong key is named: {wrong_log}"
    );
    let seen = std::fs::read(&wire).unwrap();
    assert!(
        seen.windows(9).any(|w| w == b"kq-board/"),
        "the subscriber saw the board"
    );
    assert!(
        !seen.windows(4).any(|w| w == b"JFIF"),
        "a thumbnail crossed the broker readable"
    );
    let s = svit_e2e::summary(&rec, &dir.0.join("report"));
    let names: Vec<&str> = s["boards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["device"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["kq-board"], "{s}");
    let b = &s["boards"][0];
    assert!(b["frames"].as_u64().unwrap() >= 40, "{b}");
}

/// A bundle pushed to a board that publishes straight to the broker (`svit-edge run --mqtt`),
/// through the host's web API: offer, chunks and answers all cross Mosquitto.
#[test]
fn a_bundle_is_pushed_to_a_board_through_the_broker() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let dir = tmp("mqtt-push");
    let web = format!("127.0.0.1:{}", free_port());
    let _h = svit_e2e::Kill(
        Command::new(bin("svit-host"))
            .args([
                "listen",
                "127.0.0.1:0",
                "--quiet",
                "--mqtt-subscribe",
                &broker.url(),
            ])
            .args(["--http", &web])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.0.join("host.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let _e = svit_e2e::Kill(
        Command::new(bin("svit-edge"))
            .args([
                "run",
                "--camera",
                "synthetic",
                "--fps",
                "10",
                "--name",
                "mq-push",
            ])
            .args(["--mqtt", &broker.url(), "--store"])
            .arg(dir.0.join("store"))
            .arg("--bundle")
            .arg(svit_e2e::workspace().join("models/demo"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.0.join("edge.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for(Duration::from_secs(60), "the board on the host", || {
        svit_e2e::web_board(&web, "mq-push")
    });
    let out = svit_e2e::host_api(&["push", "models/demo", "--board", "mq-push"], &web);
    let log = std::fs::read_to_string(dir.0.join("edge.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "{}\n--- edge\n{log}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(svit_e2e::last_json(&out)["state"], "switched");
}
