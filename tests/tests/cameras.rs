//! Cameras as a user runs them, with real processes: `svit-edge run` on the simulated V4L2
//! camera through the real capture code, on a real third-party producer (Debian's `ffmpeg`
//! writing a test pattern as MJPEG to its standard output) through `exec:`, and on a standard
//! input that ends. Every frame's JSON line carries `age_ms`, which stays within about a camera
//! period (plus decoding) when the camera runs faster than inference.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use svit_e2e::{bin, signal, workspace};

/// Runs `svit-edge run --camera CAMERA --frames N` with JSON lines on stdout.
fn run(camera: &str, frames: u32, stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(bin("svit-edge"))
        .args(["run", "--camera", camera, "--frames", &frames.to_string()])
        .args(["--threads", "1"])
        .current_dir(workspace())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start svit-edge");
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().expect("stdin piped");
        let _ = pipe.write_all(bytes);
    }
    child.wait_with_output().expect("svit-edge ran")
}

/// Each frame line's `seq` and `age_ms`.
fn frames(out: &Output) -> Vec<(u64, f64)> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| (v["seq"].as_u64().unwrap(), v["age_ms"].as_f64().unwrap()))
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// CI installs it (.ci/run); a developer machine may lack it.
fn has_ffmpeg() -> bool {
    svit_e2e::has_tool("ffmpeg", "-version", "ffmpeg")
}

/// A V4L2 camera at 60 fps, faster than inference here: every frame is the newest one the
/// driver holds, not the oldest of its four buffers.
#[test]
fn simulated_v4l2_frames_are_fresh() {
    let out = run("sim-v4l:res=320x240,fps=60", 12, None);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let f = frames(&out);
    assert_eq!(f.len(), 12, "{log}");
    let ages: Vec<f64> = f.iter().skip(2).map(|x| x.1).collect();
    // One period is 17 ms, decoding and preparing a 320x240 JPEG about 10 more. The oldest of
    // the driver's four full buffers, which a plain dequeue takes, is several inference
    // periods old.
    let m = median(ages);
    assert!(m < 80.0, "median age {m} ms: {f:?}");
}

/// ffmpeg writing MJPEG at 60 fps, faster than inference: frames stay fresh. It stops after
/// a second; the source says so, starts it again, and frames go on in sequence.
#[test]
fn exec_reads_a_real_producer_and_restarts_it() {
    if !has_ffmpeg() {
        return;
    }
    let cmd = "exec:ffmpeg -loglevel error -re -f lavfi -i testsrc=size=320x240:rate=60 \
               -t 1 -c:v mjpeg -q:v 5 -f mjpeg -";
    // More frames than one run of the producer gives at this machine's inference rate.
    let out = run(cmd, 80, None);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let f = frames(&out);
    assert_eq!(
        f.iter().map(|x| x.0).collect::<Vec<_>>(),
        (0..80).collect::<Vec<_>>(),
        "{log}"
    );
    assert!(
        log.contains("exited") && log.contains("starting it again"),
        "the restart is logged with why: {log}"
    );
    let m = median(f.iter().map(|x| x.1).collect());
    assert!(m < 70.0, "median age {m} ms at 60 fps: {f:?}");
}

/// Raw frames of a stated format and size (ffmpeg writing YUYV), as from a GStreamer pipeline
/// without a JPEG encoder.
#[test]
fn exec_raw_reads_raw_yuyv_frames() {
    if !has_ffmpeg() {
        return;
    }
    let cmd = "exec-raw:yuyv,320x240:ffmpeg -loglevel error -re -f lavfi \
               -i testsrc=size=320x240:rate=30 -pix_fmt yuyv422 -f rawvideo -";
    let out = run(cmd, 10, None);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert_eq!(frames(&out).len(), 10, "{log}");
    assert!(log.contains("raw Yuyv 320x240"), "{log}");
}

/// A producer that does not exist is named with what the shell said, and retried (a camera
/// tool may appear after boot) until the run is stopped.
#[test]
fn exec_names_a_missing_program() {
    let child = Command::new(bin("svit-edge"))
        .args(["run", "--camera", "exec:no-such-camera-tool --mjpeg"])
        .current_dir(workspace())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start svit-edge");
    std::thread::sleep(std::time::Duration::from_secs(4));
    signal(&child, "-TERM");
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("no-such-camera-tool") && log.contains("not found"),
        "{log}"
    );
    assert!(
        log.matches("starting it again").count() >= 2,
        "retried with backoff: {log}"
    );
}

/// Frames piped to standard input are read; when the input ends, the camera is gone and the
/// run ends with a non-zero status (so a service manager restarts it).
#[test]
fn stdin_frames_are_read_and_its_end_is_fatal() {
    let png = image::open(workspace().join("tests/data/scene0.png")).unwrap();
    let mut jpeg = Vec::new();
    png.to_rgb8()
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    let mut input = b"noise before the first frame".to_vec();
    for _ in 0..3 {
        input.extend(&jpeg);
    }
    let out = run("stdin", 100, Some(&input));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the end of the input ends the run: {log}"
    );
    assert!(log.contains("standard input ended"), "{log}");
    assert!(
        !frames(&out).is_empty(),
        "frames before the end were run: {log}"
    );
}

/// `sim-arducam:trace=FILE`: the driver's register writes as the simulated sensor received them,
/// in ArduCAM's order (bank 1, soft reset, the vendor's tables), the quality last.
#[test]
fn the_simulated_arducam_traces_the_drivers_register_writes() {
    let dir = svit_e2e::tmp("arducam-trace");
    let trace = dir.0.join("trace.txt");
    let out = run(
        &format!("sim-arducam:res=640x480,trace={}", trace.display()),
        2,
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(frames(&out).len(), 2);
    let text = std::fs::read_to_string(&trace).unwrap();
    let writes: Vec<(u8, u8)> = text
        .lines()
        .map(|l| {
            let (r, v) = l.split_once(' ').expect("`RR VV`");
            (
                u8::from_str_radix(r, 16).unwrap(),
                u8::from_str_radix(v, 16).unwrap(),
            )
        })
        .collect();
    assert_eq!(&writes[..2], &[(0xFF, 0x01), (0x12, 0x80)]);
    assert!(writes.len() > 250, "{} writes", writes.len());
    assert_eq!(writes.last(), Some(&(0x44, 12)), "the quality on top");
}
