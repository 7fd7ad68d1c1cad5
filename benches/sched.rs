//! The cost of one run inside the gateway's core, by the size of its task:
//! the scheduler (sans-IO) and the commit planner driven in process with no
//! I/O (a batch "commits" as soon as it is formed), one task of `repeats`
//! no-op runs with `delay_ms` 0 on one worker with 8 slots, every run
//! finished as soon as it starts. Throughput is runs; the per-run time of a
//! 10,000-repeat task against a 100-repeat one is the ratio
//! docs/PERFORMANCE.md records (target: at most 1.2x, i.e. every event of a
//! run costs O(1) or O(log n) in the task's size).
//!
//! `cargo bench --bench sched`

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ww_sched::gateway::Planner;
use ww_sched::sched::{
    BatchReport, Effect, RunOutcome, SchedConfig, Schedule, Scheduler, TaskId, TaskSpec,
    TaskStatus, WorkerId,
};

fn spec(repeats: u32) -> TaskSpec {
    TaskSpec {
        id: TaskId::parse("bench").expect("an id"),
        description: String::new(),
        module_hash: [7; 32],
        export: "run".into(),
        args: vec![1, 2],
        fuel_max: 0,
        memory_pages_max: 0,
        duration_ms: 30_000,
        schedule: Schedule {
            start_ms: 0,
            delay_ms: 0,
            repeats,
        },
        completions_initial: 0,
        idempotency_key: None,
    }
}

/// Runs one task of `repeats` runs to the end; returns the time it took.
fn one_task(repeats: u32) -> Duration {
    let began = Instant::now();
    let mut sched = Scheduler::new(SchedConfig::default());
    let mut plan: Planner<()> = Planner::new(std::iter::empty());
    let mut started = VecDeque::new();
    let mut now_ms = 1;
    let mut finished = 0u32;
    let mut succeeded = false;
    let worker = WorkerId::from(ww::transport::Identity::from_secret([1; 32]).peer_id());
    let mut effects = sched.worker_joined(now_ms, &worker, 8);
    effects.extend(sched.submit(now_ms, spec(repeats)).expect("accepted"));
    loop {
        for effect in effects.drain(..) {
            match effect {
                Effect::StartRun {
                    task,
                    index,
                    attempt,
                    ..
                } => started.push_back((task, index, attempt)),
                Effect::TaskChanged { task, runs } => plan.changed(task, runs),
                Effect::StopRun { .. } => {}
            }
        }
        if let Some(formed) = plan.form(|id| sched.task(id)) {
            let released = plan.committed(formed.seq, BatchReport::default());
            for id in released.finished {
                succeeded |= sched
                    .forget(&id)
                    .is_ok_and(|t| t.status == TaskStatus::Succeeded);
            }
        }
        let Some((task, index, attempt)) = started.pop_front() else {
            break;
        };
        now_ms += 1;
        finished += 1;
        effects = sched.run_finished(
            now_ms,
            &task,
            index,
            attempt,
            RunOutcome::Succeeded {
                results: vec![1],
                stdout: String::new(),
                fuel_used: 1,
            },
        );
    }
    // Every run finished once, and the task went final as succeeded (then
    // it was forgotten, so the scheduler no longer holds it).
    assert_eq!(finished, repeats, "runs finished");
    assert!(succeeded, "the task never became final as succeeded");
    began.elapsed()
}

fn per_run(c: &mut Criterion) {
    let mut group = c.benchmark_group("sched_core_per_run");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    group.sample_size(10);
    for repeats in [100u32, 10_000] {
        group.throughput(Throughput::Elements(u64::from(repeats)));
        group.bench_with_input(BenchmarkId::from_parameter(repeats), &repeats, |b, &r| {
            b.iter_custom(|iters| (0..iters).map(|_| one_task(r)).sum());
        });
    }
    group.finish();
}

criterion_group!(benches, per_run);
criterion_main!(benches);
