//! Every statement the PostgreSQL store runs, prepared once per connection.
//!
//! Task ids and keys are `COLLATE "C"` (schema.rs), so `ORDER BY id` and
//! `id > $1` compare bytes, as the embedded store does.

/// A task's header and owner, locked for the rest of the transaction.
pub(super) const HEADER_FOR_UPDATE: &str =
    "SELECT header, owner, owner_epoch FROM ww_tasks WHERE id = $1 FOR UPDATE";
/// A new task; nothing if its id or idempotency key is taken.
pub(super) const INSERT_TASK: &str = "INSERT INTO ww_tasks (id, status, finished_ms, \
     idempotency_key, module_hash, header, owner, owner_epoch) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING";
/// A task never stored, whole, in one round trip: its row, its module's
/// reference and its runs; the counts of tasks inserted (0: its id or key is
/// taken, nothing written) and of module references taken (0: the module is
/// not stored, and the caller undoes the insert). The runs' foreign key is
/// checked at the statement's end, when the task's row is there.
pub(super) const INSERT_NEW_TASK: &str = "WITH task AS ( \
       INSERT INTO ww_tasks (id, status, finished_ms, idempotency_key, module_hash, \
         header, owner, owner_epoch) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
       ON CONFLICT DO NOTHING RETURNING id), \
     module AS ( \
       UPDATE ww_modules SET tasks = tasks + 1, unused_since_ms = 0 \
       WHERE hash = $5 AND EXISTS (SELECT 1 FROM task) RETURNING hash), \
     runs AS ( \
       INSERT INTO ww_runs (task_id, idx, run) \
       SELECT task.id, r.idx, r.run FROM task, \
         unnest($9::bigint[], $10::text[]) AS r(idx, run) RETURNING 1) \
     SELECT (SELECT count(*) FROM task), (SELECT count(*) FROM module), \
       (SELECT count(*) FROM runs)";
/// An unfinished task's new state and changed runs in one round trip, if
/// this writer owns it and its spec and submission time are the stored ones;
/// a final one's cancel request goes with it. The count of tasks written: 0
/// means nothing was, and the caller checks why. The spec and the time are
/// compared as the header's text (`$9`, the header up to the spec's end;
/// `$10`, the time's field), which serde writes the same for the same values:
/// no JSON is parsed here, so no text a client sent can make the statement
/// fail (jsonb refuses `\u0000`); text written otherwise (an older build)
/// fails the guard and goes through the checks.
pub(super) const UPDATE_OWN_TASK: &str = "WITH task AS ( \
       UPDATE ww_tasks SET status = $2, finished_ms = $3, header = $4 \
       WHERE id = $1 AND finished_ms IS NULL \
         AND owner IS NOT DISTINCT FROM $5 AND owner_epoch IS NOT DISTINCT FROM $6 \
         AND starts_with(header, $9) AND strpos(header, $10) > 0 \
       RETURNING id), \
     runs AS ( \
       INSERT INTO ww_runs (task_id, idx, run) \
       SELECT task.id, r.idx, r.run FROM task, \
         unnest($7::bigint[], $8::text[]) AS r(idx, run) \
       ON CONFLICT (task_id, idx) DO UPDATE SET run = EXCLUDED.run RETURNING 1), \
     cancel AS ( \
       DELETE FROM ww_cancels WHERE task_id = $1 AND $3::bigint IS NOT NULL \
         AND EXISTS (SELECT 1 FROM task) RETURNING 1) \
     SELECT count(*) FROM task";
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
/// The oldest finished tasks, oldest first, locked; those another gateway's
/// retention holds are skipped (it deletes them).
pub(super) const OLDEST_FINISHED: &str = "SELECT id, header FROM ww_tasks \
     WHERE finished_ms IS NOT NULL ORDER BY finished_ms, id LIMIT $1 FOR UPDATE SKIP LOCKED";
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

/// A gateway registers: a new epoch, a lease of `$2` ms from the server's now.
pub(super) const REGISTER: &str = "INSERT INTO ww_gateways (id, epoch, expires_at) \
     VALUES ($1, 1, clock_timestamp() + $2 * interval '1 millisecond') \
     ON CONFLICT (id) DO UPDATE SET epoch = ww_gateways.epoch + 1, expires_at = EXCLUDED.expires_at \
     RETURNING epoch";
/// A live lease is extended to `$3` ms from the server's now; an expired one is not.
pub(super) const RENEW: &str = "UPDATE ww_gateways \
     SET expires_at = clock_timestamp() + $3 * interval '1 millisecond' \
     WHERE id = $1 AND epoch = $2 AND expires_at > clock_timestamp()";
