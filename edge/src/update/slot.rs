//! The model frames run with, and its replacement between two frames.
//!
//! The updater loads and checks a new bundle off the frame path, then offers it here; the
//! inference thread takes it before its next frame and keeps the old model until the new one
//! has run [`TRIAL_FRAMES`] frames, going back to it if one fails. The capture thread prepares
//! each frame with whichever model is current, and a frame prepared with the old one is
//! prepared again.

use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};

use svit_runtime::{FrameState, Model};

use svit_protocol::Push;

/// What the updater thread reacts to: the host's push messages (`Control::apply` routes
/// them) and the inference thread's word on a switch.
pub enum Event {
    Push(Push),
    Outcome(Outcome),
}

/// How a switch went, from the inference thread.
pub enum Outcome {
    /// The new model ran its trial frames, from frame `seq` on.
    Running { seq: u64 },
    /// It failed; with `seq`, the board went back to the previous model from that frame on.
    Failed { reason: String, seq: Option<u64> },
}

/// Frames a new bundle must run before the one it replaced is let go.
pub const TRIAL_FRAMES: u32 = 3;

/// A checked model waiting to take over.
pub struct Switch {
    pub model: Arc<Model>,
    /// Where the inference thread says how it went.
    pub reply: SyncSender<Event>,
}

pub struct Slot {
    current: Mutex<Arc<Model>>,
    incoming: Mutex<Option<Switch>>,
}

impl Slot {
    pub fn new(model: Arc<Model>) -> Slot {
        Slot {
            current: Mutex::new(model),
            incoming: Mutex::new(None),
        }
    }

    /// The model frames are prepared with now.
    pub fn model(&self) -> Arc<Model> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set(&self, m: Arc<Model>) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = m;
    }

    pub fn offer(&self, s: Switch) {
        *self.incoming.lock().unwrap_or_else(|p| p.into_inner()) = Some(s);
    }

    fn take(&self) -> Option<Switch> {
        self.incoming
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

/// The inference thread's model and its state, and a new model on trial.
pub struct Runner {
    pub model: Arc<Model>,
    pub state: FrameState,
    trial: Option<Trial>,
}

struct Trial {
    previous: (Arc<Model>, FrameState),
    left: u32,
    first_seq: u64,
    reply: SyncSender<Event>,
}

impl Runner {
    pub fn new(model: Arc<Model>, threads: usize) -> Result<Runner, svit_runtime::RunError> {
        let state = model.new_state(threads)?;
        Ok(Runner {
            model,
            state,
            trial: None,
        })
    }

    /// Before frame `seq`: takes a model waiting in `slot`, if any. True if the model changed.
    pub fn take_switch(&mut self, slot: &Slot, threads: usize, seq: u64) -> bool {
        let Some(sw) = slot.take() else {
            return false;
        };
        let state = match sw.model.new_state(threads) {
            Ok(s) => s,
            Err(e) => {
                let _ = sw.reply.try_send(Event::Outcome(Outcome::Failed {
                    reason: format!("no state for its first frame: {e}"),
                    seq: None,
                }));
                return false;
            }
        };
        let previous = (
            std::mem::replace(&mut self.model, sw.model),
            std::mem::replace(&mut self.state, state),
        );
        slot.set(self.model.clone());
        self.trial = Some(Trial {
            previous,
            left: TRIAL_FRAMES,
            first_seq: seq,
            reply: sw.reply,
        });
        true
    }

    /// After a frame that ran: the trial, if any, is one frame nearer to its end.
    pub fn ran(&mut self) {
        if let Some(t) = self.trial.as_mut() {
            t.left -= 1;
            if t.left == 0 {
                let _ = t
                    .reply
                    .try_send(Event::Outcome(Outcome::Running { seq: t.first_seq }));
                self.trial = None;
            }
        }
    }

    /// After a frame that failed: a model on trial is dropped for the previous one (true then).
    pub fn failed(&mut self, why: &str, slot: &Slot, seq: u64) -> bool {
        let Some(t) = self.trial.take() else {
            return false;
        };
        (self.model, self.state) = t.previous;
        slot.set(self.model.clone());
        let _ = t.reply.try_send(Event::Outcome(Outcome::Failed {
            reason: why.to_string(),
            seq: Some(seq + 1),
        }));
        true
    }
}
