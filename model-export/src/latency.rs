//! A board's latency as a function of the tokens each block keeps, from the JSON that
//! `svit-edge bench --json` wrote on that board: the fixed stages' means and the block time
//! against K. `svit-export eval --budget-ms` runs the budget controller over validation
//! scenes with it, to show what a budget costs in accuracy before deploying.

use std::path::Path;

use svit_protocol::bench::BenchReport;

use crate::error::{bail, Context, Result};

#[derive(Clone, Debug)]
pub struct LatencyModel {
    /// Pre-processing, embedding, head and post-processing, ms.
    pub fixed_ms: f64,
    /// The gates and gather/scatter of a pruned frame, ms.
    pub pruning_ms: f64,
    /// Block time against its token count, sorted by K.
    pub blocks: Vec<(f64, f64)>,
}

impl LatencyModel {
    /// The model of `precision` on `engine` at `threads` in a bench report.
    pub fn from_bench(path: &Path, engine: &str, precision: &str, threads: u32) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let report: BenchReport = serde_json::from_slice(&bytes).with_context(|| {
            format!("{} is not `svit-edge bench --json` output", path.display())
        })?;
        let configs: Vec<_> = report
            .configs
            .iter()
            .filter(|c| c.engine == engine && c.precision == precision && c.threads == threads)
            .collect();
        let Some(pruned) = configs.iter().find(|c| c.mode == "pruned") else {
            bail!(
                "{} has no pruned {precision} configuration on {engine} on {threads} thread(s) \
                 (bench with --engine {engine} --precision {precision} --threads {threads} and a \
                 threshold above 0)",
                path.display()
            );
        };
        let mut blocks: Vec<(f64, f64)> = Vec::new();
        for c in &configs {
            for p in &c.block_time_vs_k {
                blocks.push((p.k as f64, p.block_ms));
            }
        }
        blocks.sort_by(|a, b| a.0.total_cmp(&b.0));
        blocks.dedup_by(|a, b| {
            // Same K measured by two configurations: their mean.
            let same = a.0 == b.0;
            if same {
                b.1 = (a.1 + b.1) / 2.0;
            }
            same
        });
        if blocks.is_empty() {
            bail!("{} holds no block times", path.display());
        }
        Ok(LatencyModel {
            fixed_ms: pruned.preprocess_ms.mean
                + pruned.embed_ms.mean
                + pruned.head_ms.mean
                + pruned.postprocess_ms.mean,
            pruning_ms: pruned.gates_ms.mean + pruned.gather_scatter_ms.mean,
            blocks,
        })
    }

    /// One block's time at `k` tokens, interpolated between the measured K.
    pub fn block_ms(&self, k: usize) -> f64 {
        let k = k as f64;
        let i = self.blocks.partition_point(|p| p.0 < k);
        match (i.checked_sub(1).map(|j| self.blocks[j]), self.blocks.get(i)) {
            (Some(a), Some(b)) if b.0 > a.0 => a.1 + (b.1 - a.1) * (k - a.0) / (b.0 - a.0),
            (_, Some(b)) => b.1 * k / b.0.max(1.0),
            (Some(a), None) => a.1 * k / a.0.max(1.0),
            (None, None) => 0.0,
        }
    }

    /// A frame's predicted total, ms, from the tokens each block kept.
    pub fn predict(&self, kept: &[usize], pruned: bool) -> f64 {
        let gates = if pruned { self.pruning_ms } else { 0.0 };
        self.fixed_ms + gates + kept.iter().map(|&k| self.block_ms(k)).sum::<f64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_time_is_interpolated_and_frames_sum_their_blocks() {
        let m = LatencyModel {
            fixed_ms: 2.0,
            pruning_ms: 0.5,
            blocks: vec![(16.0, 0.3), (64.0, 0.6), (256.0, 2.4)],
        };
        assert!((m.block_ms(40) - 0.45).abs() < 1e-9);
        assert!(
            (m.block_ms(8) - 0.15).abs() < 1e-9,
            "below the first K: proportional"
        );
        assert!((m.block_ms(256) - 2.4).abs() < 1e-9);
        let dense = m.predict(&[256, 256], false);
        assert!((dense - 6.8).abs() < 1e-9);
        assert!((m.predict(&[256, 64], true) - (2.0 + 0.5 + 2.4 + 0.6)).abs() < 1e-9);
    }
}
