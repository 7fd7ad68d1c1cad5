//! Reading from PostgreSQL: each read is one statement, or one read-only
//! repeatable-read transaction when it needs two (so it sees one commit whole).

use std::collections::BTreeMap;

use postgres::IsolationLevel;

use super::queries::*;
use super::{decode, pg_err, Conn};
use crate::sched::id::TaskId;
use crate::sched::store::{stored_id, ModuleRefs, StoreError};
use crate::sched::types::{Run, TaskHeader, TaskStatus};

/// A count or offset as PostgreSQL's bigint (`usize::MAX` means no limit).
fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(super) fn rows_to_runs(id: &TaskId, rows: Vec<postgres::Row>) -> Result<Vec<Run>, StoreError> {
    rows.into_iter()
        .map(|row| {
            let index: i64 = row.get(0);
            let run: Run = decode(format!("run {id}/{index}"), row.get(1))?;
            if i64::from(run.index) != index {
                return Err(StoreError::Corrupt {
                    what: format!("run {id}/{index}"),
                    reason: format!("holds index {}", run.index),
                });
            }
            Ok(run)
        })
        .collect()
}

fn headers(rows: Vec<postgres::Row>) -> Result<Vec<TaskHeader>, StoreError> {
    rows.into_iter()
        .map(|row| decode("task header".into(), row.get(0)))
        .collect()
}

/// The task's header, if stored.
pub(super) fn header(conn: &mut Conn, id: &TaskId) -> Result<Option<TaskHeader>, StoreError> {
    let what = || format!("task {id}");
    let (client, sql) = conn.open()?;
    let row = client
        .query_opt(&sql[HEADER], &[&id.as_str()])
        .map_err(pg_err(what()))?;
    row.map(|row| decode(what(), row.get(0))).transpose()
}

/// Up to `limit` runs of the task from index `offset`.
pub(super) fn runs(
    conn: &mut Conn,
    id: &TaskId,
    offset: u32,
    limit: usize,
) -> Result<Vec<Run>, StoreError> {
    let what = || format!("runs of task {id}");
    let (client, sql) = conn.open()?;
    let rows = client
        .query(
            &sql[RUNS],
            &[&id.as_str(), &i64::from(offset), &count(limit)],
        )
        .map_err(pg_err(what()))?;
    rows_to_runs(id, rows)
}

/// The header and a page of runs from one snapshot.
pub(super) fn task_page(
    conn: &mut Conn,
    id: &TaskId,
    offset: u32,
    limit: usize,
) -> Result<Option<(TaskHeader, Vec<Run>)>, StoreError> {
    let what = || format!("task {id}");
    let (client, sql) = conn.open()?;
    let mut txn = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(pg_err(what()))?;
    let Some(row) = txn
        .query_opt(&sql[HEADER], &[&id.as_str()])
        .map_err(pg_err(what()))?
    else {
        return Ok(None);
    };
    let header: TaskHeader = decode(what(), row.get(0))?;
    let rows = txn
        .query(
            &sql[RUNS],
            &[&id.as_str(), &i64::from(offset), &count(limit)],
        )
        .map_err(pg_err(what()))?;
    txn.commit().map_err(pg_err(what()))?;
    Ok(Some((header, rows_to_runs(id, rows)?)))
}

/// A page of headers by id, optionally of one status.
pub(super) fn list(
    conn: &mut Conn,
    status: Option<TaskStatus>,
    after: Option<&str>,
    offset: usize,
    limit: usize,
) -> Result<Vec<TaskHeader>, StoreError> {
    let what = "task list";
    let (client, sql) = conn.open()?;
    let rows = match status {
        None => client.query(&sql[LIST], &[&after, &count(offset), &count(limit)]),
        Some(status) => client.query(
            &sql[LIST_STATUS],
            &[
                &i16::from(status.code()),
                &after,
                &count(offset),
                &count(limit),
            ],
        ),
    }
    .map_err(pg_err(what))?;
    headers(rows)
}

/// Ids of the unfinished tasks, by id.
pub(super) fn open_ids(conn: &mut Conn) -> Result<Vec<TaskId>, StoreError> {
    let what = "unfinished tasks";
    let (client, sql) = conn.open()?;
    let codes: Vec<i16> = TaskStatus::ALL
        .into_iter()
        .filter(|s| !s.is_final())
        .map(|s| i16::from(s.code()))
        .collect();
    let rows = client
        .query(&sql[IDS_WITH_STATUS], &[&codes])
        .map_err(pg_err(what))?;
    rows.into_iter()
        .map(|row| stored_id("ww_tasks", row.get::<_, String>(0)))
        .collect()
}

/// A module's bytes.
pub(super) fn module(conn: &mut Conn, hash: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
    let what = "module";
    let (client, sql) = conn.open()?;
    let row = client
        .query_opt(&sql[MODULE], &[&hash.as_slice()])
        .map_err(pg_err(what))?;
    Ok(row.map(|row| row.get(0)))
}

/// Every module's use.
pub(super) fn module_refs(conn: &mut Conn) -> Result<BTreeMap<[u8; 32], ModuleRefs>, StoreError> {
    let what = "module references";
    let (client, sql) = conn.open()?;
    let rows = client.query(&sql[MODULE_REFS], &[]).map_err(pg_err(what))?;
    let mut refs = BTreeMap::new();
    for row in rows {
        let hash: &[u8] = row.get(0);
        let hash: [u8; 32] = hash.try_into().map_err(|_| StoreError::Corrupt {
            what: "module reference".into(),
            reason: format!("a key of {} bytes", hash.len()),
        })?;
        let (tasks, unused_since_ms): (i64, i64) = (row.get(1), row.get(2));
        let corrupt = |_| StoreError::Corrupt {
            what: "module reference".into(),
            reason: format!("{tasks} tasks, unused since {unused_since_ms}"),
        };
        refs.insert(
            hash,
            ModuleRefs {
                tasks: u64::try_from(tasks).map_err(corrupt)?,
                unused_since_ms: u64::try_from(unused_since_ms).map_err(corrupt)?,
            },
        );
    }
    Ok(refs)
}

/// The task an idempotency key names.
pub(super) fn idempotency(conn: &mut Conn, key: &str) -> Result<Option<TaskId>, StoreError> {
    let what = "idempotency key";
    let (client, sql) = conn.open()?;
    let row = client
        .query_opt(&sql[TASK_OF_KEY], &[&key])
        .map_err(pg_err(what))?;
    row.map(|row| stored_id("ww_tasks by idempotency key", row.get::<_, String>(0)))
        .transpose()
}

/// The count of finished tasks.
pub(super) fn finished_count(conn: &mut Conn) -> Result<u64, StoreError> {
    let what = "finished count";
    let (client, sql) = conn.open()?;
    let value: i64 = client
        .query_one(&sql[FINISHED], &[])
        .map_err(pg_err(what))?
        .get(0);
    u64::try_from(value).map_err(|_| StoreError::Corrupt {
        what: what.into(),
        reason: format!("{value}"),
    })
}
