//! The store's layout 3: a task's header and each run are separate rows, a
//! change writes only what it lists; the status, finished and module-reference
//! tables always agree with the headers, and a batch that would make them
//! disagree is refused whole; retention deletes the oldest finished tasks
//! first, within its bound; layouts 1 and 2 are migrated on open; an unknown
//! layout or a gap in the runs is refused. The tests of the layout's rules run
//! on every engine (the embedded store, PostgreSQL, and the simulation's
//! in-memory shared store) and must agree.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pg_support::PgDatabase;
use redb::{Database, ReadableTable, TableDefinition};
use store_support::{id, module_hash, task_with_runs, MODULE};
use ww_sched::sched::{
    Batch, MemoryStore, Op, PgOptions, RunStatus, Store, StoreError, Task, TaskStatus,
};

mod pg_support;
mod store_support;

const TASKS: TableDefinition<&str, &[u8]> = TableDefinition::new("tasks");
const RUNS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("runs");
const MODULES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("modules");
const IDEMPOTENCY: TableDefinition<&str, &str> = TableDefinition::new("idempotency");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const BY_STATUS: TableDefinition<(u8, &str), ()> = TableDefinition::new("by_status");

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

fn open(file: &TempFile) -> Store {
    let store = Store::open(&file.0).expect("open");
    store.put_module(MODULE, 0).expect("module");
    store
}

fn open_memory() -> Store {
    let clock: ww_sched::sched::StoreClock = Arc::new(|| 0);
    let store = Store::on(MemoryStore::new(clock).expect("an in-memory store"));
    store.put_module(MODULE, 0).expect("module");
    store
}

fn open_pg(db: &PgDatabase) -> Store {
    let store = Store::postgres(&db.url, PgOptions::default()).expect("connect");
    store.put_module(MODULE, 0).expect("module");
    store
}

