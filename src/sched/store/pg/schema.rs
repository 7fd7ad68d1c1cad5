//! The PostgreSQL schema and its migrations, applied by the gateway when it
//! connects, in one transaction under an advisory lock: gateways that start
//! together migrate once, and a migration commits whole or not at all.

use postgres::Client;

use super::pg_err;
use crate::sched::store::StoreError;

/// The newest schema this build writes; a database at a newer one is refused.
pub const PG_SCHEMA_VERSION: u64 = 2;

/// The advisory lock key gateways take while they migrate ("wwsched" in ASCII).
const MIGRATION_LOCK: i64 = 0x0077_7773_6368_6564;

/// Version 1. Headers and runs are the embedded store's JSON, as text (so
/// `psql` shows them); status, finish time, key and module are columns so
/// that indexes serve lists by status, retention oldest-first, idempotency
/// and module references. Ids and keys compare bytewise (`COLLATE "C"`).
const V1: &str = r#"
CREATE TABLE ww_tasks (
    id text COLLATE "C" PRIMARY KEY,
    status smallint NOT NULL,
    finished_ms bigint,
    idempotency_key text COLLATE "C" UNIQUE,
    module_hash bytea NOT NULL,
    header text NOT NULL
);
CREATE INDEX ww_tasks_by_status ON ww_tasks (status, id);
CREATE INDEX ww_tasks_finished ON ww_tasks (finished_ms, id) WHERE finished_ms IS NOT NULL;
CREATE TABLE ww_runs (
    task_id text COLLATE "C" NOT NULL REFERENCES ww_tasks (id) ON DELETE CASCADE,
    idx bigint NOT NULL,
    run text NOT NULL,
    PRIMARY KEY (task_id, idx)
);
CREATE TABLE ww_modules (
    hash bytea PRIMARY KEY,
    bytes bytea NOT NULL,
    tasks bigint NOT NULL CHECK (tasks >= 0),
    unused_since_ms bigint NOT NULL
);
INSERT INTO ww_meta (name, value) VALUES ('finished', 0);
"#;

/// Version 2: several gateways on one database. Each gateway holds a lease
/// (`ww_gateways`: an epoch bumped at every registration, an expiry in the
/// server's clock); each unfinished task is owned by one gateway's epoch,
/// which alone may write it and run it; a task whose owner's lease expired
/// (or whose epoch is stale, or that has no owner: tasks of version 1) is
/// claimed by another. A cancel asked at a gateway that does not own the task
/// is a row in `ww_cancels` until the owner applies it.
const V2: &str = r#"
CREATE TABLE ww_gateways (
    id text COLLATE "C" PRIMARY KEY,
    epoch bigint NOT NULL,
    expires_at timestamptz NOT NULL
);
ALTER TABLE ww_tasks ADD COLUMN owner text COLLATE "C", ADD COLUMN owner_epoch bigint;
CREATE INDEX ww_tasks_open_by_owner ON ww_tasks (owner, id) WHERE finished_ms IS NULL;
CREATE TABLE ww_cancels (
    task_id text COLLATE "C" PRIMARY KEY REFERENCES ww_tasks (id) ON DELETE CASCADE,
    requested_ms bigint NOT NULL
);
"#;

/// Each version's statements, in order; version N is `MIGRATIONS[N - 1]`.
const MIGRATIONS: [&str; PG_SCHEMA_VERSION as usize] = [V1, V2];

/// Creates the schema or brings it to [`PG_SCHEMA_VERSION`]; refuses a newer one.
/// Returns the version found (0 for an empty database).
pub(super) fn migrate(client: &mut Client) -> Result<u64, StoreError> {
    let what = "schema migration";
    let mut txn = client.transaction().map_err(pg_err(what))?;
    txn.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(pg_err(what))?;
    txn.batch_execute(
        "CREATE TABLE IF NOT EXISTS ww_meta (name text COLLATE \"C\" PRIMARY KEY, value bigint NOT NULL)",
    )
    .map_err(pg_err(what))?;
    let found = txn
        .query_opt("SELECT value FROM ww_meta WHERE name = 'schema'", &[])
        .map_err(pg_err(what))?
        .map(|row| row.get::<_, i64>(0));
    let found = match found {
        None => 0,
        Some(v) => u64::try_from(v).map_err(|_| StoreError::Corrupt {
            what: "schema version".into(),
            reason: format!("{v} is negative"),
        })?,
    };
    if found > PG_SCHEMA_VERSION {
        return Err(StoreError::Version {
            found,
            expected: PG_SCHEMA_VERSION,
        });
    }
    for (n, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        txn.batch_execute(sql)
            .map_err(pg_err(format!("schema migration to version {}", n + 1)))?;
    }
    let version = PG_SCHEMA_VERSION as i64;
    txn.execute(
        "INSERT INTO ww_meta (name, value) VALUES ('schema', $1) \
         ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
        &[&version],
    )
    .map_err(pg_err(what))?;
    txn.commit().map_err(pg_err(what))?;
    if found < PG_SCHEMA_VERSION {
        tracing::info!(
            from = found,
            to = PG_SCHEMA_VERSION,
            "PostgreSQL schema migrated"
        );
    }
    Ok(found)
}
