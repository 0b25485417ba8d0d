//! The web view of a real `svit-host` (`listen --http`) over real HTTP: the JSON API, controls
//! reaching a board's socket, the access rule, bad requests, `/metrics` through `promtool`, a
//! websocket client that never reads while 16 boards stream, and the page in headless Chromium.

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use svit_e2e::{
    bin, free_port, has_tool, http, read_as, signal, summary, tmp, wait_for, workspace, SimBoard,
};
use svit_protocol::{self as proto, EdgeMsg, HostMsg};

/// `svit-host listen` on loopback with the web view on `http`; stderr to `log`.
fn host(port: u16, http: &str, rec: &Path, log: &Path, extra: &[&str]) -> Child {
    let child = Command::new(bin("svit-host"))
        .args([
            "listen",
            &format!("127.0.0.1:{port}"),
            "--quiet",
            "--http",
            http,
        ])
        .args(extra)
        .arg("--record")
        .arg(rec)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start svit-host");
    wait_for(Duration::from_secs(30), "the web view to listen", || {
        TcpStream::connect(http.replace("0.0.0.0", "127.0.0.1")).ok()
    });
    child
}

/// `promtool check metrics` (Prometheus's own linter) passes the exposition, where installed.
#[test]
fn the_shipped_prometheus_config_is_valid() {
    if has_tool("promtool", "--version", "prometheus") {
        let st = Command::new("promtool")
            .args(["check", "config"])
            .arg(workspace().join("deploy/prometheus/prometheus.yml"))
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
    }
}