thread_local! {
    /// The `new` hint of every [`put`] on this test's thread.
    static NEW_HINT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A change of `task`, with `NEW_HINT` as its hint. PostgreSQL tries the
/// insert first on `true` and the update of its own unfinished task first on
/// `false`, each falling back to the full checks: the rules below run under
/// both hints, so each one-statement path is held to every rule.
fn put(task: &Task, runs: Vec<ww_sched::sched::Run>) -> Op {
    Op::PutTask {
        header: Box::new(task.header()),
        runs,
        new: NEW_HINT.with(|hint| hint.get()),
    }
}

fn version(path: &Path) -> u64 {
    let db = Database::open(path).expect("open");
    let txn = db.begin_read().expect("read");
    let meta = txn.open_table(META).expect("meta");
    let version = meta.get("version").expect("get").expect("version").value();
    version
}

fn ids(tasks: &[Task]) -> Vec<&str> {
    tasks.iter().map(|t| t.spec.id.as_str()).collect()
}

fn a_change_writes_the_header_and_only_the_listed_runs(store: &Store) {
    let before = task_with_runs("t", 3, 0, 1);
    store.put_task(&before).expect("put whole");
    let after = task_with_runs("t", 3, 2, 1);
    // List only run 1: run 0 keeps its stored (running) state, the header moves on.
    let batch = Batch {
        ops: vec![put(&after, vec![after.runs[1].clone()])],
    };
    store.commit(&batch).expect("put change");
    let stored = &store.tasks().expect("tasks")[0];
    assert_eq!(stored.completions, after.completions);
    assert_eq!(stored.runs[0], before.runs[0]);
    assert_eq!(stored.runs[1], after.runs[1]);
    assert_eq!(stored.runs[1].status, RunStatus::Succeeded);
    assert_eq!(stored.runs.len(), 3);
    let page = store.runs(&id("t"), 1, 1).expect("page");
    assert_eq!(
        page,
        vec![after.runs[1].clone()],
        "a page of runs from index 1"
    );
}

fn lists_come_from_headers_by_status_with_a_cursor(store: &Store) {
    let done = ["a", "c", "e"].map(|n| task_with_runs(n, 1, 1, 5));
    let open_ = ["b", "d"].map(|n| task_with_runs(n, 2, 0, 5));
    let all: Vec<&Task> = done.iter().chain(open_.iter()).collect();
    store.put_tasks(&all).expect("put");
    let names = |headers: Vec<ww_sched::sched::TaskHeader>| {
        headers
            .into_iter()
            .map(|h| h.spec.id.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(store.list(None, None, 0, 10).unwrap()),
        ["a", "b", "c", "d", "e"]
    );
    assert_eq!(
        names(store.list(None, Some(&id("b")), 1, 2).unwrap()),
        ["d", "e"]
    );
    let succeeded = Some(TaskStatus::Succeeded);
    assert_eq!(
        names(store.list(succeeded, None, 0, 10).unwrap()),
        ["a", "c", "e"]
    );
    assert_eq!(
        names(store.list(succeeded, Some(&id("a")), 0, 1).unwrap()),
        ["c"]
    );
    assert_eq!(
        names(store.list(Some(TaskStatus::Running), None, 0, 10).unwrap()),
        ["b", "d"]
    );
    assert!(store
        .list(Some(TaskStatus::Failed), None, 0, 10)
        .unwrap()
        .is_empty());
    assert_eq!(
        ids(&store.open_tasks().unwrap()),
        ["b", "d"],
        "a restart loads these only"
    );
    assert_eq!(store.finished_count().unwrap(), 3);
}

fn batches_that_would_make_the_tables_disagree_are_refused_whole(store: &Store) {
    let finished = task_with_runs("f", 1, 1, 5);
    store.put_task(&finished).expect("put");
    let fresh = task_with_runs("n", 1, 0, 5);

    // A final task is never written again; the batch's other write goes too.
    let again = Batch {
        ops: vec![put(&fresh, fresh.runs.clone()), put(&finished, vec![])],
    };
    let error = store.commit(&again).expect_err("refused");
    assert!(
        matches!(&error, StoreError::Corrupt { what, .. } if what == "task f"),
        "{error}"
    );
    assert!(
        store.header(&id("n")).unwrap().is_none(),
        "nothing of the batch was written"
    );

    // A new task must refer to a stored module.
    let mut orphan = task_with_runs("o", 1, 0, 5);
    orphan.spec.module_hash = [3; 32];
    let error = store
        .commit(&Batch {
            ops: vec![put(&orphan, vec![])],
        })
        .expect_err("refused");
    assert!(error.to_string().contains("not stored"), "{error}");

    // One idempotency key names one task.
    let mut twin = task_with_runs("twin", 1, 0, 5);
    twin.spec.idempotency_key = Some("key-f".into());
    let error = store
        .commit(&Batch {
            ops: vec![put(&twin, vec![])],
        })
        .expect_err("refused");
    assert!(error.to_string().contains("names task f"), "{error}");

    // Another task under a stored unfinished task's id (another spec, or
    // another submission time) is refused; the stored one stays as it was.
    let open = task_with_runs("open", 2, 0, 5);
    store.put_task(&open).expect("put");
    let mut other = open.clone();
    other.spec.args = vec![7];
    let mut later = open.clone();
    later.submitted_ms += 1;
    for impostor in [&other, &later] {
        let error = store
            .commit(&Batch {
                ops: vec![put(impostor, vec![])],
            })
            .expect_err("refused");
        assert!(
            error.to_string().contains("another task with its id"),
            "{error}"
        );
    }
    assert_eq!(store.header(&id("open")).unwrap(), Some(open.header()));

    // A run beyond the runs created.
    let mut beyond = fresh.runs[0].clone();
    beyond.index = 7;
    let error = store
        .commit(&Batch {
            ops: vec![put(&fresh, vec![beyond])],
        })
        .expect_err("refused");
    assert!(error.to_string().contains("beyond"), "{error}");
    assert_eq!(ids(&store.tasks().unwrap()), ["f", "open"]);
    assert_eq!(store.module_refs().unwrap()[&module_hash()].tasks, 2);
}

fn retention_deletes_the_oldest_finished_first_within_its_bound(store: &Store) {
    let tasks: Vec<Task> = (0..6u64)
        .map(|i| task_with_runs(&format!("t{i}"), 2, 2, 100 + i))
        .collect();
    let running = task_with_runs("open", 2, 1, 50);
    let mut all: Vec<&Task> = tasks.iter().collect();
    all.push(&running);
    store.put_tasks(&all).expect("put");
    assert_eq!(store.finished_count().unwrap(), 6);
    let expire = |now_ms, retain_ms, finished_max, delete_max| Batch {
        ops: vec![Op::Expire {
            now_ms,
            retain_ms,
            finished_max,
            delete_max,
        }],
    };
    // Nothing is old enough and the count is under the most kept.
    let report = store.commit(&expire(101, Some(10), 10, 100)).unwrap();
    assert!(report.deleted.is_empty() && !report.expire_more);
    // t0, t1 and t2 (finished at 100..=102) are older than 10 ms at 112; two
    // at a time.
    let report = store.commit(&expire(112, Some(10), 10, 2)).unwrap();
    let gone: Vec<&str> = report.deleted.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(gone, ["t0", "t1"]);
    assert!(report.expire_more, "t2 is due too");
    let report = store.commit(&expire(112, Some(10), 10, 2)).unwrap();
    assert_eq!(report.deleted.len(), 1);
    assert!(!report.expire_more);
    // Kept for ever, but at most two: the oldest of the rest go.
    let report = store.commit(&expire(10_000, None, 2, 100)).unwrap();
    let gone: Vec<&str> = report.deleted.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(gone, ["t3"]);
    assert_eq!(ids(&store.tasks().unwrap()), ["open", "t4", "t5"]);
    assert_eq!(store.finished_count().unwrap(), 2);
    assert_eq!(
        store.runs(&id("t0"), 0, 10).unwrap(),
        vec![],
        "runs go with their task"
    );
    assert_eq!(
        store.idempotency("key-t0").unwrap(),
        None,
        "and so does the key"
    );
    assert_eq!(store.idempotency("key-t4").unwrap(), Some(id("t4")));
    assert_eq!(store.module_refs().unwrap()[&module_hash()].tasks, 3);
}

fn modules_are_deleted_only_when_no_task_refers_to_them(store: &Store) {
    let other = b"\0asm\x01\0\0\0\0".to_vec();
    let other_hash = store.put_module(&other, 3).expect("module");
    store.put_task(&task_with_runs("t", 1, 0, 1)).expect("put");
    let delete = Batch {
        ops: vec![Op::DeleteModules {
            hashes: vec![module_hash(), other_hash],
        }],
    };
    let report = store.commit(&delete).unwrap();
    assert_eq!(report.modules_deleted, vec![other_hash]);
    assert_eq!(report.modules_kept, vec![module_hash()]);
    assert_eq!(store.module(&other_hash).unwrap(), None);
    assert!(store.module(&module_hash()).unwrap().is_some());
    // Uploaded again, it is back, unused since the upload.
    let again = Op::PutModule {
        hash: other_hash,
        bytes: Arc::new(other),
        now_ms: 40,
    };
    store.commit(&Batch { ops: vec![again] }).unwrap();
    assert_eq!(
        store.module_refs().unwrap()[&other_hash].unused_since_ms,
        40
    );
}

fn any_text_a_client_sends_is_written_and_updated(store: &Store) {
    let text = "a\u{0}b \"quoted\" \\ é 漢 \u{1F600} \"spec\":{},\"status\":";
    let with_text = |finished| {
        let mut task = task_with_runs("text", 2, finished, 5);
        task.spec.description = text.into();
        task
    };
    let fresh = with_text(0);
    store
        .commit(&Batch {
            ops: vec![put(&fresh, fresh.runs.clone())],
        })
        .expect("a new task");
    let done = with_text(1);
    store
        .commit(&Batch {
            ops: vec![put(&done, vec![done.runs[0].clone()])],
        })
        .expect("its update");
    assert_eq!(store.header(&id("text")).unwrap(), Some(done.header()));
    assert_eq!(
        store.run(&id("text"), 0).unwrap(),
        Some(done.runs[0].clone())
    );
}

/// Runs a test on a fresh store of each engine: the embedded one, the
/// simulation's shared in-memory one, and PostgreSQL under each write hint.
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn redb() {
                let file = super::TempFile::new(stringify!($name));
                super::$name(&super::open(&file));
            }

            #[test]
            fn memory() {
                super::$name(&super::open_memory());
            }

            #[test]
            fn postgres_insert_first() {
                super::NEW_HINT.with(|hint| hint.set(true));
                let db = super::PgDatabase::new(concat!(stringify!($name), "_i"));
                super::$name(&super::open_pg(&db));
            }

            #[test]
            fn postgres_update_first() {
                super::NEW_HINT.with(|hint| hint.set(false));
                let db = super::PgDatabase::new(concat!(stringify!($name), "_u"));
                super::$name(&super::open_pg(&db));
            }
        }
    )*};
}

