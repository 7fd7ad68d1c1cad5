//! What only the PostgreSQL store does: it creates and migrates its schema
//! (once, however many gateways connect at the same time), refuses a schema
//! from a newer build, recovers from a dropped connection, never puts the
//! password in what it prints; and it is shared: leases, ownership (writes of
//! another gateway's task or under a dead lease are refused), claims of
//! orphaned tasks, cancel requests. The layout's rules, shared with the embedded
//! store, are tested on both in `store_layout.rs`.

mod pg_support;
mod store_support;

use std::time::Duration;

use pg_support::PgDatabase;
use store_support::{id, module_hash, task_with_runs, MODULE};
use ww_sched::sched::{
    Batch, Op, PgOptions, Store, StoreError, TakenCause, Task, PG_SCHEMA_VERSION,
};

fn options() -> PgOptions {
    PgOptions {
        connections: 2,
        ..PgOptions::default()
    }
}

fn schema_version(db: &PgDatabase) -> i64 {
    db.client()
        .query_one("SELECT value FROM ww_meta WHERE name = 'schema'", &[])
        .expect("schema row")
        .get(0)
}

#[test]
fn the_schema_is_created_once_by_gateways_that_connect_together() {
    let db = PgDatabase::new("schema_once");
    let url = db.url.clone();
    let stores: Vec<Store> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| Store::postgres(&url, options()).expect("connect")))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    assert_eq!(schema_version(&db), PG_SCHEMA_VERSION as i64);
    let hash = stores[0].put_module(MODULE, 5).expect("put");
    for store in &stores {
        assert_eq!(store.engine(), "postgres");
        assert_eq!(store.module(&hash).expect("read").as_deref(), Some(MODULE));
    }
    let tables: i64 = db
        .client()
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'ww\\_%'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        tables, 6,
        "ww_meta, ww_tasks, ww_runs, ww_modules, ww_gateways, ww_cancels"
    );
    // Connecting again changes nothing.
    drop(stores);
    let again = Store::postgres(&db.url, options()).expect("reconnect");
    assert_eq!(again.module(&hash).unwrap().as_deref(), Some(MODULE));
    assert_eq!(schema_version(&db), PG_SCHEMA_VERSION as i64);
}

#[test]
fn a_schema_from_a_newer_build_is_refused_and_left_alone() {
    let db = PgDatabase::new("schema_newer");
    Store::postgres(&db.url, options()).expect("create");
    db.client()
        .batch_execute("UPDATE ww_meta SET value = 99 WHERE name = 'schema'")
        .unwrap();
    let refused = Store::postgres(&db.url, options()).expect_err("refused");
    assert!(
        matches!(refused, StoreError::Version { found: 99, .. }),
        "{refused}"
    );
    assert_eq!(schema_version(&db), 99, "not rewritten");
}

#[test]
fn a_dropped_connection_fails_one_call_and_the_next_reconnects() {
    let db = PgDatabase::new("reconnect");
    let store = Store::postgres(
        &db.url,
        PgOptions {
            connections: 1,
            ..PgOptions::default()
        },
    )
    .expect("connect");
    let hash = store.put_module(MODULE, 1).expect("put");
    let killed: i64 = db
        .client()
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(killed, 1, "the store's one connection");
    // The first call may meet the dead connection; it fails, it does not hang.
    let first = store.module(&hash);
    if let Err(e) = &first {
        assert!(matches!(e, StoreError::Postgres { .. }), "{e}");
    }
    assert_eq!(
        store.module(&hash).expect("reconnected").as_deref(),
        Some(MODULE)
    );
}

#[test]
fn an_unreachable_server_is_an_error_without_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://someone:s3cret-pw@127.0.0.1:{port}/nowhere");
    let error = Store::postgres(
        &url,
        PgOptions {
            connect_timeout_ms: 2_000,
            ..options()
        },
    )
    .expect_err("nothing listens");
    let text = format!("{error} {error:?}");
    assert!(matches!(error, StoreError::Postgres { .. }), "{text}");
    assert!(!text.contains("s3cret-pw"), "{text}");
}

