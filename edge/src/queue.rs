//! The bounded hand-off between the board's threads: the newest item wins, and every item
//! pushed out is counted.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// A bounded hand-off that drops the oldest item when full.
pub struct Queue<T> {
    inner: Mutex<(VecDeque<T>, bool)>,
    ready: Condvar,
    cap: usize,
    /// Items pushed out of this queue.
    pub dropped: AtomicU64,
    /// The same drops, added to a count shared with other queues (`Stats::dropped`).
    shared: Arc<AtomicU64>,
}

impl<T> Queue<T> {
    pub fn new(cap: usize) -> Self {
        Self::counting_into(cap, Arc::default())
    }

    /// A queue whose drops also add to `shared`.
    pub fn counting_into(cap: usize, shared: Arc<AtomicU64>) -> Self {
        Queue {
            inner: Mutex::new((VecDeque::with_capacity(cap), false)),
            ready: Condvar::new(),
            cap: cap.max(1),
            dropped: AtomicU64::new(0),
            shared,
        }
    }
    /// Returns false if an older item had to be dropped to make room.
    pub fn push(&self, item: T) -> bool {
        let mut g = self.inner.lock().expect("queue lock");
        let mut kept_all = true;
        if g.0.len() >= self.cap {
            g.0.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
            self.shared.fetch_add(1, Ordering::Relaxed);
            kept_all = false;
        }
        g.0.push_back(item);
        self.ready.notify_one();
        kept_all
    }
    /// Blocks for the next item; `None` once closed and drained.
    pub fn pop(&self) -> Option<T> {
        let mut g = self.inner.lock().expect("queue lock");
        loop {
            if let Some(x) = g.0.pop_front() {
                return Some(x);
            }
            if g.1 {
                return None;
            }
            g = self.ready.wait(g).expect("queue lock");
        }
    }
    pub fn pop_timeout(&self, d: Duration) -> Option<T> {
        let g = self.inner.lock().expect("queue lock");
        let (mut g, _) = self
            .ready
            .wait_timeout_while(g, d, |g| g.0.is_empty() && !g.1)
            .expect("queue lock");
        g.0.pop_front()
    }
    pub fn close(&self) {
        self.inner.lock().expect("queue lock").1 = true;
        self.ready.notify_all();
    }
    pub fn is_closed(&self) -> bool {
        self.inner.lock().expect("queue lock").1
    }
}
