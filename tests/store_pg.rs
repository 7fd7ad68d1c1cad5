//! What only the PostgreSQL store does: it creates and migrates its schema
//! (once, however many gateways connect at the same time), refuses a schema
//! from a newer build, recovers from a dropped connection, and never puts the
//! password in what it prints. The layout's rules, shared with the embedded
//! store, are tested on both in `store_layout.rs`.

mod pg_support;

use pg_support::PgDatabase;
use ww_sched::sched::{PgOptions, Store, StoreError, PG_SCHEMA_VERSION};

const MODULE: &[u8] = b"\0asm\x01\0\0\0";

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
    assert_eq!(tables, 4, "ww_meta, ww_tasks, ww_runs, ww_modules");
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