fn promtool_check(text: &str) {
    if !has_tool("promtool", "--version", "prometheus") {
        return;
    }
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn board_frames(http_addr: &str, name: &str) -> Option<u64> {
    let boards = http(http_addr, "GET", "/api/boards", &[], b"").json();
    boards
        .as_array()?
        .iter()
        .find(|b| b["name"] == name)?
        .get("frames")?
        .as_u64()
}

#[test]
fn the_api_serves_boards_takes_controls_and_refuses_bad_requests() {
    let dir = tmp("web-api");
    let (port, web) = (free_port(), format!("127.0.0.1:{}", free_port()));
    let (rec, log) = (dir.0.join("rec.svrec"), dir.0.join("host.log"));
    let mut h = host(port, &web, &rec, &log, &[]);
    let mut board = SimBoard::connect(port, "bench-a");
    board.stream(0, 20);
    board.send(&EdgeMsg::Health(proto::Health {
        cpu_temp_c: Some(61.5),
        throttled: Some(0x50005),
        ..Default::default()
    }));
    wait_for(Duration::from_secs(20), "20 frames in the API", || {
        (board_frames(&web, "bench-a")? == 20).then_some(())
    });

    let list = http(&web, "GET", "/api/boards", &[], b"");
    assert_eq!(list.status, 200);
    let b = &list.json()[0];
    assert_eq!(
        (b["missing"].as_u64(), b["connected"].as_bool()),
        (Some(0), Some(true))
    );
    assert_eq!(b["detections"].as_array().unwrap().len(), 10);
    assert_eq!(b["detections"][1]["label"], "c1");
    assert_eq!(b["thumbnail_seq"], 19);

    // Health reaches the list once the board's next message is folded in.
    wait_for(Duration::from_secs(10), "the board's health", || {
        let b = http(&web, "GET", "/api/boards/bench-a", &[], b"").json();
        (b["temperature_c"] == 61.5).then_some(())
    });
    let detail = http(&web, "GET", "/api/boards/bench-a", &[], b"").json();
    assert_eq!(detail["throttled"], true);
    let kept = detail["block_kept"].as_array().unwrap();
    assert_eq!(kept.len(), 8);
    assert!(
        (kept[2].as_f64().unwrap() - 140.0 / 256.0).abs() < 1e-3,
        "{kept:?}"
    );
    assert!(detail["stages"].as_array().unwrap().len() >= 8);

    let jpg = http(
        &web,
        "GET",
        "/api/boards/bench-a/latest.jpg?block=3",
        &[],
        b"",
    );
    assert_eq!(jpg.status, 200);
    assert!(jpg.headers.contains("content-type: image/jpeg"));
    let drawn = image::load_from_memory(&jpg.body).unwrap();
    assert_eq!((drawn.width(), drawn.height()), (256, 256));

    // A control reaches the board's socket as the protocol's message.
    let sent = http(
        &web,
        "POST",
        "/api/boards/bench-a/threshold",
        &[("content-type", "application/json")],
        br#"{"threshold": 0.25}"#,
    );
    assert_eq!(sent.status, 202, "{}", sent.text());
    let (got, _) = read_as::<HostMsg>(&mut board.0, Duration::from_secs(10), |_| true);
    assert_eq!(got.first(), Some(&HostMsg::SetThreshold(0.25)));
    let budget = http(
        &web,
        "POST",
        "/api/boards/bench-a/budget",
        &[],
        br#"{"budget_ms": 40}"#,
    );
    assert_eq!(budget.status, 202, "{}", budget.text());
    let (got, _) = read_as::<HostMsg>(&mut board.0, Duration::from_secs(10), |_| true);
    assert_eq!(got.first(), Some(&HostMsg::SetBudget(Some(40.0))));
    let paused = http(&web, "POST", "/api/boards/bench-a/pause", &[], b"");
    assert_eq!(paused.status, 202);
    let (got, _) = read_as::<HostMsg>(&mut board.0, Duration::from_secs(10), |_| true);
    assert_eq!(got.first(), Some(&HostMsg::Pause));

    // Bad requests: named, never a crash.
    let post = |path: &str, body: &[u8]| http(&web, "POST", path, &[], body);
    let r = post("/api/boards/bench-a/threshold", br#"{"threshold": 1.5}"#);
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("outside [0, 1]"));
    let r = post("/api/boards/bench-a/threshold", br#"{"thresold": 0.3}"#);
    assert_eq!(r.status, 400);
    assert!(r.text().contains("thresold"), "{}", r.text());
    assert_eq!(post("/api/boards/bench-a/threshold", b"nan").status, 400);
    assert_eq!(
        post("/api/boards/bench-a/dense", br#"{"dense": "yes"}"#).status,
        400
    );
    let r = post("/api/boards/bench-a/budget", br#"{"budget_ms": -1}"#);
    assert_eq!(r.status, 400);
    assert!(r.text().contains("budget_ms -1"), "{}", r.text());
    assert_eq!(post("/api/boards/bench-a/reboot", b"").status, 404);
    assert_eq!(
        post("/api/boards/bench-a/threshold", &vec![b' '; 64 * 1024]).status,
        413
    );
    let r = http(&web, "GET", "/api/boards/nope", &[], b"");
    assert_eq!(r.status, 404);
    assert!(
        r.text().contains("bench-a"),
        "names the known boards: {}",
        r.text()
    );

    let m = http(&web, "GET", "/metrics", &[], b"");
    assert_eq!(m.status, 200);
    let text = m.text();
    for line in [
        "svit_frames_total{board=\"bench-a\"} 20",
        "svit_frames_missing_total{board=\"bench-a\"} 0",
        "svit_board_up{board=\"bench-a\"} 1",
        "svit_board_temperature_celsius{board=\"bench-a\"} 61.5",
        "svit_board_throttled{board=\"bench-a\"} 1",
        "svit_stage_duration_seconds_count{board=\"bench-a\",stage=\"total\"} 20",
        "svit_build_info{version=",
    ] {
        assert!(text.contains(line), "no `{line}` in /metrics:\n{text}");
    }
    promtool_check(&text);
    // The shipped Grafana dashboard asks only for metrics the host exposes.
    let dash =
        std::fs::read_to_string(workspace().join("deploy/grafana/svit-dashboard.json")).unwrap();
    let names: Vec<&str> = dash
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("svit_"))
        .collect();
    assert!(names.len() >= 8, "{names:?}");
    for n in names {
        assert!(
            text.contains(&format!("{n}{{")),
            "the dashboard's {n} is not in /metrics"
        );
    }

    let r = http(&web, "GET", "/api/recording", &[], b"").json();
    assert!(r["records"].as_u64().unwrap() >= 41, "{r}");
    assert_eq!(r["path"], rec.display().to_string());

    // A board that goes away is shown as such, and its last figures stay.
    drop(board);
    wait_for(
        Duration::from_secs(10),
        "the board to show as disconnected",
        || {
            let b = http(&web, "GET", "/api/boards/bench-a", &[], b"").json();
            (b["connected"] == false).then_some(())
        },
    );
    assert!(http(&web, "GET", "/metrics", &[], b"")
        .text()
        .contains("svit_board_up{board=\"bench-a\"} 0"));
    signal(&h, "-TERM");
    assert!(h.wait().unwrap().success());
}

#[test]
fn controls_need_the_token_and_are_off_beyond_loopback_without_one() {
    let dir = tmp("web-token");
    let token = "s3cret-token-for-the-test";
    std::fs::write(dir.0.join("token"), format!("{token}\n")).unwrap();
    let (port, web) = (free_port(), format!("127.0.0.1:{}", free_port()));
    let log = dir.0.join("host.log");
    let token_file = dir.0.join("token");
    let mut h = host(
        port,
        &web,
        &dir.0.join("a.svrec"),
        &log,
        &["--http-token", token_file.to_str().unwrap()],
    );
    let mut board = SimBoard::connect(port, "locked");
    board.stream(0, 3);
    wait_for(Duration::from_secs(20), "the board in the API", || {
        board_frames(&web, "locked")
    });
    let pause = |auth: &[(&str, &str)]| http(&web, "POST", "/api/boards/locked/pause", auth, b"");
    let r = pause(&[]);
    assert_eq!(r.status, 401);
    assert!(r.text().contains("Bearer"), "{}", r.text());
    assert_eq!(
        pause(&[("authorization", "Bearer wrong-token-wrong-token")]).status,
        401
    );
    let bearer = format!("Bearer {token}");
    assert_eq!(pause(&[("authorization", &bearer)]).status, 202);
    let (got, _) = read_as::<HostMsg>(&mut board.0, Duration::from_secs(10), |_| true);
    assert_eq!(got.first(), Some(&HostMsg::Pause));
    // Reading needs no token.
    assert_eq!(http(&web, "GET", "/api/boards", &[], b"").status, 200);
    signal(&h, "-TERM");
    h.wait().unwrap();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("refused"), "refusals are logged:\n{logged}");

    // Served on every interface without a token: read-only.
    let (port, web_port) = (free_port(), free_port());
    let mut h = host(
        port,
        &format!("0.0.0.0:{web_port}"),
        &dir.0.join("b.svrec"),
        &log,
        &[],
    );
    let mut board = SimBoard::connect(port, "open");
    board.stream(0, 3);
    let web = format!("127.0.0.1:{web_port}");
    wait_for(Duration::from_secs(20), "the board in the API", || {
        board_frames(&web, "open")
    });
    let r = http(&web, "POST", "/api/boards/open/snapshot", &[], b"");
    assert_eq!(r.status, 401);
    assert!(r.text().contains("--http-token"), "{}", r.text());
    signal(&h, "-TERM");
    h.wait().unwrap();
}

/// A websocket client that never reads while 16 simulated boards stream at 30 fps: it is
/// dropped, and every frame still reaches the recording.
#[test]
fn a_websocket_client_that_never_reads_stalls_nothing() {
    let dir = tmp("web-ws");
    let (port, web) = (free_port(), format!("127.0.0.1:{}", free_port()));
    let (rec, log) = (dir.0.join("rec.svrec"), dir.0.join("host.log"));
    // Every frame to every client: the stuck client's buffers fill within seconds.
    let mut h = host(port, &web, &rec, &log, &["--ws-rate", "1000"]);
    let mut stuck = TcpStream::connect(&web).unwrap();
    write!(
        stuck,
        "GET /ws HTTP/1.1\r\nHost: {web}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 12];
    std::io::Read::read_exact(&mut stuck, &mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 101", "the upgrade is accepted");
    // From here the client never reads again.
    let out = Command::new(bin("svit-loadgen"))
        .args([&format!("127.0.0.1:{port}"), "16", "30", "12"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let sent: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sent: Vec<u64> = sent["sent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    signal(&h, "-TERM");
    assert!(h.wait().unwrap().success());
    let s = summary(&rec, &dir.0.join("report"));
    let boards = s["boards"].as_array().unwrap();
    assert_eq!(boards.len(), 16);
    for b in boards {
        let i: usize = b["device"].as_str().unwrap()[5..].parse().unwrap();
        assert_eq!(b["frames"].as_u64(), Some(sent[i]), "{}", b["device"]);
        assert_eq!(b["missing"].as_u64(), Some(0), "{}", b["device"]);
    }
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("stopped reading"),
        "the stuck client is dropped with a log line:\n{logged}"
    );
    drop(stuck);
}

/// The live page in a real browser: every board's tile, with its detections as text, and a
/// screenshot.
#[test]
fn the_live_page_shows_every_board_and_its_detections() {
    if !has_tool("chromium", "--version", "chromium") {
        return;
    }
    let dir = tmp("web-page");
    let (port, web) = (free_port(), format!("127.0.0.1:{}", free_port()));
    let mut h = host(
        port,
        &web,
        &dir.0.join("rec.svrec"),
        &dir.0.join("host.log"),
        &[],
    );
    let names = ["pi-desk", "jetson-door"];
    let boards: Vec<_> = names
        .iter()
        .map(|n| {
            let mut b = SimBoard::connect(port, n);
            b.stream(0, 5);
            b
        })
        .collect();
    wait_for(Duration::from_secs(20), "both boards in the API", || {
        names
            .iter()
            .all(|n| board_frames(&web, n) == Some(5))
            .then_some(())
    });
    let chromium = |args: &[&str]| {
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
            ])
            .arg(format!(
                "--user-data-dir={}",
                dir.0.join("profile").display()
            ))
            .args(args)
            .arg(format!("http://{web}/"))
            .stderr(Stdio::null())
            .output()
            .unwrap()
    };
    let dom = chromium(&["--virtual-time-budget=5000", "--dump-dom"]);
    let dom = String::from_utf8_lossy(&dom.stdout);
    for n in names {
        assert!(
            dom.contains(&format!("data-board=\"{n}\"")),
            "no tile for {n}:\n{dom}"
        );
    }
    assert!(
        dom.contains("<li class=\"det\">c0 0.90</li>"),
        "detections as text:\n{dom}"
    );
    assert!(dom.contains("2 of 2 boards connected"), "{dom}");
    let shot = dir.0.join("live.png");
    let arg = format!("--screenshot={}", shot.display());
    chromium(&["--virtual-time-budget=5000", "--window-size=1280,800", &arg]);
    let png = image::open(&shot).expect("a screenshot");
    assert_eq!((png.width(), png.height()), (1280, 800));
    drop(boards);
    signal(&h, "-TERM");
    h.wait().unwrap();
}

/// `svit-edge run --metrics`: a board scraped directly, with the host's names.
#[test]
fn a_board_serves_its_own_metrics() {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut edge = Command::new(bin("svit-edge"))
        .args([
            "run",
            "--camera",
            "synthetic",
            "--fps",
            "20",
            "--frames",
            "2000",
        ])
        .args(["--name", "scraped", "--metrics", &addr, "--bundle"])
        .arg(workspace().join("models/demo"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let frames = |text: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix("svit_frames_total{board=\"scraped\"} "))?
            .parse()
            .ok()
    };
    let text = wait_for(
        Duration::from_secs(120),
        "frames in the board's metrics",
        || {
            let t = TcpStream::connect(&addr)
                .ok()
                .map(|_| http(&addr, "GET", "/metrics", &[], b"").text())?;
            (frames(&t)? >= 3).then_some(t)
        },
    );
    assert!(
        text.contains("svit_stage_duration_seconds_bucket{le="),
        "{text}"
    );
    assert!(
        text.contains("svit_kept_fraction{board=\"scraped\"}"),
        "{text}"
    );
    assert_eq!(http(&addr, "GET", "/", &[], b"").status, 404);
    promtool_check(&text);
    signal(&edge, "-TERM");
    edge.wait().unwrap();
}