on_both_engines!(
    a_change_writes_the_header_and_only_the_listed_runs,
    lists_come_from_headers_by_status_with_a_cursor,
    batches_that_would_make_the_tables_disagree_are_refused_whole,
    retention_deletes_the_oldest_finished_first_within_its_bound,
    modules_are_deleted_only_when_no_task_refers_to_them,
    any_text_a_client_sends_is_written_and_updated,
);

/// Writes a layout-1 file: whole tasks as JSON, version 1.
fn write_layout_1(path: &Path, tasks: &[Task]) {
    let db = Database::create(path).expect("create");
    let txn = db.begin_write().expect("write");
    {
        let mut table = txn.open_table(TASKS).expect("tasks");
        for task in tasks {
            let mut old = serde_json::to_value(task).expect("json");
            // Layout 1 knew neither the finish time nor the key in the spec.
            old.as_object_mut().expect("object").remove("finished_ms");
            old["spec"]
                .as_object_mut()
                .expect("spec")
                .remove("idempotency_key");
            let json = serde_json::to_vec(&old).expect("json");
            table
                .insert(task.spec.id.as_str(), json.as_slice())
                .expect("insert");
        }
        let mut modules = txn.open_table(MODULES).expect("modules");
        modules
            .insert(module_hash().as_slice(), MODULE)
            .expect("module");
        let mut keys = txn.open_table(IDEMPOTENCY).expect("keys");
        for task in tasks {
            keys.insert(
                format!("key-{}", task.spec.id).as_str(),
                task.spec.id.as_str(),
            )
            .expect("key");
        }
        let mut meta = txn.open_table(META).expect("meta");
        meta.insert("version", 1).expect("version");
    }
    txn.commit().expect("commit");
}

