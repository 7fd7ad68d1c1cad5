//! The task workload's gateway host: a supervisor restarting the gateway on
//! its [`SimDisk`] whenever it stops itself, and the seams through which a
//! sabotage breaks it (its store, its report check, its router, its disk).

use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use ww::transport::{SimTransport, Transport};
use ww_sched::gateway::{Gateway, GatewayConfig, StorageMode};
use ww_sched::sched::{MemoryStore, Store};

use super::store_links::{LinkedStore, StoreLinks};

use super::{lock, now_ms, HostResult, SharedTasks, HTTP_PORT};
use crate::cluster::node_address as address;
use crate::derive_seed;
use crate::disk::SimDisk;
use crate::sabotage::{
    refuse_submissions, AcceptEveryReport, LoseOneTask, Sabotage, GATEWAY_CLOCK_AHEAD_MS,
    SHOW_UNSYNCED_SYNCS,
};
use crate::scenario::format::{gateway_name, GATEWAY_HOST};

/// The sabotage a run arms in its gateway, with what must outlive the
/// gateway's restarts (one per run, shared by every incarnation).
#[derive(Clone, Debug)]
pub(super) struct GatewaySeams {
    sabotage: Option<Sabotage>,
    /// Set once [`Sabotage::LoseAckedTask`] has struck.
    lost_one: Arc<AtomicBool>,
}

