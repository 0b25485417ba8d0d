//! `tune_process` (its own test binary: the settings are process-wide).

use tract_linalg::multithread::{current_tract_executor, Executor};

#[test]
fn tract_stays_on_the_calling_thread() {
    svit_runtime::tune_process();
    // tract's pools lose to one thread on a block's small matmuls (crew.rs); a pool of one
    // would send every matmul to rayon's global pool.
    assert!(matches!(current_tract_executor(), Executor::SingleThread));
}
