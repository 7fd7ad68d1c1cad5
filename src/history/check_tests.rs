//! The checker's tests: a sound history passes; each rule catches a history
//! broken its way and names the operations; concurrency is not mistaken for
//! a violation; generated sound histories pass (proptest).

use proptest::prelude::*;

use super::*;
use crate::history::{Listed, RunView};

fn op(kind: OpKind, invoked_ms: u64, completed_ms: u64, outcome: Outcome) -> Operation {
    Operation {
        client: 0,
        kind,
        invoked_ms,
        completed_ms: Some(completed_ms),
        outcome,
    }
}

fn submit(key: &str, at: u64, id: &str) -> Operation {
    op(
        OpKind::Submit {
            id: None,
            idempotency_key: key.into(),
        },
        at,
        at + 5,
        Outcome::Ok(Observed::Submitted { id: id.into() }),
    )
}

fn run(index: u32, status: &str, attempt: u32, started: Option<u64>, results: &[i64]) -> RunView {
    let done = is_terminal(status);
    RunView {
        index,
        status: status.into(),
        attempt,
        started_ms: started,
        finished_ms: started.filter(|_| done).map(|s| s + 10),
        results: results.to_vec(),
    }
}

fn read(id: &str, at: u64, status: &str, runs: Vec<RunView>) -> Operation {
    op(
        OpKind::Read { id: id.into() },
        at,
        at + 5,
        Outcome::Ok(Observed::Task(TaskView {
            id: id.into(),
            status: status.into(),
            runs_total: Some(runs.len() as u32),
            runs,
        })),
    )
}

fn cancel(id: &str, at: u64, status: &str) -> Operation {
    op(
        OpKind::Cancel { id: id.into() },
        at,
        at + 5,
        Outcome::Ok(Observed::Cancelled {
            status: status.into(),
        }),
    )
}

fn history(ops: Vec<Operation>) -> History {
    let mut h = History::new();
    for op in ops {
        h.record(op);
    }
    h
}

fn judge(ops: Vec<Operation>, finals: Vec<Operation>) -> Report {
    check(&history(ops), &finals, &CheckConfig::default())
}

fn rules(report: &Report) -> Vec<Rule> {
    report.violations.iter().map(|v| v.rule).collect()
}

/// A sound history: one task runs and succeeds, another is cancelled, an
/// unacknowledged submission is retried and answered with the same task.
fn sound() -> (Vec<Operation>, Vec<Operation>) {
    let ops = vec![
        submit("k1", 0, "t1"),
        read("t1", 10, "pending", vec![]),
        read(
            "t1",
            20,
            "running",
            vec![run(0, "running", 1, Some(18), &[])],
        ),
        read(
            "t1",
            40,
            "succeeded",
            vec![run(0, "succeeded", 1, Some(18), &[7])],
        ),
        op(
            OpKind::Submit {
                id: None,
                idempotency_key: "k2".into(),
            },
            50,
            60,
            Outcome::Unknown,
        ),
        submit("k2", 70, "t2"),
        read(
            "t2",
            80,
            "running",
            vec![run(0, "running", 1, Some(78), &[])],
        ),
        cancel("t2", 90, "cancelled"),
        read(
            "t2",
            100,
            "cancelled",
            vec![run(0, "cancelled", 1, Some(78), &[])],
        ),
        op(
            OpKind::List,
            110,
            115,
            Outcome::Ok(Observed::Listing(vec![
                Listed {
                    id: "t1".into(),
                    key: Some("k1".into()),
                },
                Listed {
                    id: "t2".into(),
                    key: Some("k2".into()),
                },
            ])),
        ),
    ];
    let finals = vec![
        read(
            "t1",
            200,
            "succeeded",
            vec![run(0, "succeeded", 1, Some(18), &[7])],
        ),
        read(
            "t2",
            210,
            "cancelled",
            vec![run(0, "cancelled", 1, Some(78), &[])],
        ),
    ];
    (ops, finals)
}

#[test]
fn a_sound_history_passes() {
    let (ops, finals) = sound();
    let report = judge(ops, finals);
    assert!(report.is_clean(), "{:#?}", report.violations);
    assert_eq!(report.operations_checked, 12);
}

