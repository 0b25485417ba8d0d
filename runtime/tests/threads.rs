//! `set_threads` (its own test binary: the setting is process-wide).

use tract_linalg::multithread::{current_tract_executor, Executor};

#[test]
fn threads_are_ours_and_tract_stays_on_the_calling_thread() {
    svit_runtime::set_threads(2);
    assert_eq!(svit_runtime::threads(), 2);
    // tract's pools lose to one thread on a block's small matmuls (crew.rs); a pool of one
    // would send every matmul to rayon's global pool.
    assert!(matches!(current_tract_executor(), Executor::SingleThread));
    svit_runtime::set_threads(0);
    assert_eq!(svit_runtime::threads(), 1);
}
