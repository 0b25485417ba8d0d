//! Helpers for the end-to-end tests in `tests/`: locating (and if needed building) the
//! workspace binaries, and a minimal host side of the wire protocol.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

pub mod fuzz;
pub mod relay;

use svit_protocol::session::{Event, HostHandshake};
use svit_protocol::{self as proto, EdgeMsg, FrameDecoder, HostMsg, MAX_FRAME};

pub fn workspace() -> PathBuf {
    // cargo sets it when it runs a test; the compile-time value is where the crate was when
    // built, which a build directory shared between clones can carry to another place.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// Path of a workspace binary, built once per test run (`cargo build --workspace --bins`,
/// a no-op when `cargo test --workspace` already built everything).
pub fn bin(name: &str) -> PathBuf {
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo)
            .args(["build", "--workspace", "--bins"])
            .current_dir(workspace())
            .status()
            .expect("running cargo build");
        assert!(st.success(), "building the workspace binaries failed");
    });
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace().join("target"));
    let p = target.join("debug").join(name);
    assert!(p.exists(), "{} was not built", p.display());
    p
}

/// A host's answer (no key) to an edge's first message, made by the protocol's handshake.
pub fn host_answer(edge_hello: &EdgeMsg) -> HostMsg {
    let ours = proto::Hello::new(proto::Role::Host, "test-host");
    let mut step =
        HostHandshake::new(ours, svit_protocol::session::Keys::None).on(edge_hello.clone());
    assert!(
        matches!(step.event, Event::Admitted(_)),
        "the edge's hello is admitted: {:?}",
        step.event
    );
    step.send.remove(0)
}

/// Takes an edge's hello off a fresh connection and answers it; returns the hello.
pub fn greet(s: &mut TcpStream) -> proto::Hello {
    let (first, _) = read_messages(s, Duration::from_secs(60), |_| true);
    let Some(EdgeMsg::Hello(h)) = first.first() else {
        panic!("the edge's first message must be its hello, got {first:?}")
    };
    send(s, &host_answer(&first[0]));
    h.clone()
}

/// Reads edge messages until `until` says stop, the peer closes, or `timeout` passes.
/// Messages that arrived in the same read after the one `until` stopped at are dropped, so
/// stop early only where the edge then waits for us (after its hello), or read a stream once.
pub fn read_messages(
    s: &mut TcpStream,
    timeout: Duration,
    until: impl FnMut(&EdgeMsg) -> bool,
) -> (Vec<EdgeMsg>, usize) {
    read_as(s, timeout, until)
}

/// `read_messages` for either direction: a board reads `HostMsg`s with it.
pub fn read_as<T: serde::de::DeserializeOwned>(
    s: &mut TcpStream,
    timeout: Duration,
    mut until: impl FnMut(&T) -> bool,
) -> (Vec<T>, usize) {
    let deadline = Instant::now() + timeout;
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("socket");
    let mut dec = FrameDecoder::new(MAX_FRAME);
    let mut out = Vec::new();
    let mut errors = 0;
    let mut buf = vec![0u8; 64 * 1024];
    while Instant::now() < deadline {
        let n = match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => break,
        };
        for msg in dec.frames::<T>(&buf[..n]) {
            let Ok(msg) = msg else {
                errors += 1;
                continue;
            };
            let stop = until(&msg);
            out.push(msg);
            if stop {
                return (out, errors);
            }
        }
    }
    (out, errors)
}

/// A board's hello, as a simulated board (no camera, no model) sends it.
pub fn board_hello(device: &str) -> EdgeMsg {
    EdgeMsg::Hello(proto::Hello::edge(
        device,
        proto::ModelInfo {
            bundle: "simulated".into(),
            labels: (0..6).map(|i| format!("c{i}")).collect(),
            input_size: 256,
            tokens: 256,
            blocks: 8,
            threshold: 0.5,
            ..Default::default()
        },
    ))
}

/// A realistic frame of a simulated board: 10 masked detections, keep maps, stage times.
pub fn board_frame(seq: u64) -> EdgeMsg {
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
        age_ms: 3.0,
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
        budget_ms: None,
    })
}

pub fn send(s: &mut TcpStream, msg: &HostMsg) {
    s.write_all(&proto::encode(msg, MAX_FRAME).expect("encodable"))
        .expect("send to edge");
}

/// Sends `sig` (e.g. "-TERM") to a child process.
pub fn signal(child: &Child, sig: &str) {
    assert!(Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success());
}

/// `svit-host report REC --out OUT`, returning summary.json.
pub fn summary(rec: &Path, out: &Path) -> serde_json::Value {
    let st = Command::new(bin("svit-host"))
        .arg("report")
        .arg(rec)
        .arg("--out")
        .arg(out)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "report failed");
    serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap()
}

