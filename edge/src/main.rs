//! `svit-edge`: runs on the board. Camera -> token-pruned SViT (tract) -> postcard frames to a
//! host (or JSON lines on stdout), and `bench`, the on-device latency profiler.

mod bench;
mod board;
mod camera;
mod codec;
mod config;
mod control;
mod doctor;
mod health;
mod link;
mod metrics;
mod mqtt;
mod nodes;
mod pipeline;
mod queue;
mod serial;
mod update;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, Subcommand};
use svit_runtime::manifest::DENSE_ONNX;
use svit_runtime::{Engine, Manifest, Model};

use control::Control;
use pipeline::Stats;
use queue::Queue;

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum BudgetPrefer {
    Default,
    Dense,
}

/// A budget or rate: a positive, finite number.
fn positive_ms(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a positive number")),
    }
}

#[derive(Parser)]
#[command(
    name = "svit-edge",
    version,
    about = "Run the token-pruned SViT detector on a board and stream what it sees"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Capture, detect and stream.
    #[command(args_override_self = true)]
    Run {
        /// Read settings from this TOML file (e.g. /etc/svit-edge/edge.toml): each key one of
        /// these long options (`budget_ms = 40`, `trust = ["a.pub"]`); the command line wins.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Bundle directory (models/demo ships with the repository).
        #[arg(long, default_value = "models/demo")]
        bundle: PathBuf,
        /// Camera: `synthetic`, `synthetic:sheet` (looking at the printed target sheet), `file:PATH` (an image, a folder of images or an .mjpeg video,
        /// looping), `sim-arducam[:res=320x240,stall-every=N,corrupt-every=N]` (the ArduCAM
        /// driver on a simulated module),
        /// `arducam[:spi=/dev/spidev0.0,i2c=/dev/i2c-1,led=GPIO22,res=320x240]`,
        /// `v4l[:/dev/video0,res=640x480,fps=30,format=mjpeg|yuyv|uyvy,gone=30]` (USB cameras,
        /// YUV bridges), `sim-v4l[:res=..,fps=..,format=..]` (a simulated V4L2 camera),
        /// `exec:COMMAND` (a program writing MJPEG, e.g. rpicam-vid),
        /// `exec-raw:yuyv,640x480:COMMAND`, `stdin` or `pipe:PATH`.
        #[arg(long, default_value = "synthetic")]
        camera: String,
        /// Host to stream to (HOST:PORT). Without it or --listen, one JSON line per frame goes
        /// to stdout.
        #[arg(long, conflicts_with = "listen")]
        connect: Option<String>,
        /// Wait for the host to connect here instead (ADDR:PORT, e.g. 0.0.0.0:7879; the host
        /// dials with `svit-host listen --board EDGE:7879`). Use --key off loopback.
        #[arg(long, conflicts_with = "serial")]
        listen: Option<String>,
        /// Stream over a serial line instead (e.g. /dev/ttyAMA0 on a Pi's GPIO UART, /dev/ttyUSB0
        /// for an adapter); the host reads it with `svit-host listen --serial PORT`.
        #[arg(long, conflicts_with = "connect")]
        serial: Option<String>,
        /// Serial line speed (both ends must agree).
        #[arg(long, default_value_t = 921_600)]
        baud: u32,
        /// Publish straight to an MQTT broker instead, mqtt://[USER:PASS@]HOST[:PORT], on
        /// PREFIX/NAME/wire (hosts take it with `svit-host listen --mqtt-subscribe URL`).
        #[arg(long, value_name = "URL", conflicts_with_all = ["connect", "listen", "serial"])]
        mqtt: Option<String>,
        #[arg(long, default_value = "svit", requires = "mqtt")]
        mqtt_prefix: String,
        /// Stop after this many frames.
        #[arg(long)]
        frames: Option<u64>,
        /// Pruning threshold (0 = dense); defaults to the bundle's.
        #[arg(long)]
        threshold: Option<f32>,
        /// Hold the p95 of total latency at or under this many ms by steering each frame's
        /// pruning (never less than --threshold's, unless --budget-prefer dense).
        #[arg(long, value_parser = positive_ms, conflicts_with = "target_fps")]
        budget_ms: Option<f32>,
        /// The same as a frame rate: --budget-ms 1000/F.
        #[arg(long, value_parser = positive_ms)]
        target_fps: Option<f32>,
        /// With a budget, what spare time buys: `default` (the bundle's pruning, no less) or
        /// `dense` (denser passes, down to dense).
        #[arg(long, value_enum, default_value = "default")]
        budget_prefer: BudgetPrefer,
        /// The fewest tokens a gated block keeps (default: the bundle's); lower prunes more.
        /// `96`, or `48..128` for a floor rising from the first gated block to the last.
        #[arg(long)]
        min_keep: Option<svit_runtime::MinKeep>,
        /// Report detections scoring at least this (default: the bundle's).
        #[arg(long)]
        score_threshold: Option<f32>,
        /// Pace software cameras (synthetic, files) to this rate (default: as fast as they go).
        #[arg(long)]
        fps: Option<f32>,
        /// Threads that share each frame's stages, this one included (default: one per core
        /// but one, which is left to capture and decoding).
        #[arg(long)]
        threads: Option<usize>,
        /// Name shown on the host (default: hostname).
        #[arg(long)]
        name: Option<String>,
        /// Graph precision: f32, int8, f16, or auto (by the CPU's features, among what the
        /// bundle has).
        #[arg(long, default_value = "auto")]
        precision: String,
        /// What runs the stage graphs: tract, onnxruntime (its library loaded at run time:
        /// `pip install onnxruntime`, or ORT_DYLIB_PATH), or auto (onnxruntime where it loads).
        #[arg(long, default_value = "tract", value_parser = Engine::choose)]
        engine: Engine,
        /// A public key (`svit-export keygen`'s PREFIX.pub) whose signature the bundle must
        /// carry; repeat for several. Without any, unsigned bundles run, with a warning.
        #[arg(long, value_name = "FILE")]
        trust: Vec<PathBuf>,
        /// Take bundles pushed by the host (`svit-host push`) and keep them here: the one
        /// running, the one before (for `svit-host rollback`) and one being received. At start
        /// the board runs the store's current bundle, if it has one, instead of --bundle.
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
        /// Send a JPEG thumbnail of the frame this often (seconds; 0 = only on a snapshot request).
        #[arg(long, default_value_t = 1.0)]
        thumbnail_every: f64,
        /// Pre-shared key file: only a host holding the same key gets frames or may send
        /// control, and the session is encrypted (Noise, PROTOCOL.md). At least 16 bytes.
        #[arg(long)]
        key: Option<PathBuf>,
        /// Serve this board's figures for Prometheus at http://ADDR/metrics (as the host's
        /// `/metrics` names them), e.g. 0.0.0.0:9464.
        #[arg(long, value_name = "ADDR")]
        metrics: Option<std::net::SocketAddr>,
    },
    /// First contact with a board: system, CPU features, device nodes and groups, the camera
    /// (one capture), the bundle (verified, the precision `auto` picks and why, one timed
    /// inference). Each failing check says what to do; exits non-zero when one failed.
    Doctor {
        /// The camera to try, as `run --camera` takes it (default: none).
        #[arg(long)]
        camera: Option<String>,
        #[arg(long, default_value = "models/demo")]
        bundle: PathBuf,
        /// Check the bundle's signature against these public keys, as `run --trust` would.
        #[arg(long, value_name = "FILE")]
        trust: Vec<PathBuf>,
        /// Also write the checks as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Profile latency per stage: dense vs pruned, thresholds and thread counts, same frames.
    Bench {
        #[arg(long, default_value = "models/demo")]
        bundle: PathBuf,
        #[arg(long, default_value_t = 100)]
        frames: usize,
        #[arg(long, default_value_t = 10)]
        warmup: usize,
        /// Pruning thresholds to compare; 0 is the dense pass (default: 0 and the bundle's).
        #[arg(long, value_delimiter = ',')]
        thresholds: Vec<f32>,
        /// Thread counts to compare; each shares every frame's stages among that many threads.
        #[arg(long, value_delimiter = ',', default_value = "1")]
        threads: Vec<usize>,
        /// The fewest tokens a gated block keeps (default: the bundle's).
        #[arg(long)]
        min_keep: Option<svit_runtime::MinKeep>,
        /// Precisions to compare (each must be in the bundle; `auto` = what `run` would pick).
        #[arg(long, value_delimiter = ',', default_value = "f32")]
        precision: Vec<String>,
        /// Engines to compare: tract, onnxruntime, auto. With onnxruntime the bench also runs
        /// the bundle's whole dense.onnx on it as one graph (mode `dense-graph`), the peer a
        /// user would otherwise pick.
        #[arg(long, value_delimiter = ',', default_value = "tract", value_parser = Engine::choose)]
        engine: Vec<Engine>,
        /// onnxruntime's own int8 version of dense.onnx (`scripts/ort_quantize.py`), also run
        /// as one graph (mode `dense-graph`, precision int8).
        #[arg(long, value_name = "FILE")]
        dense_int8: Option<PathBuf>,
        /// Write the report here as JSON (it is always printed as a table).
        #[arg(long)]
        json: Option<PathBuf>,
        /// Also send the report to a host (HOST:PORT), which records it and puts it in its
        /// report.
        #[arg(long)]
        connect: Option<String>,
        /// Pre-shared key file for --connect.
        #[arg(long)]
        key: Option<PathBuf>,
        /// Name shown on the host (default: hostname).
        #[arg(long)]
        name: Option<String>,
    },
}

