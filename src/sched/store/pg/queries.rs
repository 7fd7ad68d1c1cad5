//! Every statement the PostgreSQL store runs, prepared once per connection.
//!
//! Task ids and keys are `COLLATE "C"` (schema.rs), so `ORDER BY id` and
//! `id > $1` compare bytes, as the embedded store does.

/// A task's header, locked for the rest of the transaction.
pub(super) const HEADER_FOR_UPDATE: &str = "SELECT header FROM ww_tasks WHERE id = $1 FOR UPDATE";
/// A new task; nothing if its id or idempotency key is taken.
pub(super) const INSERT_TASK: &str = "INSERT INTO ww_tasks (id, status, finished_ms, \
     idempotency_key, module_hash, header) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING";
/// An unfinished task's new state.
pub(super) const UPDATE_TASK: &str =
    "UPDATE ww_tasks SET status = $2, finished_ms = $3, header = $4 WHERE id = $1";
/// The task an idempotency key names.
pub(super) const TASK_OF_KEY: &str = "SELECT id FROM ww_tasks WHERE idempotency_key = $1";
/// Runs of one task, written or rewritten.
pub(super) const UPSERT_RUNS: &str = "INSERT INTO ww_runs (task_id, idx, run) \
     SELECT $1, idx, run FROM unnest($2::bigint[], $3::text[]) AS r(idx, run) \
     ON CONFLICT (task_id, idx) DO UPDATE SET run = EXCLUDED.run";
/// One more task refers to a stored module.
pub(super) const REFER_MODULE: &str =
    "UPDATE ww_modules SET tasks = tasks + 1, unused_since_ms = 0 WHERE hash = $1";
/// One task fewer refers to a module; the last one to go starts its grace period.
pub(super) const RELEASE_MODULE: &str = "UPDATE ww_modules SET tasks = tasks - 1, \
     unused_since_ms = CASE WHEN tasks = 1 THEN $2::bigint ELSE 0 END WHERE hash = $1 AND tasks > 0";
/// A module's reference count, locked.
pub(super) const MODULE_TASKS_FOR_UPDATE: &str =
    "SELECT tasks FROM ww_modules WHERE hash = $1 FOR UPDATE";
/// A module that is not stored yet, unused since now.
pub(super) const INSERT_MODULE: &str = "INSERT INTO ww_modules (hash, bytes, tasks, \
     unused_since_ms) VALUES ($1, $2, 0, $3) ON CONFLICT (hash) DO NOTHING";
/// An unused module's grace period restarts.
pub(super) const TOUCH_MODULE: &str =
    "UPDATE ww_modules SET unused_since_ms = $2 WHERE hash = $1 AND tasks = 0";
/// A module goes.
pub(super) const DELETE_MODULE: &str = "DELETE FROM ww_modules WHERE hash = $1";
/// A task goes, and its runs with it (`ON DELETE CASCADE`).
pub(super) const DELETE_TASK: &str = "DELETE FROM ww_tasks WHERE id = $1";
/// The oldest finished tasks, oldest first.
pub(super) const OLDEST_FINISHED: &str = "SELECT id, header FROM ww_tasks \
     WHERE finished_ms IS NOT NULL ORDER BY finished_ms, id LIMIT $1";
/// The count of finished tasks, locked: retention reads it, then changes it.
pub(super) const FINISHED_FOR_UPDATE: &str =
    "SELECT value FROM ww_meta WHERE name = 'finished' FOR UPDATE";
/// The count of finished tasks changes by `$1`.
pub(super) const ADD_FINISHED: &str =
    "UPDATE ww_meta SET value = value + $1 WHERE name = 'finished' RETURNING value";
/// The count of finished tasks.
pub(super) const FINISHED: &str = "SELECT value FROM ww_meta WHERE name = 'finished'";
/// A task's header.
pub(super) const HEADER: &str = "SELECT header FROM ww_tasks WHERE id = $1";
/// Runs of a task from an index, in index order.
pub(super) const RUNS: &str =
    "SELECT idx, run FROM ww_runs WHERE task_id = $1 AND idx >= $2 ORDER BY idx LIMIT $3";
/// Headers by id, after an id (or from the start), a page.
pub(super) const LIST: &str = "SELECT header FROM ww_tasks WHERE ($1::text IS NULL OR id > $1) \
     ORDER BY id OFFSET $2 LIMIT $3";
/// Headers of one status by id, after an id (or from the start), a page.
pub(super) const LIST_STATUS: &str = "SELECT header FROM ww_tasks WHERE status = $1 \
     AND ($2::text IS NULL OR id > $2) ORDER BY id OFFSET $3 LIMIT $4";
/// Ids of tasks in any of these statuses, by id.
pub(super) const IDS_WITH_STATUS: &str =
    "SELECT id FROM ww_tasks WHERE status = ANY($1) ORDER BY id";
/// A module's bytes.
pub(super) const MODULE: &str = "SELECT bytes FROM ww_modules WHERE hash = $1";
/// Every module's use.
pub(super) const MODULE_REFS: &str = "SELECT hash, tasks, unused_since_ms FROM ww_modules";

/// Every statement, prepared when a connection opens.
pub(super) const ALL: &[&str] = &[
    HEADER_FOR_UPDATE,
    INSERT_TASK,
    UPDATE_TASK,
    TASK_OF_KEY,
    UPSERT_RUNS,
    REFER_MODULE,
    RELEASE_MODULE,
    MODULE_TASKS_FOR_UPDATE,
    INSERT_MODULE,
    TOUCH_MODULE,
    DELETE_MODULE,
    DELETE_TASK,
    OLDEST_FINISHED,
    FINISHED_FOR_UPDATE,
    ADD_FINISHED,
    FINISHED,
    HEADER,
    RUNS,
    LIST,
    LIST_STATUS,
    IDS_WITH_STATUS,
    MODULE,
    MODULE_REFS,
];
