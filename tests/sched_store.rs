//! The store keeps tasks, modules and idempotency keys across reopening, and a
//! restart restores every unfinished task (and only those).

use std::path::PathBuf;

use sha2::{Digest, Sha256};
use ww_sched::sched::{
    Batch, Effect, Op, PurgeOutcome, RunOutcome, RunStatus, SchedConfig, SchedError, Schedule,
    Scheduler, Store, Task, TaskId, TaskSpec, TaskStatus, WorkerId,
};

/// The worker a test calls `name`: a peer id derived from the name.
fn worker(name: &str) -> WorkerId {
    let mut secret = [0u8; 32];
    for (i, byte) in name.bytes().enumerate() {
        secret[i % 32] ^= byte.wrapping_add(i as u8);
    }
    WorkerId::from(ww::transport::Identity::from_secret(secret).peer_id())
}

/// The smallest valid module header; tasks below refer to it.
const MODULE: &[u8] = b"\0asm\x01\0\0\0";

fn module_hash() -> [u8; 32] {
    Sha256::digest(MODULE).into()
}

/// A store with the module stored, as the gateway stores it before any task.
fn open(dir: &TempDir) -> Store {
    let store = Store::open(&dir.db()).unwrap();
    store.put_module(MODULE, 0).unwrap();
    store
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("ww-sched-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    fn db(&self) -> PathBuf {
        self.0.join("gateway.redb")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn id(text: &str) -> TaskId {
    TaskId::parse(text).expect("valid id")
}

fn spec(name: &str, delay_ms: u64, repeats: u32) -> TaskSpec {
    TaskSpec {
        id: id(name),
        description: "hash puzzle".into(),
        module_hash: module_hash(),
        export: "run".into(),
        args: vec![5, 2],
        fuel_max: 1 << 30,
        memory_pages_max: 32,
        duration_ms: 60_000,
        schedule: Schedule {
            start_ms: 0,
            delay_ms,
            repeats,
        },
        completions_initial: 0,
        idempotency_key: None,
    }
}

/// Persists every changed task, as the gateway does before acknowledging.
fn persist(store: &Store, sched: &Scheduler, effects: &[Effect]) {
    for e in effects {
        if let Effect::TaskChanged { task: tid, .. } = e {
            store
                .put_task(sched.task(tid).expect("task"))
                .expect("put_task");
        }
    }
}

#[test]
fn tasks_modules_and_keys_survive_reopening() {
    let dir = TempDir::new("reopen");
    let mut sched = Scheduler::new(SchedConfig::default());
    let effects = sched.submit(0, spec("b", 0, 1)).unwrap();
    let mut keyed = spec("a", 10, 2);
    keyed.idempotency_key = Some("key-1".into());
    let effects2 = sched.submit(0, keyed).unwrap();
    {
        let store = open(&dir);
        persist(&store, &sched, &effects);
        persist(&store, &sched, &effects2);
        assert_eq!(
            store.put_module(MODULE, 5).unwrap(),
            module_hash(),
            "idempotent"
        );
    }
    let store = Store::open(&dir.db()).unwrap();
    let tasks = store.tasks().unwrap();
    let want: Vec<Task> = sched.tasks().cloned().collect();
    assert_eq!(tasks, want);
    assert_eq!(tasks[0].spec.id, id("a"), "ordered by id");
    assert_eq!(store.module(&module_hash()).unwrap(), Some(MODULE.to_vec()));
    assert_eq!(store.module(&[0; 32]).unwrap(), None);
    assert_eq!(store.idempotency("key-1").unwrap(), Some(id("a")));
    assert_eq!(store.idempotency("key-2").unwrap(), None);
    let refs = store.module_refs().unwrap();
    assert_eq!(
        refs[&module_hash()].tasks,
        2,
        "both tasks refer to the module"
    );
}

#[test]
fn put_task_overwrites_and_purge_removes() {
    let dir = TempDir::new("overwrite");
    let store = open(&dir);
    let mut sched = Scheduler::new(SchedConfig::default());
    sched.worker_joined(0, &worker("w"), 1);
    let e = sched.submit(0, spec("t", 0, 1)).unwrap();
    persist(&store, &sched, &e);
    assert_eq!(store.tasks().unwrap()[0].runs[0].status, RunStatus::Running);
    let purge = |now_ms| Batch {
        ops: vec![Op::Purge {
            id: id("t"),
            now_ms,
        }],
    };
    let report = store.commit(&purge(1)).unwrap();
    assert_eq!(report.purged, vec![(id("t"), PurgeOutcome::NotFinished)]);
    let outcome = RunOutcome::Succeeded {
        results: vec![17],
        stdout: String::new(),
        fuel_used: 1,
    };
    let e = sched.run_finished(5, &id("t"), 0, 1, outcome);
    persist(&store, &sched, &e);
    let tasks = store.tasks().unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].status, TaskStatus::Succeeded);
    assert_eq!(tasks[0].finished_ms, Some(5));
    assert_eq!(tasks[0].runs[0].results, vec![17]);
    assert_eq!(store.finished_count().unwrap(), 1);
    let report = store.commit(&purge(9)).unwrap();
    assert_eq!(report.purged, vec![(id("t"), PurgeOutcome::Purged)]);
    assert!(store.tasks().unwrap().is_empty());
    assert_eq!(store.finished_count().unwrap(), 0);
    let refs = store.module_refs().unwrap()[&module_hash()];
    assert_eq!((refs.tasks, refs.unused_since_ms), (0, 9));
    let report = store.commit(&purge(10)).unwrap();
    assert_eq!(report.purged, vec![(id("t"), PurgeOutcome::NotFound)]);
}

