//! The invariants of the lease protocol, judged by replaying the store's op
//! log and the gateways' action log in order, with the checker's own account
//! of leases, owners, starts and final records (never the gateways' claims).

use std::collections::{BTreeMap, BTreeSet};

use ww_sched::lease::model::{Reply, Request, TaskStatus};
use ww_sched::lease::{Epoch, GatewayId, RunOutcome, TaskId};

use super::leases::{host_of, Action, ActionRecord, LeaseLog, OpRecord};
use crate::scenario::verdict::{Check, Class};

/// Every violation and measurement of one run.
#[derive(Debug, Default)]
pub struct Findings {
    one_terminal: Vec<String>,
    runs_once: Vec<String>,
    cancel: Vec<String>,
    lease: Vec<String>,
    terminal_at: BTreeMap<TaskId, u64>,
    acked_at: BTreeMap<TaskId, u64>,
    /// From a cancel's commit (or the run's dispatch, if later) to its stop.
    cancel_stop_ms: Vec<u64>,
    /// From a crash, partition or hold of a gateway holding open tasks to the
    /// first start of one of them by another gateway.
    takeover_ms: Vec<u64>,
    /// Cuts whose open tasks no other gateway started, and when they were.
    takeovers_missing: Vec<(u64, String)>,
    dispatches: usize,
    acks: usize,
    finals: usize,
    claims: usize,
}

#[derive(Default)]
struct Replay {
    lease_ms: u64,
    rows: BTreeMap<GatewayId, (Epoch, u64)>,
    owner: BTreeMap<TaskId, (GatewayId, Epoch)>,
    runs: BTreeMap<TaskId, u32>,
    terminal: BTreeMap<TaskId, TaskStatus>,
    cancel_committed: BTreeMap<TaskId, u64>,
    cancel_acked: BTreeSet<TaskId>,
    started: BTreeMap<(TaskId, u32), u32>,
    finals: BTreeMap<(TaskId, u32), Option<RunOutcome>>,
    on_workers: BTreeMap<(TaskId, u32, u32), u64>,
    /// Open cuts: (when, gateway, the open tasks it owned).
    watches: Vec<(u64, GatewayId, BTreeSet<TaskId>)>,
    found: Findings,
}

