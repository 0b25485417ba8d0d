//! `svit-host`: collects from one or many `svit-edge` boards, records every message, reports.

mod collector;
mod live;
mod monitor;
mod plots;
mod record;
mod render;
mod report;
mod serial;

use std::collections::HashMap;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use svit_protocol::EdgeMsg;

use collector::HostEvent;

#[derive(Parser)]
#[command(
    name = "svit-host",
    version,
    about = "Collect, record and report detections and latency from svit-edge boards"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Accept boards and print one JSON line per frame (and a summary table at the end).
    Listen {
        #[arg(default_value = "0.0.0.0:7878")]
        addr: String,
        /// Record every received message to this .svrec file.
        #[arg(long)]
        record: Option<PathBuf>,
        /// Stop after this many seconds (default: until Ctrl-C).
        #[arg(long)]
        duration: Option<f64>,
        #[arg(long, default_value_t = 64)]
        max_boards: u32,
        /// Print nothing per frame.
        #[arg(long, conflicts_with = "summary_every")]
        quiet: bool,
        /// Instead of a line per frame, print one JSON summary line (per board: frames, fps,
        /// latency percentiles, kept fraction, missing, dropped) every this many seconds.
        #[arg(long, value_name = "SECONDS")]
        summary_every: Option<f64>,
        /// Pre-shared key file: boards must hold the same key (see `svit-edge run --key`).
        #[arg(long)]
        key: Option<PathBuf>,
        /// Also dial a board that listens (`svit-edge run --listen`), HOST:PORT; repeatable.
        #[arg(long = "board")]
        boards: Vec<String>,
        /// Also read a board on this serial port (`svit-edge run --serial`), e.g. /dev/ttyUSB0;
        /// repeatable.
        #[arg(long)]
        serial: Vec<String>,
        /// Speed of the --serial lines.
        #[arg(long, default_value_t = 921_600)]
        baud: u32,
    },
    /// The whole system on this machine, no hardware: this host plus two local svit-edge
    /// processes (the ArduCAM driver on a simulated module, and the synthetic camera) on the
    /// demo bundle; shows the live monitor on a terminal, prints the
    /// summary table and writes a report.
    Demo {
        #[arg(long, default_value = "models/demo")]
        bundle: PathBuf,
        #[arg(long, default_value_t = 15.0)]
        seconds: f64,
        #[arg(long, default_value = "runs/demo-report")]
        out: PathBuf,
    },
    /// Play a recording back as the JSON lines `listen` prints, at recorded speed or as fast
    /// as possible, then print the summary table.
    Replay {
        recording: PathBuf,
        /// Do not wait between records.
        #[arg(long)]
        max_speed: bool,
    },
    /// Draw one recorded frame: thumbnail, kept tokens of a block, masks and boxes (PNG).
    Render {
        recording: PathBuf,
        #[arg(long)]
        frame: u64,
        /// Board name, when the recording holds several.
        #[arg(long)]
        device: Option<String>,
        /// Block whose kept tokens to show (default: the last).
        #[arg(long)]
        block: Option<usize>,
        #[arg(long, default_value = "frame.png")]
        out: PathBuf,
    },
    /// Two recordings side by side (dense against pruned, two boards, two precisions), with
    /// the ratio B/A of every figure. Boards are matched by name, or taken as they are when each
    /// recording holds one.
    Compare {
        a: PathBuf,
        b: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Turn a recording into summary.json, frames.csv, SVG plots and index.html.
    Report {
        recording: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(|| -> Box<dyn std::io::Write> {
            if live::SCREEN_TAKEN.load(Ordering::Relaxed) {
                Box::new(std::io::sink())
            } else {
                Box::new(std::io::stderr())
            }
        })
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match Cli::parse().cmd {
        Cmd::Listen {
            addr,
            record,
            duration,
            max_boards,
            quiet,
            summary_every,
            key,
            boards,
            serial,
            baud,
        } => {
            let key = key.map(|k| svit_protocol::auth::read_key(&k)).transpose()?;
            let script = match (quiet, summary_every) {
                (true, _) => live::Script::Quiet,
                (false, Some(s)) => live::Script::Summary(s),
                (false, None) => live::Script::Lines,
            };
            let reach = Outbound {
                dial: boards,
                serial,
                baud,
            };
            listen(&addr, record, duration, max_boards, script, key, reach)
        }
        Cmd::Demo {
            bundle,
            seconds,
            out,
        } => demo(&bundle, seconds, &out),
        Cmd::Render {
            recording,
            frame,
            device,
            block,
            out,
        } => {
            let rec = record::read(&recording)?;
            let r = render::render(&rec.records, device.as_deref(), frame, block, &out)?;
            println!(
                "{} ({}x{}): {} detections",
                out.display(),
                r.width,
                r.height,
                r.legend.len()
            );
            for l in r.legend {
                println!("  {l}");
            }
            Ok(())
        }
        Cmd::Replay {
            recording,
            max_speed,
        } => {
            let rec = record::read(&recording)?;
            let mut prev: Option<u64> = None;
            {
                let mut live = live::Live::new(live::Script::Lines)?;
                for r in &rec.records {
                    if let (Some(p), false) = (prev, max_speed) {
                        std::thread::sleep(Duration::from_micros(
                            r.recv_us.saturating_sub(p).min(5_000_000),
                        ));
                    }
                    prev = Some(r.recv_us);
                    live.record(r);
                    // A recording cannot take control messages: keys other than quit do nothing.
                    if live.tick()?.1 {
                        break;
                    }
                }
            }
            print_table(&report::summarize(&rec.records));
            Ok(())
        }
        Cmd::Compare { a, b, json } => compare(&a, &b, json),
        Cmd::Report { recording, out } => {
            let rec = record::read(&recording)?;
            let s = report::write(&rec.records, &out)?;
            print_table(&s);
            if rec.bad_frames > 0 {
                tracing::warn!("{} corrupt records skipped", rec.bad_frames);
            }
            Ok(())
        }
    }
}

fn compare(a: &std::path::Path, b: &std::path::Path, json: bool) -> Result<()> {
    let sa = report::summarize(&record::read(a)?.records);
    let sb = report::summarize(&record::read(b)?.records);
    let pairs: Vec<(&report::BoardSummary, &report::BoardSummary)> =
        if let ([x], [y]) = (&sa.boards[..], &sb.boards[..]) {
            vec![(x, y)]
        } else {
            sa.boards
                .iter()
                .filter_map(|x| {
                    sb.boards
                        .iter()
                        .find(|y| y.device == x.device)
                        .map(|y| (x, y))
                })
                .collect()
        };
    anyhow::ensure!(
        !pairs.is_empty(),
        "no board in {} matches one in {} by name (and they do not hold one board each)",
        a.display(),
        b.display()
    );
    let figures = |s: &report::BoardSummary| {
        [
            ("fps", s.fps),
            ("total p50 ms", s.total_ms.p50),
            ("total p95 ms", s.total_ms.p95),
            ("total p99 ms", s.total_ms.p99),
            ("inference p50 ms", s.inference_ms.p50),
            ("backbone p50 ms", s.backbone_ms.p50),
            ("capture->host p50 ms", s.capture_to_recv_ms.p50),
            ("kept fraction", s.kept_fraction),
            ("GMACs", s.gmacs),
            ("detections/frame", s.detections_per_frame),
        ]
    };
    let ratio = |x: f64, y: f64| if x != 0.0 { y / x } else { f64::NAN };
    if json {
        let v: Vec<serde_json::Value> = pairs
            .iter()
            .map(|(x, y)| {
                let rows: serde_json::Map<String, serde_json::Value> = figures(x)
                    .iter()
                    .zip(figures(y))
                    .map(|((k, va), (_, vb))| {
                        (
                            k.to_string(),
                            serde_json::json!({"a": va, "b": vb, "b_over_a": ratio(*va, vb)}),
                        )
                    })
                    .collect();
                serde_json::json!({"a": x.device, "b": y.device, "figures": rows})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for (x, y) in pairs {
        println!(
            "A = {} ({}, {} frames)   B = {} ({}, {} frames)",
            x.device,
            a.display(),
            x.frames,
            y.device,
            b.display(),
            y.frames
        );
        println!("{:<22} {:>10} {:>10} {:>8}", "", "A", "B", "B/A");
        for ((k, va), (_, vb)) in figures(x).iter().zip(figures(y)) {
            println!("{k:<22} {va:>10.3} {vb:>10.3} {:>8.2}", ratio(*va, vb));
        }
        println!();
    }
    Ok(())
}

fn print_table(s: &report::Summary) {
    println!(
        "{:<20} {:>7} {:>7} {:>8} {:>7} {:>9} {:>9} {:>9} {:>9} {:>6}",
        "board",
        "frames",
        "missing",
        "dropped",
        "fps",
        "total p50",
        "total p99",
        "infer p50",
        "cap->host",
        "kept"
    );
    for b in &s.boards {
        println!(
            "{:<20} {:>7} {:>7} {:>8} {:>7.1} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>6.3}",
            b.device,
            b.frames,
            b.missing,
            b.dropped_on_board,
            b.fps,
            b.total_ms.p50,
            b.total_ms.p99,
            b.inference_ms.p50,
            b.capture_to_recv_ms.p50,
            b.kept_fraction
        );
    }
}

/// Boards the host reaches itself, besides those that connect to it.
#[derive(Default)]
struct Outbound {
    /// Boards that listen (`svit-edge run --listen`): HOST:PORT.
    dial: Vec<String>,
    /// Serial ports with a board on the other end.
    serial: Vec<String>,
    baud: u32,
}

fn listen(
    addr: &str,
    record: Option<PathBuf>,
    duration: Option<f64>,
    max_boards: u32,
    script: live::Script,
    key: Option<Vec<u8>>,
    reach: Outbound,
) -> Result<()> {
    let listener = TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
    tracing::info!("listening on {}", listener.local_addr()?);
    let stop = Arc::new(AtomicBool::new(false));
    install_stop_handler(stop.clone());
    let kept = collect(
        listener,
        record.as_deref(),
        duration,
        max_boards,
        script,
        stop,
        key,
        reach,
    )?;
    print_table(&report::summarize(&kept));
    Ok(())
}

fn demo(bundle: &std::path::Path, seconds: f64, out: &std::path::Path) -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
    let addr = listener.local_addr()?.to_string();
    let edge = std::env::current_exe()?.with_file_name("svit-edge");
    anyhow::ensure!(
        edge.exists(),
        "{} not found: build the workspace first (cargo build --workspace)",
        edge.display()
    );
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let cameras = [
        ("edge-arducam-sim", "sim-arducam".to_string()),
        ("edge-synthetic", "synthetic".to_string()),
    ];
    let mut children = Vec::new();
    for (name, cam) in &cameras {
        let child = std::process::Command::new(&edge)
            .args([
                "run",
                "--name",
                name,
                "--camera",
                cam,
                "--fps",
                "10",
                "--connect",
                &addr,
            ])
            .arg("--bundle")
            .arg(bundle)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", edge.display()))?;
        children.push(child);
    }
    tracing::info!("demo: 2 boards streaming to {addr} for {seconds} s");
    let stop = Arc::new(AtomicBool::new(false));
    install_stop_handler(stop.clone());
    let rec = out.join("demo.svrec");
    let kept = collect(
        listener,
        Some(&rec),
        Some(seconds),
        8,
        // The monitor on a terminal; otherwise only the summary table at the end.
        if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            live::Script::Lines
        } else {
            live::Script::Quiet
        },
        stop,
        None,
        Outbound::default(),
    );
    for c in &mut children {
        // SIGTERM: the edge flushes what it queued and exits.
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let _ = c.wait();
    }
    kept?;
    let r = record::read(&rec)?;
    let s = report::write(&r.records, out)?;
    print_table(&s);
    println!(
        "recording: {}\nreport: {}/summary.json, {}/frames.csv",
        rec.display(),
        out.display(),
        out.display()
    );
    Ok(())
}

/// Runs the collector until `stop`, `duration` or the acceptor ends; returns frames and hellos.
fn collect(
    listener: TcpListener,
    record: Option<&std::path::Path>,
    duration: Option<f64>,
    max_boards: u32,
    script: live::Script,
    stop: Arc<AtomicBool>,
    key: Option<Vec<u8>>,
    reach: Outbound,
) -> Result<Vec<record::Record>> {
    let (tx, rx) = mpsc::sync_channel::<HostEvent>(4096);
    let key = key.map(Arc::new);
    for addr in reach.dial {
        let (tx, stop, key) = (tx.clone(), stop.clone(), key.clone());
        std::thread::spawn(move || collector::dial_loop(addr, tx, stop, key));
    }
    for path in reach.serial {
        let (tx, stop, key) = (tx.clone(), stop.clone(), key.clone());
        let baud = reach.baud;
        std::thread::spawn(move || serial::serial_loop(path, baud, tx, stop, key));
    }
    {
        let stop = stop.clone();
        std::thread::spawn(move || collector::accept_loop(listener, tx, stop, max_boards, key));
    }
    let mut writer = record.map(record::Writer::create).transpose()?;
    // For the summary at exit: hellos, and the most recent frames (bounded; the recording keeps
    // everything).
    let mut hellos: Vec<record::Record> = Vec::new();
    let mut recent: std::collections::VecDeque<record::Record> = Default::default();
    let started = Instant::now();
    let mut live = live::Live::new(script)?;
    // Write halves of the board sockets, for control messages from the monitor's keys.
    let mut controls: HashMap<u32, Box<dyn std::io::Write + Send>> = HashMap::new();
    // Once stopping, the board threads drain their sockets and this loop records what they
    // still send, until the channel stays quiet (at most 2 s, for a board that never pauses);
    // what had been received is recorded, not dropped.
    let mut draining: Option<Instant> = None;
    loop {
        if draining.is_none()
            && (stop.load(Ordering::Relaxed)
                || duration.is_some_and(|d| started.elapsed().as_secs_f64() >= d))
        {
            draining = Some(Instant::now());
            stop.store(true, Ordering::Relaxed);
        }
        if draining.is_some_and(|t| t.elapsed() > Duration::from_secs(2)) {
            break;
        }
        let sends = if draining.is_some() {
            Vec::new()
        } else {
            let (sends, quit) = live.tick()?;
            if quit {
                draining = Some(Instant::now());
                stop.store(true, Ordering::Relaxed);
            }
            sends
        };
        for (conn, msg) in sends {
            let sent = controls.get_mut(&conn).map(|s| {
                svit_protocol::encode(&msg, svit_protocol::MAX_FRAME)
                    .map_err(|e| anyhow::anyhow!("{e}"))
                    .and_then(|b| Ok(s.write_all(&b)?))
            });
            if let Some(Err(e)) = sent {
                live.note(format!("control to #{conn} not sent: {e:#}"));
            }
        }
        let ev = match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(ev) => ev,
            Err(mpsc::RecvTimeoutError::Timeout) if draining.is_some() => break,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let rec = match ev {
            HostEvent::Connected {
                conn,
                hello,
                control,
            } => {
                tracing::info!(
                    "board {} connected (#{conn}, bundle {})",
                    hello.device,
                    hello.bundle
                );
                live.connected(conn, &hello);
                if let Some(c) = control {
                    controls.insert(conn, c);
                }
                let device = hello.device.clone();
                record::Record {
                    recv_us: now_us(),
                    conn,
                    device,
                    msg: EdgeMsg::Hello(hello),
                }
            }
            HostEvent::Refused { conn, reason } => {
                tracing::warn!("connection #{conn} refused: {reason}");
                live.note(format!("connection #{conn} refused: {reason}"));
                continue;
            }
            HostEvent::Disconnected {
                conn,
                device,
                reason,
            } => {
                tracing::info!("board {device} (#{conn}) disconnected: {reason}");
                live.disconnected(conn, &reason);
                controls.remove(&conn);
                continue;
            }
            HostEvent::Msg(r) => r,
        };
        live.record(&rec);
        if let Some(w) = writer.as_mut() {
            w.append(&rec).context("writing the recording")?;
        }
        match rec.msg {
            EdgeMsg::Hello(_) => hellos.push(rec),
            EdgeMsg::Frame(_) => {
                if recent.len() == SUMMARY_FRAMES {
                    recent.pop_front();
                }
                recent.push_back(rec);
            }
            _ => {}
        }
    }
    drop(live);
    stop.store(true, Ordering::Relaxed);
    if let Some(mut w) = writer {
        w.flush().context("flushing the recording")?;
        tracing::info!(
            records = w.records,
            "recording closed: {}",
            record.map(|p| p.display().to_string()).unwrap_or_default()
        );
    }
    if recent.len() == SUMMARY_FRAMES {
        tracing::info!("the table covers the last {SUMMARY_FRAMES} frames; `svit-host report` covers the whole recording");
    }
    hellos.extend(recent);
    Ok(hellos)
}

/// Frames kept in memory for the summary printed at exit.
const SUMMARY_FRAMES: usize = 100_000;

/// The JSON line printed per frame by `listen` and `replay`.
pub(crate) fn frame_line(device: &str, f: &svit_protocol::Frame) -> serde_json::Value {
    serde_json::json!({
        "device": device, "seq": f.seq, "detections": f.detections.len(),
        "total_ms": report::total_ms(f), "kept": f.kept, "gmacs": f.gmacs, "dropped": f.dropped_total,
    })
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// SIGINT/SIGTERM end the loop; the recording is flushed and closed before exit.
fn install_stop_handler(stop: Arc<AtomicBool>) {
    static STOP: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    let _ = STOP.set(stop);
    extern "C" fn on_signal(_: libc::c_int) {
        if let Some(s) = STOP.get() {
            s.store(true, Ordering::Relaxed);
        }
    }
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}
