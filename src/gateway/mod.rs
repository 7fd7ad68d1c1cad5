//! The gateway: the REST API (axum) and the core that wires the scheduler to the
//! worker pool and the store. Workers join the pool by sending their `Worker`
//! capability down the channel the gateway exports as `lb` (as in the original).

mod api;
pub mod clock;
mod commands;
mod core;
mod error;
pub mod events;
mod health;
pub mod lease_keeping;
mod lease_window;
pub mod metrics;
mod pool;
mod runner;
mod views;

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

pub use self::core::{
    Acked, Answer, Clock, Command, Core, CoreConfig, Effect, Formed, HealthReport, HealthStatus,
    Input, ModuleInput, NewTask, PlanFailed, Planner, Read, ReadId, ReadResult, Released, Request,
    RequestId, Retention, RunEnded, RunKey, RunStart, RunWritten, StorageMode, COMMAND_QUEUE_MAX,
    COMMIT_STALL_MAX, EXPIRE_INTERVAL_MS,
};
pub use api::guard::{
    constant_time_eq, lock, ApiAccess, ApiToken, HttpLimits, TokenError, API_TOKEN_BYTES,
    API_TOKEN_FILE, API_TOKEN_MIN_CHARS, CONNECTIONS_MAX, HEADER_READ_TIMEOUT, IN_FLIGHT_MAX,
    REQUEST_TIMEOUT, UPLOAD_TIMEOUT,
};
pub use api::serve::serve;
pub use api::{openapi, router, StoreReader, PAGE_DEFAULT, PAGE_MAX};
pub use error::{ApiError, ApiErrorKind, ErrorBody, RETRY_AFTER_S};
pub use events::{Event, EventBus, Subscription, EVENTS_CAPACITY, SUBSCRIBERS_MAX};
pub use health::Health;
pub use metrics::{GatewayMetrics, MetricsSnapshot, METRICS_CONTENT_TYPE};
pub use pool::{Pool, PoolConfig, PoolEvent};
pub use runner::{PlausibleReports, ReportCheck, RUN_STDOUT_MAX};
pub use views::{
    run_row, task_detail, task_summary, MemberRow, ModuleStored, Purged, RunRow, TaskDetail,
    TaskSummary, WorkerRow,
};

use crate::sched::{SchedConfig, Store, StoreError};
use ww::cluster::Membership;
use ww::csp::{ChanConfig, ChannelServer};
use ww::rpc::{export_protocol, serve_per_peer, ServeHandle, ServeLimits};
use ww::transport::Transport;

/// On a shared store, registers this gateway (a new epoch, through its lease
/// keeper) before anything is claimed or written; on the embedded store, none.
fn register_lease(
    store: &Store,
    peer: &str,
    config: &GatewayConfig,
) -> Result<Option<lease_keeping::Registration>, GatewayError> {
    let Some(shared) = store.shared() else {
        return Ok(None);
    };
    lease_keeping::Registration::register(shared, peer, config.lease)
        .map(Some)
        .map_err(GatewayError::Lease)
}

/// Exports the registration channel on its protocol: the pool its
/// registrations feed, and the handle serving it.
fn export_registrations<T: Transport>(
    transport: &T,
    config: &GatewayConfig,
) -> Result<(Pool, ServeHandle), GatewayError> {
    let channel = ChannelServer::new(ChanConfig {
        capacity: config.channel_capacity,
        ..ChanConfig::default()
    })
    .map_err(|e| GatewayError::Export(e.to_string()))?;
    let protocol =
        export_protocol(REGISTRATION_CHANNEL).map_err(|e| GatewayError::Export(e.to_string()))?;
    let facets = channel.clone();
    // Every peer that can connect may register: on a keyed cluster that is a
    // holder of the swarm key (docs/SECURITY.md).
    let serving = serve_per_peer(transport, &protocol, ServeLimits::default(), move |peer| {
        Some(facets.sender_for(peer).client)
    })
    .map_err(|e| GatewayError::Export(e.to_string()))?;
    let mut pool = Pool::new(config.pool);
    pool.take_registrations_from(channel);
    Ok((pool, serving))
}

/// The tag of the task ids this gateway makes up on a shared store: the peer
/// id's last 8 characters (base58: 58^8 tags) and the epoch, new at every
/// registration of this peer id.
fn id_tag(peer: &str, epoch: u64) -> String {
    let tail: String = peer
        .chars()
        .rev()
        .take(8)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{tail}.{epoch}")
}

