//! Where commits run. On real hosts a dedicated thread commits (and fsyncs)
//! while the node thread goes on driving libp2p, RPC, pings and HTTP, and the
//! planner forms the next batch. In simulation the commit runs inline on the
//! one simulation thread, at the moment it is sent, so a run stays a function
//! of its seed; its result is then taken by the core's next turn, as a
//! thread's would be. Either way a commit the store was out of reach for is
//! retried under the same rules (the thread sleeps; inline, the retry waits
//! on tokio's clock, virtual under turmoil).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::gateway::metrics::GatewayMetrics;
use crate::sched::{Batch, BatchReport, Store, StoreError};

/// How the gateway runs its commits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageMode {
    /// On a dedicated thread (real hosts).
    Thread,
    /// On the caller's thread when sent (simulation: deterministic).
    Inline,
}

/// Longest a commit is retried while the store is out of reach (a database
/// restarting): under the core's stall limit, and past a gateway's lease
/// window on a shared store, whose keeper stops the gateway first.
pub const COMMIT_RETRY_MAX: Duration = Duration::from_secs(20);
/// Pause between retries of a commit.
pub const COMMIT_RETRY_PAUSE: Duration = Duration::from_millis(250);

/// A batch's commit result, with its number.
pub type CommitResult = (u64, Result<BatchReport, StoreError>);

/// A batch to commit, as the commit thread takes it.
struct Job {
    seq: u64,
    batch: Batch,
}

/// Commits `job`, retrying for up to [`COMMIT_RETRY_MAX`] while the store is
/// out of reach (a failure that wrote nothing: safe to repeat); `unreachable`
/// is set meanwhile.
fn commit_retrying(
    store: &Store,
    job: &Job,
    unreachable: &AtomicBool,
    closing: &AtomicBool,
) -> Result<BatchReport, StoreError> {
    let began = std::time::Instant::now();
    let mut result = store.commit(&job.batch);
    while let Err(e) = &result {
        if !e.is_transient()
            || began.elapsed() >= COMMIT_RETRY_MAX
            || closing.load(Ordering::Acquire)
        {
            break;
        }
        if !unreachable.swap(true, Ordering::AcqRel) {
            tracing::warn!(seq = job.seq, error = %e, "the task store is out of reach: retrying the commit, refusing new acknowledgements meanwhile");
        }
        std::thread::sleep(COMMIT_RETRY_PAUSE);
        result = store.commit(&job.batch);
    }
    if unreachable.swap(false, Ordering::AcqRel) && result.is_ok() {
        tracing::info!(seq = job.seq, "the task store answers again; commit done");
    }
    result
}

/// Retries the inline commit in `retrying` (which must hold one) when it is
/// due, on tokio's clock, as [`commit_retrying`] does on the thread: until
/// it is done, fails otherwise than by an unreachable store, or has been
/// retried for [`COMMIT_RETRY_MAX`]. Cancel-safe: the retry and its next
/// time stay in `retrying` until it ends.
async fn retry_inline(
    store: &Store,
    metrics: &GatewayMetrics,
    retrying: &mut Option<InlineRetry>,
    unreachable: &AtomicBool,
) -> CommitResult {
    loop {
        let Some(retry) = retrying.as_mut() else {
            return std::future::pending().await;
        };
        tokio::time::sleep_until(retry.next_try).await;
        let tried = tokio::time::Instant::now();
        let result = store.commit(&retry.job.batch);
        let gave_up = tried.duration_since(retry.began) >= COMMIT_RETRY_MAX;
        if matches!(&result, Err(e) if e.is_transient()) && !gave_up {
            retry.next_try = tried + COMMIT_RETRY_PAUSE;
            continue;
        }
        let seq = retry.job.seq;
        *retrying = None;
        if unreachable.swap(false, Ordering::AcqRel) && result.is_ok() {
            tracing::info!(seq, "the task store answers again; commit done");
        }
        if result.is_ok() {
            metrics.committed(tried.elapsed());
        }
        return (seq, result);
    }
}

/// Runs commits one at a time and hands back their results. Dropping it
/// waits for the commit thread to finish the commit it runs, so the store is
/// closed when the drop returns.
pub struct Committer {
    inner: Inner,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Set while a commit is being retried because the store is out of reach.
    unreachable: Arc<AtomicBool>,
    /// Set when the committer is dropped: a commit being retried gives up.
    closing: Arc<AtomicBool>,
}

impl Drop for Committer {
    fn drop(&mut self) {
        // Closing the job queue ends the thread's loop; a commit it retries
        // stops retrying (the gateway is stopping: it answers nobody).
        self.closing.store(true, Ordering::Release);
        self.inner = Inner::Closed;
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the store's commit thread panicked");
            }
        }
    }
}

