//! Scenarios for every scheduling rule (the property test of random command
//! sequences is in `sched_model.rs`).

use std::collections::BTreeSet;

use ww_sched::sched::{
    Effect, RunErrorKind, RunStatus, SchedConfig, SchedError, Scheduler, Task, TaskId, TaskSpec,
    TaskStatus,
};

mod sched_support;

use sched_support::*;

/// `(task, index, attempt, worker)` of each StartRun.
fn starts(effects: &[Effect]) -> Vec<(String, u32, u32, String)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::StartRun {
                task,
                index,
                attempt,
                worker,
                ..
            } => Some((task.to_string(), *index, *attempt, worker_name(worker))),
            _ => None,
        })
        .collect()
}

/// `(task, index, attempt, worker)` of each StopRun.
fn stops(effects: &[Effect]) -> Vec<(String, u32, u32, String)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::StopRun {
                task,
                index,
                attempt,
                worker,
            } => Some((task.to_string(), *index, *attempt, worker_name(worker))),
            _ => None,
        })
        .collect()
}

/// Whether `effects` report task `name` changed.
fn changed(effects: &[Effect], name: &str) -> bool {
    effects
        .iter()
        .any(|e| matches!(e, Effect::TaskChanged { task, .. } if *task == id(name)))
}

fn run_status(s: &Scheduler, task: &str, index: usize) -> RunStatus {
    s.task(&id(task)).expect("task").runs[index].status
}

fn in_flight(s: &Scheduler, name: &str) -> u32 {
    s.workers()
        .iter()
        .find(|w| w.worker == worker(name))
        .map_or(0, |w| w.in_flight)
}

#[test]
fn runs_fall_due_at_start_plus_k_delay_and_overlap() {
    let mut s = Scheduler::new(config(1));
    s.worker_joined(0, &worker("w"), 8);
    assert!(starts(&s.submit(1000, spec("t", 100, 50, 3, 10_000)).unwrap()).is_empty());
    assert_eq!(s.task(&id("t")).unwrap().status, TaskStatus::Pending);
    assert_eq!(s.next_wakeup_ms(), Some(1100));
    assert!(starts(&s.tick(1099)).is_empty());
    assert_eq!(starts(&s.tick(1100)), vec![("t".into(), 0, 1, "w".into())]);
    assert_eq!(s.task(&id("t")).unwrap().status, TaskStatus::Running);
    assert_eq!(s.next_wakeup_ms(), Some(1150));
    // Run 0 is still in flight: run 1 starts anyway.
    assert_eq!(starts(&s.tick(1150)), vec![("t".into(), 1, 1, "w".into())]);
    assert_eq!(starts(&s.tick(1200)), vec![("t".into(), 2, 1, "w".into())]);
    assert_eq!(in_flight(&s, "w"), 3);
    let due: Vec<u64> = s
        .task(&id("t"))
        .unwrap()
        .runs
        .iter()
        .map(|r| r.scheduled_ms)
        .collect();
    assert_eq!(due, vec![1100, 1150, 1200]);
    // Only deadlines remain.
    assert_eq!(s.next_wakeup_ms(), Some(1100 + 10_000));
}

#[test]
fn late_tick_keeps_due_times_and_zero_delay_runs_all_at_once() {
    let mut s = Scheduler::new(config(1));
    s.worker_joined(0, &worker("w"), 8);
    s.submit(0, spec("late", 10, 10, 3, 1000)).unwrap();
    s.submit(0, spec("burst", 5, 0, 3, 1000)).unwrap();
    let started = starts(&s.tick(500));
    assert_eq!(started.len(), 6);
    let due: Vec<u64> = s
        .task(&id("late"))
        .unwrap()
        .runs
        .iter()
        .map(|r| r.scheduled_ms)
        .collect();
    assert_eq!(due, vec![10, 20, 30]);
    let burst: Vec<u64> = s
        .task(&id("burst"))
        .unwrap()
        .runs
        .iter()
        .map(|r| r.scheduled_ms)
        .collect();
    assert_eq!(burst, vec![5, 5, 5]);
}

