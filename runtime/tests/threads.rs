//! `set_threads` (its own test binary: the executor is process-wide).

use tract_linalg::multithread::{current_tract_executor, Executor};

#[test]
fn one_thread_is_the_calling_thread_not_a_pool() {
    svit_runtime::set_threads(2);
    assert!(!matches!(current_tract_executor(), Executor::SingleThread));
    // A one-thread pool would send every matmul to rayon's global pool instead.
    svit_runtime::set_threads(1);
    assert!(matches!(current_tract_executor(), Executor::SingleThread));
    svit_runtime::set_threads(0);
    assert!(matches!(current_tract_executor(), Executor::SingleThread));
}