#[test]
fn rule_a_catches_a_task_leaving_its_terminal_state() {
    let (mut ops, finals) = sound();
    ops.push(read(
        "t1",
        120,
        "running",
        vec![run(0, "succeeded", 1, Some(18), &[7])],
    ));
    let report = judge(ops, finals);
    assert_eq!(rules(&report), vec![Rule::OneTerminalState]);
    let v = &report.violations[0];
    assert!(v.message.contains("seen succeeded, later running"), "{v}");
    assert_eq!(
        v.operations.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        [3, 10]
    );
    assert!(v
        .to_string()
        .contains("op 10: client 0 [120..125] read t1 -> running"));
}

#[test]
fn rule_a_catches_an_acknowledged_task_lost_or_unfinished() {
    let (mut ops, mut finals) = sound();
    ops.push(op(
        OpKind::Read { id: "t1".into() },
        120,
        125,
        Outcome::Ok(Observed::NotFound),
    ));
    finals.pop();
    let report = judge(ops, finals);
    let text: Vec<String> = report.violations.iter().map(|v| v.to_string()).collect();
    assert_eq!(rules(&report), vec![Rule::OneTerminalState; 2], "{text:#?}");
    assert!(
        text[0].contains("t1: acknowledged, then answered 404"),
        "{text:#?}"
    );
    assert!(
        text[1].contains("t2: acknowledged, but no final read"),
        "{text:#?}"
    );
}

#[test]
fn rule_a_catches_two_terminal_states_and_a_task_not_final_at_the_end() {
    let (ops, mut finals) = sound();
    finals[0] = read(
        "t1",
        200,
        "failed",
        vec![run(0, "succeeded", 1, Some(18), &[7])],
    );
    finals[1] = read(
        "t2",
        210,
        "running",
        vec![run(0, "cancelled", 1, Some(78), &[])],
    );
    let report = judge(ops, finals);
    let text: Vec<String> = report.violations.iter().map(|v| v.to_string()).collect();
    assert_eq!(rules(&report), vec![Rule::OneTerminalState; 2], "{text:#?}");
    assert!(
        text[0].contains("t1: seen with terminal statuses"),
        "{text:#?}"
    );
    assert!(
        text[1].contains("t2: seen cancelled, later running"),
        "{text:#?}"
    );
}

#[test]
fn rule_b_catches_a_result_that_changes_or_vanishes() {
    let (ops, mut finals) = sound();
    finals[0] = read(
        "t1",
        200,
        "succeeded",
        vec![run(0, "succeeded", 2, Some(150), &[7])],
    );
    let report = judge(ops.clone(), finals);
    assert_eq!(rules(&report), vec![Rule::ResultsStable]);
    assert!(report.violations[0]
        .message
        .contains("t1/0: terminal outcome read differently"));

    let (_, mut finals) = sound();
    finals[0] = read("t1", 200, "succeeded", vec![]);
    let report = judge(ops, finals);
    assert_eq!(rules(&report), vec![Rule::ResultsStable]);
    assert!(report.violations[0]
        .message
        .contains("t1/0: read succeeded, later gone"));
}

