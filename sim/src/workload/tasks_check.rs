//! The task invariants, judged on what the client observed.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};
use ww_sched::history::{check, CheckConfig};
use ww_sched::tasks::hash_puzzle;

use super::tasks::{is_final, Refusal, TaskObservations, TaskSeen};
use crate::scenario::faults::{Cause, Window};
use crate::scenario::verdict::{Check, Class};

/// How long after it starts (at 0 and at each restart) the gateway may refuse
/// or not answer: a (re)starting gateway opens its store before it answers.
pub const RESTART_GRACE: Duration = Duration::from_secs(5);
/// How long after `disk_heal` the gateway may still refuse: a gateway that
/// stopped on a store error answers again only once restarted on a healthy disk.
pub const DISK_HEAL_GRACE: Duration = Duration::from_secs(5);
/// How long after a disturbance of the client's link ends a request may still
/// fail for it (a broken link mends on the next message).
pub const LINK_GRACE: Duration = Duration::from_secs(1);
/// An acknowledged task no poll has yet answered for is not judged lost if it
/// was acknowledged this recently before the check: the poller visits a task
/// not yet seen next (one request, well under a second without faults; the
/// slowest first sight is in the check's summary).
pub const UNSEEN_GRACE: Duration = Duration::from_secs(3);
/// Violation lines a check lists before summing up the rest.
const VIOLATIONS_LISTED_MAX: usize = 20;

/// The disturbances of the gateway and of its link with the client, each
/// widened by its grace, judged against what the client saw.
pub struct Excuses {
    /// (cause, from, until), closed.
    windows: Vec<(Cause, Duration, Duration)>,
}

impl Excuses {
    /// From the gateway's and the client link's `windows` (see
    /// `Disturbances::windows`), open ones lasting to `end`; the gateway's
    /// start at 0 counts as a restart.
    pub fn new(windows: &[Window], end: Duration) -> Excuses {
        let start = (Cause::Down, Duration::ZERO, RESTART_GRACE);
        let widened = windows.iter().map(|w| {
            let grace = match w.cause {
                Cause::Down => RESTART_GRACE,
                Cause::Disk => DISK_HEAL_GRACE,
                Cause::Link => LINK_GRACE,
            };
            (w.cause, w.from, w.until.unwrap_or(end).max(w.from) + grace)
        });
        Excuses {
            windows: std::iter::once(start).chain(widened).collect(),
        }
    }

    /// The first disturbance of one of `causes` overlapping `[from, until]`.
    fn overlapping(&self, causes: &[Cause], from: Duration, until: Duration) -> Option<Cause> {
        self.windows
            .iter()
            .find(|(cause, start, end)| causes.contains(cause) && *start <= until && *end >= from)
            .map(|(cause, _, _)| *cause)
    }

    /// Whether every moment of `[from, until]` lies within some disturbance
    /// (an empty interval does).
    pub fn covers(&self, from: Duration, until: Duration) -> bool {
        let mut windows: Vec<(Duration, Duration)> =
            self.windows.iter().map(|(_, a, b)| (*a, *b)).collect();
        windows.sort();
        let mut reached = from;
        for (start, end) in windows {
            if reached >= until {
                break;
            }
            if start <= reached {
                reached = reached.max(end);
            }
        }
        reached >= until
    }

    /// What explains `refusal`: an answer (5xx) only a crash, restart or disk
    /// fault of the gateway; no answer also a disturbance of the client's link;
    /// a 4xx refusal of a submission nothing.
    pub fn explain(&self, refusal: &Refusal) -> Option<Cause> {
        match refusal.status {
            Some(status) if status < 500 => None,
            Some(_) => self.overlapping(&[Cause::Down, Cause::Disk], refusal.sent, refusal.at),
            None => self.overlapping(
                &[Cause::Down, Cause::Disk, Cause::Link],
                refusal.sent,
                refusal.at,
            ),
        }
    }
}

/// `lines`, at most [`VIOLATIONS_LISTED_MAX`] of them, and a line for the rest.
fn listed(mut lines: Vec<String>) -> Vec<String> {
    if lines.len() > VIOLATIONS_LISTED_MAX {
        let more = lines.len() - VIOLATIONS_LISTED_MAX;
        lines.truncate(VIOLATIONS_LISTED_MAX);
        lines.push(format!("... and {more} more"));
    }
    lines
}

