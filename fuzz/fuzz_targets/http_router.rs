//! `cargo fuzz run --features libfuzzer http_router`: see [`ww_sched_fuzz::http_router`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ww_sched_fuzz::http_router(data));