#[test]
fn rule_c_catches_a_run_started_or_retried_after_an_acknowledged_cancel() {
    let (mut ops, mut finals) = sound();
    // t2's cancel was acknowledged at 95; a run started at 96.
    let runs = vec![
        run(0, "cancelled", 1, Some(78), &[]),
        run(1, "cancelled", 1, Some(96), &[]),
    ];
    ops.push(read("t2", 120, "cancelled", runs.clone()));
    finals[1] = read("t2", 210, "cancelled", runs);
    let report = judge(ops, finals);
    assert_eq!(
        rules(&report),
        vec![Rule::CancelStopsRuns],
        "{:#?}",
        report.violations
    );
    let v = &report.violations[0];
    assert!(v
        .message
        .contains("t2/1: started at 96 ms, after the cancel was acknowledged at 95 ms"));
    assert_eq!(v.operations[0].0, 7);
    // Within the tolerance it passes.
    let (mut ops, finals) = sound();
    ops.push(read(
        "t2",
        120,
        "cancelled",
        vec![run(0, "cancelled", 1, Some(96), &[])],
    ));
    let config = CheckConfig {
        clock_tolerance_ms: 1,
        require_final: true,
    };
    let report = check(&history(ops), &finals, &config);
    assert!(report
        .violations
        .iter()
        .all(|v| v.rule != Rule::CancelStopsRuns));

    // Clock-free: a new attempt seen between two reads after the cancel.
    let ops = vec![
        submit("k", 0, "t"),
        cancel("t", 10, "cancelled"),
        read("t", 20, "cancelled", vec![run(0, "running", 1, None, &[])]),
        read("t", 30, "cancelled", vec![run(0, "running", 2, None, &[])]),
    ];
    let finals = vec![read(
        "t",
        40,
        "cancelled",
        vec![run(0, "cancelled", 2, None, &[])],
    )];
    let report = judge(ops, finals);
    assert_eq!(rules(&report), vec![Rule::CancelStopsRuns]);
    assert!(report.violations[0]
        .message
        .contains("attempt 1 after the cancel, later 2"));
}

#[test]
fn rule_c_catches_a_cancel_answered_with_a_live_status() {
    let ops = vec![submit("k", 0, "t"), cancel("t", 10, "running")];
    let finals = vec![read("t", 40, "cancelled", vec![])];
    let report = judge(ops, finals);
    assert_eq!(rules(&report), vec![Rule::CancelStopsRuns]);
}

#[test]
fn rule_d_catches_one_submission_made_twice() {
    // A retried key answered with another task.
    let (mut ops, finals) = sound();
    ops.push(submit("k1", 120, "t9"));
    let report = judge(ops, finals);
    assert!(rules(&report).contains(&Rule::NoDuplicateTasks));
    assert!(report
        .to_lines()
        .iter()
        .any(|l| l.contains("key k1 acknowledged as tasks")));

    // A listing with an id twice, and two tasks of one unacknowledged key.
    let (mut ops, finals) = sound();
    let listed = |id: &str, key: &str| Listed {
        id: id.into(),
        key: Some(key.into()),
    };
    ops.push(op(
        OpKind::List,
        120,
        125,
        Outcome::Ok(Observed::Listing(vec![
            listed("t1", "k1"),
            listed("t1", "k1"),
            listed("t3", "k3"),
            listed("t4", "k3"),
        ])),
    ));
    let report = judge(ops, finals);
    let text = report.to_lines().join("\n");
    assert_eq!(rules(&report), vec![Rule::NoDuplicateTasks; 3], "{text}");
    assert!(text.contains("t1 listed 2 times"), "{text}");
    assert!(
        text.contains("key k3 listed as tasks [\"t3\", \"t4\"]"),
        "{text}"
    );
}

#[test]
fn unacknowledged_submissions_may_exist_or_not_and_concurrent_reads_may_lag() {
    let ops = vec![
        op(
            OpKind::Submit {
                id: Some("x".into()),
                idempotency_key: "x".into(),
            },
            0,
            5,
            Outcome::Failed("503 storage".into()),
        ),
        read("x", 10, "pending", vec![]),
        // A read sent before the result was seen may still show it running.
        read(
            "y",
            20,
            "succeeded",
            vec![run(0, "succeeded", 1, Some(1), &[3])],
        ),
        op(
            OpKind::Read { id: "y".into() },
            21,
            30,
            Outcome::Ok(Observed::Task(TaskView {
                id: "y".into(),
                status: "running".into(),
                runs_total: Some(1),
                runs: vec![run(0, "running", 1, Some(1), &[])],
            })),
        ),
    ];
    let mut report = judge(ops, vec![]);
    assert!(report.is_clean(), "{:#?}", report.violations);
    report.violations.clear();
}