/// Safety `refusals_explained`: every request the gateway did not serve (see
/// [`Refusal`]) falls within a disturbance that explains it ([`Excuses::explain`]).
pub fn refusals_explained(obs: &TaskObservations, excuses: &Excuses) -> Check {
    let mut wrong = Vec::new();
    let mut by_cause = std::collections::BTreeMap::<Cause, usize>::new();
    for refusal in &obs.refusals {
        if let Some(cause) = excuses.explain(refusal) {
            *by_cause.entry(cause).or_default() += 1;
            continue;
        }
        let answer = match refusal.status {
            Some(status) => format!(
                "answered {status} at {:.3}s: {}",
                refusal.at.as_secs_f64(),
                refusal.body
            ),
            None => format!(
                "no answer by {:.3}s ({})",
                refusal.at.as_secs_f64(),
                refusal.body
            ),
        };
        let why = match refusal.status {
            Some(status) if status < 500 => "the workload sends only valid submissions",
            Some(_) => "no crash, restart or disk fault of the gateway overlaps it",
            None => "neither the gateway nor its link with the client was disturbed",
        };
        wrong.push(format!(
            "{} {} sent at {:.3}s, {answer}; {why}",
            refusal.method,
            refusal.path,
            refusal.sent.as_secs_f64()
        ));
    }
    let causes: Vec<String> = by_cause
        .iter()
        .map(|(cause, n)| format!("{n} by {}", cause.name()))
        .collect();
    let summary = format!(
        "{} requests, {} not served, {} explained ({})",
        obs.requests,
        obs.refusals.len(),
        obs.refusals.len() - wrong.len(),
        if causes.is_empty() {
            "none needed".to_string()
        } else {
            causes.join(", ")
        }
    );
    Check::new("refusals_explained", Class::Safety, listed(wrong), summary)
}

/// Safety `no_task_lost`: every acknowledged task stays listed (no poll ever
/// answers 404, and a poll has answered for it by `at`, the check, unless it
/// was acknowledged within [`UNSEEN_GRACE`] of the check or the gateway or
/// the client's link was disturbed all the time since) and none of its runs
/// disappears: indexes are 0.. without gaps, never more than its repeats, and
/// all of them once the task is final (unless cancelled).
pub fn no_task_lost(obs: &TaskObservations, excuses: &Excuses, at: Duration) -> Check {
    let mut wrong = Vec::new();
    let mut unseen = 0usize;
    let mut first_sight = Duration::ZERO;
    for (id, (plan, acked_at)) in &obs.acked {
        let seen = obs.seen.get(id);
        if let Some(first) = seen.and_then(|s| s.first_at) {
            first_sight = first_sight.max(first.saturating_sub(*acked_at));
        }
        if let Some(at) = seen.and_then(|s| s.missing_at) {
            wrong.push(format!(
                "{id}: acknowledged at {:.3}s, answered 404 at {:.3}s",
                acked_at.as_secs_f64(),
                at.as_secs_f64()
            ));
            continue;
        }
        let Some(task) = seen.and_then(|s| s.latest.as_ref()) else {
            if excuses.covers(*acked_at, at.saturating_sub(UNSEEN_GRACE)) {
                unseen += 1;
            } else {
                wrong.push(format!(
                    "{id}: acknowledged at {:.3}s, never seen by a poll by {:.3}s (nothing \
                     disturbed the gateway or its link with the client all that time)",
                    acked_at.as_secs_f64(),
                    at.as_secs_f64()
                ));
            }
            continue;
        };
        let runs = task["runs"].as_array().cloned().unwrap_or_default();
        let indexes: Vec<u64> = runs.iter().filter_map(|r| r["index"].as_u64()).collect();
        let expected: Vec<u64> = (0..indexes.len() as u64).collect();
        if indexes != expected || runs.len() > plan.repeats as usize {
            wrong.push(format!("{id}: run indexes {indexes:?} of {}", plan.repeats));
        }
        let status = task["status"].as_str().unwrap_or_default();
        // A cancel sent but not yet answered may already have taken effect.
        let cancelled = obs.cancels_asked.contains(id);
        if is_final(status) && !cancelled && runs.len() != plan.repeats as usize {
            wrong.push(format!(
                "{id}: {status} with {} runs of {}",
                runs.len(),
                plan.repeats
            ));
        }
    }
    let summary = format!(
        "{} acknowledged, {} refused, {} requests retried, slowest first sight {:.3}s after \
         the ack, {unseen} not seen yet (excused), gateway started {} times",
        obs.acked.len(),
        obs.refused.len(),
        obs.retries,
        first_sight.as_secs_f64(),
        obs.gateway_starts
    );
    Check::new("no_task_lost", Class::Safety, wrong, summary)
}

