//! The PostgreSQL store: the same tables and checks as the embedded one, on a
//! server that several gateways can share.
//!
//! Every write is one transaction committed with `synchronous_commit` on (the
//! server's WAL is flushed before COMMIT returns), so an acknowledgement
//! follows a committed, durable transaction. Reads are single statements or
//! one repeatable-read snapshot. The connection is not encrypted (`NoTls`):
//! run the server on loopback, a Unix socket or a private network
//! (docs/SECURITY.md).

mod lease;
mod pool;
mod queries;
mod read;
mod schema;
mod sqlstate;
mod write;

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

pub use schema::PG_SCHEMA_VERSION;
pub(super) use sqlstate::transient as transient_code;

use super::{Batch, BatchReport, Lease, ModuleRefs, SharedStore, StoreError, TaskStore};
use crate::sched::id::TaskId;
use crate::sched::types::{Run, Task, TaskHeader, TaskStatus};
use pool::{Conn, Pool};

/// How the PostgreSQL store connects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PgOptions {
    /// Connections kept open (each with a thread of its own).
    pub connections: usize,
    /// Longest wait for a connection to open.
    pub connect_timeout_ms: u64,
    /// Longest a statement may run before the server cancels it: a hung
    /// server fails the operation instead of hanging the gateway.
    pub statement_timeout_ms: u64,
    /// Longest a caller waits for its answer (queue and statement together).
    pub wait_ms: u64,
}

impl Default for PgOptions {
    /// Four connections; 2 s to connect, 5 s per statement, 6 s in all: a
    /// gateway among several must learn within its lease window (7 s) that
    /// the database does not answer.
    fn default() -> Self {
        PgOptions {
            connections: 4,
            connect_timeout_ms: 2_000,
            statement_timeout_ms: 5_000,
            wait_ms: 6_000,
        }
    }
}

/// A gateway's handle on a PostgreSQL database.
pub struct PgStore {
    pool: Pool,
    /// Whose writes these are, once the gateway registered (shared.rs).
    lease: std::sync::Arc<std::sync::Mutex<Option<Lease>>>,
    /// Orphaned tasks found corrupt, passed over by claims (lease.rs).
    corrupt: std::sync::Mutex<std::collections::BTreeMap<String, std::time::Instant>>,
    /// Where, for logs: host, port and database, never the password.
    label: String,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("database", &self.label)
            .field("connections", &self.pool.connections())
            .finish()
    }
}

/// A PostgreSQL error as a store error about `what`.
fn pg_err(what: impl Into<String>) -> impl FnOnce(postgres::Error) -> StoreError {
    let what = what.into();
    move |source| StoreError::Postgres {
        what,
        source: Box::new(source),
    }
}

/// JSON read back from a text column.
fn decode<T: serde::de::DeserializeOwned>(what: String, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        what,
        reason: e.to_string(),
    })
}

/// Host, port and database of `config`, for logs.
fn label(config: &postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(host)) => host.clone(),
        Some(postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("{host}:{port}/{db}")
}

impl PgStore {
    /// Connects to `url` (`postgres://USER[:PASSWORD]@HOST:PORT/DB`, or any
    /// libpq connection string), creates or migrates the schema, and keeps
    /// `options.connections` connections.
    pub fn connect(url: &str, options: PgOptions) -> Result<Self, StoreError> {
        let mut config = postgres::Config::from_str(url).map_err(pg_err("database URL"))?;
        config
            .connect_timeout(Duration::from_millis(options.connect_timeout_ms))
            .application_name("ww-sched gateway")
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(5))
            .keepalives_interval(Duration::from_secs(1))
            .keepalives_retries(3)
            // A server that stops answering (a partition) fails the call
            // instead of holding a connection thread for the kernel's minutes.
            .tcp_user_timeout(Duration::from_millis(options.statement_timeout_ms))
            .options(&format!(
                "-c statement_timeout={} -c lock_timeout={}",
                options.statement_timeout_ms, options.statement_timeout_ms
            ));
        let label = label(&config);
        let pool = Pool::start(
            config,
            options.connections,
            Duration::from_millis(options.wait_ms),
        )?;
        let store = PgStore {
            pool,
            label,
            lease: Default::default(),
            corrupt: Default::default(),
        };
        // One connection now: an unreachable server or a schema from a newer
        // build stops the gateway at start, not at its first request.
        store
            .pool
            .call("connecting to PostgreSQL", |conn| conn.open().map(drop))?;
        tracing::info!(
            database = %store.label,
            schema = PG_SCHEMA_VERSION,
            "task store on PostgreSQL"
        );
        Ok(store)
    }

    /// Host, port and database, without credentials.
    pub fn label(&self) -> &str {
        &self.label
    }
}

impl TaskStore for PgStore {
    fn engine(&self) -> &'static str {
        "postgres"
    }

    fn commit(&self, batch: &Batch) -> Result<BatchReport, StoreError> {
        let batch = batch.clone();
        let lease = self.lease();
        self.pool.call_write(&batch.describe(), move |conn| {
            write::commit(conn, &batch, lease.as_ref())
        })
    }

    fn header(&self, id: &TaskId) -> Result<Option<TaskHeader>, StoreError> {
        let id = id.clone();
        self.pool.call("task", move |conn| read::header(conn, &id))
    }

    fn runs(&self, id: &TaskId, offset: u32, limit: usize) -> Result<Vec<Run>, StoreError> {
        let id = id.clone();
        self.pool
            .call("runs", move |conn| read::runs(conn, &id, offset, limit))
    }

    fn task_page(
        &self,
        id: &TaskId,
        offset: u32,
        limit: usize,
    ) -> Result<Option<(TaskHeader, Vec<Run>)>, StoreError> {
        let id = id.clone();
        self.pool.call("task", move |conn| {
            read::task_page(conn, &id, offset, limit)
        })
    }

    fn list(
        &self,
        status: Option<TaskStatus>,
        after: Option<&TaskId>,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<TaskHeader>, StoreError> {
        let after = after.map(|id| id.as_str().to_owned());
        self.pool.call("task list", move |conn| {
            read::list(conn, status, after.as_deref(), offset, limit)
        })
    }

    fn open_tasks(&self) -> Result<Vec<Task>, StoreError> {
        let ids = self.pool.call("unfinished tasks", read::open_ids)?;
        ids.iter().map(|id| super::whole_task(self, id)).collect()
    }

    fn module(&self, hash: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
        let hash = *hash;
        self.pool
            .call("module", move |conn| read::module(conn, &hash))
    }

    fn module_refs(&self) -> Result<BTreeMap<[u8; 32], ModuleRefs>, StoreError> {
        self.pool.call("module references", read::module_refs)
    }

    fn idempotency(&self, key: &str) -> Result<Option<TaskId>, StoreError> {
        let key = key.to_string();
        self.pool
            .call("idempotency key", move |conn| read::idempotency(conn, &key))
    }

    fn finished_count(&self) -> Result<u64, StoreError> {
        self.pool.call("finished count", read::finished_count)
    }

    fn shared(&self) -> Option<&dyn SharedStore> {
        Some(self)
    }
}
