//! `--serial /dev/ttyAMA0 --baud 921600`: the same COBS/postcard frames over a UART.
//!
//! A serial line has no connect or close, so the hello is repeated instead: the edge sends its
//! Hello once a second until a host answers, and starts over with a fresh nonce when another
//! host Hello arrives mid-stream (the host restarted). A host without a session knocks with a
//! Hello of its own; the edge tells the answer from a knock by the nonce (without a key the
//! host answers with the edge's own nonce) or by the Noise message that follows it. Bytes that do
//! not decode are skipped: a line carries boot noise and half frames from before a restart.
//! One thread reads and writes, so a hello never interleaves with a frame.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use serialport::SerialPort;
use svit_protocol::secure::{Rx, Tx};
use svit_protocol::session::{EdgeHandshake, Event, HandshakeError};
use svit_protocol::{self as proto, EdgeMsg, FrameDecoder, HostMsg};

use crate::control::Control;
use crate::link::{control, encode, fresh, Endpoint, Next, Outbox};

/// How long one read or write waits before the loop looks at its queue and flags again.
const POLL: Duration = Duration::from_millis(50);

/// Opens and configures the port (8N1, raw), naming the fix for the usual failures.
pub fn open(path: &str, baud: u32) -> Result<Box<dyn SerialPort>> {
    serialport::new(path, baud)
        .timeout(POLL)
        .open()
        .map_err(|e| {
            use serialport::ErrorKind as K;
            let hint = match e.kind {
                K::NoDevice | K::Io(std::io::ErrorKind::NotFound) => {
                    "no such device. The header UART (GPIO14/15, pins 8/10) is: on a Pi 3/4 \
                     /dev/serial0 (the mini UART ttyS0, or the PL011 ttyAMA0 with \
                     `dtoverlay=disable-bt`), enabled by `enable_uart=1` in config.txt with the \
                     serial console off in raspi-config; on a Pi 5 /dev/ttyAMA0 after \
                     `dtparam=uart0=on`; on a Jetson a /dev/ttyTHS* (`ls /dev/ttyTHS*`, nvgetty \
                     disabled). A USB adapter: is it plugged in (`ls /dev/ttyUSB* /dev/ttyACM*`)?"
                }
                K::Io(std::io::ErrorKind::PermissionDenied) => {
                    "permission denied: add the user to the `dialout` group \
                     (`sudo usermod -aG dialout $USER`, then log in again)"
                }
                _ => "could not open it",
            };
            anyhow!("serial port {path}: {hint} ({e})")
        })
}

enum Phase {
    /// Saying hello until a host answers.
    Greeting {
        hs: Box<EdgeHandshake>,
        last_sent: Option<Instant>,
    },
    /// `host` is the nonce of the Hello that answered ours: a repeat of it (our hellos and its
    /// answer crossed on the line) is not a restart.
    Streaming { host: [u8; 16], tx: Tx, rx: Rx },
}

