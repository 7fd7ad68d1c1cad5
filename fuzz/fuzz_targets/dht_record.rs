//! `cargo fuzz run --features libfuzzer dht_record`: see [`ww_sched_fuzz::dht_record`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ww_sched_fuzz::dht_record(data));
