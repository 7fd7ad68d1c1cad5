//! The process table: which processes a host holds, in what state, within bounds.
//! Sans-IO: the executor drives it; tests drive it directly.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use crate::exec::{ErrorKind, ExecError, ModuleHash, RunReport};

/// Exit code of a killed process: what a shell reports for SIGKILL (128 + 9).
pub const EXIT_CODE_KILLED: i32 = 137;
/// Exit code of a process that trapped or ran out of a limit: what a shell
/// reports for SIGABRT (128 + 6).
pub const EXIT_CODE_FAILED: i32 = 134;

/// A process's number on its host, unique for the host's lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProcessId(pub u64);

impl fmt::Display for ProcessId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where a process is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessState {
    /// Its guest is running.
    Running,
    /// It returned (code 0) or called `proc_exit` (its code).
    Exited(i32),
    /// `kill` stopped it.
    Killed,
    /// It trapped or ran out of fuel, memory or its deadline.
    Failed(ErrorKind),
}

impl ProcessState {
    /// The exit code of an ended process: its own, [`EXIT_CODE_KILLED`] or
    /// [`EXIT_CODE_FAILED`]; `None` while running.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            ProcessState::Running => None,
            ProcessState::Exited(code) => Some(*code),
            ProcessState::Killed => Some(EXIT_CODE_KILLED),
            ProcessState::Failed(_) => Some(EXIT_CODE_FAILED),
        }
    }

    /// A short name: running, exited, killed or failed.
    pub fn name(&self) -> &'static str {
        match self {
            ProcessState::Running => "running",
            ProcessState::Exited(_) => "exited",
            ProcessState::Killed => "killed",
            ProcessState::Failed(_) => "failed",
        }
    }
}

/// One line of the table: what `ps` shows and what anchors may list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Its number on this host.
    pub id: ProcessId,
    /// The module it runs.
    pub module: ModuleHash,
    /// Running or how it ended.
    pub state: ProcessState,
    /// When it was spawned, in Unix milliseconds of the host's clock.
    pub started_ms: u64,
}

/// How a process ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessEnd {
    /// Never `Running`.
    pub state: ProcessState,
    /// The sandbox's error, for a process that did not return or exit.
    pub error: Option<ExecError>,
    /// Fuel the process burnt.
    pub fuel_used: u64,
}

impl ProcessEnd {
    /// The end of a run: its report, and whether a kill was asked for.
    pub fn of(report: RunReport, kill_requested: bool) -> ProcessEnd {
        let (state, error) = match report.outcome {
            Ok(_) => (ProcessState::Exited(0), None),
            Err(e) => match e.exit_code() {
                Some(code) => (ProcessState::Exited(code), None),
                None if e.kind() == ErrorKind::Cancelled && kill_requested => {
                    (ProcessState::Killed, Some(e))
                }
                None => (ProcessState::Failed(e.kind()), Some(e)),
            },
        };
        ProcessEnd {
            state,
            error,
            fuel_used: report.fuel_used,
        }
    }

    /// The exit code (see [`ProcessState::exit_code`]).
    pub fn exit_code(&self) -> i32 {
        debug_assert!(
            self.state != ProcessState::Running,
            "an end that is running"
        );
        self.state.exit_code().unwrap_or(EXIT_CODE_FAILED)
    }
}

/// Why the table refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    /// The host already runs its maximum of processes.
    #[error("this host already runs {0} processes, its maximum: wait for one to end or kill one")]
    Full(usize),
    /// No such process: never started, or ended and dropped from the table.
    #[error("no process {0} on this host (never started, or ended and no longer kept)")]
    Unknown(ProcessId),
    /// The process has already ended.
    #[error("process {0} has already ended ({1})")]
    Ended(ProcessId, &'static str),
}

/// How many processes a host holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableLimits {
    /// Processes running at once; more spawns are refused.
    pub running_max: usize,
    /// Ended processes kept for `wait` and `ps`; beyond, the oldest ended is dropped.
    pub finished_max: usize,
}