enum Entry<'a> {
    Op(&'a OpRecord),
    Act(&'a ActionRecord),
    Cut(u64, GatewayId, &'static str),
}

/// Replays `log` (leases of `lease_ms`) and collects every finding.
pub fn judge(log: &LeaseLog, lease_ms: u64) -> Findings {
    let mut entries: Vec<(u64, Entry<'_>)> = log
        .ops
        .iter()
        .map(|o| (o.seq, Entry::Op(o)))
        .chain(log.actions.iter().map(|a| (a.seq, Entry::Act(a))))
        .chain(
            log.cuts
                .iter()
                .map(|(seq, at, g, what)| (*seq, Entry::Cut(*at, *g, what))),
        )
        .collect();
    entries.sort_by_key(|(seq, _)| *seq);
    let mut replay = Replay {
        lease_ms,
        ..Replay::default()
    };
    for (_, entry) in entries {
        match entry {
            Entry::Op(op) => replay.op(op),
            Entry::Act(act) => replay.action(act),
            Entry::Cut(at, g, what) => replay.cut(at, g, what),
        }
    }
    for (at, g, open) in replay.watches {
        if open.iter().any(|t| !replay.terminal.contains_key(t)) {
            replay.found.takeovers_missing.push((
                at,
                format!(
                    "{} lost touch at {:.3}s holding {} open tasks; no other gateway started one",
                    host_of(g),
                    at as f64 / 1e3,
                    open.len()
                ),
            ));
        }
    }
    replay.found
}

impl Replay {
    fn valid(&self, g: GatewayId, epoch: Epoch, at_ms: u64) -> bool {
        self.rows
            .get(&g)
            .is_some_and(|(e, expires)| *e == epoch && *expires > at_ms)
    }

    fn row_text(&self, g: GatewayId) -> String {
        match self.rows.get(&g) {
            Some((e, expires)) => format!("epoch {e}, expires {:.3}s", *expires as f64 / 1e3),
            None => "no row".into(),
        }
    }

    fn cut(&mut self, at_ms: u64, g: GatewayId, what: &str) {
        if !matches!(what, "crash" | "partition" | "hold" | "pause") {
            return;
        }
        let open: BTreeSet<TaskId> = self
            .owner
            .iter()
            .filter(|(t, (owner, _))| *owner == g && !self.terminal.contains_key(*t))
            .map(|(t, _)| t.clone())
            .collect();
        if !open.is_empty() {
            self.watches.push((at_ms, g, open));
        }
    }

    fn op(&mut self, op: &OpRecord) {
        let at = op.at_ms;
        let when = format!("{:.3}s", at as f64 / 1e3);
        match (&op.request, &op.reply) {
            (Request::Register { gateway, seen }, Reply::Registered { epoch }) => {
                let before = self.rows.get(gateway).map_or(0, |(e, _)| *e);
                if *seen != before || *epoch != before + 1 {
                    self.found.lease.push(format!(
                        "{when}: {} registered epoch {epoch} having seen {seen}, though its row \
                         was at epoch {before}",
                        host_of(*gateway)
                    ));
                }
                self.rows.insert(*gateway, (*epoch, at + self.lease_ms));
            }
            (Request::Renew { gateway, epoch }, Reply::Renewed) => {
                if !self.valid(*gateway, *epoch, at) {
                    self.found.lease.push(format!(
                        "{when}: the store renewed {} epoch {epoch} though its row was {}",
                        host_of(*gateway),
                        self.row_text(*gateway)
                    ));
                }
                self.rows.insert(*gateway, (*epoch, at + self.lease_ms));
            }
            (
                Request::Submit {
                    gateway,
                    epoch,
                    task,
                    runs,
                },
                Reply::Done,
            ) if !self.owner.contains_key(task) => {
                self.owner.insert(task.clone(), (*gateway, *epoch));
                self.runs.insert(task.clone(), *runs);
            }
            (Request::Claim { gateway, epoch, .. }, Reply::Claimed(tasks)) => {
                for claimed in tasks {
                    if let Some((old, old_epoch)) = self.owner.get(&claimed.task).copied() {
                        // Its own task, returned for reconciliation, is fine.
                        let own = (old, old_epoch) == (*gateway, *epoch);
                        if !own && self.valid(old, old_epoch, at) {
                            self.found.lease.push(format!(
                                "{when}: {} claimed {} from {} epoch {old_epoch} whose lease \
                                 was valid ({})",
                                host_of(*gateway),
                                claimed.task,
                                host_of(old),
                                self.row_text(old)
                            ));
                        }
                    }
                    if self.owner.insert(claimed.task.clone(), (*gateway, *epoch))
                        != Some((*gateway, *epoch))
                    {
                        self.found.claims += 1;
                    }
                }
            }
            (Request::StartRuns { .. }, Reply::Started(_)) => self.op_start(op, &when),
            (Request::FinishRun { .. }, Reply::Finished { .. }) => self.op_finish(op, &when),
            (Request::Cancel { task, .. }, Reply::Done) => match self.terminal.get(task) {
                Some(TaskStatus::Cancelled) => {}
                Some(other) => self.found.one_terminal.push(format!(
                    "{when}: {task} cancelled though already terminal ({other:?})"
                )),
                None => {
                    self.cancel_committed.insert(task.clone(), at);
                    let runs = self.runs.get(task).copied().unwrap_or_default();
                    for index in 0..runs {
                        self.finals.entry((task.clone(), index)).or_insert(None);
                    }
                    self.terminate(at, task, TaskStatus::Cancelled);
                }
            },
            _ => {}
        }
    }

    /// A committed start: after no cancel, by the owner under a valid lease.
    fn op_start(&mut self, op: &OpRecord, when: &str) {
        let (Request::StartRuns { gateway, epoch, .. }, Reply::Started(results)) =
            (&op.request, &op.reply)
        else {
            return;
        };
        let at = op.at_ms;
        for (run, result) in results {
            if result.is_err() {
                continue;
            }
            let who = format!("{} epoch {epoch}", host_of(*gateway));
            if let Some(cancel_at) = self.cancel_committed.get(&run.task) {
                self.found.cancel.push(format!(
                    "{when}: {who} started {} run {} attempt {} after its cancel \
                     committed at {:.3}s",
                    run.task,
                    run.index,
                    run.attempt,
                    *cancel_at as f64 / 1e3
                ));
            }
            if self.owner.get(&run.task) != Some(&(*gateway, *epoch))
                || !self.valid(*gateway, *epoch, at)
            {
                self.found.lease.push(format!(
                    "{when}: {who} started {} run {} without owning it under a valid \
                     lease",
                    run.task, run.index
                ));
            }
            self.started
                .insert((run.task.clone(), run.index), run.attempt);
            self.takeover(at, *gateway, &run.task);
        }
    }

    /// A committed outcome: by the owner under a valid lease, of the latest
    /// started attempt, once per run, before the task's terminal record.
    fn op_finish(&mut self, op: &OpRecord, when: &str) {
        let (
            Request::FinishRun {
                gateway,
                epoch,
                run,
                outcome,
            },
            Reply::Finished { terminal },
        ) = (&op.request, &op.reply)
        else {
            return;
        };
        let at = op.at_ms;
        self.found.finals += 1;
        let key = (run.task.clone(), run.index);
        if self.owner.get(&run.task) != Some(&(*gateway, *epoch))
            || !self.valid(*gateway, *epoch, at)
        {
            self.found.lease.push(format!(
                "{when}: {} epoch {epoch} recorded {} run {} without owning it under a \
                 valid lease (fencing)",
                host_of(*gateway),
                run.task,
                run.index
            ));
        }
        if self.finals.contains_key(&key) {
            self.found.runs_once.push(format!(
                "{when}: {} run {} got a second final record (attempt {})",
                run.task, run.index, run.attempt
            ));
        }
        if self.started.get(&key) != Some(&run.attempt) {
            self.found.runs_once.push(format!(
                "{when}: {} run {} recorded attempt {} though the latest started was {:?}",
                run.task,
                run.index,
                run.attempt,
                self.started.get(&key)
            ));
        }
        if self.terminal.contains_key(&run.task) {
            self.found.one_terminal.push(format!(
                "{when}: {} run {} recorded after the task was terminal",
                run.task, run.index
            ));
        }
        self.finals.insert(key, Some(*outcome));
        if let Some(status) = terminal {
            self.terminate(at, &run.task, *status);
        }
    }

    fn terminate(&mut self, at_ms: u64, task: &TaskId, status: TaskStatus) {
        let when = format!("{:.3}s", at_ms as f64 / 1e3);
        if let Some(earlier) = self.terminal.get(task) {
            self.found.one_terminal.push(format!(
                "{when}: {task} got a second terminal record {status:?} after {earlier:?}"
            ));
            return;
        }
        if status != TaskStatus::Cancelled {
            let runs = self.runs.get(task).copied().unwrap_or_default();
            let outcomes: Vec<Option<RunOutcome>> = (0..runs)
                .map(|i| self.finals.get(&(task.clone(), i)).copied().flatten())
                .collect();
            let all_final = outcomes.iter().all(Option::is_some);
            let succeeded = outcomes
                .iter()
                .filter(|o| **o == Some(RunOutcome::Succeeded))
                .count();
            let expected = if succeeded == runs as usize {
                TaskStatus::Succeeded
            } else {
                TaskStatus::Failed
            };
            if !all_final || expected != status {
                self.found.runs_once.push(format!(
                    "{when}: {task} terminal {status:?} with {succeeded} of {runs} runs \
                     succeeded (all final: {all_final})"
                ));
            }
        }
        self.terminal.insert(task.clone(), status);
        self.found.terminal_at.insert(task.clone(), at_ms);
    }

    fn takeover(&mut self, at_ms: u64, by: GatewayId, task: &TaskId) {
        let mut measured = Vec::new();
        self.watches.retain(|(cut_at, g, open)| {
            if *g != by && open.contains(task) {
                measured.push(at_ms - cut_at);
                false
            } else {
                true
            }
        });
        self.found.takeover_ms.extend(measured);
    }

    fn action(&mut self, record: &ActionRecord) {
        let at = record.at_ms;
        let g = record.gateway;
        let when = format!("{:.3}s", at as f64 / 1e3);
        let acting = match &record.action {
            Action::Dispatch { epoch, run } => {
                self.found.dispatches += 1;
                if self.cancel_acked.contains(&run.task) {
                    self.found.cancel.push(format!(
                        "{when}: {} dispatched {} run {} after its cancel was acknowledged",
                        host_of(g),
                        run.task,
                        run.index
                    ));
                }
                self.on_workers
                    .insert((run.task.clone(), run.index, run.attempt), at);
                Some(("dispatched", *epoch, run.task.clone()))
            }
            Action::Stop { run } => {
                let key = (run.task.clone(), run.index, run.attempt);
                if let (Some(dispatched), Some(cancelled)) = (
                    self.on_workers.remove(&key),
                    self.cancel_committed.get(&run.task),
                ) {
                    self.found
                        .cancel_stop_ms
                        .push(at - dispatched.max(*cancelled));
                }
                None
            }
            Action::RunDone { run } => {
                self.on_workers
                    .remove(&(run.task.clone(), run.index, run.attempt));
                None
            }
            Action::SubmitAcked { task, epoch } => {
                self.found.acks += 1;
                self.found.acked_at.entry(task.clone()).or_insert(at);
                Some(("acknowledged the submission of", *epoch, task.clone()))
            }
            Action::CancelAcked { task, epoch } => {
                self.found.acks += 1;
                if !self.cancel_committed.contains_key(task) {
                    self.found.cancel.push(format!(
                        "{when}: {} acknowledged the cancel of {task}, which no cancel committed",
                        host_of(g)
                    ));
                }
                self.cancel_acked.insert(task.clone());
                Some(("acknowledged the cancel of", *epoch, task.clone()))
            }
        };
        if let Some((what, epoch, task)) = acting {
            if !self.valid(g, epoch, at) {
                self.found.lease.push(format!(
                    "{when}: {} {what} {task} under epoch {epoch}, but at the store its row was {}",
                    host_of(g),
                    self.row_text(g)
                ));
            }
        }
    }
}

fn spread(values: &[u64]) -> String {
    if values.is_empty() {
        return "none".into();
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    format!(
        "n={} min {:.2}s median {:.2}s max {:.2}s",
        sorted.len(),
        sorted[0] as f64 / 1e3,
        sorted[sorted.len() / 2] as f64 / 1e3,
        sorted[sorted.len() - 1] as f64 / 1e3
    )
}

impl Findings {
    /// The takeover times measured, in ms.
    pub fn takeover_ms(&self) -> &[u64] {
        &self.takeover_ms
    }

    /// The cancel-to-stop times measured, in ms.
    pub fn cancel_stop_ms(&self) -> &[u64] {
        &self.cancel_stop_ms
    }

    /// Safety `lease_one_terminal`: at most one terminal record per task.
    pub fn one_terminal(&self) -> Check {
        Check::new(
            "lease_one_terminal",
            Class::Safety,
            self.one_terminal.clone(),
            format!("{} terminal records", self.terminal_at.len()),
        )
    }

    /// Safety `lease_runs_once`: each run has at most one final record, of
    /// its latest started attempt, and a task's status follows from them.
    pub fn runs_once(&self) -> Check {
        Check::new(
            "lease_runs_once",
            Class::Safety,
            self.runs_once.clone(),
            format!("{} run outcomes recorded", self.finals),
        )
    }

    /// Safety `lease_cancel_stops_runs`: no run started after its task's
    /// cancel committed, none dispatched after it was acknowledged.
    pub fn cancel_stops_runs(&self) -> Check {
        Check::new(
            "lease_cancel_stops_runs",
            Class::Safety,
            self.cancel.clone(),
            format!(
                "{} dispatches; cancel to stop of runs in flight: {}",
                self.dispatches,
                spread(&self.cancel_stop_ms)
            ),
        )
    }

    /// Safety `lease_valid_when_acting`: every dispatch and acknowledgement
    /// happened while the gateway's lease was valid at the store, and every
    /// claim, start and outcome was fenced.
    pub fn valid_when_acting(&self) -> Check {
        Check::new(
            "lease_valid_when_acting",
            Class::Safety,
            self.lease.clone(),
            format!(
                "{} dispatches, {} acknowledgements, {} tasks claimed",
                self.dispatches, self.acks, self.claims
            ),
        )
    }

    /// Liveness `lease_tasks_final_within_s`: every acknowledged task is
    /// terminal within `bound_ms` of the later of its ack and `quiet_ms`.
    pub fn tasks_final_within(&self, quiet_ms: u64, bound_ms: u64) -> Check {
        let mut late = Vec::new();
        let mut slowest = 0;
        for (task, acked) in &self.acked_at {
            let from = quiet_ms.max(*acked);
            match self.terminal_at.get(task) {
                Some(at) if *at <= from + bound_ms => {
                    slowest = slowest.max(at.saturating_sub(from))
                }
                Some(at) => late.push(format!(
                    "{task} (acknowledged at {:.3}s) terminal only at {:.3}s",
                    *acked as f64 / 1e3,
                    *at as f64 / 1e3
                )),
                None => late.push(format!(
                    "{task} (acknowledged at {:.3}s) never terminal",
                    *acked as f64 / 1e3
                )),
            }
        }
        Check::new(
            "lease_tasks_final_within_s",
            Class::Liveness,
            late,
            format!(
                "{} acknowledged tasks; slowest {:.2}s after the later of its ack and the last \
                 fault",
                self.acked_at.len(),
                slowest as f64 / 1e3
            ),
        )
    }

    /// Liveness `lease_takeover_within_s`: after a gateway holding open tasks
    /// crashed or was cut off, another gateway started one within `bound_ms`.
    pub fn takeover_within(&self, bound_ms: u64) -> Check {
        let mut violations: Vec<String> = self
            .takeover_ms
            .iter()
            .filter(|t| **t > bound_ms)
            .map(|t| format!("a takeover took {:.3}s", *t as f64 / 1e3))
            .collect();
        violations.extend(self.takeovers_missing.iter().map(|(_, v)| v.clone()));
        Check::new(
            "lease_takeover_within_s",
            Class::Liveness,
            violations,
            format!("takeovers {}", spread(&self.takeover_ms)),
        )
    }
}
