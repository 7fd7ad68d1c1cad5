//! Shared by the scheduler tests: task specs, configs and run outcomes.

#![allow(dead_code)]

use ww_sched::sched::{RunOutcome, SchedConfig, Schedule, TaskId, TaskSpec};

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
