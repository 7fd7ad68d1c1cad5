//! `cargo fuzz run --features libfuzzer rpc_worker`: see [`ww_sched_fuzz::rpc_worker`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ww_sched_fuzz::rpc_worker(data));