/// A time no lease reaches (30 years on).
fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + std::time::Duration::from_secs(30 * 365 * 24 * 3600)
}

/// The name the registration channel is exported under.
pub const REGISTRATION_CHANNEL: &str = "lb";
/// The store's file inside the data directory.
pub const STORE_FILE: &str = "ww-sched.redb";

/// Settings of a gateway.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Where the task database lives (created if missing).
    pub data_dir: PathBuf,
    /// Largest request body, and so the largest module upload.
    pub body_bytes_max: usize,
    /// Scheduler tuning (and `open_tasks_max`).
    pub sched: SchedConfig,
    /// Worker liveness and call timeouts.
    pub pool: PoolConfig,
    /// Registrations buffered in the channel.
    pub channel_capacity: usize,
    /// What is kept, and how long.
    pub retention: Retention,
    /// Where commits and reads run.
    pub storage: StorageMode,
    /// Lease timing, on a store several gateways share.
    pub lease: crate::lease::LeaseConfig,
    /// What every worker's report must pass to be recorded
    /// ([`PlausibleReports`] by default).
    pub report_check: Arc<dyn ReportCheck>,
}

impl GatewayConfig {
    /// Defaults for a laptop: 16 MiB bodies, 5 attempts per run, 100,000
    /// unfinished tasks, finished ones kept 7 days (at most a million), commits
    /// on their own thread.
    pub fn new(data_dir: PathBuf) -> Self {
        GatewayConfig {
            data_dir,
            body_bytes_max: 16 * 1024 * 1024,
            sched: SchedConfig::default(),
            pool: PoolConfig::default(),
            channel_capacity: 64,
            retention: Retention::default(),
            storage: StorageMode::Thread,
            lease: crate::lease::LeaseConfig::default(),
            report_check: Arc::new(PlausibleReports),
        }
    }
}

/// Why a gateway could not start; nothing is left serving.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The data directory or database could not be opened.
    #[error("task store at {path}: {detail}")]
    Store {
        /// The database path.
        path: String,
        /// What failed.
        detail: String,
    },
    /// Exporting the registration channel failed.
    #[error("registration channel: {0}")]
    Export(String),
    /// Restoring the unfinished tasks failed.
    #[error("restoring tasks: {0}")]
    Restore(StoreError),
    /// Registering on a shared store failed, or the lease timing is unsafe.
    #[error("registering on the shared store: {0}")]
    Lease(String),
}

/// A running gateway. Dropping it stops the core and the registration channel.
pub struct Gateway {
    router: axum::Router,
    health: Arc<Health>,
    metrics: Arc<GatewayMetrics>,
    events: Arc<EventBus>,
    core: tokio::task::JoinHandle<()>,
    /// Keeps the lease on a shared store.
    lease: Option<tokio::task::JoinHandle<()>>,
    store: Arc<Store>,
    /// Where store calls run: inline in simulation.
    storage: StorageMode,
    serving: Option<ServeHandle>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.core.abort();
        if let Some(lease) = &self.lease {
            lease.abort();
        }
    }
}

impl Gateway {
    /// Opens the store, restores unfinished tasks, exports the registration
    /// channel and starts the core. Must be called inside a `LocalSet`.
    pub async fn start<T: Transport>(
        transport: &T,
        membership: Option<Rc<Membership>>,
        clock: Clock,
        config: GatewayConfig,
    ) -> Result<Self, GatewayError> {
        let path = config.data_dir.join(STORE_FILE);
        let store_error = |detail: String| GatewayError::Store {
            path: path.display().to_string(),
            detail,
        };
        std::fs::create_dir_all(&config.data_dir).map_err(|e| store_error(e.to_string()))?;
        let store = Store::open(&path).map_err(|e| store_error(e.to_string()))?;
        Self::start_with_store(transport, membership, clock, config, store).await
    }

