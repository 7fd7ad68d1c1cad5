//! Store reads the core asks for, carried out off the core's thread: on
//! tokio's blocking pool on real hosts (a slow disk or a database round trip
//! holds up nothing else), inline in simulation (`StorageMode::Inline`: one
//! thread, so a run stays a function of its seed). Either way the result
//! comes back through a queue and is handed to the core on a later turn.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::StorageMode;
use crate::gateway::core::{Read, ReadId, ReadResult};
use crate::sched::{Store, StoreError, TaskHeader, TaskId};

/// How often a cancel asked of another gateway reads the task again.
const AWAIT_FINAL_POLL: Duration = Duration::from_millis(100);

/// Where read results go.
pub(super) type Results = mpsc::UnboundedSender<(ReadId, ReadResult)>;

/// Carries out `read` and sends its result with `id`.
pub(super) fn start(
    store: &Arc<Store>,
    mode: StorageMode,
    results: &Results,
    id: ReadId,
    read: Read,
) {
    let results = results.clone();
    if let Read::AwaitFinal { id: task, wait_ms } = read {
        let store = store.clone();
        tokio::task::spawn_local(async move {
            let result = await_final(&store, mode, task, wait_ms).await;
            let _ = results.send((id, ReadResult::Header(result)));
        });
        return;
    }
    match mode {
        StorageMode::Inline => {
            let _ = results.send((id, execute(store, read)));
        }
        StorageMode::Thread => {
            let store = store.clone();
            // Detached: a result nobody waits for any more is dropped.
            drop(tokio::task::spawn_blocking(move || {
                let _ = results.send((id, execute(&store, read)));
            }));
        }
    }
}

/// One read, on the calling thread.
fn execute(store: &Store, read: Read) -> ReadResult {
    match read {
        Read::Header(id) => ReadResult::Header(store.header(&id)),
        Read::Keyed(key) => ReadResult::Header(keyed(store, &key)),
        Read::Module(hash) => ReadResult::Module(store.module(&hash).map(|m| m.map(Arc::new))),
        Read::FinishedCount => ReadResult::FinishedCount(store.finished_count()),
        Read::ModuleRefs => ReadResult::ModuleRefs(store.module_refs()),
        Read::OwnedTasks(ids) => ReadResult::OwnedTasks(owned_tasks(store, ids)),
        Read::RequestCancel { id, now_ms } => ReadResult::CancelRequested(match store.shared() {
            Some(shared) => shared.request_cancel(&id, now_ms),
            None => Ok(false),
        }),
        Read::AwaitFinal { id, .. } => ReadResult::Header(store.header(&id)),
    }
}

/// The header of the task an idempotency key names, while it is kept.
fn keyed(store: &Store, key: &str) -> Result<Option<TaskHeader>, StoreError> {
    match store.idempotency(key)? {
        Some(id) => store.header(&id),
        None => Ok(None),
    }
}

/// The tasks among `ids` this gateway owns and has not finished, each read
/// with its ownership in one snapshot. A corrupt one is logged and skipped
/// (left for an operator); any other error stops the page (the next
/// comparison retries).
fn owned_tasks(store: &Store, ids: Vec<TaskId>) -> Vec<crate::sched::Task> {
    let Some(shared) = store.shared() else {
        return Vec::new();
    };
    let mut tasks = Vec::with_capacity(ids.len());
    for id in ids {
        match shared.owned_task(&id) {
            Ok(Some(task)) => {
                tracing::warn!(task = %id, "owned here but not held (a claim's answer was lost): taken up");
                tasks.push(task);
            }
            Ok(None) => {}
            Err(e @ StoreError::Corrupt { .. }) => {
                tracing::error!(task = %id, error = %e, "owned task is corrupt; not taken up");
            }
            Err(e) => {
                tracing::warn!(task = %id, error = %e, "owned task not read; the next comparison retries");
                break;
            }
        }
    }
    tasks
}

/// The task's header once the store shows it final, read every 100 ms for
/// up to `wait_ms`; after that, as it is.
async fn await_final(
    store: &Arc<Store>,
    mode: StorageMode,
    id: TaskId,
    wait_ms: u64,
) -> Result<Option<TaskHeader>, StoreError> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
    loop {
        tokio::time::sleep(AWAIT_FINAL_POLL).await;
        let header = match mode {
            StorageMode::Inline => store.header(&id),
            StorageMode::Thread => {
                let (store, id) = (store.clone(), id.clone());
                tokio::task::spawn_blocking(move || store.header(&id))
                    .await
                    .map_err(|e| StoreError::Unavailable {
                        what: format!("store read: {e}"),
                        waited_ms: 0,
                    })?
            }
        };
        match header {
            Ok(Some(header))
                if !header.status.is_final() && tokio::time::Instant::now() < deadline =>
            {
                continue
            }
            other => return other,
        }
    }
}
