//! `svit-edge run --budget-ms`: the pruning steered frame by frame to a latency budget, as a
//! real process on the shipped bundle. The controller's dynamics under a changing load are
//! tested on a model board in `edge/src/budget.rs`; here the ends a user meets.

use std::process::{Command, Output, Stdio};

use svit_e2e::{bin, summary, tmp, workspace};

fn run(args: &[&str]) -> Output {
    Command::new(bin("svit-edge"))
        .args(["run", "--camera", "synthetic", "--threads", "1"])
        .args(args)
        .current_dir(workspace())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("svit-edge ran")
}

fn lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn a_generous_budget_runs_at_the_bundles_threshold() {
    let out = run(&["--frames", "20", "--budget-ms", "1000"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let f = lines(&out);
    assert_eq!(f.len(), 20);
    for l in &f {
        assert_eq!(l["budget_ms"], 1000.0, "{l}");
        assert_eq!(
            l["threshold"], 0.5,
            "the bundle's default, no more pruning: {l}"
        );
    }
}

#[test]
fn a_budget_out_of_reach_warns_once_and_runs_at_the_most_pruning() {
    let out = run(&["--frames", "40", "--target-fps", "1000"]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert_eq!(
        log.matches("below what this board reaches").count(),
        1,
        "one warning naming the lowest reachable latency: {log}"
    );
    let f = lines(&out);
    let last = f.last().unwrap()["threshold"].as_f64().unwrap();
    assert!((last - 0.95).abs() < 1e-6, "{:?}", f.last());
}

#[test]
fn a_zero_or_negative_budget_is_refused() {
    for bad in ["0", "-5", "NaN"] {
        let out = run(&["--frames", "1", &format!("--budget-ms={bad}")]);
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("not a positive number"),
            "{bad}"
        );
    }
}

/// The host records the budget a board steers to: summary.json has its hit rate and the
/// report plots the steering.
#[test]
fn the_report_shows_the_budget_and_its_hit_rate() {
    let dir = tmp("budget");
    let rec = dir.join("run.svrec");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut host = Command::new(bin("svit-host"))
        .args(["listen", &addr, "--quiet", "--duration", "60", "--record"])
        .arg(&rec)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let out = run(&["--frames", "15", "--budget-ms", "1000", "--connect", &addr]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    svit_e2e::signal(&host, "-TERM");
    assert!(host.wait().unwrap().success());
    let s = summary(&rec, &dir.join("report"));
    let b = &s["boards"][0];
    assert_eq!(b["budget_ms"], 1000.0, "{s}");
    assert_eq!(b["budget_hit_rate"], 1.0, "{s}");
    assert!(dir.join("report/budget.svg").exists());
}
