//! `cargo fuzz run --features libfuzzer heartbeat`: see [`ww_sched_fuzz::heartbeat`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ww_sched_fuzz::heartbeat(data));