#[test]
fn placement_prefers_least_in_flight_per_slot() {
    let mut s = Scheduler::new(config(1));
    s.worker_joined(0, &worker("a"), 4);
    assert_eq!(
        starts(&s.submit(0, spec("t1", 0, 0, 1, 1000)).unwrap())[0].3,
        "a"
    );
    s.worker_joined(0, &worker("b"), 2);
    // a: 1/4, b: 0/2 -> b.
    assert_eq!(
        starts(&s.submit(0, spec("t2", 0, 0, 1, 1000)).unwrap())[0].3,
        "b"
    );
    // a: 1/4, b: 1/2 -> a, although a has as many runs as b.
    assert_eq!(
        starts(&s.submit(0, spec("t3", 0, 0, 1, 1000)).unwrap())[0].3,
        "a"
    );
    assert_eq!(
        starts(&s.submit(0, spec("t4", 0, 0, 1, 1000)).unwrap()).len(),
        1
    );
    assert_eq!(in_flight(&s, "a") + in_flight(&s, "b"), 4);
}

#[test]
fn ties_are_broken_by_the_seed_deterministically() {
    let pick = |seed: u64| {
        let mut s = Scheduler::new(config(seed));
        for w in ["w0", "w1", "w2", "w3"] {
            s.worker_joined(0, &worker(w), 1);
        }
        starts(&s.submit(0, spec("t", 0, 0, 1, 1000)).unwrap())[0]
            .3
            .clone()
    };
    let picks: Vec<String> = (0..32).map(pick).collect();
    let again: Vec<String> = (0..32).map(pick).collect();
    assert_eq!(picks, again, "same seed, same choice");
    let distinct: BTreeSet<&String> = picks.iter().collect();
    assert!(distinct.len() > 1, "ties not broken by the RNG: {picks:?}");
}

#[test]
fn runs_wait_for_a_free_slot_without_busy_waking() {
    let mut s = Scheduler::new(config(1));
    s.submit(0, spec("t1", 0, 0, 1, 5000)).unwrap();
    s.submit(0, spec("t2", 0, 0, 1, 5000)).unwrap();
    assert_eq!(s.next_wakeup_ms(), None, "no worker: nothing can progress");
    let e = s.worker_joined(10, &worker("w"), 1);
    assert_eq!(starts(&e), vec![("t1".into(), 0, 1, "w".into())]);
    // t2 waits; the only wakeup is t1's deadline.
    assert_eq!(s.next_wakeup_ms(), Some(5010));
    assert_eq!(run_status(&s, "t2", 0), RunStatus::Scheduled);
    let e = s.run_finished(20, &id("t1"), 0, 1, ok());
    assert_eq!(starts(&e), vec![("t2".into(), 0, 1, "w".into())]);
    assert!(changed(&e, "t1"));
}

#[test]
fn a_task_is_stamped_with_the_time_it_became_final() {
    let mut s = Scheduler::new(config(1));
    s.worker_joined(0, &worker("w"), 1);
    s.submit(0, spec("t", 0, 0, 1, 100)).unwrap();
    assert_eq!(s.task(&id("t")).unwrap().finished_ms, None);
    let e = s.run_finished(10, &id("t"), 0, 1, ok());
    assert!(changed(&e, "t"), "{e:?}");
    assert_eq!(s.task(&id("t")).unwrap().finished_ms, Some(10));
    // A timeout ends a task too, and a cancel.
    s.submit(20, spec("slow", 0, 0, 1, 50)).unwrap();
    s.tick(30);
    assert_eq!(run_status(&s, "slow", 0), RunStatus::Running);
    s.tick(1_000);
    assert_eq!(run_status(&s, "slow", 0), RunStatus::TimedOut);
    assert_eq!(s.task(&id("slow")).unwrap().finished_ms, Some(1_000));
    s.submit(1_000, spec("later", 5_000, 0, 1, 50)).unwrap();
    s.cancel(1_200, &id("later")).unwrap();
    assert_eq!(s.task(&id("later")).unwrap().finished_ms, Some(1_200));
}

