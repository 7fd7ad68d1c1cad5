//! `cargo fuzz run --features libfuzzer sandbox`: see [`ww_sched_fuzz::sandbox`].
#![no_main]
// libFuzzer's entry point, which `fuzz_target!` defines, is `#[no_mangle]`.
#![allow(unsafe_code)]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ww_sched_fuzz::sandbox(data));