impl Default for TableLimits {
    /// 16 running, 64 ended.
    fn default() -> Self {
        TableLimits {
            running_max: 16,
            finished_max: 64,
        }
    }
}

/// One process: its line, its end once known, and the executor's handle `H`.
#[derive(Debug)]
pub struct Entry<H> {
    /// Its line in `list`.
    pub info: ProcessInfo,
    /// How it ended, once it has.
    pub end: Option<ProcessEnd>,
    /// A kill was asked for: a cancelled run then ends as killed.
    pub kill_requested: bool,
    /// The executor's handle on the running guest (cancel flag, output).
    pub handle: H,
}

/// Running processes and the most recent ended ones, by id.
#[derive(Debug)]
pub struct ProcessTable<H> {
    limits: TableLimits,
    next_id: u64,
    entries: BTreeMap<ProcessId, Entry<H>>,
    running: usize,
    /// Ended processes, oldest end first.
    ended: VecDeque<ProcessId>,
}

impl<H> ProcessTable<H> {
    /// An empty table within `limits`.
    pub fn new(limits: TableLimits) -> Self {
        ProcessTable {
            limits,
            next_id: 1,
            entries: BTreeMap::new(),
            running: 0,
            ended: VecDeque::new(),
        }
    }

    /// Processes running now.
    pub fn running(&self) -> usize {
        self.running
    }

    /// Records a new running process, or refuses when the host is full.
    pub fn admit(
        &mut self,
        module: ModuleHash,
        started_ms: u64,
        handle: H,
    ) -> Result<ProcessId, ProcessError> {
        if self.running >= self.limits.running_max {
            return Err(ProcessError::Full(self.limits.running_max));
        }
        let id = ProcessId(self.next_id);
        self.next_id += 1;
        let info = ProcessInfo {
            id,
            module,
            state: ProcessState::Running,
            started_ms,
        };
        self.entries.insert(
            id,
            Entry {
                info,
                end: None,
                kill_requested: false,
                handle,
            },
        );
        self.running += 1;
        Ok(id)
    }

    /// The process `id`, if the table still holds it.
    pub fn get(&self, id: ProcessId) -> Result<&Entry<H>, ProcessError> {
        self.entries.get(&id).ok_or(ProcessError::Unknown(id))
    }

    /// Marks `id` to be killed and returns its handle, to cancel it with;
    /// refuses an unknown or ended process.
    pub fn request_kill(&mut self, id: ProcessId) -> Result<&H, ProcessError> {
        let entry = self.entries.get_mut(&id).ok_or(ProcessError::Unknown(id))?;
        if let Some(end) = &entry.end {
            return Err(ProcessError::Ended(id, end.state.name()));
        }
        entry.kill_requested = true;
        Ok(&entry.handle)
    }

    /// Records how `id` ended (its run's report) and drops the oldest ended
    /// process beyond the bound; returns the end.
    pub fn finish(&mut self, id: ProcessId, report: RunReport) -> ProcessEnd {
        let Some(entry) = self.entries.get_mut(&id) else {
            debug_assert!(false, "process {id} ended but was not in the table");
            return ProcessEnd::of(report, false);
        };
        debug_assert!(entry.end.is_none(), "process {id} ended twice");
        let end = ProcessEnd::of(report, entry.kill_requested);
        entry.info.state = end.state;
        entry.end = Some(end.clone());
        self.running -= 1;
        self.ended.push_back(id);
        while self.ended.len() > self.limits.finished_max {
            if let Some(oldest) = self.ended.pop_front() {
                self.entries.remove(&oldest);
            }
        }
        end
    }

    /// Every process held, by id.
    pub fn list(&self) -> Vec<ProcessInfo> {
        self.entries.values().map(|e| e.info.clone()).collect()
    }

