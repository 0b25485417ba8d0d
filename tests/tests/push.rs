//! Bundles pushed to running boards through the real binaries: `svit-host push` and `rollback`
//! through a host's HTTP API and the link to `svit-edge run --store`, the frame sequence across
//! the switch, refusals named (unsigned or wrongly signed, does not load, no store), and the
//! board's side of the transfer driven byte by byte by the protocol crate: an interrupted
//! transfer resumes where it stopped, an altered one is refused, and the old bundle runs on.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use sha2::{Digest, Sha256};
use svit_e2e::{
    bin, copy_bundle, free_port, greet, host_api, http, last_json, read_messages, send, signal,
    tmp, wait_for, web_board, workspace, Kill, TempDir,
};
use svit_protocol::push::CHUNK;
use svit_protocol::{EdgeMsg, HostMsg, Push, PushStatus};

/// `svit-host listen` with its web view on `http_addr`; `extra`: options with a file
/// (`--key`).
fn host(port: u16, http_addr: &str, rec: &Path, log: &Path, extra: &[(&str, &Path)]) -> Kill {
    let mut c = Command::new(bin("svit-host"));
    c.args([
        "listen",
        &format!("127.0.0.1:{port}"),
        "--quiet",
        "--http",
        http_addr,
    ])
    .arg("--record")
    .arg(rec);
    for (opt, file) in extra {
        c.arg(opt).arg(file);
    }
    let child = c
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start svit-host");
    wait_for(Duration::from_secs(30), "the web view to listen", || {
        TcpStream::connect(http_addr).ok()
    });
    Kill(child)
}

/// A board streaming to `port`, its store in `store` (none: takes no pushes); `extra`: options
/// with a file (`--trust`, `--key`).
fn edge(
    port: u16,
    name: &str,
    bundle: &Path,
    store: Option<&Path>,
    extra: &[(&str, &Path)],
    log: &Path,
) -> Kill {
    let mut c = Command::new(bin("svit-edge"));
    c.args([
        "run",
        "--camera",
        "synthetic",
        "--fps",
        "10",
        "--threads",
        "1",
        "--name",
        name,
    ])
    .args(["--connect", &format!("127.0.0.1:{port}"), "--bundle"])
    .arg(bundle);
    if let Some(s) = store {
        c.arg("--store").arg(s);
    }
    for (opt, file) in extra {
        c.arg(opt).arg(file);
    }
    let child = c
        .current_dir(workspace())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start svit-edge");
    Kill(child)
}