/// A fresh directory under the system temp dir, removed when dropped (tests must not fill the
/// disk of the machine that runs them).
pub fn tmp(name: &str) -> TempDir {
    let d = std::env::temp_dir().join(format!("svit-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    TempDir(d)
}

/// A copy of the bundle directory `src` in a fresh `tmp(name)`: its manifest and every file the
/// manifest lists for which `keep(path)` holds, the others left out of the manifest too.
pub fn copy_bundle(src: &Path, name: &str, keep: impl Fn(&str) -> bool) -> TempDir {
    let d = tmp(name);
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(src.join("manifest.json")).unwrap()).unwrap();
    let files = m["files"]
        .as_object_mut()
        .expect("a manifest lists its files");
    files.retain(|rel, _| keep(rel));
    for rel in files.keys() {
        let to = d.join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(src.join(rel), to).unwrap();
    }
    std::fs::write(
        d.join("manifest.json"),
        serde_json::to_vec_pretty(&m).unwrap(),
    )
    .unwrap();
    d
}

/// `svit-export keygen --out prefix`: the key pair's id (prefix.key and prefix.pub written).
pub fn keygen(prefix: &Path) -> String {
    let out = Command::new(bin("svit-export"))
        .args(["keygen", "--out"])
        .arg(prefix)
        .output()
        .expect("running svit-export keygen");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    // "key <id>: ..."
    text.split_whitespace()
        .nth(1)
        .expect("keygen names the key")
        .trim_end_matches(':')
        .to_string()
}

/// The board `name` as the web view at `web` lists it, once it is connected and streaming
/// (more than two frames); `None` before (the web view not listening yet included).
pub fn web_board(web: &str, name: &str) -> Option<serde_json::Value> {
    TcpStream::connect(web).ok()?;
    let boards = http(web, "GET", "/api/boards", &[], b"").json();
    boards
        .as_array()?
        .iter()
        .find(|b| b["name"] == name && b["connected"] == true && b["frames"].as_u64() > Some(2))
        .cloned()
}

/// `svit-host ARGS --api http://WEB --timeout 120` (`push`, `rollback`), from the workspace.
pub fn host_api(args: &[&str], web: &str) -> std::process::Output {
    Command::new(bin("svit-host"))
        .args(args)
        .args(["--api", &format!("http://{web}"), "--timeout", "120"])
        .current_dir(workspace())
        .output()
        .unwrap()
}

/// The last line a command printed, as JSON (`push` prints one per board).
pub fn last_json(out: &std::process::Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_else(|| {
        panic!(
            "no JSON line; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    serde_json::from_str(line).unwrap()
}

/// A child process ended when dropped, a failed test's too.
pub struct Kill(pub std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct TempDir(pub PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An HTTP/1.1 answer: status, headers (lower-cased names), body.
pub struct HttpAnswer {
    pub status: u16,
    pub headers: String,
    pub body: Vec<u8>,
}

impl HttpAnswer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One HTTP request on a fresh connection (`Connection: close`, read to the end). Enough for
/// the tests: the server under test is axum, not this.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> HttpAnswer {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    // The server may answer (413) before reading all of a large body.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP header in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..end]).to_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let mut body = raw[end + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    HttpAnswer {
        status,
        headers: head,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 4 + size..];
    }
    out
}

/// Polls `f` every 100 ms until it gives `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A loopback port nobody listens on (free a moment ago).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Whether a program is installed; says so on stderr when not (the test then skips).
pub fn has_tool(program: &str, version_arg: &str, package: &str) -> bool {
    let found = Command::new(program)
        .arg(version_arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        eprintln!("{program} not installed: skipping (apt-get install {package})");
    }
    found
}

/// A simulated board on a real socket: hello, the host's answer, then whatever the test sends.
pub struct SimBoard(pub TcpStream);

impl SimBoard {
    pub fn connect(port: u16, name: &str) -> SimBoard {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(&proto::encode(&board_hello(name), proto::MAX_FRAME).unwrap())
            .unwrap();
        let (answer, _) = read_as::<HostMsg>(&mut s, Duration::from_secs(10), |_| true);
        assert!(
            matches!(answer.first(), Some(HostMsg::Hello(_))),
            "{answer:?}"
        );
        SimBoard(s)
    }
    pub fn send(&mut self, msg: &EdgeMsg) {
        self.0
            .write_all(&proto::encode(msg, proto::MAX_FRAME).unwrap())
            .unwrap();
    }
    /// Frames `from..to`, each followed by a thumbnail (a real JPEG of a test scene).
    pub fn stream(&mut self, from: u64, to: u64) {
        let jpeg = scene_jpeg();
        for seq in from..to {
            self.send(&board_frame(seq));
            self.send(&EdgeMsg::Thumbnail(proto::Thumbnail {
                seq,
                jpeg: jpeg.clone(),
            }));
        }
    }
}

pub fn scene_jpeg() -> Vec<u8> {
    let img = image::open(workspace().join("tests/data/scene0.png"))
        .unwrap()
        .to_rgb8();
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
        .encode_image(&img)
        .unwrap();
    out
}