    /// [`Gateway::start`] on a store already open (`config.data_dir` unused): the
    /// simulation hands in a store on its crashable disk.
    pub async fn start_with_store<T: Transport>(
        transport: &T,
        membership: Option<Rc<Membership>>,
        clock: Clock,
        config: GatewayConfig,
        store: Store,
    ) -> Result<Self, GatewayError> {
        let store = Arc::new(store);
        let health = Health::new();
        let peer = transport.local_peer_id().to_string();
        let registration = register_lease(&store, &peer, &config)?;
        let epoch = registration.as_ref().map_or(0, |r| r.epoch());
        let (pool, serving) = export_registrations(transport, &config)?;
        let metrics = Arc::new(GatewayMetrics::new());
        let events = EventBus::new();
        let core_config = CoreConfig {
            sched: config.sched.clone(),
            module_bytes_max: config.body_bytes_max,
            retention: config.retention,
            storage: config.storage,
            report_check: config.report_check.clone(),
            id_tag: registration.as_ref().map(|_| id_tag(&peer, epoch)),
        };
        let core = self::core::Driver::restore(
            store.clone(),
            pool,
            clock,
            core_config,
            membership,
            health.clone(),
            metrics.clone(),
            events.clone(),
        )
        .map_err(GatewayError::Restore)?;
        let (commands, receiver) = tokio::sync::mpsc::channel(COMMAND_QUEUE_MAX);
        // Set by the lease keeper; far ahead on the embedded store (no lease).
        let act_until: lease_keeping::ActUntil = Rc::new(std::cell::Cell::new(
            registration
                .as_ref()
                .map_or_else(far_future, |r| r.act_until()),
        ));
        let claim_room: lease_keeping::ClaimRoom = Rc::default();
        let mut core = core;
        if registration.is_some() {
            core.on_shared_store(act_until.clone(), claim_room.clone());
        }
        let core = tokio::task::spawn_local(core.run(receiver));
        let lease = registration.map(|registration| {
            tokio::task::spawn_local(lease_keeping::keep_lease(
                store.clone(),
                config.storage,
                registration,
                commands.clone(),
                health.clone(),
                act_until.clone(),
                claim_room.clone(),
            ))
        });
        Ok(Gateway {
            router: api::router(
                commands,
                store.clone(),
                config.storage,
                health.clone(),
                metrics.clone(),
                events.clone(),
                config.body_bytes_max,
            ),
            health,
            metrics,
            events,
            core,
            lease,
            store,
            storage: config.storage,
            serving: Some(serving),
        })
    }

    /// Stops the core and the registration channel and waits until they, and
    /// the commit thread, are gone: the store is closed once every router
    /// clone is dropped too, and a new gateway may start on the same directory.
    pub async fn shutdown(mut self) {
        if let Some(lease) = self.lease.take() {
            lease.abort();
        }
        self.core.abort();
        let _ = (&mut self.core).await;
        if let Some(serving) = self.serving.take() {
            serving.stop().await;
        }
    }

    /// On a shared store, stops keeping the lease and ends it at once, so the
    /// other gateways claim this one's tasks at their next claim instead of
    /// after the lease runs out; then this gateway must stop (nothing it
    /// writes is accepted any more). Does nothing on the embedded store.
    pub async fn resign(&mut self) -> Result<(), StoreError> {
        if self.store.shared().is_none() {
            return Ok(());
        }
        if let Some(lease) = self.lease.take() {
            lease.abort();
        }
        self.core.abort();
        if self.storage == StorageMode::Inline {
            return self.store.shared().map_or(Ok(()), |shared| shared.resign());
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || match store.shared() {
            Some(shared) => shared.resign(),
            None => Ok(()),
        })
        .await
        .map_err(|e| StoreError::Unavailable {
            what: format!("lease resignation: {e}"),
            waited_ms: 0,
        })?
    }

    /// The REST API, ready to serve (its handlers are `Send`).
    pub fn router(&self) -> axum::Router {
        self.router.clone()
    }

    /// The gateway's fail-stop switch.
    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    /// The gateway's metrics (what `/metrics` serves).
    pub fn metrics(&self) -> Arc<GatewayMetrics> {
        self.metrics.clone()
    }

    /// The gateway's live events (what `/events` streams).
    pub fn events(&self) -> Arc<EventBus> {
        self.events.clone()
    }

    /// Resolves, with the cause, when the gateway can no longer keep its
    /// guarantees: a store error, or the core ending (it never does on its
    /// own). Whoever runs the gateway then exits non-zero. Await it once.
    pub async fn stopped(&mut self) -> String {
        tokio::select! {
            biased;
            cause = self.health.tripped() => cause,
            ended = &mut self.core => {
                let cause = match ended {
                    Err(e) if e.is_panic() => "the gateway core panicked".to_string(),
                    Err(e) => format!("the gateway core was stopped: {e}"),
                    Ok(()) => "the gateway core ended".to_string(),
                };
                self.health.trip(cause.clone());
                cause
            }
        }
    }
}