/// An inline commit being retried while the store is out of reach.
struct InlineRetry {
    job: Job,
    began: tokio::time::Instant,
    next_try: tokio::time::Instant,
}

enum Inner {
    Thread {
        jobs: std::sync::mpsc::SyncSender<Job>,
        results: mpsc::UnboundedReceiver<CommitResult>,
    },
    Inline {
        store: Arc<Store>,
        metrics: Arc<GatewayMetrics>,
        ready: Option<CommitResult>,
        /// A commit the store was out of reach for, retried on tokio's
        /// (virtual) clock under the thread's rules.
        retrying: Option<InlineRetry>,
    },
    Closed,
}

impl Committer {
    /// A committer on `store`; `Thread` starts the commit thread, which ends
    /// when the committer is dropped (after the commit it is running, if any).
    pub fn start(
        store: Arc<Store>,
        mode: StorageMode,
        metrics: Arc<GatewayMetrics>,
    ) -> std::io::Result<Self> {
        let mut thread = None;
        let unreachable = Arc::new(AtomicBool::new(false));
        let closing = Arc::new(AtomicBool::new(false));
        let inner = match mode {
            StorageMode::Inline => Inner::Inline {
                store,
                metrics,
                ready: None,
                retrying: None,
            },
            StorageMode::Thread => {
                // One batch is in flight at a time, so one slot is enough.
                let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(1);
                let (done, results) = mpsc::unbounded_channel();
                let flag = unreachable.clone();
                let stop = closing.clone();
                thread = Some(
                    std::thread::Builder::new()
                        .name("ww-sched-store".into())
                        .spawn(move || {
                            while let Ok(job) = queue.recv() {
                                // This thread is not the simulation's: the
                                // real clock times the commit and its fsync.
                                let began = std::time::Instant::now();
                                let result = commit_retrying(&store, &job, &flag, &stop);
                                if result.is_ok() {
                                    metrics.committed(began.elapsed());
                                }
                                if done.send((job.seq, result)).is_err() {
                                    return;
                                }
                            }
                        })?,
                );
                Inner::Thread { jobs, results }
            }
        };
        Ok(Committer {
            inner,
            thread,
            unreachable,
            closing,
        })
    }

    /// Whether a commit is being retried because the store is out of reach.
    pub fn unreachable(&self) -> bool {
        self.unreachable.load(Ordering::Acquire)
    }

    /// Starts committing batch `seq`. The caller sends the next one only after
    /// this one's result.
    pub fn send(&mut self, seq: u64, batch: Batch) {
        match &mut self.inner {
            Inner::Inline {
                store,
                metrics,
                ready,
                retrying,
            } => {
                debug_assert!(
                    ready.is_none() && retrying.is_none(),
                    "batch {seq} sent before the last result was taken"
                );
                // tokio's clock, virtual under turmoil: a simulation reads
                // no wall clock.
                let began = tokio::time::Instant::now();
                let result = store.commit(&batch);
                match result {
                    Err(e) if e.is_transient() => {
                        if !self.unreachable.swap(true, Ordering::AcqRel) {
                            tracing::warn!(seq, error = %e, "the task store is out of reach: retrying the commit, refusing new acknowledgements meanwhile");
                        }
                        *retrying = Some(InlineRetry {
                            job: Job { seq, batch },
                            began,
                            next_try: began + COMMIT_RETRY_PAUSE,
                        });
                    }
                    result => {
                        if result.is_ok() {
                            metrics.committed(began.elapsed());
                        }
                        *ready = Some((seq, result));
                    }
                }
            }
            Inner::Thread { jobs, .. } => {
                if jobs.send(Job { seq, batch }).is_err() {
                    // The thread is gone only if it panicked; the stall check
                    // turns the missing result into a failure.
                    tracing::error!(seq, "the store's commit thread is gone");
                }
            }
            Inner::Closed => debug_assert!(false, "batch {seq} sent to a closed committer"),
        }
    }

    /// The next commit result; pending while none is due.
    pub async fn result(&mut self) -> CommitResult {
        match &mut self.inner {
            Inner::Inline {
                store,
                metrics,
                ready,
                retrying,
            } => {
                if let Some(result) = ready.take() {
                    return result;
                }
                if retrying.is_none() {
                    return std::future::pending().await;
                }
                retry_inline(store, metrics, retrying, &self.unreachable).await
            }
            Inner::Thread { results, .. } => match results.recv().await {
                Some(result) => result,
                // The thread ended without answering: it panicked mid-commit.
                None => std::future::pending().await,
            },
            Inner::Closed => std::future::pending().await,
        }
    }
}