    /// Handles of every running process (to cancel them all at shutdown).
    pub fn running_handles(&self) -> impl Iterator<Item = &H> {
        self.entries
            .values()
            .filter(|e| e.end.is_none())
            .map(|e| &e.handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(outcome: Result<Vec<i64>, ExecError>) -> RunReport {
        RunReport {
            outcome,
            stdout: Vec::new(),
            stderr: Vec::new(),
            fuel_used: 7,
        }
    }

    fn table(running_max: usize, finished_max: usize) -> ProcessTable<()> {
        ProcessTable::new(TableLimits {
            running_max,
            finished_max,
        })
    }

    const MODULE: ModuleHash = ModuleHash([1; 32]);

    #[test]
    fn spawns_beyond_the_running_bound_are_refused_until_one_ends() {
        let mut t = table(2, 4);
        let a = t.admit(MODULE, 10, ()).unwrap();
        let b = t.admit(MODULE, 11, ()).unwrap();
        assert_ne!(a, b);
        assert_eq!(t.admit(MODULE, 12, ()), Err(ProcessError::Full(2)));
        t.finish(a, report(Ok(vec![])));
        assert_eq!(t.running(), 1);
        let c = t.admit(MODULE, 13, ()).unwrap();
        assert!(c > b, "ids are never reused");
    }

    #[test]
    fn ends_map_to_states_and_exit_codes() {
        let mut t = table(8, 8);
        let cases = [
            (report(Ok(vec![5])), false, ProcessState::Exited(0), 0),
            (
                report(Err(ExecError::new(ErrorKind::Exit, "exit code 3"))),
                false,
                ProcessState::Exited(3),
                3,
            ),
            (
                report(Err(ExecError::new(ErrorKind::Cancelled, "stop"))),
                true,
                ProcessState::Killed,
                EXIT_CODE_KILLED,
            ),
            (
                report(Err(ExecError::new(ErrorKind::FuelExhausted, "out"))),
                false,
                ProcessState::Failed(ErrorKind::FuelExhausted),
                EXIT_CODE_FAILED,
            ),
            (
                report(Err(ExecError::new(ErrorKind::Trap, "unreachable"))),
                true,
                ProcessState::Failed(ErrorKind::Trap),
                EXIT_CODE_FAILED,
            ),
        ];
        for (report, kill, state, code) in cases {
            let id = t.admit(MODULE, 0, ()).unwrap();
            if kill {
                t.request_kill(id).unwrap();
            }
            let end = t.finish(id, report);
            assert_eq!(
                (end.state, end.exit_code(), end.fuel_used),
                (state, code, 7)
            );
            assert_eq!(t.get(id).unwrap().info.state, state);
        }
    }

    #[test]
    fn kill_of_an_ended_or_unknown_process_is_refused() {
        let mut t = table(2, 2);
        let a = t.admit(MODULE, 0, ()).unwrap();
        assert!(t.request_kill(a).is_ok());
        t.finish(a, report(Err(ExecError::new(ErrorKind::Cancelled, "x"))));
        assert_eq!(t.request_kill(a), Err(ProcessError::Ended(a, "killed")));
        let unknown = ProcessId(99);
        assert_eq!(t.request_kill(unknown), Err(ProcessError::Unknown(unknown)));
        assert!(t.get(unknown).is_err());
    }

    #[test]
    fn ended_processes_drain_oldest_first_beyond_the_bound() {
        let mut t = table(2, 2);
        let mut ids = Vec::new();
        // Many more than both bounds: no lifetime cap, only a window.
        for i in 0..10 {
            let id = t.admit(MODULE, i, ()).unwrap();
            t.finish(id, report(Ok(vec![])));
            ids.push(id);
        }
        let listed: Vec<ProcessId> = t.list().iter().map(|p| p.id).collect();
        assert_eq!(listed, ids[8..].to_vec());
        assert!(matches!(t.get(ids[0]), Err(ProcessError::Unknown(_))));
        // A running process is never drained, however many end around it.
        let long = t.admit(MODULE, 0, ()).unwrap();
        for _ in 0..5 {
            let id = t.admit(MODULE, 0, ()).unwrap();
            t.finish(id, report(Ok(vec![])));
        }
        assert_eq!(t.running_handles().count(), 1);
        assert_eq!(t.get(long).unwrap().info.state, ProcessState::Running);
        assert_eq!(t.list().len(), 3);
    }
}