fn main() -> Result<()> {
    svit_protocol::process::init_tracing(None);
    svit_runtime::tune_process();
    let cli = Cli::command();
    let run_cmd = cli.find_subcommand("run").context("the run subcommand")?;
    let args = config::expand(std::env::args_os().collect(), run_cmd)?;
    match Cli::parse_from(args).cmd {
        Cmd::Run {
            config: _,
            bundle,
            camera,
            connect,
            listen,
            serial,
            baud,
            mqtt,
            mqtt_prefix,
            frames,
            threshold,
            budget_ms,
            target_fps,
            budget_prefer,
            min_keep,
            score_threshold,
            fps,
            threads,
            name,
            precision,
            engine,
            trust,
            store,
            thumbnail_every,
            key,
            metrics,
        } => {
            let key = key.map(|k| svit_protocol::auth::read_key(&k)).transpose()?;
            let budget = budget_ms.or(target_fps.map(|f| 1000.0 / f));
            let sink = match (connect, listen, serial) {
                _ if mqtt.is_some() => Sink::Mqtt(mqtt::Target {
                    broker: svit_mqtt::Broker::parse(mqtt.as_deref().unwrap_or_default())?,
                    prefix: mqtt_prefix,
                }),
                (Some(addr), _, _) => {
                    if key.is_none() && !svit_protocol::secure::is_loopback(&addr) {
                        tracing::warn!(
                            "streaming to {addr} without --key: detections and thumbnails cross \
                             the network in the clear; give both sides a key file (--key)"
                        );
                    }
                    Sink::Tcp(link::Peer::Connect(addr))
                }
                (None, None, Some(path)) => Sink::Serial(serial::open(&path, baud)?),
                (None, Some(addr), _) => {
                    let l = std::net::TcpListener::bind(&addr)
                        .with_context(|| format!("listening on {addr}"))?;
                    let local = l.local_addr()?;
                    if key.is_none() && !local.ip().is_loopback() {
                        tracing::warn!(
                            "LISTENING ON {local} WITHOUT --key: anyone who can reach this \
                             address can read the camera's detections and change the pruning; \
                             give both sides a key file (--key)"
                        );
                    }
                    tracing::info!("waiting for a host on {local}");
                    Sink::Tcp(link::Peer::Listen(l))
                }
                (None, None, None) => Sink::Stdout,
            };
            let thumbs = (thumbnail_every > 0.0)
                .then(|| std::time::Duration::from_secs_f64(thumbnail_every));
            run(
                bundle,
                camera,
                sink,
                frames,
                threshold,
                min_keep,
                score_threshold,
                fps,
                threads,
                name,
                (precision, engine),
                key,
                thumbs,
                (budget, budget_prefer == BudgetPrefer::Dense),
                metrics,
                (store, trust),
            )
        }
        Cmd::Doctor {
            camera,
            bundle,
            trust,
            json,
        } => {
            let ok = doctor::run(doctor::Options {
                camera,
                bundle,
                trust,
                json,
            })?;
            if !ok {
                std::process::exit(1);
            }
            Ok(())
        }
        Cmd::Bench {
            bundle,
            frames,
            warmup,
            thresholds,
            threads,
            precision,
            engine,
            dense_int8,
            min_keep,
            json,
            connect,
            key,
            name,
        } => {
            let key = key.map(|k| svit_protocol::auth::read_key(&k)).transpose()?;
            let bar = indicatif::ProgressBar::new_spinner();
            if engine.contains(&Engine::OnnxRuntime) && dense_int8.is_none() {
                tracing::info!(
                    "comparing with onnxruntime's f32 dense graph only; for its int8 one too: \
                     python3 scripts/ort_quantize.py dense BUNDLE dense_int8.onnx, then \
                     --dense-int8 dense_int8.onnx"
                );
            }
            let mut dense_graphs = vec![("f32".to_string(), bundle.join(DENSE_ONNX))];
            dense_graphs.extend(dense_int8.map(|p| ("int8".to_string(), p)));
            let sweep = bench::Sweep {
                engines: &engine,
                dense_graphs: &dense_graphs,
                precisions: &precision,
                frames,
                warmup,
                thresholds: &thresholds,
                threads: &threads,
                min_keep,
            };
            let report = bench::run(&bundle, &sweep, &|m| bar.set_message(m.to_string()))?;
            bar.finish_and_clear();
            bench::print(&report);
            if let Some(j) = json {
                std::fs::write(&j, serde_json::to_vec_pretty(&report)?)
                    .with_context(|| format!("writing {}", j.display()))?;
            }
            if let Some(addr) = connect {
                // Only the manifest: the graphs were loaded (and timed) by the bench itself.
                let manifest = Manifest::load_verified(&bundle)
                    .with_context(|| format!("reading bundle {}", bundle.display()))?;
                let q = Arc::new(Queue::new(1));
                q.push(svit_protocol::EdgeMsg::Bench(report));
                q.close();
                let end = link::Endpoint {
                    out: q,
                    hello: edge_hello(update::model_info(&manifest, None), name),
                    key,
                    ctl: Arc::new(Control::new(0.0)),
                    stats: Arc::new(Stats::new()),
                };
                let lost = link::tcp_loop(link::Peer::Connect(addr.clone()), end)?;
                anyhow::ensure!(lost == 0, "the bench report was not delivered to {addr}");
                tracing::info!("bench report sent to {addr}");
            }
            Ok(())
        }
    }
}