#[test]
fn zero_slot_worker_gets_nothing() {
    let mut s = Scheduler::new(config(1));
    s.worker_joined(0, &worker("w"), 0);
    assert!(starts(&s.submit(0, spec("t", 0, 0, 1, 10)).unwrap()).is_empty());
    assert_eq!(s.next_wakeup_ms(), None);
}

#[test]
fn a_run_past_its_duration_is_stopped_and_timed_out() {
    let mut s = Scheduler::new(config(1));
    s.worker_joined(0, &worker("w"), 1);
    s.submit(0, spec("t", 0, 0, 1, 100)).unwrap();
    assert_eq!(s.next_wakeup_ms(), Some(100));
    assert!(stops(&s.tick(99)).is_empty());
    let e = s.tick(100);
    assert_eq!(stops(&e), vec![("t".into(), 0, 1, "w".into())]);
    let task = s.task(&id("t")).unwrap();
    assert_eq!(task.runs[0].status, RunStatus::TimedOut);
    assert_eq!(task.runs[0].error_kind, Some(RunErrorKind::Timeout));
    assert_eq!(task.status, TaskStatus::Failed);
    assert_eq!(in_flight(&s, "w"), 0);
    // The late result is ignored and nothing is retried.
    assert!(s.run_finished(150, &id("t"), 0, 1, ok()).is_empty());
    assert_eq!(s.task(&id("t")).unwrap().completions, 0);
    assert_eq!(s.next_wakeup_ms(), None);
}

#[test]
fn a_worker_that_reports_its_own_deadline_times_the_run_out_too() {
    // The worker's wall clock can end the run a moment before the gateway's
    // timer does; the run's status must not depend on which came first.
    let mut s = Scheduler::new(config(1));
    s.worker_joined(0, &worker("w"), 1);
    s.submit(0, spec("t", 0, 0, 1, 100)).unwrap();
    let deadline = ww_sched::sched::RunOutcome::TaskFailed {
        kind: ww::exec::ErrorKind::Deadline,
        message: "wall time of 100 ms exceeded".into(),
        stdout: String::new(),
        fuel_used: 7,
    };
    s.run_finished(99, &id("t"), 0, 1, deadline);
    let task = s.task(&id("t")).unwrap();
    assert_eq!(task.runs[0].status, RunStatus::TimedOut);
    assert_eq!(task.runs[0].error_kind, Some(RunErrorKind::Deadline));
    assert_eq!(task.status, TaskStatus::Failed);
    assert!(stops(&s.tick(100)).is_empty(), "already final");
}

#[test]
fn transport_failure_retries_on_another_worker_after_bounded_backoff() {
    for seed in 0..20 {
        let mut s = Scheduler::new(config(seed));
        s.worker_joined(0, &worker("a"), 1);
        s.worker_joined(0, &worker("b"), 1);
        let first = starts(&s.submit(0, spec("t", 0, 0, 1, 60_000)).unwrap());
        let w1 = first[0].3.clone();
        let e = s.run_finished(1000, &id("t"), 0, 1, lost());
        assert!(starts(&e).is_empty(), "backoff first");
        assert_eq!(run_status(&s, "t", 0), RunStatus::Retrying);
        let wake = s.next_wakeup_ms().unwrap();
        assert!(
            (1250..=1500).contains(&wake),
            "first backoff in [base/2, base]: {wake}"
        );
        assert!(starts(&s.tick(wake - 1)).is_empty());
        let second = starts(&s.tick(wake));
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].2, 2, "second attempt");
        assert_ne!(second[0].3, w1, "another worker");
        s.run_finished(wake, &id("t"), 0, 2, lost());
        let wake2 = s.next_wakeup_ms().unwrap() - wake;
        assert!(
            (500..=1000).contains(&wake2),
            "second backoff doubles: {wake2}"
        );
        let third = starts(&s.tick(wake + wake2));
        assert_eq!(third[0].2, 3);
        s.run_finished(wake + wake2, &id("t"), 0, 3, ok());
        let task = s.task(&id("t")).unwrap();
        assert_eq!(task.status, TaskStatus::Succeeded);
        assert_eq!(task.runs[0].error_kind, None);
        assert_eq!(task.completions, 1);
    }
}

