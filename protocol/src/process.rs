//! How a program of the pair starts and stops: its log set-up and its stop flag. Feature
//! `process`; shared by `svit-edge`, `svit-host` and `svit-export`.
//!
//! The stop flag is what the session invariant hangs on: on SIGINT or SIGTERM each side drains
//! what it has queued (the edge its outbox, the host its sockets and recording) before exiting.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use crate::Level;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`), coloured on a terminal. While
/// `muted` is set (a full-screen monitor holds the terminal) log lines are discarded. Warnings
/// and errors also go to the function given to [`forward_warnings`], once there is one.
pub fn init_tracing(muted: Option<&'static AtomicBool>) {
    use tracing_subscriber::prelude::*;
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(move || -> Box<dyn std::io::Write> {
            if muted.is_some_and(|m| m.load(Ordering::Relaxed)) {
                Box::new(std::io::sink())
            } else {
                Box::new(std::io::stderr())
            }
        })
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with(fmt)
        .with(Forward)
        .init();
}

type Sink = Box<dyn Fn(Level, String) + Send + Sync>;
static FORWARD: OnceLock<Sink> = OnceLock::new();

/// Sends every later warning and error (its message and fields as one line) to `sink`: the
/// edge queues them as `Log` messages for its host. Once per process.
pub fn forward_warnings(sink: impl Fn(Level, String) + Send + Sync + 'static) {
    let _ = FORWARD.set(Box::new(sink));
}

struct Forward;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Forward {
    fn on_event(&self, ev: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let Some(sink) = FORWARD.get() else {
            return;
        };
        let level = match *ev.metadata().level() {
            tracing::Level::ERROR => Level::Error,
            tracing::Level::WARN => Level::Warn,
            _ => return,
        };
        let mut line = Line(String::new());
        ev.record(&mut line);
        sink(level, line.0);
    }
}

struct Line(String);

impl tracing::field::Visit for Line {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        let _ = if field.name() == "message" {
            write!(self.0, "{value:?}")
        } else {
            write!(self.0, "{}={value:?}", field.name())
        };
    }
}

/// Sets `stop` on SIGINT or SIGTERM. Called once per process; a later call's flag is ignored.
pub fn stop_on_signals(stop: Arc<AtomicBool>) {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    let _ = FLAG.set(stop);
    extern "C" fn on_signal(_: libc::c_int) {
        // Only an atomic store: async-signal-safe.
        if let Some(f) = FLAG.get() {
            f.store(true, Ordering::Relaxed);
        }
    }
    // SAFETY: the handler only reads a OnceLock already set and stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}
