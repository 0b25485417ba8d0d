//! `svit-host`: collects from one or many `svit-edge` boards, records every message, reports.

mod event;
mod link;
mod live;
mod monitor;
mod mqtt;
mod push;
mod record;
mod render;
mod report;
mod session;
mod view;
mod web;

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use svit_protocol::session::Keys;

use event::{BoardEvent, Event};

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

// Parsed once at start: the size of the largest subcommand's options costs nothing.
#[allow(clippy::large_enum_variant)]
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
        /// Pre-shared key file: boards must hold the same key (see `svit-edge run --key`), and
        /// every session is encrypted (Noise, PROTOCOL.md).
        #[arg(long, conflicts_with = "keys")]
        key: Option<PathBuf>,
        /// A folder of key files, one per board, each named as the board (its --name): one
        /// stolen board's key opens no other board's session.
        #[arg(long, value_name = "DIR")]
        keys: Option<PathBuf>,
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
        /// Also take boards that publish to this MQTT broker (`svit-edge run --mqtt URL`).
        #[arg(long, value_name = "URL")]
        mqtt_subscribe: Option<String>,
        /// With --mqtt-subscribe: only these boards (topic levels; MQTT wildcards allowed).
        #[arg(long = "mqtt-board", default_value = "+", requires = "mqtt_subscribe")]
        mqtt_boards: Vec<String>,
        #[command(flatten)]
        http: HttpArgs,
        #[command(flatten)]
        mqtt: MqttArgs,
    },
    /// The whole system on this machine, no hardware: this host plus two local svit-edge
    /// processes (the ArduCAM driver on a simulated module, and a synthetic camera on the target sheet) on the
    /// demo bundle; shows the live monitor on a terminal, prints the
    /// summary table and writes a report.
    Demo {
        #[arg(long, default_value = "models/demo")]
        bundle: PathBuf,
        #[arg(long, default_value_t = 15.0)]
        seconds: f64,
        #[arg(long, default_value = "runs/demo-report")]
        out: PathBuf,
        /// Where the live web view listens (`off`: none).
        #[arg(long, default_value = "127.0.0.1:8080")]
        http: String,
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
    /// Push a bundle (a directory or its .tar) to running boards through a host's web API
    /// (`listen --http`) and their links; waits until each board runs it or says why not.
    /// Boards take pushes when started with `svit-edge run --store DIR`. One JSON line per
    /// board on stdout; exits non-zero if one refused.
    Push {
        bundle: PathBuf,
        /// A board to push to (repeatable).
        #[arg(long, required_unless_present = "all")]
        board: Vec<String>,
        /// Every board connected to the host.
        #[arg(long, conflicts_with = "board")]
        all: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Send boards back to the bundle they ran before the last push.
    Rollback {
        /// A board to roll back (repeatable).
        #[arg(long, required = true)]
        board: Vec<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// Reaching a running host's web API.
#[derive(clap::Args)]
struct ApiArgs {
    /// The host's web view (`svit-host listen --http ADDR`).
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080")]
    api: String,
    /// That host's --http-token file (needed off loopback).
    #[arg(long, value_name = "FILE")]
    token: Option<PathBuf>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 900.0)]
    timeout: f64,
}

impl ApiArgs {
    fn open(&self) -> Result<(push::Api, Duration)> {
        let token = self
            .token
            .as_ref()
            .map(|p| {
                std::fs::read_to_string(p)
                    .map(|t| t.trim().to_string())
                    .with_context(|| format!("reading the --token file {}", p.display()))
            })
            .transpose()?;
        Ok((
            push::Api::new(&self.api, token),
            Duration::from_secs_f64(self.timeout.max(1.0)),
        ))
    }
}

/// Prints each board's outcome as a JSON line; an error if one did not get there.
fn outcomes(what: &str, done: Vec<push::Outcome>) -> Result<()> {
    let mut failed = Vec::new();
    for o in &done {
        println!("{}", o.status);
        if !o.ok() {
            let reason = o.status["reason"].as_str().unwrap_or("no reason given");
            failed.push(format!("{}: {} ({reason})", o.board, o.status["state"]));
        }
    }
    anyhow::ensure!(failed.is_empty(), "{what} failed on {}", failed.join("; "));
    Ok(())
}

/// The web view: live page, JSON API, /metrics, websocket.
#[derive(clap::Args)]
struct HttpArgs {
    /// Serve the live web view, JSON API and Prometheus /metrics here, e.g. 127.0.0.1:8080
    /// (off by default). Off loopback, controls need --http-token.
    #[arg(long, value_name = "ADDR")]
    http: Option<std::net::SocketAddr>,
    /// File holding the bearer token controls must present (`Authorization: Bearer ...`).
    #[arg(long, value_name = "FILE", requires = "http")]
    http_token: Option<PathBuf>,
    /// Websocket updates per second per board, for each client.
    #[arg(long, default_value_t = 10.0, requires = "http")]
    ws_rate: f64,
}

/// The MQTT bridge: detections, stats, availability, events, Home Assistant discovery.
#[derive(clap::Args)]
struct MqttArgs {
    /// Publish every board to this broker, mqtt://[USER:PASS@]HOST[:PORT] (README, "A fleet
    /// on MQTT"); controls come back on PREFIX/BOARD/set/{threshold,pause,resume,snapshot}.
    #[arg(long, value_name = "URL")]
    mqtt: Option<String>,
    /// First topic level (of --mqtt and --mqtt-subscribe).
    #[arg(long, default_value = "svit")]
    mqtt_prefix: String,
    /// QoS of the per-frame detections (stats and events go at 0).
    #[arg(long, default_value_t = 1, requires = "mqtt")]
    mqtt_qos: u8,
    /// Home Assistant's discovery prefix (`off`: no discovery).
    #[arg(long, default_value = "homeassistant", requires = "mqtt")]
    ha_discovery: String,
    /// Seconds between stats messages.
    #[arg(long, default_value_t = 5.0, requires = "mqtt")]
    mqtt_stats_every: f64,
}

impl MqttArgs {
    fn options(self) -> Result<Option<mqtt::Options>> {
        let Some(url) = self.mqtt else {
            return Ok(None);
        };
        anyhow::ensure!(
            !self.mqtt_prefix.is_empty() && !self.mqtt_prefix.contains(['+', '#']),
            "--mqtt-prefix {:?}: a topic without wildcards",
            self.mqtt_prefix
        );
        Ok(Some(mqtt::Options {
            url,
            prefix: self.mqtt_prefix,
            qos: self.mqtt_qos,
            discovery: (self.ha_discovery != "off").then_some(self.ha_discovery),
            stats_every: Duration::from_secs_f64(self.mqtt_stats_every.max(0.5)),
        }))
    }
}

impl HttpArgs {
    fn options(self, recording: Option<&std::path::Path>) -> Result<Option<web::Options>> {
        let Some(addr) = self.http else {
            return Ok(None);
        };
        let token = self
            .http_token
            .map(|p| {
                let t = std::fs::read_to_string(&p)
                    .with_context(|| format!("reading the --http-token file {}", p.display()))?;
                let t = t.trim().to_string();
                anyhow::ensure!(
                    t.len() >= 16,
                    "{}: a token of at least 16 characters, please",
                    p.display()
                );
                Ok(t)
            })
            .transpose()?;
        anyhow::ensure!(
            self.ws_rate > 0.0 && self.ws_rate.is_finite(),
            "--ws-rate must be a positive number of updates per second"
        );
        Ok(Some(web::Options {
            addr,
            token,
            ws_rate: self.ws_rate,
            recording: recording.map(|p| p.to_path_buf()),
        }))
    }
}

fn main() -> Result<()> {
    svit_protocol::process::init_tracing(Some(&live::SCREEN_TAKEN));
    match Cli::parse().cmd {
        Cmd::Listen {
            addr,
            record,
            duration,
            max_boards,
            quiet,
            summary_every,
            key,
            keys,
            boards,
            serial,
            baud,
            mqtt_subscribe,
            mqtt_boards,
            http,
            mqtt,
        } => {
            let keys = match (key, keys) {
                (Some(k), _) => Keys::Shared(svit_protocol::auth::read_key(&k)?),
                (None, Some(dir)) => Keys::PerBoard(svit_protocol::auth::read_keys(&dir)?),
                (None, None) => Keys::None,
            };
            let script = match (quiet, summary_every) {
                (true, _) => live::Script::Quiet,
                (false, Some(s)) => live::Script::Summary(s),
                (false, None) => live::Script::Lines,
            };
            let prefix = mqtt.mqtt_prefix.clone();
            let reach = session::Outbound {
                dial: boards,
                serial,
                baud,
                mqtt: mqtt_subscribe.map(|url| link::mqtt::Subscribe {
                    url,
                    prefix,
                    boards: mqtt_boards,
                    keys: keys.clone(),
                }),
            };
            let web = http.options(record.as_deref())?;
            let mqtt = mqtt.options()?;
            let listener = TcpListener::bind(&addr).with_context(|| format!("binding {addr}"))?;
            tracing::info!("listening on {}", listener.local_addr()?);
            let off_loopback = !listener.local_addr()?.ip().is_loopback()
                || reach
                    .dial
                    .iter()
                    .any(|a| !svit_protocol::secure::is_loopback(a));
            if matches!(keys, Keys::None) && off_loopback {
                tracing::warn!(
                    "no --key: boards off this machine stream in the clear and anyone on the \
                     network can connect or send control; see PROTOCOL.md, \"Pre-shared key\""
                );
            }
            let opts = session::Options {
                record: record.as_deref(),
                duration,
                max_boards,
                script,
                keys,
                reach,
                web,
                mqtt,
            };
            listen(listener, opts)
        }
        Cmd::Demo {
            bundle,
            seconds,
            out,
            http,
        } => demo(&bundle, seconds, &out, &http),
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
            replay(&rec.records, max_speed)?;
            report::print_table(&report::summarize(&rec.records));
            Ok(())
        }
        Cmd::Compare { a, b, json } => report::compare(&a, &b, json),
        Cmd::Push {
            bundle,
            board,
            all,
            api,
        } => {
            let (client, timeout) = api.open()?;
            let (name, tar) = push::read_bundle(&bundle)?;
            let boards = if all {
                client.connected_boards()?
            } else {
                board
            };
            anyhow::ensure!(!boards.is_empty(), "no board connected to {}", api.api);
            tracing::info!(
                "pushing {name} ({} bytes) to {}",
                tar.len(),
                boards.join(", ")
            );
            outcomes(
                "the push",
                push::push(&client, &boards, &name, &tar, timeout)?,
            )
        }
        Cmd::Rollback { board, api } => {
            let (client, timeout) = api.open()?;
            outcomes("the rollback", push::rollback(&client, &board, timeout)?)
        }
        Cmd::Report { recording, out } => {
            let rec = record::read(&recording)?;
            let s = report::write(&rec.records, &out)?;
            report::print_table(&s);
            if rec.bad_frames > 0 {
                tracing::warn!("{} corrupt records skipped", rec.bad_frames);
            }
            Ok(())
        }
    }
}