/// Gateways a and b on `db`, a with a lease of `a_lease_ms`, b of a minute.
fn shared_pair(db: &PgDatabase, a_lease_ms: u64) -> (Store, Store) {
    let a = Store::postgres(&db.url, options()).expect("a");
    let b = Store::postgres(&db.url, options()).expect("b");
    a.shared()
        .expect("shared")
        .register("gw-a", a_lease_ms)
        .unwrap();
    b.shared()
        .expect("shared")
        .register("gw-b", 60_000)
        .unwrap();
    a.put_module(MODULE, 0).unwrap();
    (a, b)
}

fn ids(tasks: &[Task]) -> Vec<&str> {
    tasks.iter().map(|t| t.spec.id.as_str()).collect()
}

#[test]
fn only_the_owner_writes_and_a_dead_owners_tasks_are_claimed_once() {
    let db = PgDatabase::new("ownership");
    let (a, b) = shared_pair(&db, 1_500);
    let (sa, sb) = (a.shared().unwrap(), b.shared().unwrap());
    let t1 = task_with_runs("t1", 3, 1, 5);
    let t2 = task_with_runs("t2", 2, 0, 5);
    a.put_tasks(&[&t1, &t2]).expect("a writes its new tasks");
    assert!(sb.claim(10).unwrap().is_empty(), "a's lease is live");
    let refused = b
        .put_task(&task_with_runs("t1", 3, 2, 6))
        .expect_err("not b's");
    assert!(
        matches!(&refused, StoreError::NotOwner { owner, .. } if owner == "gw-a/1"),
        "{refused}"
    );
    // a stops renewing; its lease runs out on the server's clock.
    std::thread::sleep(Duration::from_millis(1_700));
    assert!(sb.renew().unwrap(), "b kept renewing");
    let claimed = sb.claim(10).unwrap();
    assert_eq!(ids(&claimed), ["t1", "t2"]);
    assert_eq!(claimed[0].runs, t1.runs, "claimed whole, as stored");
    assert!(sb.claim(10).unwrap().is_empty(), "claimed once");
    let lost = a
        .put_task(&task_with_runs("t1", 3, 2, 6))
        .expect_err("a's lease is dead");
    assert!(matches!(lost, StoreError::LeaseLost { .. }), "{lost}");
    assert!(!sa.renew().unwrap(), "a dead lease is not renewed");
    b.put_task(&task_with_runs("t1", 3, 3, 7))
        .expect("b owns t1 now");
    // a comes back: a new epoch, and nothing of what b took.
    let again = sa.register("gw-a", 1_500).unwrap();
    assert_eq!(again.epoch, 2);
    assert!(sa.claim(10).unwrap().is_empty());
}

#[test]
fn a_resigned_lease_hands_tasks_over_at_once_and_a_new_epoch_reclaims_its_own() {
    let db = PgDatabase::new("resign");
    let (a, b) = shared_pair(&db, 60_000);
    let (sa, sb) = (a.shared().unwrap(), b.shared().unwrap());
    a.put_tasks(&[&task_with_runs("r1", 1, 0, 5)]).unwrap();
    sa.resign().unwrap();
    assert_eq!(ids(&sb.claim(10).unwrap()), ["r1"]);
    // A gateway that restarts (a new epoch) may take back its old epoch's tasks at once.
    b.put_tasks(&[&task_with_runs("r2", 1, 0, 5)]).unwrap();
    sb.register("gw-b", 60_000).unwrap();
    assert_eq!(ids(&sb.claim(10).unwrap()), ["r1", "r2"]);
    // Final tasks are never claimed.
    b.put_task(&task_with_runs("r1", 1, 1, 9)).unwrap();
    sb.register("gw-b", 60_000).unwrap();
    assert_eq!(ids(&sb.claim(10).unwrap()), ["r2"]);
}

