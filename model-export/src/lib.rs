//! Library side of `svit-export`: the candle model and its training, COCO I/O, the ONNX writer,
//! bundle export and evaluation. The binary in `main.rs` only parses arguments.

pub mod bundle;
pub mod coco;
pub mod cocodata;
pub mod cocoeval;
pub mod eval;
pub mod import;
pub mod model;
pub mod onnx;
pub mod targets;
pub mod train;

/// Keeps glibc from returning big training buffers to the kernel after every step (which spent
/// half the time zeroing pages), see ../shared/design.md.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        // M_TRIM_THRESHOLD = -1, M_MMAP_THRESHOLD = -3 (glibc malloc.h).
        libc::mallopt(-1, 1 << 30);
        libc::mallopt(-3, 32 << 20); // the largest value glibc accepts
    }
}