fn listen(listener: TcpListener, opts: session::Options) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    svit_protocol::process::stop_on_signals(stop.clone());
    let kept = session::run(listener, opts, stop)?;
    report::print_table(&report::summarize(&kept));
    Ok(())
}

fn demo(bundle: &std::path::Path, seconds: f64, out: &std::path::Path, http: &str) -> Result<()> {
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
        // A camera looking at the printed target sheet (`svit-export targets`).
        ("edge-sheet", "synthetic:sheet".to_string()),
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
    svit_protocol::process::stop_on_signals(stop.clone());
    let rec = out.join("demo.svrec");
    let web = match http {
        "off" => None,
        a => {
            let mut addr: std::net::SocketAddr = a
                .parse()
                .with_context(|| format!("--http {a}: not an address (IP:PORT or off)"))?;
            // The demo must start on any machine: another port when this one is taken.
            if TcpListener::bind(addr).is_err() {
                let free = TcpListener::bind((addr.ip(), 0))?.local_addr()?;
                tracing::warn!("{addr} is taken; the live view uses {free} instead");
                addr = free;
            }
            Some(web::Options {
                addr,
                token: None,
                ws_rate: 10.0,
                recording: Some(rec.clone()),
            })
        }
    };
    if let Some(w) = &web {
        println!("live view: http://{}/", w.addr);
    }
    let opts = session::Options {
        record: Some(&rec),
        duration: Some(seconds),
        max_boards: 8,
        // The monitor on a terminal; otherwise only the summary table at the end.
        script: if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            live::Script::Lines
        } else {
            live::Script::Quiet
        },
        keys: Keys::None,
        reach: session::Outbound::default(),
        web,
        mqtt: None,
    };
    let kept = session::run(listener, opts, stop);
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
    report::print_table(&s);
    println!(
        "recording: {}\nreport: {}/summary.json, {}/frames.csv",
        rec.display(),
        out.display(),
        out.display()
    );
    Ok(())
}

/// Shows a recording as `listen` showed it live, at the recorded pace or at full speed. A
/// recording cannot take control messages: keys other than quit do nothing.
fn replay(records: &[record::Record], max_speed: bool) -> Result<()> {
    use event::{Action, Consumer};
    let mut live = live::Live::new(live::Script::Lines)?;
    let (tx, keys) = mpsc::sync_channel(64);
    let stop = Arc::new(AtomicBool::new(false));
    if live.takes_keys() {
        live::spawn_keys(tx, stop.clone());
    }
    let mut prev: Option<u64> = None;
    'records: for r in records {
        if let (Some(p), false) = (prev, max_speed) {
            std::thread::sleep(Duration::from_micros(
                r.recv_us.saturating_sub(p).min(5_000_000),
            ));
        }
        prev = Some(r.recv_us);
        live.on(&Event::Board(BoardEvent::Msg(r.clone())))?;
        let pending: Vec<Event> = keys.try_iter().chain([Event::Tick]).collect();
        for ev in pending {
            if live.on(&ev)?.iter().any(|a| matches!(a, Action::Quit)) {
                break 'records;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    Ok(())
}
