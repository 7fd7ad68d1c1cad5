//! Where commits run. On real hosts a dedicated thread commits (and fsyncs)
//! while the node thread goes on driving libp2p, RPC, pings and HTTP, and the
//! planner forms the next batch. In simulation the commit runs inline on the
//! one simulation thread, at the moment it is sent, so a run stays a function
//! of its seed; its result is then taken by the core's next turn, as a
//! thread's would be.

use std::sync::Arc;

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

/// A batch's commit result, with its number.
pub type CommitResult = (u64, Result<BatchReport, StoreError>);

/// A batch to commit, as the commit thread takes it.
struct Job {
    seq: u64,
    batch: Batch,
    durable: bool,
}

/// Runs commits one at a time and hands back their results. Dropping it
/// waits for the commit thread to finish the commit it runs, so the store is
/// closed when the drop returns.
pub struct Committer {
    inner: Inner,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Committer {
    fn drop(&mut self) {
        // Closing the job queue ends the thread's loop.
        self.inner = Inner::Closed;
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the store's commit thread panicked");
            }
        }
    }
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
        let inner = match mode {
            StorageMode::Inline => Inner::Inline {
                store,
                metrics,
                ready: None,
            },
            StorageMode::Thread => {
                // One batch is in flight at a time, so one slot is enough.
                let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(1);
                let (done, results) = mpsc::unbounded_channel();
                thread = Some(
                    std::thread::Builder::new()
                        .name("ww-sched-store".into())
                        .spawn(move || {
                            while let Ok(job) = queue.recv() {
                                // This thread is not the simulation's: the
                                // real clock times the commit and its fsync.
                                let began = std::time::Instant::now();
                                let result = store.commit(&job.batch, job.durable);
                                if result.is_ok() {
                                    metrics.committed(began.elapsed(), job.durable);
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
        Ok(Committer { inner, thread })
    }

    /// Starts committing batch `seq`. The caller sends the next one only after
    /// this one's result.
    pub fn send(&mut self, seq: u64, batch: Batch, durable: bool) {
        match &mut self.inner {
            Inner::Inline {
                store,
                metrics,
                ready,
            } => {
                debug_assert!(
                    ready.is_none(),
                    "batch {seq} sent before the last result was taken"
                );
                // tokio's clock, virtual under turmoil: a simulation reads
                // no wall clock, and the time is only shown, never acted on.
                let began = tokio::time::Instant::now();
                let result = store.commit(&batch, durable);
                if result.is_ok() {
                    metrics.committed(began.elapsed(), durable);
                }
                *ready = Some((seq, result));
            }
            Inner::Thread { jobs, .. } => {
                if jobs
                    .send(Job {
                        seq,
                        batch,
                        durable,
                    })
                    .is_err()
                {
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
            Inner::Inline { ready, .. } => match ready.take() {
                Some(result) => result,
                None => std::future::pending().await,
            },
            Inner::Thread { results, .. } => match results.recv().await {
                Some(result) => result,
                // The thread ended without answering: it panicked mid-commit.
                None => std::future::pending().await,
            },
            Inner::Closed => std::future::pending().await,
        }
    }
}
