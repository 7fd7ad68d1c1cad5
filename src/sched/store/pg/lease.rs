//! Leases, claims and cancel requests on PostgreSQL: the [`SharedStore`]
//! side of the store, timed by the server's clock (`clock_timestamp()`), so
//! gateways' clocks never decide who owns what.

use postgres::Transaction;

use super::queries::*;
use super::read::rows_to_runs;
use super::{decode, pg_err, Conn, PgStore};
use crate::sched::id::TaskId;
use crate::sched::store::{stored_id, Lease, SharedStore, StoreError};
use crate::sched::types::{Task, TaskHeader};

/// Corrupt orphaned tasks a store remembers to pass over in claims.
pub const CORRUPT_PASSED_MAX: usize = 64;
/// How long a corrupt orphan is passed over before a claim reads it again.
pub const CORRUPT_PASSED_FOR: std::time::Duration = std::time::Duration::from_secs(600);

fn epoch(lease: &Lease) -> i64 {
    i64::try_from(lease.epoch).unwrap_or(i64::MAX)
}

fn lease_ms(lease: &Lease) -> f64 {
    // Exact for any lease under 2^53 ms.
    lease.lease_ms as f64
}

/// The task `id` whole, read inside `txn`.
fn whole_task(
    txn: &mut Transaction<'_>,
    sql: &std::collections::HashMap<&'static str, postgres::Statement>,
    id: &TaskId,
) -> Result<Task, StoreError> {
    let what = || format!("claimed task {id}");
    let row = txn
        .query_one(&sql[HEADER], &[&id.as_str()])
        .map_err(pg_err(what()))?;
    let header: TaskHeader = decode(what(), row.get(0))?;
    let rows = txn
        .query(&sql[RUNS], &[&id.as_str(), &0i64, &i64::MAX])
        .map_err(pg_err(what()))?;
    let runs = rows_to_runs(id, rows)?;
    crate::sched::store::assemble(id, header, runs)
}

impl PgStore {
    /// The lease this store writes under, if registered.
    pub(super) fn lease(&self) -> Option<Lease> {
        self.lease.lock().ok().and_then(|lease| lease.clone())
    }

    /// Ids of orphaned tasks found corrupt within [`CORRUPT_PASSED_FOR`],
    /// which claims pass over (after it, one repaired is claimed again).
    fn corrupt_orphans(&self) -> Vec<String> {
        let Ok(mut found) = self.corrupt.lock() else {
            return Vec::new();
        };
        let now = std::time::Instant::now();
        found.retain(|_, at| now.duration_since(*at) < CORRUPT_PASSED_FOR);
        found.keys().cloned().collect()
    }

    /// Claims pass over `id` for a while (at most [`CORRUPT_PASSED_MAX`]
    /// ids; beyond, the one found longest ago is forgotten).
    fn passed_over(&self, id: String) {
        let Ok(mut found) = self.corrupt.lock() else {
            return;
        };
        if found.len() >= CORRUPT_PASSED_MAX && !found.contains_key(&id) {
            let oldest = found
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                found.remove(&oldest);
            }
        }
        found.insert(id, std::time::Instant::now());
    }

    fn registered(&self, what: &str) -> Result<Lease, StoreError> {
        self.lease().ok_or_else(|| StoreError::LeaseLost {
            what: what.to_string(),
            gateway: "(not registered)".into(),
            epoch: 0,
        })
    }
}

impl SharedStore for PgStore {
    fn register(&self, gateway: &str, lease_ms: u64) -> Result<Lease, StoreError> {
        let what = "gateway registration";
        let gateway = gateway.to_string();
        let ms = lease_ms as f64;
        let epoch = self.pool.call(what, move |conn: &mut Conn| {
            let (client, sql) = conn.open()?;
            let row = client
                .query_one(&sql[REGISTER], &[&gateway, &ms])
                .map_err(pg_err(what))?;
            client
                .execute(&sql[PRUNE_GATEWAYS], &[])
                .map_err(pg_err(what))?;
            let epoch: i64 = row.get(0);
            Ok((gateway, epoch))
        })?;
        let lease = Lease {
            gateway: epoch.0,
            epoch: u64::try_from(epoch.1).unwrap_or(0),
            lease_ms,
        };
        if let Ok(mut held) = self.lease.lock() {
            *held = Some(lease.clone());
        }
        tracing::info!(gateway = %lease.gateway, epoch = lease.epoch, lease_ms, "registered on the shared store");
        Ok(lease)
    }

    fn renew(&self) -> Result<bool, StoreError> {
        let what = "lease renewal";
        let lease = self.registered(what)?;
        self.pool.call(what, move |conn: &mut Conn| {
            let (client, sql) = conn.open()?;
            let renewed = client
                .execute(
                    &sql[RENEW],
                    &[&lease.gateway, &epoch(&lease), &lease_ms(&lease)],
                )
                .map_err(pg_err(what))?;
            Ok(renewed == 1)
        })
    }

    fn resign(&self) -> Result<(), StoreError> {
        let what = "lease resignation";
        let lease = self.registered(what)?;
        self.pool.call(what, move |conn: &mut Conn| {
            let (client, sql) = conn.open()?;
            client
                .execute(&sql[RESIGN], &[&lease.gateway, &epoch(&lease)])
                .map_err(pg_err(what))?;
            Ok(())
        })
    }