#[test]
fn backoff_is_capped_at_retry_max() {
    let mut s = Scheduler::new(SchedConfig {
        attempts_max: 40,
        retry_base_ms: 1000,
        retry_max_ms: 4000,
        ..config(3)
    });
    s.worker_joined(0, &worker("w"), 1);
    s.submit(0, spec("t", 0, 0, 1, 86_400_000)).unwrap();
    let mut now = 0;
    for attempt in 1..=30 {
        s.run_finished(now, &id("t"), 0, attempt, lost());
        let wait = s.next_wakeup_ms().unwrap() - now;
        let full = (1000u64 << (attempt - 1).min(20)).min(4000);
        assert!(
            (full / 2..=full).contains(&wait),
            "attempt {attempt}: {wait}"
        );
        now += wait;
        assert_eq!(starts(&s.tick(now))[0].2, attempt + 1);
    }
}

#[test]
fn a_task_failure_is_not_retried() {
    let mut s = Scheduler::new(config(1));
    s.worker_joined(0, &worker("a"), 1);
    s.worker_joined(0, &worker("b"), 1);
    s.submit(0, spec("t", 0, 0, 1, 1000)).unwrap();
    let e = s.run_finished(5, &id("t"), 0, 1, trap());
    assert!(starts(&e).is_empty());
    let task = s.task(&id("t")).unwrap();
    assert_eq!(task.runs[0].status, RunStatus::Failed);
    assert_eq!(task.runs[0].error_kind, Some(RunErrorKind::Trap));
    assert_eq!(task.runs[0].fuel_used, 3);
    assert_eq!(task.status, TaskStatus::Failed);
    assert_eq!(s.next_wakeup_ms(), None);
}

#[test]
fn attempts_max_transport_failures_fail_the_run() {
    let mut s = Scheduler::new(SchedConfig {
        attempts_max: 3,
        ..config(1)
    });
    s.worker_joined(0, &worker("w"), 1);
    s.submit(0, spec("t", 0, 0, 1, 60_000)).unwrap();
    let mut now = 0;
    for attempt in 1..=3 {
        s.run_finished(now, &id("t"), 0, attempt, lost());
        match s.next_wakeup_ms() {
            Some(t) => {
                now = t;
                assert_eq!(starts(&s.tick(now)).len(), 1);
            }
            None => assert_eq!(attempt, 3),
        }
    }
    let task = s.task(&id("t")).unwrap();
    assert_eq!(task.runs[0].status, RunStatus::Failed);
    assert_eq!(task.runs[0].attempt, 3);
    assert_eq!(task.runs[0].error_kind, Some(RunErrorKind::Transport));
    assert_eq!(task.status, TaskStatus::Failed);
}

#[test]
fn a_lost_worker_has_its_runs_retried_elsewhere_and_stale_results_ignored() {
    let mut s = Scheduler::new(config(1));
    s.worker_joined(0, &worker("a"), 2);
    s.submit(0, spec("t", 0, 0, 2, 60_000)).unwrap();
    assert_eq!(in_flight(&s, "a"), 2);
    s.worker_joined(1, &worker("b"), 2);
    let e = s.worker_lost(100, &worker("a"));
    assert!(starts(&e).is_empty());
    assert!(changed(&e, "t"));
    assert_eq!(run_status(&s, "t", 0), RunStatus::Retrying);
    assert_eq!(s.workers().len(), 1);
    // Each run has its own jitter; both are due by the full backoff.
    let wake = 100 + 500;
    let again = starts(&s.tick(wake));
    assert_eq!(
        again,
        vec![
            ("t".into(), 0, 2, "b".into()),
            ("t".into(), 1, 2, "b".into())
        ]
    );
    // Attempt 1 answering late from the lost worker changes nothing.
    assert!(s.run_finished(wake, &id("t"), 0, 1, ok()).is_empty());
    assert_eq!(run_status(&s, "t", 0), RunStatus::Running);
    assert!(s.run_started(wake, &id("t"), 0, 1).is_empty());
    s.run_finished(wake + 1, &id("t"), 0, 2, ok());
    s.run_finished(wake + 1, &id("t"), 1, 2, ok());
    assert_eq!(s.task(&id("t")).unwrap().status, TaskStatus::Succeeded);
    assert_eq!(s.task(&id("t")).unwrap().completions, 2);
}