impl GatewaySeams {
    /// The seams of `sabotage`; the disk's lie is set on `disk` now, for the
    /// whole run.
    pub(super) fn new(sabotage: Option<Sabotage>, disk: &SimDisk) -> GatewaySeams {
        if sabotage == Some(Sabotage::ShowUnsyncedResults) {
            disk.set_sync_policy(SHOW_UNSYNCED_SYNCS);
        }
        GatewaySeams {
            sabotage,
            lost_one: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The gateway's store: `store`, or a decorator breaking it.
    fn store(&self, store: Store) -> Store {
        match self.sabotage {
            Some(Sabotage::LoseAckedTask) => {
                Store::on(LoseOneTask::new(store, self.lost_one.clone()))
            }
            _ => store,
        }
    }

    /// The gateway's configuration, its report check broken if asked.
    fn config(&self, config: &mut GatewayConfig) {
        if self.sabotage == Some(Sabotage::AcceptImpossibleReports) {
            config.report_check = Arc::new(AcceptEveryReport);
        }
    }

    /// The gateway's router, behind a layer breaking it if asked.
    fn router(&self, router: axum::Router) -> axum::Router {
        match self.sabotage {
            Some(Sabotage::RefuseSubmissions) => refuse_submissions(router),
            _ => router,
        }
    }
}

/// How long the gateway's supervisor waits before starting it again after it
/// stopped itself (a fail-stop), as a service manager would.
pub const GATEWAY_RESTART_DELAY: Duration = Duration::from_secs(1);

/// Where a gateway keeps its tasks.
#[derive(Clone)]
pub(super) enum GatewayStore {
    /// The embedded store on this simulated disk, kept across restarts.
    Disk(SimDisk),
    /// A handle of its own on the store every gateway shares, over its link.
    Shared {
        /// The shared store (each life of the gateway takes a new handle).
        store: Arc<MemoryStore>,
        /// The links to it.
        links: StoreLinks,
    },
}

impl GatewayStore {
    /// Opens the store for one life of gateway `host`, broken as `sabotage`
    /// asks ([`Sabotage::SharedClaimHidden`], [`Sabotage::LeaseOnGatewayClock`]).
    fn open(&self, host: &str, sabotage: Option<Sabotage>) -> Result<Store, String> {
        match self {
            GatewayStore::Disk(disk) => Store::open_on(disk.backend(), "simulated disk")
                .map_err(|e| format!("store not opened: {e}")),
            GatewayStore::Shared { store, links } => {
                let handle =
                    if sabotage == Some(Sabotage::LeaseOnGatewayClock) && host == gateway_name(1) {
                        store.handle_on_clock(Arc::new(|| {
                            StoreLinks::store_now_ms() + GATEWAY_CLOCK_AHEAD_MS
                        }))
                    } else {
                        store.handle()
                    };
                let hide_claims = sabotage == Some(Sabotage::SharedClaimHidden);
                Ok(Store::on(
                    LinkedStore::new(handle, host, links.clone()).hiding_claims(hide_claims),
                ))
            }
        }
    }

    /// What a fail-stop loses: the disk's unsynced writes (nothing of a
    /// shared store, which only answers committed transactions).
    fn crash(&self) -> u64 {
        match self {
            GatewayStore::Disk(disk) => disk.crash(),
            GatewayStore::Shared { .. } => 0,
        }
    }
}

/// The gateway host `host`: a supervisor that runs the gateway and, whenever it
/// fail-stops, starts it again on the same store after `GATEWAY_RESTART_DELAY`.
/// A fail-stop loses what the disk had not synced (after a failed fsync the
/// kernel may drop dirty pages): the strictest model of a process exit.
pub(super) async fn run_gateway(
    seed: u64,
    host: String,
    store: GatewayStore,
    shared: SharedTasks,
    keyed: bool,
    seams: GatewaySeams,
) -> HostResult {
    let transport = SimTransport::new(crate::host_config(seed, &host, keyed));
    transport.listen(address(&host)).await?;
    loop {
        let start = {
            let mut obs = lock(&shared);
            obs.gateway_starts += 1;
            obs.gateway_starts
        };
        tracing::info!(target: "ww_sim::workload", %host, start, "gateway starting");
        let cause = run_gateway_once(seed, start, &transport, &host, &store, &seams).await;
        let lost = store.crash();
        tracing::warn!(
            target: "ww_sim::workload",
            %host,
            start,
            %cause,
            unsynced_bytes_lost = lost,
            "gateway stopped itself; its supervisor restarts it"
        );
        tokio::time::sleep(GATEWAY_RESTART_DELAY).await;
    }
}

/// One life of the gateway process, until it stops itself; returns why.
/// `seams` break it as the run's sabotage asks.
async fn run_gateway_once(
    seed: u64,
    start: u64,
    transport: &SimTransport,
    host: &str,
    store: &GatewayStore,
    seams: &GatewaySeams,
) -> String {
    let store = match store.open(host, seams.sabotage) {
        Ok(store) => seams.store(store),
        Err(e) => return e,
    };
    // The data directory is never touched: the store is already open.
    let mut config = GatewayConfig::new(std::path::PathBuf::new());
    let scheduler = if host == GATEWAY_HOST {
        format!("gateway/scheduler/{start}")
    } else {
        format!("{host}/scheduler/{start}")
    };
    config.sched.seed = derive_seed(seed, &scheduler);
    config.pool.ping_interval = Duration::from_secs(1);
    config.pool.call_timeout = Duration::from_secs(10);
    // Commits inline on the simulation's one thread: same seed, same run.
    config.storage = StorageMode::Inline;
    seams.config(&mut config);
    let clock: ww_sched::gateway::Clock = Rc::new(now_ms);
    let mut gateway = match Gateway::start_with_store(transport, None, clock, config, store).await {
        Ok(gateway) => gateway,
        Err(e) => return format!("gateway not started: {e}"),
    };
    let listener = match turmoil::net::TcpListener::bind(("0.0.0.0", HTTP_PORT)).await {
        Ok(listener) => listener,
        Err(e) => return format!("HTTP port not bound: {e}"),
    };
    let router = seams.router(gateway.router());
    let cause = tokio::select! {
        biased;
        cause = gateway.stopped() => cause,
        () = crate::http::serve(listener, router) => "the HTTP server ended".into(),
    };
    // The process exits: its core, commit pipeline and registration channel go.
    gateway.shutdown().await;
    cause
}