/// Whether this gateway's lease is live.
pub(super) const LEASE_LIVE: &str = "SELECT 1 FROM ww_gateways \
     WHERE id = $1 AND epoch = $2 AND expires_at > clock_timestamp()";
/// A gateway that stops hands its tasks over at once.
pub(super) const RESIGN: &str =
    "UPDATE ww_gateways SET expires_at = clock_timestamp() WHERE id = $1 AND epoch = $2";
/// Up to `$1` unfinished tasks without a live owner, locked to be claimed,
/// except the ids in `$2` (found corrupt before); tasks being written by their
/// owner right now are skipped, not waited for. Expiry is judged at the
/// statement's start, the time of the snapshot it reads the leases from: a
/// renewal committed after the snapshot could only have succeeded if the
/// lease was live then, so it is never overtaken.
pub(super) const CLAIM_CANDIDATES: &str = "SELECT t.id FROM ww_tasks t \
       LEFT JOIN ww_gateways g ON g.id = t.owner \
       WHERE t.finished_ms IS NULL AND (t.owner IS NULL OR g.id IS NULL \
         OR g.epoch <> t.owner_epoch OR g.expires_at <= statement_timestamp()) \
         AND NOT (t.id = ANY($2::text[])) \
       ORDER BY t.id LIMIT $1 FOR UPDATE OF t SKIP LOCKED";
/// The claimed tasks (locked by this transaction) become this gateway's.
pub(super) const CLAIM: &str = "UPDATE ww_tasks SET owner = $1, owner_epoch = $2 \
     WHERE id = ANY($3::text[]) AND finished_ms IS NULL";
/// Up to `$4` unfinished tasks this gateway's epoch owns, by id, after `$3`.
pub(super) const OWNED_OPEN: &str = "SELECT id FROM ww_tasks \
     WHERE owner = $1 AND owner_epoch = $2 AND finished_ms IS NULL AND id > $3 \
     ORDER BY id LIMIT $4";
/// Whether this gateway's epoch owns the unfinished task `$3`.
pub(super) const OWNS_OPEN: &str = "SELECT 1 FROM ww_tasks \
     WHERE id = $3 AND owner = $1 AND owner_epoch = $2 AND finished_ms IS NULL";
/// A cancel asked at a gateway that does not own the task, unless asked already.
/// The task's row is share-locked, so a request never slips in after the
/// owner's commit that made it final (and deleted requests): it waits for
/// that commit, then sees the task final and asks nothing.
pub(super) const REQUEST_CANCEL: &str = "INSERT INTO ww_cancels (task_id, requested_ms) \
     SELECT id, $2 FROM ww_tasks WHERE id = $1 AND finished_ms IS NULL FOR SHARE \
     ON CONFLICT (task_id) DO NOTHING";
/// Leases that ended a day ago and own no unfinished task: forgotten, so the
/// table holds the gateways of the last day, not every one there ever was.
pub(super) const PRUNE_GATEWAYS: &str = "DELETE FROM ww_gateways g \
     WHERE g.expires_at < clock_timestamp() - interval '1 day' AND NOT EXISTS \
     (SELECT 1 FROM ww_tasks t WHERE t.owner = g.id AND t.finished_ms IS NULL)";
/// Whether a cancel of the task is asked and not yet applied.
pub(super) const CANCEL_PENDING: &str = "SELECT 1 FROM ww_cancels WHERE task_id = $1";
/// Cancels asked of this gateway's unfinished tasks.
pub(super) const CANCELS_FOR_OWNER: &str = "SELECT c.task_id FROM ww_cancels c \
     JOIN ww_tasks t ON t.id = c.task_id WHERE t.owner = $1 AND t.owner_epoch = $2 \
       AND t.finished_ms IS NULL \
     ORDER BY c.task_id LIMIT $3";
/// A task's pending cancel goes once the task is final.
pub(super) const DELETE_CANCEL: &str = "DELETE FROM ww_cancels WHERE task_id = $1";

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
    REGISTER,
    PRUNE_GATEWAYS,
    RENEW,
    LEASE_LIVE,
    RESIGN,
    INSERT_NEW_TASK,
    UPDATE_OWN_TASK,
    CLAIM_CANDIDATES,
    CLAIM,
    OWNED_OPEN,
    OWNS_OPEN,
    REQUEST_CANCEL,
    CANCEL_PENDING,
    CANCELS_FOR_OWNER,
    DELETE_CANCEL,
];