    fn claim(&self, tasks_max: usize) -> Result<Vec<Task>, StoreError> {
        let what = "claim of orphaned tasks";
        let lease = self.registered(what)?;
        let max = i64::try_from(tasks_max).unwrap_or(i64::MAX);
        let skip: Vec<String> = self.corrupt_orphans();
        let (tasks, corrupt) = self.pool.call(what, move |conn: &mut Conn| {
            let (client, sql) = conn.open()?;
            let mut txn = client.transaction().map_err(pg_err(what))?;
            let live = txn
                .query_opt(&sql[LEASE_LIVE], &[&lease.gateway, &epoch(&lease)])
                .map_err(pg_err(what))?;
            if live.is_none() {
                return Err(StoreError::LeaseLost {
                    what: what.into(),
                    gateway: lease.gateway.clone(),
                    epoch: lease.epoch,
                });
            }
            let rows = txn
                .query(&sql[CLAIM_CANDIDATES], &[&max, &skip])
                .map_err(pg_err(what))?;
            let mut raw: Vec<String> = rows.into_iter().map(|r| r.get(0)).collect();
            raw.sort();
            let mut tasks = Vec::with_capacity(raw.len());
            // One undecodable task (or a row whose id is not an id) must not
            // stop every claim: it stays unclaimed, for an operator, and is
            // passed over, by the text of its row.
            let mut corrupt: Vec<(String, StoreError)> = Vec::new();
            let mut claimed: Vec<&str> = Vec::with_capacity(raw.len());
            for text in &raw {
                let task = stored_id("ww_tasks", text.as_str())
                    .and_then(|id| whole_task(&mut txn, sql, &id));
                match task {
                    Ok(task) => {
                        tasks.push(task);
                        // The rows locked above, never ids read from inside them.
                        claimed.push(text);
                    }
                    Err(e @ StoreError::Corrupt { .. }) => corrupt.push((text.clone(), e)),
                    Err(e) => return Err(e),
                }
            }
            if !claimed.is_empty() {
                let updated = txn
                    .execute(&sql[CLAIM], &[&lease.gateway, &epoch(&lease), &claimed])
                    .map_err(pg_err(what))?;
                debug_assert_eq!(updated, claimed.len() as u64, "claimed rows are locked");
            }
            txn.commit().map_err(pg_err(what))?;
            Ok((tasks, corrupt))
        })?;
        for (id, error) in corrupt {
            tracing::error!(task = %id.escape_debug(), %error, "an orphaned task is corrupt: left unclaimed (repair or delete it)");
            self.passed_over(id);
        }
        Ok(tasks)
    }

    fn owned_open(&self, after: Option<&TaskId>, max: usize) -> Result<Vec<TaskId>, StoreError> {
        let what = "tasks owned";
        let lease = self.registered(what)?;
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        // Ids are never empty, and "" sorts first under COLLATE "C".
        let after = after.map_or_else(String::new, |id| id.as_str().to_owned());
        self.pool.call(what, move |conn: &mut Conn| {
            let (client, sql) = conn.open()?;
            let rows = client
                .query(
                    &sql[OWNED_OPEN],
                    &[&lease.gateway, &epoch(&lease), &after, &max],
                )
                .map_err(pg_err(what))?;
            rows.into_iter()
                .map(|r| stored_id("ww_tasks", r.get::<_, String>(0)))
                .collect()
        })
    }

    fn owned_task(&self, id: &TaskId) -> Result<Option<Task>, StoreError> {
        let what = "task owned";
        let lease = self.registered(what)?;
        let id = id.clone();
        self.pool.call(what, move |conn: &mut Conn| {
            let (client, sql) = conn.open()?;
            // One snapshot for the ownership and the task.
            let mut txn = client
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .map_err(pg_err(what))?;
            let owns = txn
                .query_opt(
                    &sql[OWNS_OPEN],
                    &[&lease.gateway, &epoch(&lease), &id.as_str()],
                )
                .map_err(pg_err(what))?;
            if owns.is_none() {
                return Ok(None);
            }
            let task = whole_task(&mut txn, sql, &id)?;
            txn.commit().map_err(pg_err(what))?;
            Ok(Some(task))
        })
    }

    fn request_cancel(&self, id: &TaskId, now_ms: u64) -> Result<bool, StoreError> {
        let what = format!("cancel request of task {id}");
        let id = id.clone();
        let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
        self.pool.call(&what.clone(), move |conn: &mut Conn| {
            let (client, sql) = conn.open()?;
            let asked = client
                .execute(&sql[REQUEST_CANCEL], &[&id.as_str(), &now])
                .map_err(pg_err(what.clone()))?;
            if asked == 1 {
                return Ok(true);
            }
            // Asked already (and still unfinished), or final, or unknown.
            let open = client
                .query_opt(&sql[CANCEL_PENDING], &[&id.as_str()])
                .map_err(pg_err(what))?;
            Ok(open.is_some())
        })
    }

    fn cancel_requests(&self, max: usize) -> Result<Vec<TaskId>, StoreError> {
        let what = "cancel requests";
        let lease = self.registered(what)?;
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        self.pool.call(what, move |conn: &mut Conn| {
            let (client, sql) = conn.open()?;
            let rows = client
                .query(
                    &sql[CANCELS_FOR_OWNER],
                    &[&lease.gateway, &epoch(&lease), &max],
                )
                .map_err(pg_err(what))?;
            rows.into_iter()
                .map(|r| stored_id("ww_cancels", r.get::<_, String>(0)))
                .collect()
        })
    }
}
