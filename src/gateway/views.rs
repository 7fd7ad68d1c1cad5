//! The JSON shapes the API returns.

use serde_json::{json, Value};

use crate::sched::{Run, TaskHeader};

fn seconds(ms: u64) -> u64 {
    ms / 1000
}

/// A task with the original's keys (`id`, `description`, `completions`,
/// `duration`, `start`, `delay`, `repeats`, `input`, `difficulty`; times in
/// seconds) plus `status`.
pub fn task_summary(task: &TaskHeader) -> Value {
    let spec = &task.spec;
    json!({
        "id": spec.id.0,
        "description": spec.description,
        "completions": task.completions,
        "duration": seconds(spec.duration_ms),
        "start": seconds(spec.schedule.start_ms),
        "delay": seconds(spec.schedule.delay_ms),
        "repeats": spec.schedule.repeats,
        "input": spec.args.first(),
        "difficulty": spec.args.get(1),
        "status": task.status,
    })
}

/// A run as a page of runs shows it: everything but its stdout, whose length
/// is given (`GET /tasks/{id}/runs/{index}` has the text).
pub fn run_row(run: &Run) -> Value {
    let mut value = json!(run);
    if let Value::Object(map) = &mut value {
        map.remove("stdout");
        map.insert("stdout_bytes".into(), json!(run.stdout.len()));
    }
    value
}

/// The summary plus the general spec, the run count and, if given, a page of
/// runs starting at `runs_offset`.
pub fn task_detail(task: &TaskHeader, runs: Option<(u32, &[Run])>) -> Value {
    let spec = &task.spec;
    let mut value = task_summary(task);
    if let Value::Object(map) = &mut value {
        map.insert(
            "module".into(),
            json!(crate::exec::ModuleHash(spec.module_hash).to_string()),
        );
        map.insert("export".into(), json!(spec.export));
        map.insert("args".into(), json!(spec.args));
        map.insert("fuel_max".into(), json!(spec.fuel_max));
        map.insert("memory_pages_max".into(), json!(spec.memory_pages_max));
        map.insert("duration_ms".into(), json!(spec.duration_ms));
        map.insert("start_ms".into(), json!(spec.schedule.start_ms));
        map.insert("delay_ms".into(), json!(spec.schedule.delay_ms));
        map.insert("submitted_ms".into(), json!(task.submitted_ms));
        map.insert("finished_ms".into(), json!(task.finished_ms));
        map.insert("runs_total".into(), json!(task.runs_created));
        if let Some((offset, runs)) = runs {
            map.insert("runs_offset".into(), json!(offset));
            map.insert(
                "runs".into(),
                Value::Array(runs.iter().map(run_row).collect()),
            );
        }
    }
    value
}
