//! What the host may change on a running board, shared by the links (which apply control
//! messages) and the frame loop (which reads them every frame).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use svit_protocol as proto;

/// Takes one push message; false if it had to be dropped.
pub type PushSink = Box<dyn Fn(proto::Push) -> bool + Send + Sync>;

/// Settings the host may change while running.
pub struct Control {
    pub threshold_bits: AtomicU32,
    /// f32 bits of the fixed keep ratio; 0 = use the threshold.
    pub ratio_bits: AtomicU32,
    /// f32 bits of the latency budget, ms; 0 = none.
    pub budget_bits: AtomicU32,
    pub paused: AtomicBool,
    pub snapshot: AtomicBool,
    /// Set by a signal or the frame limit: the loops drain what is queued and exit.
    pub stop: Arc<AtomicBool>,
    /// Hands the host's bundle pushes to the updater thread (`update::spawn` sets it); false
    /// when the updater is busy (the host sends again what the board does not answer).
    pub pushes: OnceLock<PushSink>,
    /// The bundle running, as hellos and push answers name it (set by `run`, then by each switch).
    model_info: Mutex<Option<proto::ModelInfo>>,
}

impl Control {
    pub fn new(threshold: f32) -> Self {
        Control {
            threshold_bits: AtomicU32::new(threshold.to_bits()),
            ratio_bits: AtomicU32::new(0),
            budget_bits: AtomicU32::new(0),
            paused: AtomicBool::new(false),
            snapshot: AtomicBool::new(false),
            stop: Arc::new(AtomicBool::new(false)),
            pushes: OnceLock::new(),
            model_info: Mutex::new(None),
        }
    }
    pub fn model_info(&self) -> Option<proto::ModelInfo> {
        self.model_info
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    pub fn set_model_info(&self, info: proto::ModelInfo) {
        *self.model_info.lock().unwrap_or_else(|p| p.into_inner()) = Some(info);
    }
    pub fn threshold(&self) -> f32 {
        f32::from_bits(self.threshold_bits.load(Ordering::Relaxed))
    }
    pub fn budget_ms(&self) -> Option<f32> {
        Some(f32::from_bits(self.budget_bits.load(Ordering::Relaxed))).filter(|b| *b > 0.0)
    }
    pub fn apply(&self, msg: &proto::HostMsg) {
        match msg {
            proto::HostMsg::SetThreshold(t) if t.is_finite() => self
                .threshold_bits
                .store(t.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed),
            proto::HostMsg::SetKeepRatio(r) => {
                let v = r
                    .filter(|r| r.is_finite() && *r > 0.0)
                    .map(|r| r.min(1.0))
                    .unwrap_or(0.0);
                self.ratio_bits.store(v.to_bits(), Ordering::Relaxed)
            }
            proto::HostMsg::SetBudget(b) => {
                let v = b.filter(|b| b.is_finite() && *b > 0.0).unwrap_or(0.0);
                self.budget_bits.store(v.to_bits(), Ordering::Relaxed)
            }
            proto::HostMsg::Pause => self.paused.store(true, Ordering::Relaxed),
            proto::HostMsg::Resume => self.paused.store(false, Ordering::Relaxed),
            proto::HostMsg::Snapshot => self.snapshot.store(true, Ordering::Relaxed),
            proto::HostMsg::Push(p) => match self.pushes.get().map(|take| take(p.clone())) {
                None => tracing::warn!("a bundle push ignored: this program takes none"),
                // The host resends what the board did not answer.
                Some(false) => tracing::debug!("push message dropped: the updater is busy"),
                Some(true) => {}
            },
            _ => {}
        }
    }
}
