//! The history checker: four rules over a recorded client history.
//!
//! Order between operations is real time on the client's clock: `a` precedes
//! `b` when `a` was answered before `b` was sent ([`Operation::precedes`]);
//! concurrent operations are ordered neither way, so a read racing a change
//! may show either side of it. The one rule that compares the client's clock
//! with the gateway's (`started_ms`) allows [`CheckConfig::clock_tolerance_ms`].

use std::collections::BTreeMap;
use std::fmt;

use super::{is_terminal, History, Observed, OpKind, Operation, Outcome, RunView, TaskView};

/// Which promise a violation breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rule {
    /// (a) Every acknowledged task reaches exactly one terminal state (in the
    /// final reads), is never seen leaving it, never with two, never lost.
    OneTerminalState,
    /// (b) A run's outcome (status, results, attempt, finish time), once read
    /// terminal, never changes or disappears in a later read.
    ResultsStable,
    /// (c) No run starts, and no run gets a new attempt, after a cancel that
    /// answered `cancelled` was acknowledged.
    CancelStopsRuns,
    /// (d) One submission is at most one task: an idempotency key names one
    /// id, an id is listed once, no two listed tasks carry one key.
    NoDuplicateTasks,
}

impl Rule {
    /// The rule's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Rule::OneTerminalState => "one_terminal_state",
            Rule::ResultsStable => "results_stable",
            Rule::CancelStopsRuns => "cancel_stops_runs",
            Rule::NoDuplicateTasks => "no_duplicate_tasks",
        }
    }
}

/// One broken promise and the operations that show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The rule broken.
    pub rule: Rule,
    /// What is wrong, in words.
    pub message: String,
    /// The operations involved: index (in the history, then the final reads
    /// numbered on after it) and rendering.
    pub operations: Vec<(usize, String)>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.rule.name(), self.message)?;
        for (index, op) in &self.operations {
            write!(f, "\n    op {index}: {op}")?;
        }
        Ok(())
    }
}

/// The checker's verdict.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Operations judged (the history and the final reads).
    pub operations_checked: usize,
    /// Every violation found (at most one per rule, task and run).
    pub violations: Vec<Violation>,
}

impl Report {
    /// Whether no rule was broken.
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }
}

/// How to judge a history.
#[derive(Clone, Copy, Debug)]
pub struct CheckConfig {
    /// Slack between the gateway's clock (`started_ms`) and the client's
    /// (a cancel's completion time): 0 when both read one clock (a
    /// simulation); on real hosts sharing the system clock, the drift of the
    /// gateway's monotonic-advanced clock from it plus rounding.
    pub clock_tolerance_ms: u64,
    /// Whether every acknowledged task must be terminal in the final reads
    /// (a run that ends healed and quiet); otherwise rule (a) judges only what
    /// was seen (a simulation that ends mid-run).
    pub require_final: bool,
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig {
            clock_tolerance_ms: 0,
            require_final: true,
        }
    }
}

/// Judges `history` and the `final_reads` taken after it (all faults healed,
/// every task given time to finish) under `config`. Final reads are numbered
/// after the history's operations in the report.
pub fn check(history: &History, final_reads: &[Operation], config: &CheckConfig) -> Report {
    let ops: Vec<&Operation> = history.operations().iter().chain(final_reads).collect();
    let first_final = history.len();
    let mut checker = Checker {
        ops: &ops,
        found: BTreeMap::new(),
    };
    let by_task = checker.by_task();
    for (id, indexes) in &by_task {
        checker.terminal_state(id, indexes, first_final, config);
        checker.results_stable(id, indexes);
        checker.cancel_stops_runs(id, indexes, config);
    }
    checker.no_duplicates();
    Report {
        operations_checked: ops.len(),
        violations: checker.found.into_values().collect(),
    }
}

/// Where a violation is filed: one per rule, task and run (`u32::MAX` for
/// the task itself), so a broken task reports once, not at every later read.
type Slot = (Rule, String, u32);

struct Checker<'a> {
    ops: &'a [&'a Operation],
    found: BTreeMap<Slot, Violation>,
}

/// The task status an operation showed: a read's, a cancel's answer; `None`
/// for a 404.
fn status_shown(op: &Operation) -> Option<Option<&str>> {
    match &op.outcome {
        Outcome::Ok(Observed::Task(view)) => Some(Some(view.status.as_str())),
        Outcome::Ok(Observed::Cancelled { status }) => Some(Some(status.as_str())),
        Outcome::Ok(Observed::NotFound) => Some(None),
        _ => None,
    }
}

/// A terminal run's outcome, compared between reads.
fn outcome_of(run: &RunView) -> (String, Vec<i64>, u32, Option<u64>) {
    (
        run.status.clone(),
        run.results.clone(),
        run.attempt,
        run.finished_ms,
    )
}

