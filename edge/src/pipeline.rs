//! The frame loop on three threads: capture + decode + preprocess, inference, sending. Hand-offs are
//! bounded and the newest frame wins, so a slow link or a slow model never makes the camera
//! wait, and every frame dropped on the way is counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use svit_protocol as proto;
use svit_runtime::budget::Budget;
use svit_runtime::{DecodeOptions, FrameOutput, MinKeep, Model, Prepared, Pruning, RunOptions};

use crate::camera::{now_us, FrameSource, SourceError};
use crate::codec::{decode_rgb, encode_jpeg};
use crate::control::Control;
use crate::queue::Queue;
use crate::update::slot::{Runner, Slot};

/// A frame's buffers on their way back from inference to capture (the model input, 786 KB at
/// S = 256, and the decoded RGB), so the next frame fills used ones instead of allocating.
#[derive(Default)]
pub struct Spare {
    input: Vec<f32>,
    rgb: Vec<u8>,
}
pub type Spares = Queue<Spare>;

pub struct Decoded {
    /// The model `input` was prepared for.
    model: Arc<Model>,
    /// The frame as captured (thumbnails are made from it).
    rgb: Vec<u8>,
    width: usize,
    height: usize,
    /// The model's input, made on the capture thread.
    input: Prepared,
    capture_us: u64,
    capture: Duration,
    decode: Duration,
}

/// The board's counters, as `Health` reports them.
pub struct Stats {
    /// Frames the board took but never sent: a decoded frame replaced by a newer one before
    /// inference, or a message pushed out of the full outbox while the link was slow or down
    /// (thumbnails and log lines count too there; frames dominate). Both queues add to it.
    pub dropped: Arc<AtomicU64>,
    /// Captures that gave no frame.
    pub camera_errors: AtomicU64,
    /// Frames the model failed on.
    pub inference_errors: AtomicU64,
    /// Why the camera is gone for good, once it is: the run then ends with this error.
    pub fatal: Mutex<Option<String>>,
    pub frames_done: AtomicU64,
    /// When the inference thread expects to want its next frame (µs since the Unix epoch);
    /// `u64::MAX` until it is ready for the first one.
    pub infer_free_at_us: AtomicU64,
}

impl Stats {
    pub fn new() -> Self {
        Stats {
            dropped: Arc::default(),
            camera_errors: AtomicU64::new(0),
            inference_errors: AtomicU64::new(0),
            fatal: Mutex::new(None),
            frames_done: AtomicU64::new(0),
            infer_free_at_us: AtomicU64::new(u64::MAX),
        }
    }
}

/// Exponential moving average of a duration in µs, shared between threads as bits.
fn ewma(old_us: f64, new: Duration) -> f64 {
    let new_us = new.as_secs_f64() * 1e6;
    if old_us == 0.0 {
        new_us
    } else {
        0.8 * old_us + 0.2 * new_us
    }
}

