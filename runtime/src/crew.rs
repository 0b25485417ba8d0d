//! Row-parallel stages: a frame's other threads each take a contiguous share of a stage's
//! rows (tokens).
//!
//! tract's own matmul threading (a rayon pool per matmul) made a block *slower* on two cores
//! here: each of a block's matmuls is too small to pay for waking the pool (int8 block at
//! K = 96: 0.50 ms on one thread, 0.68-0.75 on two; QUANTIZATION.md, "Threads"). Instead a
//! block is exported as two graphs that are row-wise in the tokens (`qkv`, then `block` given
//! every key and value), the other stages are row-wise as they are, and each helper here runs
//! the same graph on its own rows with its own tract states, so one hand-over per stage
//! replaces one per matmul. A waiting thread polls (a frame's jobs come a fraction of a
//! millisecond apart), yielding its core after the first microseconds, and sleeps on its
//! channel after `SPIN`.

use std::sync::mpsc::{channel, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tract_onnx::prelude::*;

use crate::error::{tract_err, RunError};

type State = TypedSimpleState;

/// How long a waiting thread polls before it sleeps: longer than the gap between two jobs of a
/// frame (a gate and a gather), far shorter than the gap between frames.
const SPIN: Duration = Duration::from_micros(300);

/// Fewest rows worth handing to another thread: below this the hand-over costs more than the
/// rows (an int8 block at 32 tokens takes about 0.15 ms).
pub const MIN_ROWS: usize = 24;

struct Job {
    /// Index into the helper's states (the stage graphs in `Crew::new`'s order).
    stage: usize,
    inputs: TVec<TValue>,
}

type Done = Result<TVec<TValue>, RunError>;

struct Helper {
    jobs: Option<Sender<Job>>,
    done: Receiver<Done>,
    thread: Option<JoinHandle<()>>,
}

/// `threads - 1` helper threads, each holding its own state of every given stage graph.
pub struct Crew {
    helpers: Vec<Helper>,
    names: Vec<String>,
}

impl Crew {
    /// Starts `threads - 1` helpers (none for 0 or 1). `plans(h)`: the `(stage name, plan)` of
    /// every stage for the thread taking share `h` (share 0 is the caller's; the stages'
    /// order and names must not depend on `h`).
    pub fn new(
        threads: usize,
        plans: impl Fn(usize) -> Vec<(String, Arc<TypedRunnableModel>)>,
    ) -> Result<Crew, RunError> {
        let names: Vec<String> = plans(0).into_iter().map(|(n, _)| n).collect();
        let mut helpers = Vec::new();
        for h in 1..threads.max(1) {
            let plans = plans(h);
            let mut states = plans
                .iter()
                .map(|(name, p)| p.spawn().map_err(tract_err(name)))
                .collect::<Result<Vec<State>, _>>()?;
            let (jobs, job_rx) = channel::<Job>();
            let (done_tx, done) = channel::<Done>();
            let stage_names = names.clone();
            let thread = std::thread::Builder::new()
                .name(format!("svit-rows-{h}"))
                .spawn(move || {
                    while let Some(job) = recv_spinning(&job_rx) {
                        let r = states[job.stage]
                            .run(job.inputs)
                            .map_err(tract_err(&stage_names[job.stage]));
                        if done_tx.send(r).is_err() {
                            return;
                        }
                    }
                })
                .map_err(|e| RunError::Tract {
                    stage: "threads".into(),
                    source: format!("cannot start helper thread {h}: {e}").into(),
                })?;
            helpers.push(Helper {
                jobs: Some(jobs),
                done,
                thread: Some(thread),
            });
        }
        Ok(Crew { helpers, names })
    }

    /// Threads a stage can be shared among, this one included.
    pub fn threads(&self) -> usize {
        self.helpers.len() + 1
    }

    /// The name of stage `stage`, as the plans given to `new` called it.
    pub fn name(&self, stage: usize) -> &str {
        &self.names[stage]
    }

    /// Runs stage `stage` on every share of `inputs`: the first on this thread with `own`,
    /// the others on helpers, all at once. Outputs in the order of `inputs`.
    pub fn run(
        &self,
        stage: usize,
        own: &mut State,
        mut inputs: Vec<TVec<TValue>>,
    ) -> Result<Vec<TVec<TValue>>, RunError> {
        let name = &self.names[stage];
        assert!(
            !inputs.is_empty() && inputs.len() <= self.threads(),
            "{} shares for {} threads",
            inputs.len(),
            self.threads()
        );
        let rest = inputs.split_off(1);
        let mut sent = 0;
        let mut failed = None;
        for (h, inputs) in self.helpers.iter().zip(rest) {
            let job = Job { stage, inputs };
            if h.jobs.as_ref().is_none_or(|j| j.send(job).is_err()) {
                failed = Some(stopped(name));
                break;
            }
            sent += 1;
        }
        let first = inputs.pop().expect("one share");
        let mine = match failed {
            None => own.run(first).map_err(tract_err(name)),
            Some(_) => Err(stopped(name)),
        };
        // Collect the answer of every helper that got a share, even when another share
        // failed, so none is left over for the next job.
        let mut theirs = Vec::with_capacity(sent);
        for h in &self.helpers[..sent] {
            match recv_spinning(&h.done) {
                Some(Ok(v)) => theirs.push(v),
                Some(Err(e)) => failed = failed.or(Some(e)),
                None => failed = failed.or(Some(stopped(name))),
            }
        }
        let mut out = vec![mine?];
        match failed {
            Some(e) => Err(e),
            None => {
                out.extend(theirs);
                Ok(out)
            }
        }
    }
}

impl Drop for Crew {
    fn drop(&mut self) {
        // Closing the job channels ends the helpers' loops.
        for h in &mut self.helpers {
            h.jobs = None;
        }
        for h in &mut self.helpers {
            if let Some(t) = h.thread.take() {
                let _ = t.join();
            }
        }
    }
}

fn stopped(stage: &str) -> RunError {
    RunError::Tract {
        stage: stage.into(),
        source: "a helper thread stopped".into(),
    }
}

/// `rx.recv()`, polling for `SPIN` first: busy for the first `BUSY`, then yielding the core
/// between polls (so that with more threads than free cores, the thread being waited for gets
/// to run). `None` once the sender is gone.
fn recv_spinning<T>(rx: &Receiver<T>) -> Option<T> {
    const BUSY: Duration = Duration::from_micros(20);
    let start = Instant::now();
    loop {
        for _ in 0..64 {
            match rx.try_recv() {
                Ok(v) => return Some(v),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => std::hint::spin_loop(),
            }
        }
        let waited = start.elapsed();
        if waited > SPIN {
            return rx.recv().ok();
        }
        if waited > BUSY {
            std::thread::yield_now();
        }
    }
}

/// Contiguous row ranges for `threads` threads over `rows` rows, at least `min` each (so
/// fewer shares than threads for small stages; always at least one).
pub fn shares(rows: usize, threads: usize, min: usize) -> Vec<std::ops::Range<usize>> {
    let n = threads.min(rows / min.max(1)).max(1);
    (0..n)
        .map(|i| (i * rows / n)..((i + 1) * rows / n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-stage crew over a graph that adds 1 to a (1, K) input.
    fn plus_one_crew(threads: usize) -> (Crew, State) {
        let mut m = TypedModel::default();
        let k = m.symbols.sym("K");
        let x = m
            .add_source("x", f32::fact(&[TDim::from(1), TDim::from(k)]))
            .unwrap();
        let one = m.add_const("one", tensor2(&[[1f32]])).unwrap();
        let y = m
            .wire_node("y", tract_onnx::tract_core::ops::math::add(), &[x, one])
            .unwrap();
        m.select_output_outlets(&y).unwrap();
        let plan = m.into_optimized().unwrap().into_runnable().unwrap();
        let own = plan.spawn().unwrap();
        let crew = Crew::new(threads, |_| vec![("plus".to_string(), plan.clone())]).unwrap();
        (crew, own)
    }

    fn share(v: &[f32]) -> TVec<TValue> {
        tvec!(Tensor::from_shape(&[1, v.len()], v).unwrap().into())
    }

    #[test]
    fn shares_come_back_in_order_and_a_failed_share_leaves_the_crew_usable() {
        let (crew, mut own) = plus_one_crew(3);
        assert_eq!(crew.threads(), 3);
        let out = crew
            .run(
                0,
                &mut own,
                vec![share(&[0.0]), share(&[10.0, 11.0]), share(&[20.0])],
            )
            .unwrap();
        let got: Vec<Vec<f32>> = out
            .iter()
            .map(|o| {
                o[0].try_as_plain_ram()
                    .unwrap()
                    .as_slice::<f32>()
                    .unwrap()
                    .to_vec()
            })
            .collect();
        assert_eq!(got, vec![vec![1.0], vec![11.0, 12.0], vec![21.0]]);
        // A helper's share of the wrong rank fails; the error names the stage, and the next
        // job gets its own answers, not that share's leftovers.
        let bad = tvec!(Tensor::from_shape(&[1, 1, 1], &[0f32]).unwrap().into());
        let e = crew
            .run(0, &mut own, vec![share(&[0.0]), bad, share(&[5.0])])
            .unwrap_err();
        assert!(e.to_string().contains("plus"), "{e}");
        let out = crew
            .run(0, &mut own, vec![share(&[1.0]), share(&[2.0])])
            .unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[1][0]
                .try_as_plain_ram()
                .unwrap()
                .as_slice::<f32>()
                .unwrap(),
            &[3.0]
        );
    }

    #[test]
    fn shares_cover_every_row_once_and_respect_the_minimum() {
        for rows in [1, 23, 24, 47, 48, 100, 256] {
            for threads in 1..=5 {
                let s = shares(rows, threads, MIN_ROWS);
                assert!(!s.is_empty() && s.len() <= threads);
                assert_eq!(s[0].start, 0);
                assert_eq!(s.last().map(|r| r.end), Some(rows));
                assert!(s.windows(2).all(|w| w[0].end == w[1].start));
                if s.len() > 1 {
                    assert!(
                        s.iter().all(|r| r.len() >= MIN_ROWS),
                        "{rows} {threads} {s:?}"
                    );
                }
            }
        }
        assert_eq!(shares(256, 2, MIN_ROWS), vec![0..128, 128..256]);
        assert_eq!(shares(40, 2, MIN_ROWS).len(), 1);
    }
}