impl Checker<'_> {
    fn file(&mut self, rule: Rule, id: &str, run: u32, message: String, involved: &[usize]) {
        let ops = self.ops;
        self.found
            .entry((rule, id.to_string(), run))
            .or_insert_with(|| Violation {
                rule,
                message,
                operations: involved.iter().map(|&i| (i, ops[i].to_string())).collect(),
            });
    }

    /// Operations per task id, in recorded order.
    fn by_task(&self) -> BTreeMap<String, Vec<usize>> {
        let mut by_task: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, op) in self.ops.iter().enumerate() {
            if let Some(id) = op.task_id() {
                by_task.entry(id.to_string()).or_default().push(i);
            }
        }
        by_task
    }

    fn terminal_state(
        &mut self,
        id: &str,
        indexes: &[usize],
        first_final: usize,
        cfg: &CheckConfig,
    ) {
        let ops = self.ops;
        let ack = indexes.iter().copied().find(|&i| {
            matches!(ops[i].kind, OpKind::Submit { .. })
                && matches!(ops[i].outcome, Outcome::Ok(Observed::Submitted { .. }))
        });
        // The earliest-answered operation showing each terminal status.
        let mut terminal: BTreeMap<&str, usize> = BTreeMap::new();
        for &i in indexes {
            if let Some(Some(status)) = status_shown(ops[i]) {
                if is_terminal(status) {
                    let slot = terminal.entry(status).or_insert(i);
                    if ops[i].completed_ms < ops[*slot].completed_ms {
                        *slot = i;
                    }
                }
            }
        }
        if terminal.len() > 1 {
            let involved: Vec<usize> = terminal.values().copied().collect();
            let statuses: Vec<&str> = terminal.keys().copied().collect();
            let message = format!("{id}: seen with terminal statuses {statuses:?}");
            self.file(Rule::OneTerminalState, id, u32::MAX, message, &involved);
        }
        for &j in indexes {
            let Some(shown) = status_shown(ops[j]) else {
                continue;
            };
            if let (None, Some(a)) = (shown, ack) {
                if ops[a].precedes(ops[j]) {
                    let message = format!("{id}: acknowledged, then answered 404");
                    self.file(Rule::OneTerminalState, id, u32::MAX, message, &[a, j]);
                }
            }
            for (&status, &i) in &terminal {
                if ops[i].precedes(ops[j]) && shown != Some(status) {
                    let message = format!(
                        "{id}: seen {status}, later {}",
                        shown.unwrap_or("not found (404)")
                    );
                    self.file(Rule::OneTerminalState, id, u32::MAX, message, &[i, j]);
                }
            }
        }
        let (Some(a), true) = (ack, cfg.require_final) else {
            return;
        };
        let finals: Vec<usize> = indexes
            .iter()
            .copied()
            .filter(|&i| i >= first_final)
            .collect();
        match finals.last() {
            None => {
                let message = format!("{id}: acknowledged, but no final read of it");
                self.file(Rule::OneTerminalState, id, u32::MAX, message, &[a]);
            }
            Some(&f) => match status_shown(ops[f]) {
                Some(Some(status)) if is_terminal(status) => {}
                shown => {
                    let message = format!(
                        "{id}: acknowledged, not terminal in the final read ({})",
                        match shown {
                            Some(Some(status)) => status,
                            Some(None) => "not found",
                            None => "no answer",
                        }
                    );
                    self.file(Rule::OneTerminalState, id, u32::MAX, message, &[a, f]);
                }
            },
        }
    }

    fn results_stable(&mut self, id: &str, indexes: &[usize]) {
        let ops = self.ops;
        let views: Vec<(usize, &TaskView)> = indexes
            .iter()
            .filter_map(|&i| ops[i].task_view().map(|v| (i, v)))
            .collect();
        // Per run: the earliest-answered read of each terminal outcome seen.
        type Outcomes = BTreeMap<(String, Vec<i64>, u32, Option<u64>), usize>;
        let mut terminal: BTreeMap<u32, Outcomes> = BTreeMap::new();
        for &(i, view) in &views {
            for run in view.runs.iter().filter(|r| is_terminal(&r.status)) {
                let slot = terminal
                    .entry(run.index)
                    .or_default()
                    .entry(outcome_of(run))
                    .or_insert(i);
                if ops[i].completed_ms < ops[*slot].completed_ms {
                    *slot = i;
                }
            }
        }
        for (&index, outcomes) in &terminal {
            if outcomes.len() > 1 {
                let involved: Vec<usize> = outcomes.values().copied().collect();
                let message = format!("{id}/{index}: terminal outcome read differently");
                self.file(Rule::ResultsStable, id, index, message, &involved);
            }
            for &(j, view) in &views {
                let later = view.runs.iter().find(|r| r.index == index);
                let vanished = later.is_none() && view.runs_total.is_some_and(|n| n <= index);
                for (outcome, &i) in outcomes {
                    if !ops[i].precedes(ops[j]) {
                        continue;
                    }
                    let changed = later.is_some_and(|r| outcome_of(r) != *outcome);
                    if changed || vanished {
                        let message = if vanished {
                            format!("{id}/{index}: read {}, later gone", outcome.0)
                        } else {
                            format!("{id}/{index}: read {}, later changed", outcome.0)
                        };
                        self.file(Rule::ResultsStable, id, index, message, &[i, j]);
                    }
                }
            }
        }
    }

    fn cancel_stops_runs(&mut self, id: &str, indexes: &[usize], cfg: &CheckConfig) {
        let ops = self.ops;
        for &c in indexes {
            let (OpKind::Cancel { .. }, Outcome::Ok(Observed::Cancelled { status })) =
                (&ops[c].kind, &ops[c].outcome)
            else {
                continue;
            };
            if !is_terminal(status) {
                let message = format!("{id}: cancel acknowledged with status {status}");
                self.file(Rule::CancelStopsRuns, id, u32::MAX, message, &[c]);
                continue;
            }
            let Some(acked) = ops[c].completed_ms.filter(|_| status == "cancelled") else {
                continue;
            };
            // Runs seen by reads sent after the cancel was acknowledged: the
            // first such read of each run is the baseline for its attempts.
            let mut baseline: BTreeMap<u32, (usize, u32)> = BTreeMap::new();
            for &j in indexes {
                let Some(view) = ops[j].task_view() else {
                    continue;
                };
                for run in &view.runs {
                    if let Some(started) = run.started_ms {
                        if started > acked + cfg.clock_tolerance_ms {
                            let message = format!(
                                "{id}/{}: started at {started} ms, after the cancel was \
                                 acknowledged at {acked} ms (tolerance {} ms)",
                                run.index, cfg.clock_tolerance_ms
                            );
                            self.file(Rule::CancelStopsRuns, id, run.index, message, &[c, j]);
                        }
                    }
                    if !ops[c].precedes(ops[j]) {
                        continue;
                    }
                    match baseline.get(&run.index) {
                        Some(&(b, attempt)) if ops[b].precedes(ops[j]) && run.attempt > attempt => {
                            let message = format!(
                                "{id}/{}: attempt {attempt} after the cancel, later {}",
                                run.index, run.attempt
                            );
                            self.file(Rule::CancelStopsRuns, id, run.index, message, &[c, b, j]);
                        }
                        Some(_) => {}
                        None => {
                            baseline.insert(run.index, (j, run.attempt));
                        }
                    }
                }
            }
        }
    }

    fn no_duplicates(&mut self) {
        let ops = self.ops;
        // Acknowledged submissions: key -> (id -> first ack).
        let mut by_key: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
        for (i, op) in ops.iter().enumerate() {
            let (
                OpKind::Submit {
                    id: asked,
                    idempotency_key,
                },
                Outcome::Ok(Observed::Submitted { id }),
            ) = (&op.kind, &op.outcome)
            else {
                continue;
            };
            if asked.as_deref().is_some_and(|asked| asked != id) {
                let message = format!("submission of {asked:?} acknowledged as {id}");
                self.file(Rule::NoDuplicateTasks, id, u32::MAX, message, &[i]);
            }
            by_key
                .entry(idempotency_key)
                .or_default()
                .entry(id)
                .or_insert(i);
        }
        for (key, ids) in &by_key {
            if ids.len() > 1 {
                let involved: Vec<usize> = ids.values().copied().collect();
                let message = format!("key {key} acknowledged as tasks {:?}", ids.keys());
                self.file(Rule::NoDuplicateTasks, key, u32::MAX, message, &involved);
            }
        }
        for (i, op) in ops.iter().enumerate() {
            let Outcome::Ok(Observed::Listing(items)) = &op.outcome else {
                continue;
            };
            let mut ids: BTreeMap<&str, usize> = BTreeMap::new();
            let mut keys: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for item in items {
                *ids.entry(&item.id).or_default() += 1;
                if let Some(key) = &item.key {
                    keys.entry(key).or_default().push(&item.id);
                }
            }
            for (id, n) in ids.into_iter().filter(|(_, n)| *n > 1) {
                let message = format!("{id} listed {n} times");
                self.file(Rule::NoDuplicateTasks, id, u32::MAX, message, &[i]);
            }
            for (key, listed) in keys {
                let mut involved = vec![i];
                let acked = by_key.get(key);
                involved.extend(acked.into_iter().flat_map(|m| m.values().copied()));
                let foreign = listed
                    .iter()
                    .find(|id| acked.is_some_and(|m| !m.contains_key(**id)));
                if listed.len() > 1 {
                    let message = format!("key {key} listed as tasks {listed:?}");
                    self.file(Rule::NoDuplicateTasks, key, u32::MAX, message, &involved);
                } else if let Some(other) = foreign {
                    let message = format!("key {key} listed as {other}, acknowledged as another");
                    self.file(Rule::NoDuplicateTasks, key, u32::MAX, message, &involved);
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
