//! What the web server's handlers share with the session loop's `Web` consumer.

use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard};

use svit_metrics::Metrics;
use svit_protocol::HostMsg;
use tokio::sync::broadcast;

/// One update offered to websocket clients, serialised once for all of them.
pub struct Pushed {
    pub board: String,
    /// It brought a new thumbnail (always sent, whatever the client's rate).
    pub thumbnail: bool,
    pub json: String,
}

/// What the server's handlers share with the session loop.
pub struct Shared {
    pub state: Mutex<crate::view::State>,
    pub metrics: Mutex<Metrics>,
    pub updates: broadcast::Sender<Arc<Pushed>>,
    pub controls: Mutex<Sender<(u32, HostMsg)>>,
    pub token: Option<String>,
    pub loopback: bool,
    pub ws_rate: f64,
    pub recording: Option<PathBuf>,
    /// Bundle pushes and rollbacks, carried out by the session loop.
    pub pushes: Mutex<super::push::Pushes>,
}

impl Shared {
    pub fn state(&self) -> MutexGuard<'_, crate::view::State> {
        // A handler that panicked while holding the lock left consistent-enough figures.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub fn pushes(&self) -> MutexGuard<'_, super::push::Pushes> {
        self.pushes.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub fn metrics(&self) -> MutexGuard<'_, Metrics> {
        self.metrics.lock().unwrap_or_else(|e| e.into_inner())
    }
}
