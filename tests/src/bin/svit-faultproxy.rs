//! A fault-injecting TCP proxy for the soak (`scripts/soak.sh`): relays LISTEN_PORT to
//! UPSTREAM_PORT on loopback for SECONDS with the soak's fault profile on every board's
//! connection (added latency, a bandwidth cap, flipped bytes, stalls, dropped and half-open
//! connections; `svit_e2e::relay`), then prints what it did as JSON.
//!
//! usage: svit-faultproxy LISTEN_PORT UPSTREAM_PORT SECONDS [SEED]

use std::sync::atomic::Ordering;
use std::time::Duration;

use svit_e2e::relay::{Faults, Relay};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !(4..=5).contains(&args.len()) {
        eprintln!("usage: svit-faultproxy LISTEN_PORT UPSTREAM_PORT SECONDS [SEED]");
        std::process::exit(2);
    }
    let num = |i: usize| -> u64 {
        args[i].parse().unwrap_or_else(|_| {
            eprintln!(
                "svit-faultproxy: argument {i} ({:?}) must be a whole number",
                args[i]
            );
            std::process::exit(2)
        })
    };
    let faults = Faults {
        seed: if args.len() == 5 { num(4) } else { 1 },
        latency: Duration::from_millis(5),
        bytes_per_s: Some(2_000_000),
        flip_every_bytes: Some(400_000),
        stall_every: Some(Duration::from_secs(20)),
        stall: Duration::from_secs(2),
        drop_every: Some(Duration::from_secs(45)),
        half_open_every: Some(Duration::from_secs(120)),
    };
    let relay = Relay::with_faults(num(1) as u16, num(2) as u16, faults.clone());
    std::thread::sleep(Duration::from_secs(num(3)));
    let c = &relay.counts;
    let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "{}",
        serde_json::json!({
            "connections": n(&c.connections), "bytes": n(&c.bytes), "flips": n(&c.flips),
            "stalls": n(&c.stalls), "drops": n(&c.drops), "half_open": n(&c.half_open),
            "profile": format!("{faults:?}"),
        })
    );
}
