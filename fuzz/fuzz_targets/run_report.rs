//! `cargo fuzz run --features libfuzzer run_report`: see [`ww_sched_fuzz::run_report`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ww_sched_fuzz::run_report(data));
