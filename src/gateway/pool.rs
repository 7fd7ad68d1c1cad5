//! The worker pool: workers that registered by sending their `Worker`
//! capability down the gateway's channel. A worker leaves the pool when its
//! liveness ping fails (its connection dropped) or when it leaves the membership
//! view; a worker that registers again replaces its old entry.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::sched::WorkerId;
use crate::schema::worker_capnp::registration;
use crate::worker::RemoteWorker;
use ww::csp::ChannelServer;

/// Pool changes the core must tell the scheduler about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolEvent {
    /// A worker (new, or registered again) offers `slots` runs at once.
    Joined {
        /// Its id (its authenticated peer id).
        worker: WorkerId,
        /// Runs at once.
        slots: u32,
    },
    /// A worker is gone; its runs must be retried elsewhere.
    Left {
        /// Its id.
        worker: WorkerId,
        /// Why.
        reason: String,
    },
}

/// Liveness and call settings.
#[derive(Clone, Copy, Debug)]
pub struct PoolConfig {
    /// How often each worker is pinged.
    pub ping_interval: Duration,
    /// How long a ping or a run call may take before the worker counts as lost
    /// (runs: this plus the run's own time limit).
    pub call_timeout: Duration,
    /// Most workers in the pool.
    pub workers_max: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            ping_interval: Duration::from_secs(2),
            call_timeout: Duration::from_secs(300),
            workers_max: 1024,
        }
    }
}

enum Internal {
    Register {
        worker: WorkerId,
        client: crate::schema::worker_capnp::worker::Client,
        slots: u32,
    },
    PingFailed {
        worker: WorkerId,
        generation: u64,
        reason: String,
    },
}

struct Entry {
    worker: Rc<RemoteWorker>,
    generation: u64,
    monitor: tokio::task::JoinHandle<()>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.monitor.abort();
    }
}

/// The gateway's workers.
pub struct Pool {
    entries: BTreeMap<WorkerId, Entry>,
    config: PoolConfig,
    sender: mpsc::Sender<Internal>,
    receiver: mpsc::Receiver<Internal>,
    generation: u64,
    intake: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Pool {
    fn drop(&mut self) {
        if let Some(intake) = self.intake.take() {
            intake.abort();
        }
    }
}

impl Pool {
    /// An empty pool.
    pub fn new(config: PoolConfig) -> Self {
        let (sender, receiver) = mpsc::channel(1024);
        Pool {
            entries: BTreeMap::new(),
            config,
            sender,
            receiver,
            generation: 0,
            intake: None,
        }
    }

    /// Takes registrations from `channel`: each value must be a `Registration`
    /// sent through a per-peer facet, so the sender's peer id is authenticated.
    pub fn take_registrations_from(&mut self, channel: ChannelServer) {
        let sender = self.sender.clone();
        self.intake = Some(tokio::task::spawn_local(async move {
            loop {
                let item = match channel.recv_local().await {
                    Ok(item) => item,
                    Err(e) => {
                        tracing::warn!(error = %e, "registration channel closed");
                        return;
                    }
                };
                let Some(origin) = item.origin() else {
                    tracing::warn!("registration without an authenticated sender ignored");
                    continue;
                };
                let parsed =
                    item.read::<registration::Owned, _>(|r| Ok((r.get_worker()?, r.get_slots())));
                match parsed {
                    Ok((client, slots)) => {
                        let worker = WorkerId::from(origin);
                        if sender
                            .send(Internal::Register {
                                worker,
                                client,
                                slots,
                            })
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Err(e) => tracing::warn!(%origin, error = %e, "malformed registration ignored"),
                }
            }
        }));
    }

    /// Adds (or replaces) a worker directly, as a registration would.
    pub fn add(
        &mut self,
        worker: WorkerId,
        client: crate::schema::worker_capnp::worker::Client,
        slots: u32,
    ) -> Option<PoolEvent> {
        if !self.entries.contains_key(&worker) && self.entries.len() >= self.config.workers_max {
            tracing::warn!(%worker, "pool full; registration refused");
            return None;
        }
        self.generation += 1;
        let generation = self.generation;
        let remote = Rc::new(RemoteWorker::from_capability(
            client,
            Some(worker.peer()),
            self.config.call_timeout,
        ));
        let monitor = tokio::task::spawn_local(monitor(
            remote.clone(),
            worker.clone(),
            generation,
            self.config,
            self.sender.clone(),
        ));
        self.entries.insert(
            worker.clone(),
            Entry {
                worker: remote,
                generation,
                monitor,
            },
        );
        Some(PoolEvent::Joined { worker, slots })
    }

    /// Removes a worker; true if it was in the pool.
    pub fn remove(&mut self, worker: &WorkerId) -> bool {
        self.entries.remove(worker).is_some()
    }

    /// The worker's capability, if it is in the pool.
    pub fn client(&self, worker: &WorkerId) -> Option<Rc<RemoteWorker>> {
        self.entries.get(worker).map(|e| e.worker.clone())
    }

    /// Workers in the pool, by id.
    pub fn workers(&self) -> Vec<WorkerId> {
        self.entries.keys().cloned().collect()
    }

    /// The next change to the pool (registrations and failed pings).
    pub async fn next_event(&mut self) -> PoolEvent {
        loop {
            // The pool holds a sender itself, so the queue never closes.
            let Some(internal) = self.receiver.recv().await else {
                std::future::pending::<()>().await;
                continue;
            };
            match internal {
                Internal::Register {
                    worker,
                    client,
                    slots,
                } => {
                    if let Some(event) = self.add(worker, client, slots) {
                        return event;
                    }
                }
                Internal::PingFailed {
                    worker,
                    generation,
                    reason,
                } => {
                    // A stale failure from an entry that was since replaced is ignored.
                    if self
                        .entries
                        .get(&worker)
                        .is_some_and(|e| e.generation == generation)
                    {
                        self.entries.remove(&worker);
                        return PoolEvent::Left { worker, reason };
                    }
                }
            }
        }
    }
}

async fn monitor(
    remote: Rc<RemoteWorker>,
    worker: WorkerId,
    generation: u64,
    config: PoolConfig,
    sender: mpsc::Sender<Internal>,
) {
    loop {
        tokio::time::sleep(config.ping_interval).await;
        let ping = tokio::time::timeout(
            config.ping_interval.max(Duration::from_millis(500)),
            remote.ping(),
        )
        .await;
        let reason = match ping {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e.to_string(),
            Err(_) => "ping timed out".to_string(),
        };
        let _ = sender
            .send(Internal::PingFailed {
                worker,
                generation,
                reason,
            })
            .await;
        return;
    }
}