#[test]
fn a_new_task_whose_id_or_key_another_gateway_took_is_dropped_and_nothing_of_it_stays() {
    let db = PgDatabase::new("taken_new");
    let (a, b) = shared_pair(&db, 60_000);
    a.put_tasks(&[&task_with_runs("dup", 2, 0, 5)]).unwrap();
    let mut same_id = task_with_runs("dup", 3, 0, 9);
    same_id.spec.idempotency_key = Some("key-b".into());
    let mut same_key = task_with_runs("mine", 1, 0, 9);
    same_key.spec.idempotency_key = Some("key-dup".into());
    let keeper = task_with_runs("kept", 1, 0, 9);
    for hint in [true, false] {
        let ops = [&same_id, &same_key, &keeper]
            .iter()
            .map(|task| Op::PutTask {
                header: Box::new(task.header()),
                runs: task.runs.clone(),
                new: hint,
            })
            .collect();
        let report = b.commit(&Batch { ops }).expect("the batch stands");
        let causes: Vec<(&str, &TakenCause)> = report
            .taken
            .iter()
            .map(|t| (t.id.as_str(), &t.cause))
            .collect();
        assert_eq!(
            causes,
            [
                ("dup", &TakenCause::Id),
                ("mine", &TakenCause::Key(id("dup")))
            ],
            "new: {hint}"
        );
        let dup = b.header(&id("dup")).unwrap().expect("a's");
        assert_eq!(dup.runs_created, 2, "a's task, untouched");
        assert!(b.header(&id("mine")).unwrap().is_none());
        assert!(b.header(&id("kept")).unwrap().is_some());
        // Module references count the tasks stored: dup and kept.
        assert_eq!(
            b.module_refs().unwrap()[&module_hash()].tasks,
            2,
            "new: {hint}"
        );
    }
}

#[test]
fn a_corrupt_orphan_is_passed_over_and_the_others_are_claimed() {
    let db = PgDatabase::new("corrupt_orphan");
    let (a, b) = shared_pair(&db, 60_000);
    let (sa, sb) = (a.shared().unwrap(), b.shared().unwrap());
    let tasks: Vec<Task> = ["k1", "k2", "k3", "k4"]
        .iter()
        .map(|name| task_with_runs(name, 1, 0, 5))
        .collect();
    a.put_tasks(&tasks.iter().collect::<Vec<_>>()).unwrap();
    let mut client = db.client();
    client
        .execute(
            "UPDATE ww_tasks SET header = '{\"not\": 1}' WHERE id = 'k1'",
            &[],
        )
        .unwrap();
    // A header copied under another id: claiming k4 must not take k2.
    client
        .execute(
            "UPDATE ww_tasks SET header = (SELECT header FROM ww_tasks WHERE id = 'k2') \
             WHERE id = 'k4'",
            &[],
        )
        .unwrap();
    // A row whose id is not a task id (it sorts first): corrupt too.
    client
        .execute(
            "INSERT INTO ww_tasks (id, status, module_hash, header, owner, owner_epoch) \
             SELECT 'bad id', status, module_hash, header, owner, owner_epoch \
             FROM ww_tasks WHERE id = 'k3'",
            &[],
        )
        .unwrap();
    sa.resign().unwrap();
    // Before, the first claim to reach k1 failed whole, every time.
    assert_eq!(ids(&sb.claim(10).unwrap()), ["k2", "k3"]);
    assert!(sb.claim(10).unwrap().is_empty(), "passed over, not retried");
    for corrupt in ["k1", "k4", "bad id"] {
        let owner: Option<String> = client
            .query_one("SELECT owner FROM ww_tasks WHERE id = $1", &[&corrupt])
            .unwrap()
            .get(0);
        assert_eq!(
            owner.as_deref(),
            Some("gw-a"),
            "{corrupt} stays unclaimed, for an operator"
        );
    }
}

