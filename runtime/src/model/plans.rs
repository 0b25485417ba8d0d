//! Stage graphs as plans: loaded, optimised once, and for the row-wise stages optimised again
//! per thread share size.

use std::collections::HashMap;
use std::ops::Range;

use tract_onnx::prelude::*;

use crate::error::{tract_err, BundleError, RunError};
use crate::files::BundleFiles;

pub(super) type Plan = std::sync::Arc<TypedRunnableModel>;
pub(super) type State = TypedSimpleState;

/// A stage graph that is row-wise in its one symbol (embed: tokens `K`; head: grid rows `R`),
/// kept unoptimised so that each thread's share gets a plan optimised for its exact size.
/// With the size left symbolic, tract puts a matmul's concrete side (the channels) on its
/// kernel's 64-row tile, half idle for the stem's 32 channels: embed 1.20 -> 1.45 ms, head
/// 1.13 -> 1.38 ms on one thread (`examples/stageprof`).
pub(super) struct RowStage {
    typed: TypedModel,
    symbol: &'static str,
    rows: usize,
    /// The plan for all `rows` rows (one thread).
    full: Plan,
}

impl RowStage {
    pub(super) fn load(
        files: &BundleFiles,
        rel: &str,
        symbol: &'static str,
        rows: usize,
    ) -> Result<RowStage, BundleError> {
        let graph = graph_error(files, rel);
        let bytes = files.read(rel)?;
        let typed = onnx()
            .model_for_read(&mut &bytes[..])
            .and_then(|m| m.into_typed())
            .map_err(&graph)?;
        let full = concrete(&typed, symbol, rows).map_err(&graph)?;
        Ok(RowStage {
            typed,
            symbol,
            rows,
            full,
        })
    }

    fn plan(&self, rows: usize) -> Result<Plan, RunError> {
        if rows == self.rows {
            return Ok(self.full.clone());
        }
        concrete(&self.typed, self.symbol, rows).map_err(tract_err(self.symbol))
    }

    /// A plan for each distinct size among `shares`, by size.
    pub(super) fn plans_for(
        &self,
        shares: &[Range<usize>],
    ) -> Result<HashMap<usize, Plan>, RunError> {
        let mut plans = HashMap::new();
        for r in shares {
            if let std::collections::hash_map::Entry::Vacant(e) = plans.entry(r.len()) {
                e.insert(self.plan(r.len())?);
            }
        }
        Ok(plans)
    }
}

fn concrete(typed: &TypedModel, symbol: &str, rows: usize) -> TractResult<Plan> {
    let subs = HashMap::from([(typed.symbols.sym(symbol), TDim::from(rows as i64))]);
    typed.set_symbols(&subs)?.into_optimized()?.into_runnable()
}

pub(super) fn load_plan(files: &BundleFiles, rel: &str) -> Result<Plan, BundleError> {
    let bytes = files.read(rel)?;
    optimise_graph(&bytes)
        .and_then(|m| m.into_runnable())
        .map_err(graph_error(files, rel))
}

/// tract's error about bundle file `rel`, as the bundle error naming that file.
fn graph_error(files: &BundleFiles, rel: &str) -> impl Fn(TractError) -> BundleError {
    let path = files.display(rel);
    move |e| BundleError::Graph {
        path: path.clone(),
        engine: "tract",
        source: format!("{e:#}").into(),
    }
}

/// tract's ONNX reader, after the process-wide kernel choices ([`crate::process`]) are in place:
/// every stage graph, reference pass and test graph is read through here.
pub fn onnx() -> tract_onnx::Onnx {
    crate::process::kernel_choices();
    tract_onnx::onnx()
}

/// The symbolic sizes of the stage graphs: tokens, queries and grid rows.
pub const ROW_SYMBOLS: [&str; 3] = ["K", "Q", "R"];

/// An ONNX stage graph as the runtime optimises it (also for `examples/stageprof`).
pub fn optimise_graph(graph: &[u8]) -> TractResult<TypedModel> {
    let m = onnx().model_for_read(&mut &graph[..])?;
    // A stage never runs on zero tokens, queries or grid rows (min_keep >= 1). Telling tract
    // so lets it prove "K * C > 32" and pick its fast same-shape kernels for the residual adds, which it
    // otherwise leaves as generic broadcasting ops (12% of a block at K = 256).
    for sym in ROW_SYMBOLS {
        if m.symbols.get(sym).is_some() {
            m.symbols.add_assertion(format!("{sym}>=1"))?;
        }
    }
    m.into_optimized()
}
