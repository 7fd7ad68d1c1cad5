//! The store's layout: a task's header and each run are separate rows, a change
//! writes only what it lists, deletion takes the runs too, layout 1 (whole tasks)
//! is migrated on open, and an unknown layout or a gap in the runs is refused.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableTable, TableDefinition};
use ww_sched::sched::{
    RunOutcome, RunStatus, SchedConfig, Schedule, Scheduler, Store, StoreError, Task, TaskId,
    TaskSpec, TaskWrite,
};

const TASKS: TableDefinition<&str, &[u8]> = TableDefinition::new("tasks");
const RUNS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("runs");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// A file under the system temp dir, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "ww-sched-layout-{name}-{}.redb",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A task of `repeats` runs due at once, all placed on one worker, the first
/// `finished` of them succeeded.
fn task_with_runs(name: &str, repeats: u32, finished: u32) -> Task {
    let id = TaskId::parse(name).expect("id");
    let mut sched = Scheduler::new(SchedConfig::default());
    sched.worker_joined(0, "w", repeats);
    sched
        .submit(
            0,
            TaskSpec {
                id: id.clone(),
                description: String::new(),
                module_hash: [1; 32],
                export: "run".into(),
                args: vec![],
                fuel_max: 1000,
                memory_pages_max: 1,
                duration_ms: 60_000,
                schedule: Schedule {
                    start_ms: 0,
                    delay_ms: 0,
                    repeats,
                },
                completions_initial: 0,
            },
        )
        .expect("submit");
    for index in 0..finished {
        let outcome = RunOutcome::Succeeded {
            results: vec![i64::from(index)],
            stdout: format!("run {index}\n"),
            fuel_used: 1,
        };
        sched.run_finished(1, &id, index, 1, outcome);
    }
    sched.task(&id).expect("task").clone()
}

fn version(path: &Path) -> u64 {
    let db = Database::open(path).expect("open");
    let txn = db.begin_read().expect("read");
    let meta = txn.open_table(META).expect("meta");
    let version = meta.get("version").expect("get").expect("version").value();
    version
}

#[test]
fn a_change_writes_the_header_and_only_the_listed_runs() {
    let file = TempFile::new("listed");
    let store = Store::open(&file.0).expect("open");
    let before = task_with_runs("t", 3, 0);
    store.put_task(&before).expect("put whole");
    let after = task_with_runs("t", 3, 2);
    // List only run 1: run 0 keeps its stored (running) state, the header moves on.
    store
        .put_changes(
            &[TaskWrite {
                task: &after,
                runs: vec![&after.runs[1]],
            }],
            true,
        )
        .expect("put change");
    let stored = &store.tasks().expect("tasks")[0];
    assert_eq!(stored.completions, after.completions);
    assert_eq!(stored.runs[0], before.runs[0]);
    assert_eq!(stored.runs[1], after.runs[1]);
    assert_eq!(stored.runs[1].status, RunStatus::Succeeded);
    assert_eq!(stored.runs.len(), 3);
}

#[test]
fn deleting_a_task_deletes_its_runs() {
    let file = TempFile::new("delete");
    let store = Store::open(&file.0).expect("open");
    let task = task_with_runs("gone", 4, 4);
    store.put_task(&task).expect("put");
    store.delete_task(&task.spec.id).expect("delete");
    assert!(store.tasks().expect("tasks").is_empty());
    // A new task under the same id starts with no runs of the old one.
    store
        .put_changes(
            &[TaskWrite {
                task: &task,
                runs: vec![],
            }],
            true,
        )
        .expect("header only");
    assert!(store.tasks().expect("tasks")[0].runs.is_empty());
}

#[test]
fn layout_1_is_migrated_on_open() {
    let file = TempFile::new("migrate");
    let tasks = vec![task_with_runs("a", 3, 1), task_with_runs("b", 2, 2)];
    {
        // A layout-1 file: whole tasks as JSON, version 1.
        let db = Database::create(&file.0).expect("create");
        let txn = db.begin_write().expect("write");
        {
            let mut table = txn.open_table(TASKS).expect("tasks");
            for task in &tasks {
                let json = serde_json::to_vec(task).expect("json");
                table
                    .insert(task.spec.id.as_str(), json.as_slice())
                    .expect("insert");
            }
            let mut meta = txn.open_table(META).expect("meta");
            meta.insert("version", 1).expect("version");
        }
        txn.commit().expect("commit");
    }
    let store = Store::open(&file.0).expect("open and migrate");
    assert_eq!(store.tasks().expect("tasks"), tasks);
    drop(store);
    assert_eq!(version(&file.0), 2);
    let db = Database::open(&file.0).expect("open");
    let txn = db.begin_read().expect("read");
    let runs = txn.open_table(RUNS).expect("runs");
    assert_eq!(
        runs.iter().expect("iter").count(),
        5,
        "every run has its row"
    );
}

#[test]
fn an_unknown_layout_is_refused_untouched() {
    let file = TempFile::new("unknown");
    {
        let db = Database::create(&file.0).expect("create");
        let txn = db.begin_write().expect("write");
        txn.open_table(META)
            .expect("meta")
            .insert("version", 3)
            .expect("version");
        txn.commit().expect("commit");
    }
    let refused = Store::open(&file.0).expect_err("layout 3 must be refused");
    assert!(
        matches!(refused, StoreError::Version { found: 3 }),
        "{refused}"
    );
    assert_eq!(version(&file.0), 3);
}

#[test]
fn a_gap_in_the_runs_is_reported_as_corrupt() {
    let file = TempFile::new("gap");
    let task = task_with_runs("holey", 3, 0);
    {
        let store = Store::open(&file.0).expect("open");
        store
            .put_changes(
                &[TaskWrite {
                    task: &task,
                    runs: vec![&task.runs[0], &task.runs[2]],
                }],
                true,
            )
            .expect("put");
    }
    let store = Store::open(&file.0).expect("open");
    let error = store.tasks().expect_err("a missing run 1 must be refused");
    assert!(
        matches!(&error, StoreError::Corrupt { what, .. } if what == "run holey/2"),
        "{error}"
    );
}
