//! Process-wide tuning every binary applies once at start, before the first model is loaded:
//! the allocator and tract's kernel choices. The reasons are measurements (QUANTIZATION.md).

/// What every binary calls first: the allocator and kernel settings below.
pub fn tune_process() {
    tune_allocator();
    kernel_choices();
    single_threaded_matmul();
}

/// tract's kernel choices below, applied once per process. Every graph load applies them too
/// ([`crate::onnx`]), so a process that never called [`tune_process`] (a test, an example) runs
/// the same kernels as the binaries.
pub(crate) fn kernel_choices() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        prefer_wide_int8_tile();
        avoid_amx_int8();
    });
}

/// tract's own matmul threading off: a pool of one sends every matmul to rayon's global pool,
/// and a larger one made our blocks slower than one thread (`crew.rs`), so a `FrameState`
/// shares out tokens among its own threads instead.
fn single_threaded_matmul() {
    use tract_linalg::multithread::{set_default_executor, Executor};
    set_default_executor(Executor::SingleThread);
}

/// Keeps glibc from handing freed buffers back to the kernel and faulting fresh pages in on the
/// next allocation. tract allocates every intermediate tensor and packing buffer per run, so
/// with glibc's defaults a block spent a third of its time in page faults (measured with
/// `examples/stageprof`: 4.1 ms -> 2.6 ms per block at 256 tokens). Process-wide: call it once
/// at the start of a binary. Does nothing off glibc.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before threads start.
    unsafe {
        // M_TRIM_THRESHOLD = -1, M_MMAP_THRESHOLD = -3 (glibc malloc.h).
        libc::mallopt(-1, 1 << 30);
        libc::mallopt(-3, 32 << 20); // the largest value glibc accepts
    }
}

/// Makes tract's int8 matrix products use its wide AVX-512 VNNI tile (16x16) instead of the 8x8
/// it picks on cores where a micro-probe finds one 512-bit FMA port. On this project's block
/// shapes the wide tile measured faster even there: an int8 block 0.72 -> 0.61 ms at 96 tokens,
/// 2.5 -> 1.9 ms at 256 (`examples/stageprof`, AMD EPYC, QUANTIZATION.md). Installed below the
/// environment, so `TRACT_AVX512_FMA_UNITS=1` still restores tract's choice. Process-wide: call
/// it before the first model is optimised. Changes nothing off x86 or without VNNI.
fn prefer_wide_int8_tile() {
    // The knob is declared on every target; only the x86 kernel picker reads it.
    let _ = tract_onnx::tract_core::knobs::set_config_global("TRACT_AVX512_FMA_UNITS", "2");
}

/// Keeps tract 0.23.9 off its Intel AMX int8 matmul kernel (Sapphire Rapids and later Xeons).
/// That kernel faults now and then loading its B tile: the int8 block graphs crashed about one
/// run in 40 on this project's development machine (gdb: `tileloaddt1` in
/// `avx512amx_mmm_i32_16x16`), and CI failed on it. The AVX-512 VNNI kernels below it in
/// tract's ladder run instead. Installed below the environment, so `TRACT_CPU_ISA` still decides.
/// x86-64 only: tract panics on a feature of another architecture in that knob (the boards').
fn avoid_amx_int8() {
    #[cfg(target_arch = "x86_64")]
    let _ = tract_onnx::tract_core::knobs::set_config_global("TRACT_CPU_ISA", "-amx-int8");
}

#[cfg(test)]
mod tests {
    #[test]
    fn graphs_are_read_with_the_amx_int8_kernel_out_of_the_pool() {
        let _ = crate::onnx();
        let isas = tract_linalg::isa::native();
        assert!(
            isas.iter().all(|i| i.name() != "amx-int8"),
            "tract may pick its AMX int8 kernel: {:?}",
            isas.iter().map(|i| i.name()).collect::<Vec<_>>()
        );
    }
}