/// A copy of the demo bundle named `name`, changed by `change`, signed with `key` if given.
fn variant(dir: &str, name: &str, key: Option<&Path>, change: impl Fn(&Path)) -> TempDir {
    let b = copy_bundle(&workspace().join("models/demo"), dir, |_| true);
    let manifest = b.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    m["name"] = name.into();
    std::fs::write(&manifest, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    change(&b);
    if let Some(k) = key {
        let out = Command::new(bin("svit-export"))
            .arg("sign")
            .arg("--key")
            .arg(k)
            .arg(&*b)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    b
}

/// Garbage in place of every head graph, with the manifest's hashes to match: the bundle
/// verifies and is signed, but no engine loads it.
fn break_head(b: &Path) {
    let manifest = b.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    let garbage = b"not an onnx graph".repeat(100);
    let files = m["files"].as_object_mut().unwrap();
    for (rel, hash) in files.iter_mut() {
        if rel.ends_with("head.onnx") {
            std::fs::write(b.join(rel), &garbage).unwrap();
            *hash = Sha256::digest(&garbage)
                .iter()
                .map(|x| format!("{x:02x}"))
                .collect::<String>()
                .into();
        }
    }
    std::fs::write(&manifest, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

/// Every frame of `board` in the recording, by sequence number.
fn recorded_seqs(rec: &Path, board: &str) -> Vec<u64> {
    let out = Command::new(bin("svit-host"))
        .arg("replay")
        .arg(rec)
        .arg("--max-speed")
        .output()
        .unwrap();
    let mut seqs: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|f| f["device"] == board)
        .filter_map(|f| f["seq"].as_u64())
        .collect();
    seqs.sort();
    seqs
}

#[test]
fn a_push_switches_a_running_board_without_a_gap_and_refusals_are_named() {
    let dir = tmp("push");
    let (a, b) = (dir.join("a"), dir.join("b"));
    let (a_id, b_id) = (svit_e2e::keygen(&a), svit_e2e::keygen(&b));
    let (a_key, a_pub) = (a.with_extension("key"), a.with_extension("pub"));
    let first = variant("push-v1", "demo-v1", Some(&a_key), |_| {});
    let second = variant("push-v2", "demo-v2", Some(&a_key), |_| {});
    let wrong = variant(
        "push-wrong",
        "demo-wrong",
        Some(&b.with_extension("key")),
        |_| {},
    );
    let broken = variant("push-broken", "demo-broken", Some(&a_key), break_head);

    let (port, web) = (free_port(), format!("127.0.0.1:{}", free_port()));
    let rec = dir.join("push.svrec");
    let mut h = host(port, &web, &rec, &dir.join("host.log"), &[]);
    let store = dir.join("store");
    let _e = edge(
        port,
        "pushed",
        &first,
        Some(&store),
        &[("--trust", a_pub.as_path())],
        &dir.join("edge.log"),
    );
    let _n = edge(
        port,
        "nostore",
        &first,
        None,
        &[("--trust", a_pub.as_path())],
        &dir.join("nostore.log"),
    );
    wait_for(Duration::from_secs(120), "both boards streaming", || {
        web_board(&web, "pushed").and(web_board(&web, "nostore"))
    });
    let before = web_board(&web, "pushed").unwrap();
    assert_eq!(before["bundle"], "demo-v1");
    assert_eq!(before["signed_by"], a_id.as_str());

    // The push: exits 0 once the board runs it, from a frame it names.
    let out = host_api(
        &["push", second.to_str().unwrap(), "--board", "pushed"],
        &web,
    );
    let edge_log = || std::fs::read_to_string(dir.join("edge.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        edge_log()
    );
    let st = last_json(&out);
    assert_eq!(
        (st["state"].as_str(), st["bundle"].as_str()),
        (Some("switched"), Some("demo-v2"))
    );
    let switched_at = st["seq"].as_u64().unwrap();
    let after = wait_for(Duration::from_secs(30), "frames after the switch", || {
        web_board(&web, "pushed")
            .filter(|b| b["frames"].as_u64() > before["frames"].as_u64().map(|f| f + 5))
    });
    assert_eq!(
        after["bundle"], "demo-v2",
        "the web view names the new bundle"
    );
    assert_ne!(after["bundle_hash"], before["bundle_hash"]);

    // Refusals, each named, the board running on: signed by a key it does not trust, a bundle
    // that does not load, a board that keeps no store, a board that does not exist.
    let refused = |bundle: &Path, board: &str| {
        let out = host_api(&["push", bundle.to_str().unwrap(), "--board", board], &web);
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let why = refused(&wrong, "pushed");
    assert!(why.contains(&b_id) && why.contains(&a_id), "{why}");
    let why = refused(&broken, "pushed");
    assert!(
        why.contains("does not load") && why.contains("head.onnx"),
        "{why}"
    );
    let why = refused(&second, "nostore");
    assert!(why.contains("--store"), "{why}");
    let why = refused(&second, "nobody");
    assert!(why.contains("no board named \"nobody\""), "{why}");
    assert_eq!(web_board(&web, "pushed").unwrap()["bundle"], "demo-v2");

    // Rollback: back to the first bundle.
    let out = host_api(&["rollback", "--board", "pushed"], &web);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(last_json(&out)["bundle"], "demo-v1");
    let tars = std::fs::read_dir(&store)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "tar"))
        .count();
    assert!(
        tars <= 2,
        "the store keeps the current and previous bundles only"
    );

    // Every frame the board ran reached the recording, across both switches.
    std::thread::sleep(Duration::from_millis(500));
    signal(&h.0, "-TERM");
    let _ = h.0.wait();
    let seqs = recorded_seqs(&rec, "pushed");
    assert!(
        seqs.first() < Some(&switched_at) && seqs.last() > Some(&(switched_at + 3)),
        "{seqs:?}"
    );
    let gaps: Vec<_> = seqs.windows(2).filter(|w| w[1] != w[0] + 1).collect();
    assert!(
        gaps.is_empty(),
        "frames missing around the switch: {gaps:?}"
    );
}

/// Offers `tar` and reads the board's answer.
fn offer(s: &mut TcpStream, tar: &[u8], sha256: [u8; 32]) -> PushStatus {
    let msg = Push::Offer {
        sha256,
        size: tar.len() as u64,
        name: "test.tar".into(),
    };
    send(s, &HostMsg::Push(msg));
    answer(s)
}

fn answer(s: &mut TcpStream) -> PushStatus {
    let (msgs, _) = read_messages(
        s,
        Duration::from_secs(60),
        |m| matches!(m, EdgeMsg::Push(p) if !matches!(p, PushStatus::Checking { .. })),
    );
    match msgs.into_iter().last() {
        Some(EdgeMsg::Push(p)) => p,
        other => panic!("no answer from the board: {other:?}"),
    }
}

/// A board waiting for its host on `port` (the test plays the host), its store in `store`.
fn listening_board(port: u16, store: &Path) -> Kill {
    Kill(
        Command::new(bin("svit-edge"))
            .args([
                "run",
                "--camera",
                "synthetic",
                "--fps",
                "5",
                "--threads",
                "1",
            ])
            .args(["--listen", &format!("127.0.0.1:{port}"), "--store"])
            .arg(store)
            .current_dir(workspace())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start svit-edge"),
    )
}

fn board(port: u16) -> TcpStream {
    let mut s = wait_for(Duration::from_secs(60), "the board to listen", || {
        TcpStream::connect(("127.0.0.1", port)).ok()
    });
    greet(&mut s);
    s
}

#[test]
fn an_interrupted_transfer_resumes_and_an_altered_one_is_refused() {
    let dir = tmp("push-resume");
    let port = free_port();
    let store: PathBuf = dir.join("store");
    let _e = listening_board(port, &store);
    // The demo bundle as one tar, as `svit-host push` sends it.
    let st = Command::new("tar")
        .arg("-cf")
        .arg(dir.join("demo.tar"))
        .args(["-C", "models/demo", "."])
        .current_dir(workspace())
        .status()
        .unwrap();
    assert!(st.success());
    let tar = std::fs::read(dir.join("demo.tar")).unwrap();
    let sha256: [u8; 32] = Sha256::digest(&tar).into();
    let mut s = board(port);
    assert_eq!(
        offer(&mut s, &tar, sha256),
        PushStatus::Want { sha256, offset: 0 }
    );
    // A third of it, one chunk at a time, then the link drops.
    let third = (tar.len() / 3 / CHUNK * CHUNK) as u64;
    let mut at = 0u64;
    while at < third {
        let data = tar[at as usize..at as usize + CHUNK].to_vec();
        send(&mut s, &HostMsg::Push(Push::Chunk { offset: at, data }));
        at += CHUNK as u64;
        assert_eq!(answer(&mut s), PushStatus::Want { sha256, offset: at });
    }
    drop(s);
    // A new session: the board holds the third and asks for the rest.
    let mut s = board(port);
    assert_eq!(
        offer(&mut s, &tar, sha256),
        PushStatus::Want {
            sha256,
            offset: third
        }
    );
    // The rest, with one byte altered on the way: refused at the end, naming the hash.
    let mut last = PushStatus::Want {
        sha256,
        offset: third,
    };
    while at < tar.len() as u64 {
        let end = (at as usize + CHUNK).min(tar.len());
        let mut data = tar[at as usize..end].to_vec();
        if at == third {
            data[100] ^= 0x10;
        }
        send(&mut s, &HostMsg::Push(Push::Chunk { offset: at, data }));
        at = end as u64;
        last = answer(&mut s);
    }
    match last {
        PushStatus::Refused { reason } => assert!(
            reason.contains("altered") && reason.contains("SHA-256"),
            "{reason}"
        ),
        other => panic!("an altered bundle must be refused, got {other:?}"),
    }
    // The board runs on, and an offer of the same bundle starts from zero again.
    let (msgs, _) = read_messages(&mut s, Duration::from_secs(30), |m| {
        matches!(m, EdgeMsg::Frame(_))
    });
    assert!(matches!(msgs.last(), Some(EdgeMsg::Frame(_))));
    assert_eq!(
        offer(&mut s, &tar, sha256),
        PushStatus::Want { sha256, offset: 0 }
    );
    // A chunk past the offered size is refused by name.
    send(
        &mut s,
        &HostMsg::Push(Push::Chunk {
            offset: 0,
            data: vec![0; CHUNK + 1],
        }),
    );
    match answer(&mut s) {
        PushStatus::Refused { reason } => assert!(reason.contains("chunk"), "{reason}"),
        other => panic!("an oversized chunk must be refused, got {other:?}"),
    }
}

#[test]
fn a_host_restart_in_the_middle_of_a_keyed_push_resumes_it() {
    let dir = tmp("push-restart");
    let (port, web) = (free_port(), format!("127.0.0.1:{}", free_port()));
    let host_log = dir.join("host.log");
    // Keyed: the chunks travel sealed.
    let key = dir.join("link.key");
    std::fs::write(&key, b"the push test's pre-shared key").unwrap();
    let keyed = [("--key", key.as_path())];
    let mut h = host(port, &web, &dir.join("a.svrec"), &host_log, &keyed);
    let demo = workspace().join("models/demo");
    let _e = edge(
        port,
        "restart",
        &demo,
        Some(&dir.join("store")),
        &keyed,
        &dir.join("edge.log"),
    );
    wait_for(Duration::from_secs(120), "the board streaming", || {
        web_board(&web, "restart")
    });
    // (Not killed if the test fails: its --timeout ends it.)
    let push = Command::new(bin("svit-host"))
        .args([
            "push",
            "models/demo",
            "--board",
            "restart",
            "--timeout",
            "120",
        ])
        .args(["--api", &format!("http://{web}")])
        .current_dir(workspace())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Part of the bundle is across: the host goes away (SIGKILL) and comes back.
    let seen = wait_for(Duration::from_secs(60), "the transfer under way", || {
        let st = http(&web, "GET", "/api/boards/restart/bundle", &[], b"");
        (st.status == 200)
            .then(|| st.json())
            .filter(|j| j["received"].as_u64() > Some(0))
    });
    signal(&h.0, "-KILL");
    let _ = h.0.wait();
    let received = seen["received"].as_u64().unwrap();
    assert!(
        received < seen["size"].as_u64().unwrap(),
        "killed mid-transfer: {seen}"
    );
    let _h = host(
        port,
        &web,
        &dir.join("b.svrec"),
        &dir.join("host-b.log"),
        &keyed,
    );
    let out = push.wait_with_output().unwrap();
    let log = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    assert!(
        out.status.success(),
        "the push ends well after the restart: {}\n--- edge\n{}\n--- host b\n{}",
        String::from_utf8_lossy(&out.stderr),
        log("edge.log"),
        log("host-b.log")
    );
    let st = last_json(&out);
    assert_eq!(st["state"], "switched", "{st}");
    // The new host sent only what the board did not hold (a window's slack for resends); a
    // transfer that ended just before the kill is answered without a byte sent.
    let size = st["size"].as_u64().unwrap();
    let slack = svit_protocol::push::WINDOW * CHUNK as u64;
    assert!(
        st["bytes_sent"].as_u64().unwrap() <= size - received + slack,
        "the board resumed from what it held ({received} bytes seen received): {st}"
    );
}

/// A store on an 8 MB filesystem (a tmpfs, where this machine lets the test mount one): the
/// board refuses the 22 MB demo bundle at the offer, naming the space, before any byte is sent.
#[test]
fn a_bundle_larger_than_the_free_space_is_refused_before_sending() {
    let dir = tmp("push-space");
    let store = dir.join("store");
    std::fs::create_dir_all(&store).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
        .arg(&store)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: this machine does not let the test mount a small tmpfs");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    // Dropped after the board (declared before it).
    let _u = Unmount(store.clone());
    let port = free_port();
    let _e = listening_board(port, &store);
    let mut s = board(port);
    let tar = vec![0u8; 22 << 20];
    match offer(&mut s, &tar, Sha256::digest(&tar).into()) {
        PushStatus::Refused { reason } => {
            assert!(
                reason.contains("not enough space") && reason.contains("MB are free"),
                "{reason}"
            )
        }
        other => panic!("a bundle over the free space must be refused, got {other:?}"),
    }
}
