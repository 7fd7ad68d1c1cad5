//! `cargo fuzz run --features libfuzzer sandbox`: see [`ww_sched_fuzz::sandbox`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ww_sched_fuzz::sandbox(data));