/// Where `run` sends its frames.
enum Sink {
    /// JSON lines on stdout.
    Stdout,
    Tcp(link::Peer),
    Serial(Box<dyn serialport::SerialPort>),
    Mqtt(mqtt::Target),
}

#[allow(clippy::too_many_arguments)]
fn run(
    bundle: PathBuf,
    camera: String,
    sink: Sink,
    frames: Option<u64>,
    threshold: Option<f32>,
    min_keep: Option<svit_runtime::MinKeep>,
    score_threshold: Option<f32>,
    fps: Option<f32>,
    threads: Option<usize>,
    name: Option<String>,
    (precision, engine): (String, Engine),
    key: Option<Vec<u8>>,
    thumbs: Option<std::time::Duration>,
    (budget, prefer_dense): (Option<f32>, bool),
    metrics: Option<std::net::SocketAddr>,
    (store, trust): (Option<PathBuf>, Vec<PathBuf>),
) -> Result<()> {
    let threads = threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
    });
    tracing::info!(threads, "inference threads");
    let store = store.map(|d| update::store::Store::open(&d)).transpose()?;
    let loading = update::Loading {
        trust,
        precision,
        engine,
        threads,
    };
    // Absolute, so the store's record of it (the previous bundle after a push) holds wherever
    // the board is started from next.
    let bundle = std::fs::canonicalize(&bundle).unwrap_or(bundle);
    let (bundle, model, signed_by) = load_first(&bundle, store.as_ref(), &loading)?;
    let model = Arc::new(model);
    let stats = Arc::new(Stats::new());
    let hello = edge_hello(update::model_info(&model.manifest, signed_by), name);
    let exporter = metrics
        .map(|addr| {
            let tokens = model.config().tokens() as u16;
            metrics::serve(
                addr,
                &hello.device,
                &model.manifest.name,
                tokens,
                stats.clone(),
            )
        })
        .transpose()?;
    let infer = pipeline::InferConfig {
        threads,
        threshold,
        min_keep,
        score_threshold,
        max_frames: frames,
        thumbnail_every: thumbs,
        prefer_dense,
        on_frame: exporter
            .map(|e| Box::new(move |f: &svit_protocol::Frame| e.frame(f)) as pipeline::FrameHook),
    };
    let cfg = model.config().clone();
    let src = camera::open(&camera, cfg.image_size, fps)
        .with_context(|| format!("opening camera {camera}"))?;
    tracing::info!(
        "camera: {}; bundle {} ({} on {}, {} tokens, {} blocks)",
        src.describe(),
        model.manifest.name,
        model.precision,
        model.engine,
        cfg.tokens(),
        cfg.depth
    );
    let ctl = Arc::new(Control::new(
        threshold.unwrap_or(model.manifest.defaults.threshold),
    ));
    ctl.set_model_info(hello.model.clone());
    if let Some(b) = budget {
        tracing::info!("latency budget {b:.1} ms (p95 of the total)");
        ctl.apply(&svit_protocol::HostMsg::SetBudget(Some(b)));
    }
    // One decoded frame waiting is enough: a newer one replaces it.
    let decoded = Arc::new(Queue::counting_into(1, stats.dropped.clone()));
    // Two buffers circulate: one being filled, one being run; the queue bounds any surplus.
    let spares = Arc::new(Queue::new(2));
    let outgoing = Arc::new(Queue::counting_into(32, stats.dropped.clone()));
    if !matches!(sink, Sink::Stdout) {
        // Warnings reach the host's log and recording too.
        let out = outgoing.clone();
        svit_protocol::process::forward_warnings(move |level, text| {
            out.push(svit_protocol::EdgeMsg::Log(svit_protocol::LogLine {
                level,
                text,
            }));
        });
    }

    svit_protocol::process::stop_on_signals(ctl.stop.clone());
    let slot = Arc::new(update::Slot::new(model.clone()));
    update::spawn(
        store,
        loading,
        bundle,
        slot.clone(),
        ctl.clone(),
        outgoing.clone(),
    )?;
    let cap = {
        let (m, q, sp, c, s) = (
            slot.clone(),
            decoded.clone(),
            spares.clone(),
            ctl.clone(),
            stats.clone(),
        );
        std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || pipeline::capture_loop(m, src, q, sp, c, s))?
    };
    let inf = {
        let (m, i, sp, o, c, s) = (
            slot.clone(),
            decoded.clone(),
            spares.clone(),
            outgoing.clone(),
            ctl.clone(),
            stats.clone(),
        );
        std::thread::Builder::new()
            .name("infer".into())
            .spawn(move || pipeline::infer_loop(m, i, sp, o, c, s, infer))?
    };
    let end = link::Endpoint {
        out: outgoing.clone(),
        hello,
        key,
        ctl: ctl.clone(),
        stats: stats.clone(),
    };
    let sent = match sink {
        Sink::Stdout => link::stdout_loop(outgoing.clone(), model.manifest.labels.clone()),
        Sink::Tcp(peer) => link::tcp_loop(peer, end).map(|_| ()),
        Sink::Mqtt(target) => mqtt::mqtt_loop(target, end).map(|_| ()),
        Sink::Serial(port) => serial::serial_loop(port, end).map(|_| ()),
    };
    ctl.stop.store(true, Ordering::Relaxed);
    decoded.close();
    let _ = cap.join();
    inf.join()
        .map_err(|_| anyhow::anyhow!("inference thread panicked"))??;
    sent?;
    if let Some(why) = stats.fatal.lock().unwrap_or_else(|p| p.into_inner()).take() {
        anyhow::bail!("camera lost: {why}");
    }
    tracing::info!(
        frames = stats.frames_done.load(Ordering::Relaxed),
        camera_errors = stats.camera_errors.load(Ordering::Relaxed),
        inference_errors = stats.inference_errors.load(Ordering::Relaxed),
        dropped = stats.dropped.load(Ordering::Relaxed),
        dropped_before_inference = decoded.dropped.load(Ordering::Relaxed),
        dropped_before_send = outgoing.dropped.load(Ordering::Relaxed),
        "stopped"
    );
    Ok(())
}