/// Streams the queue over the port until it closes; returns how many messages were not
/// delivered (queued when the run ended with no host on the line).
pub fn serial_loop(mut port: Box<dyn SerialPort>, end: Endpoint) -> Result<u64> {
    let Endpoint {
        out: q,
        hello,
        key,
        ctl,
        stats,
    } = end;

    let name = port.name().unwrap_or_else(|| "serial".into());
    let mut out = Outbox::new(q, stats);
    let mut dec = FrameDecoder::new(proto::push::MAX_CONTROL);
    // Room for what a fast line brings between two polls (a pushed bundle's chunks).
    let mut buf = vec![0u8; 64 * 1024];
    let start = || Phase::Greeting {
        hs: Box::new(EdgeHandshake::new(fresh(&hello, &ctl), key.clone())),
        last_sent: None,
    };
    let mut phase = start();
    let mut stop_seen: Option<Instant> = None;
    loop {
        // Incoming: host hellos, auth, control.
        let n = match port.bytes_to_read() {
            Ok(0) => 0,
            Ok(_) => read_some(&mut *port, &mut buf)?,
            Err(e) => return Err(e).with_context(|| format!("reading {name}")),
        };
        for msg in dec.frames::<HostMsg>(&buf[..n]) {
            let msg = match msg {
                Ok(msg) => msg,
                Err(err) => {
                    tracing::debug!("skipped bytes on {name}: {err}");
                    continue;
                }
            };
            phase = match (phase, msg) {
                (p @ Phase::Streaming { .. }, HostMsg::Hello(h)) if matches!(p, Phase::Streaming { host, .. } if host == h.nonce) => {
                    p
                }
                (Phase::Streaming { .. }, HostMsg::Hello(_)) => {
                    tracing::warn!("host on {name} said hello again (restarted?): new handshake");
                    start()
                }
                // With a key the answer's Auth may come again (our hellos crossed it): the
                // session stands.
                (p @ Phase::Streaming { .. }, HostMsg::Auth(_)) => p,
                (Phase::Streaming { host, tx, mut rx }, msg) => match control(&mut rx, msg, &ctl) {
                    Ok(()) => Phase::Streaming { host, tx, rx },
                    Err(e) => {
                        tracing::warn!("session with the host on {name} ended: {e}");
                        start()
                    }
                },
                (Phase::Greeting { mut hs, last_sent }, msg) => {
                    let step = hs.on(msg);
                    match step.event {
                        Event::Admitted(h) => {
                            for m in &step.send {
                                write_frame(&mut *port, m, &ctl)?;
                            }
                            tracing::info!("streaming to the host on {name}");
                            let (tx, rx) = hs.link();
                            Phase::Streaming {
                                host: h.nonce,
                                tx,
                                rx,
                            }
                        }
                        // A knock: say hello now, unless we just did.
                        Event::Pending if !step.send.is_empty() => {
                            if last_sent.is_some_and(|t| t.elapsed() < Duration::from_millis(250)) {
                                Phase::Greeting { hs, last_sent }
                            } else {
                                Phase::Greeting {
                                    hs,
                                    last_sent: None,
                                }
                            }
                        }
                        Event::Pending => Phase::Greeting { hs, last_sent },
                        // Control before the handshake is not from a host we know: ignored.
                        Event::Refused(HandshakeError::NotHello(_)) => {
                            Phase::Greeting { hs, last_sent }
                        }
                        // A failed key check could answer an older hello of ours: keep asking.
                        Event::Refused(e) => {
                            tracing::warn!("host on {name}: {e}");
                            Phase::Greeting { hs, last_sent }
                        }
                    }
                }
            };
        }

        if out.finished(&ctl) {
            // Give a host on the line a moment to take the rest, then report what is left.
            let since = *stop_seen.get_or_insert_with(Instant::now);
            if matches!(phase, Phase::Greeting { .. }) && since.elapsed() > Duration::from_secs(2) {
                let lost = out.abandon();
                tracing::warn!(
                    "stopping with no host on {name}; {lost} queued messages not delivered"
                );
                return Ok(lost);
            }
        }
        match &mut phase {
            Phase::Greeting { hs, last_sent } => {
                if last_sent.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    write_frame(&mut *port, &hs.hello(), &ctl)?;
                    *last_sent = Some(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            // While the host is sending, read again at once rather than wait for our own
            // messages: a bundle's chunks arrive back to back.
            Phase::Streaming { tx, .. } => {
                match out.next(if n > 0 { Duration::ZERO } else { POLL }) {
                    Next::Send(msg) => match encode(tx, &msg) {
                        Ok(bytes) => {
                            if !write_all(&mut *port, &bytes, &ctl)? {
                                out.retry(msg);
                            }
                        }
                        Err(e) => tracing::warn!("message not sent: {e}"),
                    },
                    Next::Idle => {}
                    Next::Done => {
                        // tcdrain; pseudo-terminals and some USB adapters return before the last
                        // bytes left, and closing the port then drops them.
                        let _ = port.flush();
                        std::thread::sleep(Duration::from_millis(200));
                        return Ok(0);
                    }
                }
            }
        }
    }
}

fn read_some(port: &mut dyn SerialPort, buf: &mut [u8]) -> Result<usize> {
    match port.read(buf) {
        Ok(n) => Ok(n),
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Ok(0),
        Err(e) => Err(e).context("reading the serial port"),
    }
}

fn write_frame(port: &mut dyn SerialPort, msg: &EdgeMsg, ctl: &Control) -> Result<()> {
    write_all(port, &encode(&mut Tx::Plain, msg)?, ctl).map(|_| ())
}

/// Writes a whole frame, waiting out a full transmit buffer (a slow or unplugged line) unless
/// the run is stopping; returns false when it gave up. A frame cut short here is skipped by the
/// host's decoder, since COBS resynchronises at the next zero byte.
fn write_all(port: &mut dyn SerialPort, mut bytes: &[u8], ctl: &Control) -> Result<bool> {
    let started = Instant::now();
    while !bytes.is_empty() {
        match port.write(bytes) {
            Ok(0) => return Ok(false),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                let stopping = ctl.stop.load(std::sync::atomic::Ordering::Relaxed);
                if stopping && started.elapsed() > Duration::from_secs(2) {
                    return Ok(false);
                }
            }
            Err(e) => return Err(e).context("writing the serial port"),
        }
    }
    Ok(true)
}
