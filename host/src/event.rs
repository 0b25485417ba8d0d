//! What the host's session loop reacts to, one stream of events from every source: board links
//! (`link`), the terminal's keys (`live`) and a clock. Outputs (recording, monitor, JSON lines,
//! summaries) consume it (`Consumer`).

use std::sync::mpsc::SyncSender;

use anyhow::Result;
use svit_protocol::HostMsg;

use crate::record::Record;

// Board events are nearly every event: boxing them would add an allocation per message to
// make the rare key and tick smaller.
#[allow(clippy::large_enum_variant)]
pub enum Event {
    Board(BoardEvent),
    /// A key pressed on the monitor's terminal.
    Key(char),
    /// Ten times a second: redraw, periodic summaries, the run's duration.
    Tick,
    /// A stop signal (SIGINT, SIGTERM).
    Stop,
}

pub enum BoardEvent {
    /// A board passed the handshake. `rec` holds its hello (recorded like any message);
    /// `control` reaches the link's writer (taken by the session loop).
    Connected {
        rec: Record,
        control: Option<SyncSender<HostMsg>>,
    },
    Msg(Record),
    Refused {
        conn: u32,
        reason: String,
    },
    Disconnected {
        conn: u32,
        device: String,
        reason: String,
    },
}

/// A board link's way to the session loop.
pub type Events = SyncSender<Event>;

/// Sends a board event; false once the session loop is gone.
pub fn send(tx: &Events, ev: BoardEvent) -> bool {
    tx.send(Event::Board(ev)).is_ok()
}

/// What an output asks of the session after an event.
pub enum Action {
    /// A control message for board connection `conn`.
    Control(u32, HostMsg),
    /// End the session (the monitor's quit key).
    Quit,
}

/// An output of the session: sees every event in order.
pub trait Consumer {
    fn on(&mut self, ev: &Event) -> Result<Vec<Action>>;
}