/// A model of the gateway a sound history is drawn from: tasks advance
/// through pending, running, one terminal status; reads show the state at
/// some moment between their invocation and completion.
fn model_history(seed: u64, tasks: usize) -> (History, Vec<Operation>) {
    use rand::{RngExt, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut h = History::new();
    let mut clock = 0u64;
    let mut states: Vec<(String, u8, Option<u64>)> = Vec::new();
    let view = |id: &str, stage: u8, cancelled_at: Option<u64>| {
        let (status, runs) = match (stage, cancelled_at) {
            (0, None) => ("pending", vec![]),
            (1, None) => ("running", vec![run(0, "running", 1, Some(3), &[])]),
            (_, None) => ("succeeded", vec![run(0, "succeeded", 1, Some(3), &[9])]),
            (_, Some(_)) => ("cancelled", vec![]),
        };
        TaskView {
            id: id.into(),
            status: status.into(),
            runs_total: Some(runs.len() as u32),
            runs,
        }
    };
    for _ in 0..tasks * 6 {
        clock += 1 + rng.random_range(0..5u64);
        let done = clock + rng.random_range(0..4u64);
        let choice = rng.random_range(0..10u32);
        if choice < 2 || states.is_empty() {
            let id = format!("t{}", states.len());
            let outcome = if rng.random_bool(0.8) {
                Outcome::Ok(Observed::Submitted { id: id.clone() })
            } else {
                Outcome::Unknown
            };
            states.push((id.clone(), 0, None));
            h.record(op(
                OpKind::Submit {
                    id: None,
                    idempotency_key: format!("k-{id}"),
                },
                clock,
                done,
                outcome,
            ));
        } else {
            let n = rng.random_range(0..states.len());
            let (id, stage, cancelled) = &mut states[n];
            if choice < 3 && stage == &0 && cancelled.is_none() {
                *cancelled = Some(done);
                h.record(cancel(id, clock, "cancelled"));
                h.operations_mut_last_done(done);
            } else {
                if cancelled.is_none() && rng.random_bool(0.5) {
                    *stage = (*stage + 1).min(2);
                }
                let shown = view(id, *stage, *cancelled);
                h.record(op(
                    OpKind::Read { id: id.clone() },
                    clock,
                    done,
                    Outcome::Ok(Observed::Task(shown)),
                ));
            }
        }
        clock = done;
    }
    let finals = states
        .iter()
        .map(|(id, _, cancelled)| {
            clock += 2;
            let shown = view(id, 2, *cancelled);
            op(
                OpKind::Read { id: id.clone() },
                clock,
                clock + 1,
                Outcome::Ok(Observed::Task(shown)),
            )
        })
        .collect();
    (h, finals)
}

impl History {
    /// Test helper: sets the last operation's completion time.
    fn operations_mut_last_done(&mut self, done: u64) {
        if let Some(last) = self.ops.last_mut() {
            last.completed_ms = Some(done);
        }
    }
}

impl Report {
    /// Test helper: every violation rendered.
    fn to_lines(&self) -> Vec<String> {
        self.violations.iter().map(|v| v.to_string()).collect()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn generated_sound_histories_pass(seed in any::<u64>(), tasks in 1usize..12) {
        let (h, finals) = model_history(seed, tasks);
        let report = check(&h, &finals, &CheckConfig::default());
        prop_assert!(report.is_clean(), "{:#?}", report.violations);
        prop_assert_eq!(report.operations_checked, h.len() + finals.len());
    }

    #[test]
    fn a_generated_history_with_a_result_changed_fails(seed in any::<u64>(), tasks in 2usize..12) {
        let (h, mut finals) = model_history(seed, tasks);
        // Flip one final read that shows a succeeded run to another result.
        let Some(f) = finals.iter_mut().find(|f| {
            f.task_view().is_some_and(|v| v.status == "succeeded")
        }) else {
            return Ok(());
        };
        if let Outcome::Ok(Observed::Task(view)) = &mut f.outcome {
            view.runs[0].results = vec![10];
        }
        // Only a failure if some earlier read saw the result.
        let seen = h.operations().iter().any(|o| o.task_view().is_some_and(|v| {
            Some(v.id.as_str()) == f.task_id() && v.status == "succeeded"
        }));
        let report = check(&h, &finals, &CheckConfig::default());
        prop_assert_eq!(seen, rules(&report).contains(&Rule::ResultsStable));
    }
}
