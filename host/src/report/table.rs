//! The per-board table people read at the end of a run.

use super::Summary;

/// The per-board table printed at the end of `listen`, `demo` and `report`.
pub fn print_table(s: &Summary) {
    println!(
        "{:<20} {:>7} {:>7} {:>8} {:>7} {:>7} {:>9} {:>9} {:>9} {:>9} {:>6}",
        "board",
        "frames",
        "missing",
        "dropped",
        "errors",
        "fps",
        "total p50",
        "total p99",
        "infer p50",
        "cap->host",
        "kept"
    );
    for b in &s.boards {
        println!(
            "{:<20} {:>7} {:>7} {:>8} {:>7} {:>7.1} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>6.3}",
            b.device,
            b.frames,
            b.missing,
            b.dropped_on_board,
            b.camera_errors + b.inference_errors,
            b.fps,
            b.total_ms.p50,
            b.total_ms.p99,
            b.inference_ms.p50,
            b.capture_to_recv_ms.p50,
            b.kept_fraction
        );
    }
}