/// The bundle to start with: the store's current one (pushed), else its previous one, else
/// `--bundle`; each checked against `--trust` and loaded, the first that works wins.
fn load_first(
    bundle: &std::path::Path,
    store: Option<&update::store::Store>,
    l: &update::Loading,
) -> Result<(PathBuf, Model, Option<String>)> {
    let pushed = store.into_iter().flat_map(|s| [s.current(), s.previous()]);
    let mut tried = pushed.flatten().map(|p| (p, true)).collect::<Vec<_>>();
    tried.push((bundle, false));
    let mut last = None;
    for (path, from_store) in tried {
        let res = update::check_signature(path, &l.trust).and_then(|signed_by| {
            let m = Model::load_with(path, &l.precision, l.engine)
                .with_context(|| format!("loading bundle {} into {}", path.display(), l.engine))?;
            Ok((path.to_path_buf(), m, signed_by))
        });
        match res {
            Ok(found) => {
                if from_store {
                    tracing::info!(
                        "running the pushed bundle {} from the store",
                        path.display()
                    );
                }
                return Ok(found);
            }
            Err(e) if from_store => {
                tracing::error!("pushed bundle {} not run: {e:#}", path.display())
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no bundle to run")))
}

/// This board's greeting: who it is and what model it runs.
fn edge_hello(model: svit_protocol::ModelInfo, name: Option<String>) -> svit_protocol::Hello {
    svit_protocol::Hello::edge(name.unwrap_or_else(hostname), model)
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "edge".into())
}