/// Capture thread body: capture, decode, hand over; counts camera errors and moves on.
pub fn capture_loop(
    slot: Arc<Slot>,
    mut src: Box<dyn FrameSource>,
    out: Arc<Queue<Decoded>>,
    spares: Arc<Spares>,
    ctl: Arc<Control>,
    stats: Arc<Stats>,
) {
    let mut consecutive = 0u32;
    let mut grab_us = 0.0f64; // capture + decode, smoothed
    let mut taken_for = u64::MAX; // the inference slot the last frame was captured for
    while !ctl.stop.load(Ordering::Relaxed) && !out.is_closed() {
        if ctl.paused.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        // Just-in-time capture: start so the frame is decoded when inference wants it, rather
        // than as soon as possible (a frame that waits for the model is a stale frame).
        let free_at = stats.infer_free_at_us.load(Ordering::Relaxed);
        if free_at == u64::MAX || free_at == taken_for {
            // The model is still being prepared, or has not taken the last frame yet: a frame
            // taken now would only replace it.
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        taken_for = free_at;
        let free_at = free_at as f64;
        let wait_us = free_at - grab_us - now_us() as f64;
        if wait_us > 0.0 {
            std::thread::sleep(Duration::from_micros(wait_us.min(1e6) as u64));
        }
        let started = Instant::now();
        let model = slot.model();
        let res = src.capture().and_then(|c| {
            let t = Instant::now();
            let spare = spares.pop_timeout(Duration::ZERO).unwrap_or_default();
            let (rgb, width, height) = decode_rgb(c.pixels, spare.rgb)?;
            let decode = t.elapsed();
            let input = model
                .prepare(&rgb, width, height, spare.input)
                .map_err(|e| SourceError::Corrupt(e.to_string()))?;
            Ok(Decoded {
                model: model.clone(),
                rgb,
                width,
                height,
                input,
                capture_us: c.capture_us,
                capture: c.capture_time,
                decode,
            })
        });
        match res {
            Ok(d) => {
                consecutive = 0;
                grab_us = ewma(grab_us, started.elapsed());
                out.push(d);
            }
            Err(SourceError::Gone(why)) => {
                // For good: end the run with an error, so a service manager restarts it.
                tracing::error!("camera lost: {why}");
                *stats.fatal.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
                ctl.stop.store(true, Ordering::Relaxed);
                break;
            }
            Err(e) => {
                stats.camera_errors.fetch_add(1, Ordering::Relaxed);
                taken_for = u64::MAX; // nothing was delivered: capture again for the same slot
                consecutive += 1;
                tracing::warn!("frame skipped: {e}");
                // Back off on a camera that keeps failing, without giving up on it.
                std::thread::sleep(Duration::from_millis((10 * consecutive as u64).min(1000)));
            }
        }
    }
    out.close();
}

/// What the inference thread runs with; the host's control changes threshold and keep ratio
/// on top (`Control`), never the model's manifest.
/// Called with each frame as it is queued.
pub type FrameHook = Box<dyn Fn(&proto::Frame) + Send>;

pub struct InferConfig {
    pub threads: usize,
    /// What the command line set over the bundle's defaults (`--threshold`, `--min-keep`,
    /// `--score-threshold`); the rest follows the bundle running, pushed ones too.
    pub threshold: Option<f32>,
    pub min_keep: Option<MinKeep>,
    pub score_threshold: Option<f32>,
    pub max_frames: Option<u64>,
    pub thumbnail_every: Option<Duration>,
    /// With a budget (`Control::budget_ms`): steer below the bundle's threshold too, towards
    /// dense, when time allows (`--budget-prefer dense`).
    pub prefer_dense: bool,
    /// Sees each frame as it is queued (`--metrics` folds it into the board's figures).
    pub on_frame: Option<FrameHook>,
}

/// Inference thread body: runs the model on the newest decoded frame, converts to wire frames.
impl InferConfig {
    /// The floor under the threshold and the decoding, for this model.
    fn tuned(&self, model: &Model) -> (MinKeep, DecodeOptions) {
        let min_keep = self.min_keep.map_or(model.manifest.defaults.min_keep, |k| {
            k.clamp(1, model.config().tokens())
        });
        let mut decode = model.default_options().decode;
        if let Some(s) = self.score_threshold {
            decode.score_threshold = s;
        }
        (min_keep, decode)
    }
}

pub fn infer_loop(
    slot: Arc<Slot>,
    input: Arc<Queue<Decoded>>,
    spares: Arc<Spares>,
    out: Arc<Queue<proto::EdgeMsg>>,
    ctl: Arc<Control>,
    stats: Arc<Stats>,
    cfg: InferConfig,
) -> anyhow::Result<()> {
    let mut run = Runner::new(slot.model(), cfg.threads)?;
    let (mut min_keep, mut decode) = cfg.tuned(&run.model);
    let mut budget: Option<Budget> = None;
    let mut last_thumb: Option<Instant> = None;
    let mut seq = 0u64;
    let mut infer_us = 0.0f64; // per-frame work of this thread, smoothed
    stats.infer_free_at_us.store(now_us(), Ordering::Relaxed);
    while let Some(mut d) = input.pop() {
        let started = Instant::now();
        let age_ms = now_us().saturating_sub(d.capture_us) as f32 / 1000.0;
        if run.take_switch(&slot, cfg.threads, seq) {
            (min_keep, decode) = cfg.tuned(&run.model);
            if cfg.threshold.is_none() {
                let t = run.model.manifest.defaults.threshold;
                ctl.threshold_bits.store(t.to_bits(), Ordering::Relaxed);
            }
        }
        if !Arc::ptr_eq(&d.model, &run.model) {
            // Prepared for the model before a switch.
            match run.model.prepare(
                &d.rgb,
                d.width,
                d.height,
                std::mem::take(&mut d.input).into_buffer(),
            ) {
                Ok(p) => d.input = p,
                Err(e) => {
                    stats.inference_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("frame not prepared for the new model, skipped: {e}");
                    continue;
                }
            }
        }
        stats
            .infer_free_at_us
            .store(now_us() + infer_us as u64, Ordering::Relaxed);
        let ratio = f32::from_bits(ctl.ratio_bits.load(Ordering::Relaxed));
        // With a budget the controller picks the threshold; the host's is the least pruning.
        let low = if cfg.prefer_dense {
            0.0
        } else {
            ctl.threshold()
        };
        match (ctl.budget_ms(), budget.as_mut()) {
            (None, _) => budget = None,
            (Some(ms), Some(b)) if b.budget_ms == ms => b.set_low(low),
            (Some(ms), _) => budget = Some(Budget::new(ms, low)),
        }
        let threshold = budget.as_ref().map_or(ctl.threshold(), Budget::threshold);
        // Threshold 0 runs dense (gates skipped), as `bench` and `eval` measure it.
        let pruning = if ratio > 0.0 {
            Pruning::Ratio(ratio)
        } else {
            Pruning::at(threshold, min_keep)
        };
        let opts = RunOptions { pruning, decode };
        let res = run.model.run_prepared(&mut run.state, &mut d.input, &opts);
        let o = match res {
            Ok(o) => o,
            Err(e) => {
                stats.inference_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("inference failed, frame skipped: {e}");
                if run.failed(&e.to_string(), &slot, seq) {
                    (min_keep, decode) = cfg.tuned(&run.model);
                }
                continue;
            }
        };
        run.ran();
        let dropped = stats.dropped.load(Ordering::Relaxed);
        let t = Instant::now();
        let mut frame = to_wire(&o, seq, &d, threshold, dropped);
        frame.age_ms = age_ms;
        if let Some(b) = budget.as_mut() {
            frame.budget_ms = Some(b.budget_ms);
            if let Some(warning) = b.observe(frame.times.total_us() as f32 / 1000.0) {
                tracing::warn!("{warning}");
            }
        }
        frame.times.encode = t.elapsed().as_micros() as u32;
        if let Some(on_frame) = &cfg.on_frame {
            on_frame(&frame);
        }
        out.push(proto::EdgeMsg::Frame(frame));
        let snapshot = ctl.snapshot.swap(false, Ordering::Relaxed);
        let due = cfg
            .thumbnail_every
            .is_some_and(|every| last_thumb.is_none_or(|t| t.elapsed() >= every));
        if snapshot || due {
            last_thumb = Some(Instant::now());
            match encode_jpeg(&d.rgb, d.width, d.height, 75) {
                Ok(jpeg) => {
                    out.push(proto::EdgeMsg::Thumbnail(proto::Thumbnail { seq, jpeg }));
                }
                Err(e) => tracing::warn!("thumbnail not encoded: {e}"),
            }
        }
        spares.push(Spare {
            input: d.input.into_buffer(),
            rgb: d.rgb,
        });
        seq += 1;
        stats.frames_done.store(seq, Ordering::Relaxed);
        infer_us = ewma(infer_us, started.elapsed());
        if cfg.max_frames.is_some_and(|n| seq >= n) {
            ctl.stop.store(true, Ordering::Relaxed);
            input.close();
            break;
        }
    }
    out.close();
    Ok(())
}

fn us(ms: f64) -> u32 {
    (ms * 1000.0).round().clamp(0.0, u32::MAX as f64) as u32
}

/// The runtime's stage timings (ms) as the wire's (µs); capture, decode and encode are the
/// edge's own and left 0.
pub fn stage_times(t: &svit_runtime::Timings) -> proto::StageTimes {
    proto::StageTimes {
        preprocess: us(t.preprocess),
        embed: us(t.embed),
        gates: us(t.gates),
        gather_scatter: us(t.gather_scatter),
        blocks: t.blocks.iter().map(|&b| us(b)).collect(),
        head: us(t.head),
        postprocess: us(t.postprocess),
        ..Default::default()
    }
}

/// Runtime output -> wire frame (the boundary where runtime types become protocol types).
pub fn to_wire(
    o: &FrameOutput,
    seq: u64,
    d: &Decoded,
    threshold: f32,
    dropped_total: u64,
) -> proto::Frame {
    proto::Frame {
        seq,
        capture_us: d.capture_us,
        age_ms: 0.0,
        width: d.width as u16,
        height: d.height as u16,
        times: proto::StageTimes {
            capture: d.capture.as_micros() as u32,
            decode: d.decode.as_micros() as u32,
            ..stage_times(&o.timings)
        },
        detections: o
            .detections
            .iter()
            .map(|det| proto::Detection {
                class: det.class as u16,
                score: det.score,
                bbox: det.bbox,
                mask: proto::CompactMask {
                    x0: det.mask.x0 as u16,
                    y0: det.mask.y0 as u16,
                    w: det.mask.w as u16,
                    h: det.mask.h as u16,
                    cell: det.mask.cell,
                    bits: proto::pack_bits(det.mask.probs.iter().map(|&p| p >= 128)),
                },
            })
            .collect(),
        kept: o.kept.iter().map(|&k| k as u16).collect(),
        // One entry per block: ungated blocks (and every block of a dense pass) get none.
        keep_maps: std::iter::repeat_n(Vec::new(), o.kept.len().saturating_sub(o.keep_maps.len()))
            .chain(
                o.keep_maps
                    .iter()
                    .map(|m| proto::pack_bits(m.iter().copied())),
            )
            .collect(),
        gmacs: o.gmacs as f32,
        dropped_total,
        threshold,
        budget_ms: None,
    }
}