/// Safety `one_terminal_status`: a task's polled statuses hold at most one
/// terminal status, last; a run's terminal record never changes; terminal runs
/// carry `finished_ms`; succeeded runs carry the natively computed answer
/// (unless one of `forgers` ran them); the task's status agrees with its runs.
pub fn one_terminal_status(obs: &TaskObservations, forgers: &BTreeSet<String>) -> Check {
    let mut wrong = Vec::new();
    let (mut runs_final, mut retried, mut busy_ms) = (0usize, 0usize, 0u64);
    for (id, seen) in &obs.seen {
        let finals = seen.history.iter().filter(|s| is_final(s)).count();
        let last_final = seen.history.last().is_some_and(|s| is_final(s));
        if finals > 1 || (finals == 1 && !last_final) {
            wrong.push(format!("{id}: status history {:?}", seen.history));
        }
        for (index, first, later) in &seen.run_changes {
            wrong.push(format!(
                "{id}/{index}: terminal record changed ({})",
                changed_fields(first, later)
            ));
        }
        let Some((plan, _)) = obs.acked.get(id) else {
            continue;
        };
        let answer = json!([i64::from(hash_puzzle(plan.input, plan.difficulty))]);
        for (index, run) in &seen.final_runs {
            runs_final += 1;
            retried += usize::from(run["attempt"].as_u64() > Some(1));
            if let (Some(a), Some(b)) = (run["started_ms"].as_u64(), run["finished_ms"].as_u64()) {
                busy_ms = busy_ms.max(b.saturating_sub(a));
            }
            if run["finished_ms"].is_null() {
                wrong.push(format!("{id}/{index}: terminal run without finished_ms"));
            }
            // A rogue worker's results are judged by `forgeries_attributed`.
            let forged = run["worker"].as_str().is_some_and(|w| forgers.contains(w));
            if run["status"] == "succeeded" && run["results"] != answer && !forged {
                wrong.push(format!(
                    "{id}/{index}: results {} but the native answer is {answer}",
                    run["results"]
                ));
            }
        }
        if let Some(task) = &seen.latest {
            if let Some(problem) =
                status_disagrees(task, plan.repeats, obs.cancels_asked.contains(id))
            {
                wrong.push(format!("{id}: {problem}"));
            }
        }
    }
    let summary = format!(
        "{} tasks polled, {runs_final} terminal runs, {retried} of them after a retry, \
         longest {busy_ms} ms",
        obs.seen.len()
    );
    Check::new("one_terminal_status", Class::Safety, wrong, summary)
}

