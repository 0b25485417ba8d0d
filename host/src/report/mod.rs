//! Recording -> summary.json, frames.csv and (`plots`) SVG plots with index.html; `compare`
//! sets two recordings side by side; `table` prints the per-board table. Every number is
//! computed from the recorded frames (`summary`).

mod compare;
mod plots;
mod summary;
mod table;

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use svit_protocol::EdgeMsg;

use crate::record::Record;
use summary::ms;

pub use compare::compare;
pub use summary::{kept_fraction, stage_us, summarize, total_ms, BoardSummary, Summary, STAGES};
pub use table::print_table;

pub fn write(records: &[Record], out: &Path) -> Result<Summary> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let summary = summarize(records);
    let p = out.join("summary.json");
    std::fs::write(&p, serde_json::to_vec_pretty(&summary)?)
        .with_context(|| format!("writing {}", p.display()))?;
    let mut csv = String::from("device,seq,recv_us,capture_us,total_ms,capture_ms,decode_ms,preprocess_ms,embed_ms,gates_ms,gather_scatter_ms,blocks_ms,head_ms,postprocess_ms,encode_ms,kept,gmacs,detections,dropped_total,threshold,age_ms\n");
    for r in records {
        if let EdgeMsg::Frame(f) = &r.msg {
            let t = &f.times;
            let kept: Vec<String> = f.kept.iter().map(|k| k.to_string()).collect();
            let _ = writeln!(
                csv,
                "{},{},{},{},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{},{:.4},{},{},{},{:.3}",
                r.device.replace(',', "_"),
                f.seq,
                r.recv_us,
                f.capture_us,
                total_ms(f),
                ms(t.capture),
                ms(t.decode),
                ms(t.preprocess),
                ms(t.embed),
                ms(t.gates),
                ms(t.gather_scatter),
                ms(t.blocks.iter().sum::<u32>()),
                ms(t.head),
                ms(t.postprocess),
                ms(t.encode),
                kept.join(" "),
                f.gmacs,
                f.detections.len(),
                f.dropped_total,
                f.threshold,
                f.age_ms
            );
        }
    }
    let p = out.join("frames.csv");
    std::fs::write(&p, csv).with_context(|| format!("writing {}", p.display()))?;
    plots::write(records, &summary, out)?;
    Ok(summary)
}