#[test]
fn layout_1_is_migrated_on_open() {
    let file = TempFile::new("migrate1");
    let tasks = vec![task_with_runs("a", 3, 1, 7), task_with_runs("b", 2, 2, 9)];
    write_layout_1(&file.0, &tasks);
    let store = Store::open(&file.0).expect("open and migrate");
    let stored = store.tasks().expect("tasks");
    assert_eq!(stored, tasks);
    assert_eq!(stored[1].finished_ms, Some(9), "the latest run's finish");
    assert_eq!(ids(&store.open_tasks().unwrap()), ["a"]);
    assert_eq!(store.finished_count().unwrap(), 1);
    assert_eq!(store.idempotency("key-b").unwrap(), Some(id("b")));
    assert_eq!(store.module_refs().unwrap()[&module_hash()].tasks, 2);
    drop(store);
    assert_eq!(version(&file.0), 3);
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
fn layout_2_is_migrated_on_open() {
    let file = TempFile::new("migrate2");
    let tasks = vec![task_with_runs("x", 2, 2, 11), task_with_runs("y", 1, 0, 3)];
    {
        // Layout 2: headers are tasks without runs, runs in their own rows.
        write_layout_1(&file.0, &[]);
        let db = Database::open(&file.0).expect("open");
        let txn = db.begin_write().expect("write");
        {
            let mut headers = txn.open_table(TASKS).expect("tasks");
            let mut runs = txn.open_table(RUNS).expect("runs");
            for task in &tasks {
                let mut header = task.clone();
                for run in std::mem::take(&mut header.runs) {
                    let json = serde_json::to_vec(&run).expect("json");
                    runs.insert((task.spec.id.as_str(), run.index), json.as_slice())
                        .expect("run");
                }
                header.finished_ms = None;
                header.spec.idempotency_key = None;
                let json = serde_json::to_vec(&header).expect("json");
                headers
                    .insert(task.spec.id.as_str(), json.as_slice())
                    .expect("header");
            }
            let mut keys = txn.open_table(IDEMPOTENCY).expect("keys");
            for task in &tasks {
                keys.insert(
                    format!("key-{}", task.spec.id).as_str(),
                    task.spec.id.as_str(),
                )
                .expect("key");
            }
            txn.open_table(META)
                .expect("meta")
                .insert("version", 2)
                .expect("version");
        }
        txn.commit().expect("commit");
    }
    let store = Store::open(&file.0).expect("open and migrate");
    assert_eq!(store.tasks().expect("tasks"), tasks);
    let header = store.header(&id("x")).unwrap().expect("x");
    assert_eq!((header.runs_created, header.finished_ms), (2, Some(11)));
    assert_eq!(ids(&store.open_tasks().unwrap()), ["y"]);
    drop(store);
    assert_eq!(version(&file.0), 3);
}

#[test]
fn an_unknown_layout_is_refused_untouched() {
    let file = TempFile::new("unknown");
    {
        let db = Database::create(&file.0).expect("create");
        let txn = db.begin_write().expect("write");
        txn.open_table(META)
            .expect("meta")
            .insert("version", 4)
            .expect("version");
        txn.commit().expect("commit");
    }
    let refused = Store::open(&file.0).expect_err("layout 4 must be refused");
    assert!(
        matches!(refused, StoreError::Version { found: 4, .. }),
        "{refused}"
    );
    assert_eq!(version(&file.0), 4);
}

#[test]
fn a_gap_in_the_runs_is_reported_as_corrupt() {
    let file = TempFile::new("gap");
    let task = task_with_runs("holey", 3, 0, 1);
    {
        let store = open(&file);
        let batch = Batch {
            ops: vec![put(&task, vec![task.runs[0].clone(), task.runs[2].clone()])],
        };
        store.commit(&batch).expect("put");
    }
    let store = Store::open(&file.0).expect("open");
    let error = store
        .open_tasks()
        .expect_err("a missing run 1 must be refused");
    assert!(
        matches!(&error, StoreError::Corrupt { what, .. } if what == "runs of task holey"),
        "{error}"
    );
}

/// What a store holds that this code never writes is corruption, never a
/// value: a task id off the id rules (in a header, the status index or the
/// idempotency table), a run's worker that is not a peer id, an error kind
/// this build does not know.
#[test]
fn stored_text_that_is_not_an_id_a_peer_or_an_error_kind_is_corrupt() {
    type Edit = fn(&redb::WriteTransaction);
    let edits: [(&str, Edit, &str); 5] = [
        (
            "worker",
            |txn| edit_run(txn, |run| run["worker"] = serde_json::json!("w1")),
            "run typed/0",
        ),
        (
            "error_kind",
            |txn| edit_run(txn, |run| run["error_kind"] = serde_json::json!("fuel")),
            "run typed/0",
        ),
        (
            "header id",
            |txn| {
                let mut tasks = txn.open_table(TASKS).expect("tasks");
                let mut header: serde_json::Value = {
                    let value = tasks.get("typed").expect("get").expect("stored");
                    serde_json::from_slice(value.value()).expect("json")
                };
                header["spec"]["id"] = serde_json::json!("typed/0");
                let json = serde_json::to_vec(&header).expect("json");
                tasks.insert("typed", json.as_slice()).expect("insert");
            },
            "task typed",
        ),
        (
            "status index",
            |txn| {
                let mut index = txn.open_table(BY_STATUS).expect("by_status");
                index.insert((1, "no spaces"), ()).expect("insert");
            },
            "task id in the status index",
        ),
        (
            "idempotency",
            |txn| {
                let mut keys = txn.open_table(IDEMPOTENCY).expect("keys");
                keys.insert("key", "ü").expect("insert");
            },
            "task id in the idempotency table",
        ),
    ];
    for (name, edit, what) in edits {
        let file = TempFile::new(&format!("untyped-{}", name.replace(' ', "-")));
        let task = task_with_runs("typed", 2, 1, 5);
        assert!(task.runs[0].worker.is_some() && task.runs[0].error_kind.is_none());
        {
            let store = open(&file);
            let batch = Batch {
                ops: vec![put(&task, task.runs.clone())],
            };
            store.commit(&batch).expect("put");
        }
        {
            let db = Database::open(&file.0).expect("open raw");
            let txn = db.begin_write().expect("write");
            edit(&txn);
            txn.commit().expect("commit");
        }
        let store = Store::open(&file.0).expect("open");
        let error = match name {
            "idempotency" => store.idempotency("key").map(|_| ()),
            _ => store.open_tasks().map(|_| ()),
        }
        .expect_err(name);
        assert!(
            matches!(&error, StoreError::Corrupt { what: found, .. } if found == what),
            "{name}: {error}"
        );
        assert!(!error.is_transient(), "{name}");
    }
}

/// Rewrites run 0 of task `typed` with `change` applied to its JSON.
fn edit_run(txn: &redb::WriteTransaction, change: impl FnOnce(&mut serde_json::Value)) {
    let mut runs = txn.open_table(RUNS).expect("runs");
    let mut run: serde_json::Value = {
        let value = runs.get(("typed", 0)).expect("get").expect("stored");
        serde_json::from_slice(value.value()).expect("json")
    };
    change(&mut run);
    let json = serde_json::to_vec(&run).expect("json");
    runs.insert(("typed", 0), json.as_slice()).expect("insert");
}
