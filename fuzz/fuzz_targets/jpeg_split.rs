#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| svit_e2e::fuzz::jpeg_split(data));