#[test]
fn bad_keys_are_refused_and_nothing_changes() {
    let mut sched = Scheduler::new(SchedConfig::default());
    for key in [String::new(), "k".repeat(257)] {
        let mut bad = spec("t", 0, 1);
        bad.idempotency_key = Some(key);
        assert!(matches!(
            sched.submit(0, bad),
            Err(SchedError::BadSpec {
                field: "idempotency_key",
                ..
            })
        ));
    }
    assert_eq!(sched.tasks().count(), 0);
}

#[test]
fn a_crash_mid_run_gives_every_unfinished_task_its_runs_back() {
    let dir = TempDir::new("crash");
    {
        let store = open(&dir);
        let mut sched = Scheduler::new(SchedConfig::default());
        let e = sched.worker_joined(0, &worker("w"), 2);
        persist(&store, &sched, &e);
        for (name, delay_ms, repeats) in [("one", 0, 1), ("three", 1000, 3), ("done", 0, 1)] {
            let e = sched.submit(0, spec(name, delay_ms, repeats)).unwrap();
            persist(&store, &sched, &e);
        }
        // "one" and "three" hold the two slots; "done" waits, then runs and succeeds.
        let e = sched.run_finished(
            10,
            &id("one"),
            0,
            1,
            RunOutcome::TransportFailed {
                message: "reset".into(),
            },
        );
        persist(&store, &sched, &e);
        let e = sched.run_finished(
            20,
            &id("done"),
            0,
            1,
            RunOutcome::Succeeded {
                results: vec![1],
                stdout: String::new(),
                fuel_used: 1,
            },
        );
        persist(&store, &sched, &e);
        assert_eq!(
            sched.task(&id("done")).unwrap().status,
            TaskStatus::Succeeded
        );
        assert_eq!(
            sched.task(&id("three")).unwrap().runs[0].status,
            RunStatus::Running
        );
        // Crash: scheduler and store dropped without any shutdown step.
    }
    let store = Store::open(&dir.db()).unwrap();
    let open = store.open_tasks().unwrap();
    let restored: Vec<&str> = open.iter().map(|t| t.spec.id.as_str()).collect();
    assert_eq!(
        restored,
        ["one", "three"],
        "finished tasks stay on disk only"
    );
    let (mut sched, effects) = Scheduler::restore(SchedConfig::default(), 50, open);
    persist(&store, &sched, &effects);
    assert_eq!(
        sched.task(&id("one")).unwrap().runs[0].status,
        RunStatus::Retrying
    );
    assert_eq!(
        sched.task(&id("three")).unwrap().runs[0].status,
        RunStatus::Retrying
    );
    assert!(sched.task(&id("done")).is_none());
    assert_eq!(
        store.header(&id("done")).unwrap().unwrap().status,
        TaskStatus::Succeeded
    );
    let e = sched.worker_joined(60, &worker("w-new"), 4);
    persist(&store, &sched, &e);
    let mut started: Vec<(String, u32, u32)> = e
        .iter()
        .filter_map(|e| match e {
            Effect::StartRun {
                task,
                index,
                attempt,
                ..
            } => Some((task.to_string(), *index, *attempt)),
            _ => None,
        })
        .collect();
    started.sort();
    assert_eq!(
        started,
        vec![("one".into(), 0, 2), ("three".into(), 0, 2)],
        "in-flight runs run again (at-least-once)"
    );
    // The rest of "three" keeps its schedule after the restart.
    assert_eq!(sched.next_wakeup_ms(), Some(1000));
    let stored = store.tasks().unwrap();
    assert!(stored
        .iter()
        .filter(|t| !t.status.is_final())
        .all(|t| t.runs.iter().all(|r| r.status == RunStatus::Running)));
}
