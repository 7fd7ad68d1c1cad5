//! Shared by the scheduler tests: task specs, configs and run outcomes.

#![allow(dead_code)]

use ww_sched::sched::{RunOutcome, SchedConfig, Schedule, TaskId, TaskSpec, WorkerId};

pub fn id(text: &str) -> TaskId {
    TaskId::parse(text).expect("valid id")
}

pub fn spec(name: &str, start_ms: u64, delay_ms: u64, repeats: u32, duration_ms: u64) -> TaskSpec {
    TaskSpec {
        id: id(name),
        description: format!("task {name}"),
        module_hash: [7; 32],
        export: "run".into(),
        args: vec![1, 2],
        fuel_max: 1_000_000,
        memory_pages_max: 16,
        duration_ms,
        schedule: Schedule {
            start_ms,
            delay_ms,
            repeats,
        },
        completions_initial: 0,
        idempotency_key: None,
    }
}

pub fn config(seed: u64) -> SchedConfig {
    SchedConfig {
        seed,
        ..SchedConfig::default()
    }
}

pub fn ok() -> RunOutcome {
    RunOutcome::Succeeded {
        results: vec![42],
        stdout: "done\n".into(),
        fuel_used: 10,
    }
}

pub fn lost() -> RunOutcome {
    RunOutcome::TransportFailed {
        message: "connection reset".into(),
    }
}

pub fn trap() -> RunOutcome {
    RunOutcome::TaskFailed {
        kind: ww::exec::ErrorKind::Trap,
        message: "unreachable".into(),
        stdout: String::new(),
        fuel_used: 3,
    }
}

/// Names of the workers tests made, by their ids' text.
static WORKER_NAMES: std::sync::Mutex<std::collections::BTreeMap<String, String>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// The worker a test calls `name`: a peer id derived from the name, the same
/// on every run (workers are named by peer ids only).
pub fn worker(name: &str) -> WorkerId {
    let mut secret = [0u8; 32];
    for (i, byte) in name.bytes().enumerate() {
        secret[i % 32] ^= byte.wrapping_add(i as u8);
    }
    secret[31] ^= name.len() as u8;
    let id = WorkerId::from(ww::transport::Identity::from_secret(secret).peer_id());
    WORKER_NAMES
        .lock()
        .unwrap()
        .insert(id.as_str().to_string(), name.to_string());
    id
}

/// The name a test gave `worker` (its id's text if none).
pub fn worker_name(worker: &WorkerId) -> String {
    WORKER_NAMES
        .lock()
        .unwrap()
        .get(worker.as_str())
        .cloned()
        .unwrap_or_else(|| worker.to_string())
}