#[test]
fn cancel_stops_running_runs_and_starts_no_new_one() {
    let mut s = Scheduler::new(config(1));
    s.worker_joined(0, &worker("w"), 1);
    s.submit(0, spec("t", 0, 100, 3, 60_000)).unwrap();
    s.submit(0, spec("other", 0, 0, 1, 60_000)).unwrap();
    assert_eq!(run_status(&s, "other", 0), RunStatus::Scheduled);
    let e = s.cancel(50, &id("t")).unwrap();
    assert_eq!(stops(&e), vec![("t".into(), 0, 1, "w".into())]);
    // The freed slot goes to the other task at once.
    assert_eq!(starts(&e), vec![("other".into(), 0, 1, "w".into())]);
    assert!(changed(&e, "t"));
    let task = s.task(&id("t")).unwrap();
    assert_eq!(task.status, TaskStatus::Cancelled);
    assert_eq!(task.runs.len(), 1);
    assert_eq!(task.runs[0].status, RunStatus::Cancelled);
    for now in [100, 200, 10_000] {
        assert!(starts(&s.tick(now)).iter().all(|st| st.0 != "t"));
    }
    assert_eq!(s.task(&id("t")).unwrap().runs.len(), 1);
    assert!(s.run_finished(300, &id("t"), 0, 1, ok()).is_empty());
    assert_eq!(s.cancel(400, &id("t")).unwrap(), vec![]);
    assert_eq!(
        s.cancel(400, &id("nope")),
        Err(SchedError::NotFound { id: id("nope") })
    );
}

#[test]
fn cancelling_a_finished_task_is_a_no_op() {
    let mut s = Scheduler::new(config(1));
    s.worker_joined(0, &worker("w"), 1);
    s.submit(0, spec("t", 0, 0, 1, 1000)).unwrap();
    s.run_finished(1, &id("t"), 0, 1, ok());
    let before = s.task(&id("t")).unwrap().clone();
    assert_eq!(s.cancel(2, &id("t")).unwrap(), vec![]);
    assert_eq!(s.task(&id("t")).unwrap(), &before);
    assert_eq!(before.status, TaskStatus::Succeeded);
}

#[test]
fn completions_count_successes_from_the_initial_value() {
    let mut s = Scheduler::new(config(1));
    s.worker_joined(0, &worker("w"), 4);
    let mut sp = spec("t", 0, 0, 3, 1000);
    sp.completions_initial = 5;
    s.submit(0, sp).unwrap();
    assert_eq!(s.task(&id("t")).unwrap().completions, 5);
    s.run_finished(1, &id("t"), 0, 1, ok());
    s.run_finished(1, &id("t"), 1, 1, trap());
    assert_eq!(s.task(&id("t")).unwrap().status, TaskStatus::Running);
    s.run_finished(1, &id("t"), 2, 1, ok());
    let task = s.task(&id("t")).unwrap();
    assert_eq!(task.completions, 7);
    assert_eq!(task.status, TaskStatus::Failed);
    assert_eq!(task.runs[0].results, vec![42]);
    assert_eq!(task.runs[0].stdout, "done\n");
}

#[test]
fn a_duplicate_or_bad_submit_changes_nothing() {
    let mut s = Scheduler::new(SchedConfig {
        open_tasks_max: 2,
        ..config(1)
    });
    s.submit(0, spec("t", 0, 0, 1, 1000)).unwrap();
    let mut dup = spec("t", 0, 0, 1, 1000);
    dup.description = "other".into();
    assert_eq!(s.submit(5, dup), Err(SchedError::Exists { id: id("t") }));
    assert_eq!(s.task(&id("t")).unwrap().spec.description, "task t");
    assert!(matches!(
        s.submit(0, spec("z", 0, 0, 0, 1000)),
        Err(SchedError::BadSpec {
            field: "repeats",
            ..
        })
    ));
    assert!(matches!(
        s.submit(0, spec("z", 0, 0, 1, 0)),
        Err(SchedError::BadSpec {
            field: "duration_ms",
            ..
        })
    ));
    // A bad id cannot reach the scheduler: a `TaskId` is made only by parsing.
    assert!(TaskId::parse("no spaces").is_err());
    s.submit(0, spec("u", 0, 0, 1, 1000)).unwrap();
    assert_eq!(
        s.submit(0, spec("v", 0, 0, 1, 1000)),
        Err(SchedError::Busy { open_tasks_max: 2 })
    );
    assert_eq!(s.tasks().count(), 2);
    // Only unfinished tasks count: once one finishes and is forgotten, there is room.
    s.cancel(1, &id("u")).unwrap();
    s.forget(&id("u")).unwrap();
    s.submit(2, spec("v", 0, 0, 1, 1000)).unwrap();
}

