//! What only the PostgreSQL store does: it creates and migrates its schema
//! (once, however many gateways connect at the same time), refuses a schema
//! from a newer build, recovers from a dropped connection, never puts the
//! password in what it prints, passes a corrupt orphan over in claims, and
//! migrates a version-1 database. The sharing rules (leases, ownership, claims,
//! cancel requests) are tested on PostgreSQL and the simulation's in-memory
//! store alike in `store_shared.rs`; the layout's rules, shared with the
//! embedded store, on every engine in `store_layout.rs`.

mod pg_support;
mod store_support;

use pg_support::PgDatabase;
use store_support::{id, task_with_runs, MODULE};
use ww_sched::sched::{PgOptions, Store, StoreError, Task, PG_SCHEMA_VERSION};

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
