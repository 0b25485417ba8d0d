//! A latency budget (`svit-edge run --budget-ms`, `svit-export eval --budget-ms`): the pruning
//! of each frame steered so that the p95 of total latency stays at or under the budget, pruning no more than the bundle's default when
//! the budget allows (or, with `--budget-prefer dense`, spending spare time on denser passes).
//!
//! The gate threshold is what is steered: a higher threshold keeps fewer tokens, so a frame
//! costs less, down to the `min_keep` floor. The controller watches the recent frames' p95
//! against a setpoint a little under the budget (so the p95 of the noise lands under it) and
//! moves the threshold by an amount proportional to the relative error, faster when a frame
//! broke the budget than when there is time to spare, with a dead band so it does not hunt.

use std::collections::VecDeque;

/// Frames whose latency the controller looks at.
const WINDOW: usize = 20;
/// The p95 aimed at, as a fraction of the budget.
const SETPOINT: f32 = 0.9;
/// Relative errors inside this band move nothing.
const DEAD_BAND: f32 = 0.05;
/// Most pruning the controller asks for (the floor then decides).
pub const MAX_THRESHOLD: f32 = 0.95;

pub struct Budget {
    pub budget_ms: f32,
    /// The least pruning it may choose (the bundle's threshold, or 0 for `prefer dense`).
    low: f32,
    threshold: f32,
    recent: VecDeque<f32>,
    /// Said once: the budget is below what the floor reaches.
    warned: bool,
}

impl Budget {
    /// A controller for `budget_ms` starting at (and never pruning less than) `low`.
    pub fn new(budget_ms: f32, low: f32) -> Self {
        Budget {
            budget_ms,
            low: low.clamp(0.0, MAX_THRESHOLD),
            threshold: low.clamp(0.0, MAX_THRESHOLD),
            recent: VecDeque::with_capacity(WINDOW),
            warned: false,
        }
    }

    /// The threshold the next frame runs with.
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// The least pruning allowed (the host's threshold, when it sets one).
    pub fn set_low(&mut self, low: f32) {
        self.low = low.clamp(0.0, MAX_THRESHOLD);
        self.threshold = self.threshold.max(self.low);
    }

    /// p95 of the recent frames' total latency, ms.
    pub fn p95(&self) -> f32 {
        let mut v: Vec<f32> = self.recent.iter().copied().collect();
        v.sort_by(f32::total_cmp);
        v.get((v.len() * 95).div_ceil(100).saturating_sub(1))
            .copied()
            .unwrap_or(0.0)
    }

    /// Takes a finished frame's total latency; returns a warning to log when the budget is
    /// below what the most pruning reaches (once).
    pub fn observe(&mut self, total_ms: f32) -> Option<String> {
        if !total_ms.is_finite() {
            return None;
        }
        if self.recent.len() == WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(total_ms);
        let target = SETPOINT * self.budget_ms;
        // A frame over the budget counts at once; otherwise the window's p95 speaks.
        let seen = if total_ms > self.budget_ms {
            total_ms.max(self.p95())
        } else {
            self.p95()
        };
        let err = (seen - target) / self.budget_ms;
        if err.abs() > DEAD_BAND {
            // Up quickly (a missed budget), down gently (spare time).
            let gain = if err > 0.0 { 0.6 } else { 0.15 };
            self.threshold = (self.threshold + gain * err).clamp(self.low, MAX_THRESHOLD);
        }
        let floor_reached = self.threshold >= MAX_THRESHOLD && self.recent.len() == WINDOW;
        if floor_reached && self.p95() > self.budget_ms && !self.warned {
            self.warned = true;
            return Some(format!(
                "budget {:.1} ms is below what this board reaches at the most pruning \
                 (p95 {:.1} ms at threshold {MAX_THRESHOLD} and the bundle's min_keep): \
                 running at the floor",
                self.budget_ms,
                self.p95()
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A board whose frame time falls linearly with the threshold, times a load factor.
    fn board(threshold: f32, load: f32) -> f32 {
        load * (30.0 - 20.0 * threshold)
    }

    #[test]
    fn a_generous_budget_keeps_the_default_threshold() {
        let mut b = Budget::new(100.0, 0.5);
        for _ in 0..100 {
            b.observe(board(b.threshold(), 1.0));
        }
        assert_eq!(b.threshold(), 0.5);
    }

    #[test]
    fn load_is_met_with_more_pruning_within_a_few_frames_and_released_after() {
        let mut b = Budget::new(20.0, 0.5);
        for _ in 0..60 {
            b.observe(board(b.threshold(), 1.0));
        }
        // Unloaded, threshold 0.5 gives 20 ms: right at the budget, so it prunes a little more.
        assert!(b.p95() <= 20.0, "{}", b.p95());
        // Another process takes a third of the CPU from frame 60 on.
        let mut over = Vec::new();
        for i in 0..60 {
            let t = board(b.threshold(), 1.3);
            b.observe(t);
            if t > 20.0 {
                over.push(i);
            }
        }
        assert!(
            over.iter().all(|&i| i < 8),
            "back under the budget within 8 frames: {over:?}"
        );
        assert!(b.p95() <= 20.0);
        let loaded = b.threshold();
        // Without the load it prunes less again: back to where the unloaded board meets the
        // setpoint (18 ms at threshold 0.6), never below the default.
        for _ in 0..200 {
            b.observe(board(b.threshold(), 1.0));
        }
        assert!(
            b.threshold() < loaded - 0.1,
            "{loaded} -> {}",
            b.threshold()
        );
        assert!((0.5..0.7).contains(&b.threshold()), "{}", b.threshold());
    }

    #[test]
    fn a_budget_out_of_reach_warns_once_and_runs_at_the_floor() {
        let mut b = Budget::new(5.0, 0.5);
        let warnings: Vec<String> = (0..100)
            .filter_map(|_| b.observe(board(b.threshold(), 1.0)))
            .collect();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("below what this board reaches"),
            "{}",
            warnings[0]
        );
        assert_eq!(b.threshold(), MAX_THRESHOLD);
    }

    #[test]
    fn prefer_dense_spends_spare_time_on_denser_passes() {
        let mut b = Budget::new(40.0, 0.0);
        b.threshold = 0.5;
        for _ in 0..200 {
            b.observe(board(b.threshold(), 1.0));
        }
        assert!(b.threshold() < 0.05, "{}", b.threshold());
    }
}