#[test]
fn task_ids_are_checked() {
    assert!(TaskId::parse("a-b_c.9").is_ok());
    assert!(TaskId::parse(&"x".repeat(128)).is_ok());
    for bad in ["", "a b", "ü", "a/b", &"x".repeat(129)] {
        assert!(TaskId::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn json_uses_hex_hashes_and_snake_case_states() {
    let sp = spec("t", 0, 0, 1, 1000);
    let text = serde_json::to_string(&sp).unwrap();
    assert!(text.contains(&"07".repeat(32)), "{text}");
    assert_eq!(serde_json::from_str::<TaskSpec>(&text).unwrap(), sp);
    assert_eq!(
        serde_json::to_string(&RunStatus::TimedOut).unwrap(),
        "\"timed_out\""
    );
    let bad = text.replace(&"07".repeat(32), "zz");
    assert!(serde_json::from_str::<TaskSpec>(&bad).is_err());
}

#[test]
fn restore_replaces_in_flight_runs_and_keeps_the_schedule() {
    let mut s = Scheduler::new(config(1));
    s.worker_joined(0, &worker("w"), 4);
    s.submit(0, spec("t", 0, 1000, 3, 60_000)).unwrap();
    s.submit(0, spec("done", 0, 0, 1, 60_000)).unwrap();
    s.run_finished(10, &id("done"), 0, 1, ok());
    assert_eq!(run_status(&s, "t", 0), RunStatus::Running);
    // The gateway crashes here; the store holds the tasks as last reported.
    let stored: Vec<Task> = s.tasks().cloned().collect();
    let (mut r, effects) = Scheduler::restore(config(2), 500, stored);
    assert!(starts(&effects).is_empty(), "no worker yet");
    assert!(changed(&effects, "t"));
    assert!(!changed(&effects, "done"));
    assert_eq!(run_status(&r, "t", 0), RunStatus::Retrying);
    assert_eq!(r.task(&id("t")).unwrap().status, TaskStatus::Running);
    assert_eq!(r.task(&id("done")).unwrap().status, TaskStatus::Succeeded);
    assert_eq!(r.next_wakeup_ms(), Some(1000), "the next run is still due");
    let e = r.worker_joined(600, &worker("w2"), 4);
    assert_eq!(starts(&e), vec![("t".into(), 0, 2, "w2".into())]);
    assert_eq!(starts(&r.tick(1000)), vec![("t".into(), 1, 1, "w2".into())]);
    r.run_finished(1001, &id("t"), 0, 2, ok());
    r.run_finished(1001, &id("t"), 1, 1, ok());
    assert_eq!(starts(&r.tick(2000)).len(), 1);
    r.run_finished(2001, &id("t"), 2, 1, ok());
    assert_eq!(r.task(&id("t")).unwrap().status, TaskStatus::Succeeded);
    assert_eq!(r.task(&id("t")).unwrap().completions, 3);
    r.check_invariants().unwrap();
}

#[test]
fn forget_drops_only_finished_tasks() {
    let mut s = Scheduler::new(config(1));
    s.submit(0, spec("t", 0, 0, 1, 1000)).unwrap();
    assert_eq!(
        s.forget(&id("t")),
        Err(SchedError::NotFinished { id: id("t") })
    );
    s.cancel(1, &id("t")).unwrap();
    assert_eq!(s.forget(&id("t")).unwrap().status, TaskStatus::Cancelled);
    assert!(s.task(&id("t")).is_none());
}
