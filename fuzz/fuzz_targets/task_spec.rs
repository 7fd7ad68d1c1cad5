//! `cargo fuzz run --features libfuzzer task_spec`: see [`ww_sched_fuzz::task_spec`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ww_sched_fuzz::task_spec(data));