#[test]
fn a_gateway_lists_what_it_owns_and_reads_only_its_own_open_tasks() {
    let db = PgDatabase::new("owned");
    let (a, b) = shared_pair(&db, 60_000);
    let (sa, sb) = (a.shared().unwrap(), b.shared().unwrap());
    a.put_tasks(&[
        &task_with_runs("o1", 2, 0, 5),
        &task_with_runs("o2", 1, 1, 5),
    ])
    .unwrap();
    b.put_tasks(&[&task_with_runs("o3", 1, 0, 5)]).unwrap();
    assert_eq!(sa.owned_open(None, 10).unwrap(), [id("o1")], "o2 is final");
    assert_eq!(sb.owned_open(None, 10).unwrap(), [id("o3")]);
    assert!(sa.owned_open(None, 0).unwrap().is_empty(), "bounded");
    let o1 = sa.owned_task(&id("o1")).unwrap().expect("a's, open");
    assert_eq!(o1.runs, task_with_runs("o1", 2, 0, 5).runs);
    assert!(sa.owned_task(&id("o2")).unwrap().is_none(), "final");
    assert!(sa.owned_task(&id("o3")).unwrap().is_none(), "b's");
    assert!(sb.owned_task(&id("o1")).unwrap().is_none(), "a's");
    // A claim b makes is b's: listed, though the claim's answer were lost.
    sa.resign().unwrap();
    let _lost = sb.claim(10).unwrap();
    assert_eq!(sb.owned_open(None, 10).unwrap(), [id("o1"), id("o3")]);
    // Paged by id.
    assert_eq!(sb.owned_open(None, 1).unwrap(), [id("o1")]);
    assert_eq!(sb.owned_open(Some(&id("o1")), 1).unwrap(), [id("o3")]);
    assert!(sb.owned_open(Some(&id("o3")), 1).unwrap().is_empty());
    assert!(sb.owned_task(&id("o1")).unwrap().is_some());
}

#[test]
fn a_cancel_asked_of_another_gateways_task_waits_for_its_owner() {
    let db = PgDatabase::new("cancels");
    let (a, b) = shared_pair(&db, 60_000);
    let (sa, sb) = (a.shared().unwrap(), b.shared().unwrap());
    a.put_tasks(&[&task_with_runs("c1", 2, 0, 5)]).unwrap();
    assert!(sa.cancel_requests(10).unwrap().is_empty());
    assert!(sb.request_cancel(&id("c1"), 50).unwrap(), "asked");
    assert!(
        sb.request_cancel(&id("c1"), 51).unwrap(),
        "asked twice: still asked"
    );
    assert!(sb.cancel_requests(10).unwrap().is_empty(), "b owns nothing");
    assert_eq!(sa.cancel_requests(10).unwrap(), [id("c1")]);
    // The owner writes the task final: the request is gone with it.
    a.put_task(&task_with_runs("c1", 2, 2, 60)).unwrap();
    assert!(sa.cancel_requests(10).unwrap().is_empty());
    assert!(
        !sb.request_cancel(&id("c1"), 70).unwrap(),
        "final: nothing to ask"
    );
    assert!(!sb.request_cancel(&id("nope"), 70).unwrap(), "unknown");
}

#[test]
fn a_version_1_database_is_migrated_and_its_tasks_are_claimable() {
    let db = PgDatabase::new("from_v1");
    // The tables as a build of schema version 1 left them, with one task.
    let t = task_with_runs("old", 2, 1, 5);
    let header = serde_json::to_string(&t.header()).unwrap();
    let runs: Vec<String> = t
        .runs
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    let mut client = db.client();
    client
        .batch_execute(
            r#"CREATE TABLE ww_meta (name text COLLATE "C" PRIMARY KEY, value bigint NOT NULL);
            CREATE TABLE ww_tasks (id text COLLATE "C" PRIMARY KEY, status smallint NOT NULL,
                finished_ms bigint, idempotency_key text COLLATE "C" UNIQUE,
                module_hash bytea NOT NULL, header text NOT NULL);
            CREATE INDEX ww_tasks_by_status ON ww_tasks (status, id);
            CREATE INDEX ww_tasks_finished ON ww_tasks (finished_ms, id) WHERE finished_ms IS NOT NULL;
            CREATE TABLE ww_runs (task_id text COLLATE "C" NOT NULL REFERENCES ww_tasks (id)
                ON DELETE CASCADE, idx bigint NOT NULL, run text NOT NULL, PRIMARY KEY (task_id, idx));
            CREATE TABLE ww_modules (hash bytea PRIMARY KEY, bytes bytea NOT NULL,
                tasks bigint NOT NULL CHECK (tasks >= 0), unused_since_ms bigint NOT NULL);
            INSERT INTO ww_meta VALUES ('finished', 0), ('schema', 1);"#,
        )
        .unwrap();
    let hash = store_support::module_hash().to_vec();
    client
        .execute(
            "INSERT INTO ww_modules VALUES ($1, $2, 1, 0)",
            &[&hash, &MODULE],
        )
        .unwrap();
    client
        .execute(
            "INSERT INTO ww_tasks VALUES ($1, $2, NULL, $3, $4, $5)",
            &[
                &"old",
                &i16::from(t.status.code()),
                &t.spec.idempotency_key,
                &hash,
                &header,
            ],
        )
        .unwrap();
    for (index, run) in runs.iter().enumerate() {
        client
            .execute(
                "INSERT INTO ww_runs VALUES ('old', $1, $2)",
                &[&(index as i64), run],
            )
            .unwrap();
    }
    let store = Store::postgres(&db.url, options()).expect("migrated");
    assert_eq!(schema_version(&db), PG_SCHEMA_VERSION as i64);
    assert_eq!(
        store.tasks().unwrap(),
        vec![t.clone()],
        "read back as written"
    );
    // A task of version 1 has no owner: the first gateway to claim takes it.
    let shared = store.shared().unwrap();
    shared.register("gw-new", 60_000).unwrap();
    assert_eq!(ids(&shared.claim(10).unwrap()), ["old"]);
    store
        .put_task(&task_with_runs("old", 2, 2, 9))
        .expect("its new owner writes it");
}

