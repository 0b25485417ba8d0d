//! `svit-edge doctor`: first contact with a board, for a user who will paste the output into a
//! bug report. Each check says what it found and, when it failed, what to do; the table is for
//! people, `--json FILE` for tools. Exits non-zero when a check failed.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use crate::nodes::Node;

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
    /// Not applicable here (no such device wanted).
    Skip,
}

#[derive(Debug, Serialize)]
pub struct Check {
    pub section: &'static str,
    pub name: String,
    pub status: Status,
    pub detail: String,
    /// What to do, when it is not ok.
    pub fix: Option<String>,
}

fn check(section: &'static str, name: &str, status: Status, detail: String) -> Check {
    Check {
        section,
        name: name.into(),
        status,
        detail,
        fix: None,
    }
}

pub struct Options {
    pub camera: Option<String>,
    pub bundle: PathBuf,
    pub trust: Vec<PathBuf>,
    pub json: Option<PathBuf>,
}

pub fn run(o: Options) -> Result<bool> {
    let mut checks = system();
    checks.extend(devices(o.camera.as_deref()));
    if let Some(cam) = &o.camera {
        checks.push(camera(cam));
    }
    checks.extend(bundle(&o.bundle));
    checks.push(signature(&o.bundle, &o.trust));
    print_table(&checks);
    if let Some(path) = &o.json {
        let json = serde_json::to_string_pretty(&checks)?;
        std::fs::write(path, json)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    }
    Ok(checks.iter().all(|c| c.status != Status::Fail))
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn cpuinfo(key: &str) -> Option<String> {
    let text = read("/proc/cpuinfo")?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

fn system() -> Vec<Check> {
    let s = "system";
    let os = read("/etc/os-release")
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| std::env::consts::OS.into());
    let kernel = read("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut out = vec![
        check(
            s,
            "os",
            Status::Ok,
            format!("{os}, kernel {kernel}, {}", std::env::consts::ARCH),
        ),
        match crate::board::model() {
            m if m.is_empty() => check(
                s,
                "board",
                Status::Skip,
                "no device-tree model (not a Raspberry Pi or Jetson)".into(),
            ),
            m => check(s, "board", Status::Ok, m),
        },
    ];
    let cpu = cpuinfo("model name")
        .or_else(|| cpuinfo("Model"))
        .or_else(|| cpuinfo("Hardware"));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    out.push(check(
        s,
        "cpu",
        Status::Ok,
        format!(
            "{}, {cores} cores",
            cpu.unwrap_or_else(|| "unknown model".into())
        ),
    ));
    let flags = cpuinfo("Features")
        .or_else(|| cpuinfo("flags"))
        .unwrap_or_default();
    let wanted: &[&str] = if cfg!(target_arch = "aarch64") {
        &["asimd", "asimddp", "fphp", "asimdhp", "i8mm"]
    } else {
        &["avx2", "fma", "avx512f", "avx512_vnni", "f16c"]
    };
    let have: Vec<String> = wanted
        .iter()
        .map(|f| {
            format!(
                "{f} {}",
                if flags.split_whitespace().any(|x| x == *f) {
                    "yes"
                } else {
                    "no"
                }
            )
        })
        .collect();
    out.push(check(s, "cpu features", Status::Ok, have.join(", ")));
    let gov = read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor");
    let mhz = read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq")
        .and_then(|k| k.parse::<u64>().ok());
    let mut g = match &gov {
        Some(g) => check(
            s,
            "cpu governor",
            if g == "performance" || g == "ondemand" || g == "schedutil" {
                Status::Ok
            } else {
                Status::Warn
            },
            format!(
                "{g}{}",
                mhz.map(|k| format!(", {} MHz now", k / 1000))
                    .unwrap_or_default()
            ),
        ),
        None => check(
            s,
            "cpu governor",
            Status::Skip,
            "no cpufreq (a VM or container)".into(),
        ),
    };
    if g.status == Status::Warn {
        g.fix = Some("for steady latency: echo performance | sudo tee /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor".into());
    }
    out.push(g);
    let h = crate::health::sample(Instant::now(), &crate::pipeline::Stats::new());
    let mut t = match h.cpu_temp_c {
        Some(c) => check(
            s,
            "temperature",
            if c < 80.0 { Status::Ok } else { Status::Warn },
            format!("{c:.1} °C"),
        ),
        None => check(s, "temperature", Status::Skip, "no thermal zone".into()),
    };
    if t.status == Status::Warn {
        t.fix = Some("add a heatsink or fan: above 80 °C the CPU throttles (Pi: 85 °C)".into());
    }
    out.push(t);
    out.push(match h.throttled {
        Some(bits) if bits & 0xF != 0 => Check {
            fix: Some("under-voltage or heat now: use the official power supply (5 V 3 A, 5 A for a Pi 5) and cooling".into()),
            ..check(s, "throttling", Status::Warn, format!("get_throttled = {bits:#x}"))
        },
        Some(bits) => check(s, "throttling", Status::Ok, format!("none now (get_throttled = {bits:#x})")),
        None => check(s, "throttling", Status::Skip, "no vcgencmd (not a Raspberry Pi)".into()),
    });
    out.push(check(
        s,
        "memory",
        Status::Ok,
        format!("{} MB used of {} MB", h.mem_used_mb, h.mem_total_mb),
    ));
    out
}

/// The device nodes a camera and link use: failing for what `camera` needs, a warning otherwise.
fn devices(camera: Option<&str>) -> Vec<Check> {
    let cam = camera.unwrap_or("");
    let needs = |kind: &str| match kind {
        "spi" | "i2c" => cam.starts_with("arducam"),
        "video" => cam.starts_with("v4l"),
        _ => false,
    };
    let i2c = crate::board::header_i2c(&crate::board::model());
    let nodes = [
        ("spi", Node::spi("/dev/spidev0.0")),
        ("i2c", Node::i2c(i2c)),
        ("gpio", Node::gpio("/dev/gpiochip0")),
        ("video", Node::video("/dev/video0")),
        ("serial", Node::serial("/dev/serial0")),
    ];
    nodes
        .into_iter()
        .map(|(kind, node)| match node.check() {
            Ok(()) => check("devices", kind, Status::Ok, format!("{} opens", node.path)),
            Err(fix) => Check {
                fix: Some(fix),
                ..check(
                    "devices",
                    kind,
                    if needs(kind) {
                        Status::Fail
                    } else {
                        Status::Warn
                    },
                    format!(
                        "{} not usable{}",
                        node.path,
                        if needs(kind) {
                            ""
                        } else {
                            " (not needed for this camera)"
                        }
                    ),
                )
            },
        })
        .collect()
}

/// Opens the camera (for the ArduCAM: the SPI test, the sensor id and the vendor's init) and
/// captures one frame.
fn camera(spec: &str) -> Check {
    let s = "camera";
    let started = Instant::now();
    let mut src = match crate::camera::open(spec, 256, None) {
        Ok(src) => src,
        Err(e) => {
            return Check {
                fix: Some(format!("{e}")),
                ..check(s, spec, Status::Fail, "does not open".into())
            }
        }
    };
    let opened = started.elapsed();
    let t = Instant::now();
    match src.capture() {
        Ok(c) => {
            let (kind, valid) = match &c.pixels {
                crate::codec::Pixels::Jpeg(j) => {
                    ("JPEG", svit_arducam::jpeg::first_image(j).is_ok())
                }
                _ => ("raw", true),
            };
            let (w, h) =
                crate::codec::decode_rgb(c.pixels, Vec::new()).map_or((0, 0), |(_, w, h)| (w, h));
            let status = if valid && w > 0 {
                Status::Ok
            } else {
                Status::Fail
            };
            Check {
                fix: (status == Status::Fail).then(|| "the frame does not decode: check the sensor's power and clock, and the SPI speed".into()),
                ..check(
                    s,
                    spec,
                    status,
                    format!(
                        "{}; opened in {:.0} ms; one {kind} frame {w}x{h} in {:.0} ms{}",
                        src.describe(),
                        opened.as_secs_f64() * 1e3,
                        t.elapsed().as_secs_f64() * 1e3,
                        if valid { "" } else { ", not a valid JPEG" }
                    ),
                )
            }
        }
        Err(e) => Check {
            fix: Some(format!("{e}")),
            ..check(
                s,
                spec,
                Status::Fail,
                format!("{}: the capture failed", src.describe()),
            )
        },
    }
}

/// The bundle's signature, against the `--trust` keys as `run` checks it.
fn signature(dir: &Path, trust: &[PathBuf]) -> Check {
    use svit_runtime::signature::{check_bundle, Trust};
    let s = "bundle";
    match check_bundle(dir, trust) {
        Ok(Trust::Signed { key_id }) => check(
            s,
            "signature",
            Status::Ok,
            format!("signed by trusted key {key_id}"),
        ),
        Ok(Trust::Unchecked { signed_by }) => Check {
            fix: Some(
                "give `run` the signer's public key (--trust FILE.pub) so that it runs only \
                 bundles you signed (README, \"Signed bundles\")"
                    .into(),
            ),
            ..check(
                s,
                "signature",
                Status::Warn,
                signed_by.map_or("unsigned, and no --trust key".into(), |k| {
                    format!("signed by key {k}, not checked (no --trust key)")
                }),
            )
        },
        Err(e) => Check {
            fix: Some(
                "sign it with `svit-export sign --key KEY.key BUNDLE`, or trust its signer's key"
                    .into(),
            ),
            ..check(s, "signature", Status::Fail, e.to_string())
        },
    }
}

/// The bundle verified, the precision `auto` picks and why, one timed inference.
fn bundle(dir: &Path) -> Vec<Check> {
    let s = "bundle";
    let model = match svit_runtime::Model::load(dir, "auto") {
        Ok(m) => m,
        Err(e) => {
            return vec![Check {
                fix: Some(format!(
                    "{e}: copy the bundle again (scripts/deploy.sh) or point --bundle at it"
                )),
                ..check(
                    s,
                    "verify",
                    Status::Fail,
                    format!("{} does not load", dir.display()),
                )
            }]
        }
    };
    let (chosen, why) = svit_runtime::precision_choice(&model.manifest.precisions);
    let mut out = vec![
        check(
            s,
            "verify",
            Status::Ok,
            format!(
                "{} ({}): hashes and config check",
                dir.display(),
                model.manifest.name
            ),
        ),
        check(
            s,
            "precision",
            Status::Ok,
            format!("auto picks {chosen}: {why}"),
        ),
    ];
    // onnxruntime is optional: tract runs the model without it.
    out.push(match svit_runtime::model::onnxruntime_library() {
        Ok(path) => check(
            s,
            "onnxruntime",
            Status::Ok,
            format!(
                "{} loads: `--engine onnxruntime` is available (compare with `svit-edge bench \
                 --engine tract,onnxruntime`)",
                path.display()
            ),
        ),
        Err(e) => Check {
            fix: Some(format!("only for --engine onnxruntime: {e}")),
            ..check(
                s,
                "onnxruntime",
                Status::Skip,
                "not found (optional: tract runs the model)".into(),
            )
        },
    });
    let size = model.config().image_size;
    let rgb: Vec<u8> = (0..size * size * 3).map(|i| (i * 7 % 251) as u8).collect();
    let timed = model.new_state(1).and_then(|mut st| {
        let opts = model.default_options();
        let _ = model.run_rgb(&mut st, &rgb, size, size, &opts)?; // warm-up
        let t = Instant::now();
        model.run_rgb(&mut st, &rgb, size, size, &opts)?;
        Ok(t.elapsed())
    });
    out.push(match timed {
        Ok(d) => check(
            s,
            "inference",
            Status::Ok,
            format!(
                "one frame at the bundle's threshold, one thread: {:.1} ms",
                d.as_secs_f64() * 1e3
            ),
        ),
        Err(e) => Check {
            fix: Some("report this with the output above".into()),
            ..check(s, "inference", Status::Fail, format!("{e}"))
        },
    });
    out
}

fn print_table(checks: &[Check]) {
    for c in checks {
        let mark = match c.status {
            Status::Ok => "ok  ",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Skip => "  - ",
        };
        println!("{mark} {:<8} {:<13} {}", c.section, c.name, c.detail);
        if let Some(fix) = &c.fix {
            println!("{:>28}-> {fix}", "");
        }
    }
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    let warned = checks.iter().filter(|c| c.status == Status::Warn).count();
    println!(
        "\n{failed} failed, {warned} warnings, {} checks",
        checks.len()
    );
}
