//! Tasks for the store tests: a module, ids, and tasks with runs in a known state.

#![allow(dead_code)]

use ww_sched::sched::{
    RunOutcome, SchedConfig, Schedule, Scheduler, Task, TaskId, TaskSpec, WorkerId,
};

/// The worker a test calls `name`: a peer id derived from the name.
pub fn worker(name: &str) -> WorkerId {
    let mut secret = [0u8; 32];
    for (i, byte) in name.bytes().enumerate() {
        secret[i % 32] ^= byte.wrapping_add(i as u8);
    }
    WorkerId::from(ww::transport::Identity::from_secret(secret).peer_id())
}

/// The module every task here refers to.
pub const MODULE: &[u8] = b"\0asm\x01\0\0\0";

pub fn module_hash() -> [u8; 32] {
    ww::exec::ModuleHash::of(MODULE).0
}

pub fn id(text: &str) -> TaskId {
    TaskId::parse(text).expect("id")
}

/// A task of `repeats` runs due at once, all placed on one worker, the first
/// `finished` of them succeeded at time `at`.
pub fn task_with_runs(name: &str, repeats: u32, finished: u32, at: u64) -> Task {
    let id = id(name);
    let mut sched = Scheduler::new(SchedConfig::default());
    sched.worker_joined(0, &worker("w"), repeats);
    sched
        .submit(
            0,
            TaskSpec {
                id: id.clone(),
                description: String::new(),
                module_hash: module_hash(),
                export: "run".into(),
                args: vec![],
                fuel_max: 1000,
                memory_pages_max: 1,
                duration_ms: 60_000,
                schedule: Schedule {
                    start_ms: 0,
                    delay_ms: 0,
                    repeats,
                },
                completions_initial: 0,
                idempotency_key: Some(format!("key-{name}")),
            },
        )
        .expect("submit");
    for index in 0..finished {
        let outcome = RunOutcome::Succeeded {
            results: vec![i64::from(index)],
            stdout: format!("run {index}\n"),
            fuel_used: 1,
        };
        sched.run_finished(at, &id, index, 1, outcome);
    }
    sched.task(&id).expect("task").clone()
}