/// Text read back from a column is parsed: a task id off the id rules, a
/// run's worker that is not a peer id, an unknown error kind are corruption.
#[test]
fn stored_text_that_is_not_an_id_a_peer_or_an_error_kind_is_corrupt() {
    let db = PgDatabase::new("untyped");
    let store = Store::postgres(&db.url, options()).expect("connect");
    store.put_module(MODULE, 0).unwrap();
    let task = task_with_runs("typed", 2, 1, 5);
    assert!(task.runs[0].worker.is_some());
    store.put_task(&task).unwrap();
    let mut client = db.client();
    let run_json = |client: &mut postgres::Client| -> serde_json::Value {
        let text: String = client
            .query_one(
                "SELECT run FROM ww_runs WHERE task_id = 'typed' AND idx = 0",
                &[],
            )
            .unwrap()
            .get(0);
        serde_json::from_str(&text).unwrap()
    };
    let good = run_json(&mut client);
    for (field, bad) in [("worker", "w1"), ("error_kind", "fuel")] {
        let mut run = good.clone();
        run[field] = serde_json::json!(bad);
        client
            .execute(
                "UPDATE ww_runs SET run = $1 WHERE task_id = 'typed' AND idx = 0",
                &[&run.to_string()],
            )
            .unwrap();
        let error = store.runs(&id("typed"), 0, 10).expect_err(field);
        assert!(
            matches!(&error, StoreError::Corrupt { what, .. } if what == "run typed/0"),
            "{field}: {error}"
        );
        assert!(!error.is_transient());
    }
    client
        .execute(
            "UPDATE ww_runs SET run = $1 WHERE task_id = 'typed' AND idx = 0",
            &[&good.to_string()],
        )
        .unwrap();
    assert_eq!(
        store.runs(&id("typed"), 0, 1).unwrap(),
        vec![task.runs[0].clone()]
    );
    // An id off the rules in a row the unfinished tasks are listed from, and
    // in the task an idempotency key names.
    client
        .execute(
            "INSERT INTO ww_tasks (id, status, module_hash, header, idempotency_key) \
             SELECT 'no spaces', status, module_hash, header, 'key' FROM ww_tasks \
             WHERE id = 'typed'",
            &[],
        )
        .unwrap();
    for (what, error) in [
        (
            "unfinished tasks",
            store.open_tasks().map(|_| ()).unwrap_err(),
        ),
        ("key", store.idempotency("key").map(|_| ()).unwrap_err()),
    ] {
        assert!(
            matches!(&error, StoreError::Corrupt { what, .. } if what.starts_with("task id in ww_tasks")),
            "{what}: {error}"
        );
    }
}
