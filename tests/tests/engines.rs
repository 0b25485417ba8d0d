//! `--engine onnxruntime` through the real binaries: a board run streams frames, the bench
//! compares the engines and onnxruntime's whole dense graph in one report, and a missing
//! library stops the run with where it looked. Needs onnxruntime's library (`pip install
//! onnxruntime`); skipped without it unless `SVIT_REQUIRE_ONNXRUNTIME=1` (CI).

use std::process::Command;

use svit_e2e::{bin, tmp, workspace};

/// Whether onnxruntime loads here, as `svit-edge doctor` finds it (asked once).
fn have_onnxruntime() -> bool {
    static HAVE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAVE.get_or_init(ask_doctor)
}

fn ask_doctor() -> bool {
    let dir = tmp("engines-doctor");
    let json = dir.join("doctor.json");
    Command::new(bin("svit-edge"))
        .args(["doctor", "--json"])
        .arg(&json)
        .current_dir(workspace())
        .output()
        .unwrap();
    let checks: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let ort = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "onnxruntime")
        .expect("doctor checks onnxruntime")
        .clone();
    match ort["status"].as_str() {
        Some("ok") => true,
        _ if std::env::var_os("SVIT_REQUIRE_ONNXRUNTIME").is_some() => {
            panic!("SVIT_REQUIRE_ONNXRUNTIME is set: {ort}")
        }
        _ => {
            eprintln!("skipping: {ort}");
            false
        }
    }
}

/// `svit-edge run --engine onnxruntime` on `frames` synthetic frames.
fn run_on_onnxruntime(frames: u32) -> Command {
    let mut c = Command::new(bin("svit-edge"));
    c.args([
        "run",
        "--camera",
        "synthetic",
        "--engine",
        "onnxruntime",
        "--frames",
    ])
    .arg(frames.to_string())
    .current_dir(workspace());
    c
}

#[test]
fn a_board_runs_on_onnxruntime_and_says_so() {
    if !have_onnxruntime() {
        return;
    }
    let out = run_on_onnxruntime(5)
        .args(["--precision", "int8", "--threads", "1"])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("int8 on onnxruntime"), "{stderr}");
    let frames: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(frames.len(), 5, "{stdout}");
    for f in &frames {
        // Tokens each block computed: pruned at the bundle's threshold, so fewer than all in
        // some gated block.
        let kept: Vec<u64> = f["kept"]
            .as_array()
            .expect("kept")
            .iter()
            .filter_map(|k| k.as_u64())
            .collect();
        assert!(
            kept.iter().any(|&k| k < kept[0]),
            "pruned at the bundle's threshold: {f}"
        );
        assert!(
            f["detections"].as_array().is_some_and(|d| !d.is_empty()),
            "{f}"
        );
    }
}

#[test]
fn the_bench_compares_engines_and_the_dense_graph_in_one_report() {
    if !have_onnxruntime() {
        return;
    }
    let dir = tmp("engines-bench");
    let json = dir.join("bench.json");
    let out = Command::new(bin("svit-edge"))
        .args([
            "bench",
            "--frames",
            "3",
            "--warmup",
            "1",
            "--engine",
            "tract,onnxruntime",
        ])
        .arg("--json")
        .arg(&json)
        .current_dir(workspace())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let rows: Vec<(String, String)> = report["configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["engine"].as_str().unwrap().to_string(),
                c["mode"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for want in [
        ("tract", "dense"),
        ("tract", "pruned"),
        ("onnxruntime", "dense"),
        ("onnxruntime", "pruned"),
        ("onnxruntime", "dense-graph"),
    ] {
        assert!(
            rows.iter().any(|(e, m)| (e.as_str(), m.as_str()) == want),
            "no {want:?} row in {rows:?}"
        );
    }
    // The table compares every row with the dense graph.
    assert!(
        stdout.contains("vs ort f32") && stdout.contains("dense-graph"),
        "{stdout}"
    );
}

#[test]
fn without_the_library_the_run_stops_saying_where_it_looked() {
    let out = run_on_onnxruntime(1)
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("/nonexistent/libonnxruntime.so")
            && stderr.contains("pip install onnxruntime"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