/// The fields that differ between two records of a run, as `field a -> b`.
fn changed_fields(first: &Value, later: &Value) -> String {
    let (Some(a), Some(b)) = (first.as_object(), later.as_object()) else {
        return format!("{first} -> {later}");
    };
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            let show = |v: Option<&Value>| v.map_or("absent".to_string(), Value::to_string);
            format!("{k} {} -> {}", show(a.get(k)), show(b.get(k)))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A final task whose status does not follow from its runs, described.
fn status_disagrees(task: &Value, repeats: u32, cancel_asked: bool) -> Option<String> {
    let status = task["status"].as_str().unwrap_or_default();
    if !is_final(status) {
        return None;
    }
    let runs = task["runs"].as_array().cloned().unwrap_or_default();
    let succeeded = runs.iter().filter(|r| r["status"] == "succeeded").count() as u64;
    if task["completions"].as_u64() != Some(succeeded) {
        return Some(format!(
            "completions {} but {succeeded} runs succeeded",
            task["completions"]
        ));
    }
    let expected = if status == "cancelled" && cancel_asked {
        "cancelled"
    } else if succeeded == u64::from(repeats) {
        "succeeded"
    } else {
        "failed"
    };
    (status != expected).then(|| format!("status {status}, its runs say {expected}"))
}

/// Safety `cancel_stops_runs`: no run of a task starts after its cancel was
/// acknowledged with status `cancelled`.
pub fn cancel_stops_runs(obs: &TaskObservations) -> Check {
    let mut wrong = Vec::new();
    let mut cancelled = 0;
    for (id, cancel) in &obs.cancels {
        if cancel.status != "cancelled" {
            if !is_final(&cancel.status) {
                wrong.push(format!(
                    "{id}: cancel answered with status {}",
                    cancel.status
                ));
            }
            continue;
        }
        cancelled += 1;
        let Some(task) = obs.seen.get(id).and_then(|s| s.latest.as_ref()) else {
            continue;
        };
        for run in task["runs"].as_array().into_iter().flatten() {
            if let Some(started) = run["started_ms"].as_u64() {
                if started > cancel.acked_ms {
                    wrong.push(format!(
                        "{id}/{}: started at {started} ms, after the cancel was acknowledged \
                         at {} ms",
                        run["index"], cancel.acked_ms
                    ));
                }
            }
        }
    }
    let summary = format!(
        "{} cancels acknowledged, {cancelled} of them cancelled the task",
        obs.cancels.len()
    );
    Check::new("cancel_stops_runs", Class::Safety, wrong, summary)
}

/// Safety `history_checked`: the client's whole history (every submission,
/// cancel and read, with simulated invocation and completion times) passes
/// `ww_sched::history::check`: one terminal state per task and never left,
/// a run's outcome once read never changes, no run starts after an
/// acknowledged cancel, one submission is at most one task. The gateway and
/// the client read one simulated clock (tolerance 0); the run may end with
/// tasks unfinished, so finishing is left to `runs_finish_within_s`.
pub fn history_checked(obs: &TaskObservations) -> Check {
    let config = CheckConfig {
        clock_tolerance_ms: 0,
        require_final: false,
    };
    let report = check(&obs.history, &[], &config);
    let wrong = report.violations.iter().map(ToString::to_string).collect();
    let summary = format!(
        "{} operations checked, {} violations",
        report.operations_checked,
        report.violations.len()
    );
    Check::new("history_checked", Class::Safety, listed(wrong), summary)
}

/// When a task became final by the gateway's clock (its latest run's
/// `finished_ms`, simulated time like the client's), or when the client first
/// saw it final if it has no finished run (cancelled before any run was due).
fn finished_at(seen: &TaskSeen) -> Option<Duration> {
    seen.final_at?;
    let latest = seen.latest.as_ref()?;
    latest["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|run| run["finished_ms"].as_u64())
        .max()
        .map(Duration::from_millis)
        .or(seen.final_at)
}

/// Liveness `runs_finish_within_s`: every planned submission is answered, and
/// every acknowledged task is final by `bound` after the later of `quiet_from`
/// and its last run's due time (a deadline after `end` is not judged). The time
/// judged is the gateway's own `finished_ms`, not when the poller happened to
/// look.
pub fn runs_finish_within(
    obs: &TaskObservations,
    quiet_from: Duration,
    bound: Duration,
    end: Duration,
) -> Check {
    let mut wrong = Vec::new();
    let mut slowest = Duration::ZERO;
    let mut unjudged = 0usize;
    let answered = obs.acked.len() + obs.refused.len();
    if answered < obs.planned {
        wrong.push(format!(
            "{} of {} planned submissions never answered",
            obs.planned - answered,
            obs.planned
        ));
    }
    for (id, (plan, acked_at)) in &obs.acked {
        let last_due = *acked_at
            + Duration::from_millis(
                plan.start_ms + u64::from(plan.repeats.saturating_sub(1)) * plan.delay_ms,
            );
        let deadline = quiet_from.max(last_due) + bound;
        match obs.seen.get(id).and_then(finished_at) {
            Some(at) if at <= deadline => {
                slowest = slowest.max(at.saturating_sub(quiet_from.max(last_due)));
            }
            None if deadline > end => unjudged += 1,
            Some(at) => wrong.push(format!(
                "{id}: final at {:.3}s, deadline {:.3}s",
                at.as_secs_f64(),
                deadline.as_secs_f64()
            )),
            None => wrong.push(format!(
                "{id}: not final by the end (deadline {:.3}s; last status {:?})",
                deadline.as_secs_f64(),
                obs.seen.get(id).and_then(|s| s.history.last())
            )),
        }
    }
    let summary = format!(
        "{} tasks ({unjudged} with deadlines past the end), slowest final {:.3}s after \
         its start point",
        obs.acked.len(),
        slowest.as_secs_f64()
    );
    Check::new("runs_finish_within_s", Class::Liveness, wrong, summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    fn refusal(sent: f64, at: f64, status: Option<u16>) -> Refusal {
        Refusal {
            host: "gateway".into(),
            sent: s(sent),
            at: s(at),
            method: "POST".into(),
            path: "/tasks".into(),
            status,
            body: String::new(),
        }
    }

    #[test]
    fn refusals_are_explained_only_by_what_can_cause_them() {
        let windows = [
            // Crashed at 20 s, restarted at 24 s.
            Window {
                cause: Cause::Down,
                from: s(20.0),
                until: Some(s(24.0)),
            },
            // The client's link cut from 40 s to 42 s.
            Window {
                cause: Cause::Link,
                from: s(40.0),
                until: Some(s(42.0)),
            },
            // A disk fault from 60 s, never healed.
            Window {
                cause: Cause::Disk,
                from: s(60.0),
                until: None,
            },
        ];
        let excuses = Excuses::new(&windows, s(80.0));
        let cases = [
            // The start counts as a restart.
            (refusal(0.0, 0.1, None), Some(Cause::Down)),
            (refusal(4.9, 5.2, Some(503)), Some(Cause::Down)),
            (refusal(5.1, 5.2, Some(500)), None),
            (refusal(10.0, 13.0, None), None),
            // Down, and the restart's grace.
            (refusal(19.0, 22.0, None), Some(Cause::Down)),
            (refusal(28.0, 28.5, Some(503)), Some(Cause::Down)),
            (refusal(29.5, 29.6, Some(503)), None),
            // A cut link explains no answer, not an answer.
            (refusal(39.0, 42.0, None), Some(Cause::Link)),
            (refusal(42.9, 43.0, None), Some(Cause::Link)),
            (refusal(41.0, 41.1, Some(500)), None),
            (refusal(43.5, 44.0, None), None),
            // A disk fault, to the end.
            (refusal(70.0, 70.1, Some(503)), Some(Cause::Disk)),
            // A 4xx refusal of a submission, never.
            (refusal(21.0, 21.0, Some(400)), None),
            (refusal(70.0, 70.1, Some(422)), None),
        ];
        for (refusal, expected) in cases {
            assert_eq!(excuses.explain(&refusal), expected, "{refusal:?}");
        }
    }

    #[test]
    fn an_acknowledged_task_never_polled_is_lost_unless_recent_or_excused() {
        use crate::workload::tasks::Plan;
        let plan = Plan {
            id: String::new(),
            at_ms: 0,
            input: 1,
            difficulty: 0,
            start_ms: 0,
            delay_ms: 200,
            repeats: 1,
            cancel_after_ms: None,
        };
        // The gateway down from 10 s to the end; its link cut from `cut` to 10 s.
        let windows = |cut: f64| {
            [
                Window {
                    cause: Cause::Down,
                    from: s(10.0),
                    until: None,
                },
                Window {
                    cause: Cause::Link,
                    from: s(cut),
                    until: Some(s(10.0)),
                },
            ]
        };
        let end = s(40.0);
        let gap = Excuses::new(&windows(7.0), end);
        assert!(
            !gap.covers(s(4.0), s(7.5)),
            "5 s (the start's grace) to 7 s is not"
        );
        assert!(gap.covers(s(7.0), end));
        assert!(gap.covers(s(6.0), s(6.0)), "an empty interval is");
        let excuses = Excuses::new(&windows(4.0), end);
        assert!(
            excuses.covers(Duration::ZERO, end),
            "the start's grace, the cut, down"
        );
        let mut obs = TaskObservations::default();
        for (id, acked) in [("early", 1.0), ("cut", 3.5)] {
            obs.acked.insert(id.into(), (plan.clone(), s(acked)));
        }
        let check = no_task_lost(&obs, &excuses, end);
        assert!(check.held(), "{:?}", check.violations);

        // Healthy all the time: only a task acknowledged within the grace is excused.
        let excuses = Excuses::new(&[], end);
        obs.acked
            .insert("recent".into(), (plan, end - UNSEEN_GRACE / 2));
        let check = no_task_lost(&obs, &excuses, end);
        assert_eq!(check.violations.len(), 2, "{:?}", check.violations);
        assert!(
            check.violations[0].starts_with("cut: acknowledged at 3.500s, never seen by a poll"),
            "{:?}",
            check.violations
        );
        assert!(check.summary.contains("1 not seen yet (excused)"));
    }

    #[test]
    fn unexplained_refusals_are_named_and_listed_up_to_a_bound() {
        let excuses = Excuses::new(&[], s(80.0));
        let obs = TaskObservations {
            requests: 40,
            refusals: (0..30)
                .map(|i| refusal(10.0 + f64::from(i), 10.5 + f64::from(i), Some(500)))
                .collect(),
            ..TaskObservations::default()
        };
        let check = refusals_explained(&obs, &excuses);
        assert_eq!(check.violations.len(), VIOLATIONS_LISTED_MAX + 1);
        assert_eq!(
            check.violations[0],
            "POST /tasks sent at 10.000s, answered 500 at 10.500s: ; no crash, restart or \
             disk fault of the gateway overlaps it"
        );
        assert_eq!(check.violations[VIOLATIONS_LISTED_MAX], "... and 10 more");
        assert!(check
            .summary
            .starts_with("40 requests, 30 not served, 0 explained"));
    }
}
