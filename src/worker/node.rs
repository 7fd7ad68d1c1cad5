//! Composing a node over a [`Transport`]: a worker node (transport, sandbox, the
//! `Worker` capability served on its protocol) and its registration with a
//! gateway (through membership or a known peer id).

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::gateway::REGISTRATION_CHANNEL;
use crate::schema::worker_capnp::worker;
use crate::worker::{
    worker_protocol, LastPing, ModuleSourceSlot, WorkerConfig, WorkerGauges, WorkerServer,
};
use ww::cluster::{Match, Membership, Query, Selector};
use ww::exec::Sandbox;
use ww::process::{executor_protocol, Executor, ExecutorConfig, ExecutorServer};
use ww::rpc::{self, Connection, RpcConfig, RpcError, ServeHandle, ServeLimits};
use ww::schema::channel_capnp::sender;
use ww::transport::{Address, PeerId, Transport, TransportError};

/// Why a node could not start; nothing is left listening.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Listening or accepting failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// Serving the capability failed.
    #[error(transparent)]
    Rpc(#[from] RpcError),
}

/// Who may call a worker directly on its protocol. Its gateway needs no entry:
/// it calls the capability the worker sent down the registration channel, over
/// that connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Callers {
    /// Every peer that can connect (the loopback-only development default).
    Open,
    /// Only these peers (`--allow`); none at all when empty.
    Only(BTreeSet<PeerId>),
}

impl Callers {
    /// Whether `peer` may call the worker directly.
    pub fn admits(&self, peer: &PeerId) -> bool {
        match self {
            Callers::Open => true,
            Callers::Only(allowed) => allowed.contains(peer),
        }
    }
}

/// A running worker node. Dropping it stops serving; the transport stops when its
/// last clone is dropped.
pub struct WorkerNode<T: Transport> {
    transport: T,
    /// What each registration's facet is made from (one per gateway).
    registrations: WorkerServer,
    slots: u32,
    gauges: Arc<WorkerGauges>,
    sandbox: Arc<Sandbox>,
    callers: Callers,
    modules: ModuleSourceSlot,
    _serving: ServeHandle,
}

impl<T: Transport> WorkerNode<T> {
    /// Serves a worker over `sandbox` on `transport` to `callers`, then listens
    /// on `listen`. Must be called inside a `LocalSet`.
    pub async fn start(
        transport: T,
        sandbox: Arc<Sandbox>,
        config: WorkerConfig,
        listen: &[Address],
        callers: Callers,
    ) -> Result<Self, NodeError> {
        let slots = u32::try_from(config.slots.max(1)).unwrap_or(u32::MAX);
        let server = WorkerServer::new(sandbox.clone(), config);
        let modules = server.module_source();
        let gauges = server.gauges();
        // Direct callers share the slots but not the gateway's liveness (only
        // pings over the registration say the gateway still holds this
        // worker); each connection gets its own facet, with its own bound on
        // calls in flight.
        let direct = server.for_direct_callers();
        let registrations = server.facet();
        let admitted = callers.clone();
        let serving = rpc::serve_per_peer(
            &transport,
            &worker_protocol(),
            ServeLimits::default(),
            move |peer| {
                if admitted.admits(&peer) {
                    Some(direct.for_direct_callers().into_client().client)
                } else {
                    tracing::info!(%peer, "refused a direct call: not an allowed caller");
                    None
                }
            },
        )?;
        for address in listen {
            transport.listen(address.clone()).await?;
        }
        Ok(WorkerNode {
            transport,
            registrations,
            slots,
            gauges,
            sandbox,
            callers,
            modules,
            _serving: serving,
        })
    }

    /// Serves an [`Executor`] over the worker's sandbox on
    /// [`EXECUTOR_PROTOCOL`](ww::process::EXECUTOR_PROTOCOL), admitting
    /// exactly the callers the `Worker` capability admits. Returns the
    /// executor (for its `list`) and the server; dropping both stops serving
    /// and kills every running process. Must be called inside a `LocalSet`.
    pub fn serve_executor(
        &self,
        config: ExecutorConfig,
    ) -> Result<(Executor, ServeHandle), NodeError> {
        let executor = Executor::new(self.sandbox.clone(), config);
        let shared = executor.clone();
        let callers = self.callers.clone();
        let serving = rpc::serve_per_peer(
            &self.transport,
            &executor_protocol(),
            ServeLimits::default(),
            move |peer| {
                if callers.admits(&peer) {
                    Some(ExecutorServer::new(shared.clone()).into_client().client)
                } else {
                    tracing::info!(%peer, "refused an executor caller: not an allowed caller");
                    None
                }
            },
        )?;
        Ok((executor, serving))
    }

    /// Where the worker looks for modules it lacks (set it once the node is
    /// in its cluster: the records).
    pub fn module_source(&self) -> ModuleSourceSlot {
        self.modules.clone()
    }

    /// The node's id.
    pub fn peer_id(&self) -> PeerId {
        self.transport.local_peer_id()
    }

    /// Every listen address with `/p2p/<id>` appended: what a caller dials.
    pub fn dial_addresses(&self) -> Vec<Address> {
        let peer = self.peer_id();
        self.transport
            .listen_addresses()
            .iter()
            .map(|a| a.with_peer(&peer))
            .collect()
    }

    /// The node's transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// A capability of this worker to hand to one gateway, and when that
    /// gateway last pinged it: each gateway's facet has its own liveness (a
    /// direct caller's or another gateway's pings do not count) and its own
    /// bound on calls waiting.
    pub fn registration_facet(&self) -> (worker::Client, LastPing) {
        let facet = self.registrations.facet();
        let last_ping = facet.last_ping();
        (facet.into_client(), last_ping)
    }

    /// The worker's live counts (shared; what `worker --metrics` shows).
    pub fn gauges(&self) -> Arc<WorkerGauges> {
        self.gauges.clone()
    }

    /// Runs the worker takes at once.
    pub fn slots(&self) -> u32 {
        self.slots
    }
}

/// How a worker finds its gateway.
#[derive(Clone, Debug)]
pub enum GatewayLocator {
    /// A known peer id (its addresses must be known to the transport).
    Peer(PeerId),
    /// The first peer in the membership view with meta `role=gateway`.
    Membership,
    /// This peer, found in the membership view: registration ends when it
    /// leaves the view (as with `Membership`).
    Member(PeerId),
}

/// How often a registered worker checks that its gateway is still there.
pub const REGISTRATION_CHECK: Duration = Duration::from_millis(500);
/// How long a registered worker may go without a ping from its gateway before it
/// assumes the gateway dropped it (a partition leaves the connection open but
/// dead) and registers again. The gateway pings every 2 s by default.
pub const REGISTRATION_SILENCE_MAX: Duration = Duration::from_secs(10);
/// How long a worker waits before trying to register again.
pub const REGISTRATION_RETRY: Duration = Duration::from_secs(1);
/// How often a worker that knows no gateway looks at its view again: a local
/// query, so often enough that joining waits on the network, not on this.
pub const GATEWAY_LOOKUP: Duration = Duration::from_millis(200);

/// Keeps `node` registered with a gateway: finds it, connects to its `lb`
/// channel, sends a `Registration` carrying the worker's capability, and holds
/// that connection open (the gateway calls the worker over it). When the
/// connection drops or the gateway leaves the view (it restarted or died), it
/// registers again. Runs until dropped. Must run inside a `LocalSet`.
pub async fn keep_registered<T: Transport>(
    node: Rc<WorkerNode<T>>,
    locator: GatewayLocator,
    membership: Option<Rc<Membership>>,
    config: RpcConfig,
) {
    loop {
        let gateway = match (&locator, &membership) {
            (GatewayLocator::Peer(peer) | GatewayLocator::Member(peer), _) => Some(*peer),
            (GatewayLocator::Membership, Some(membership)) => membership
                .view(&Query::new(Selector::Meta(Match::exact("role=gateway"))).with_limit(1))
                .first()
                .map(|r| r.peer),
            (GatewayLocator::Membership, None) => None,
        };
        let Some(gateway) = gateway else {
            tokio::time::sleep(GATEWAY_LOOKUP).await;
            continue;
        };
        // A facet of its own per registration: its pings tell of this gateway
        // only, and its calls have their own bound.
        let (facet, last_ping) = node.registration_facet();
        match register_worker(&node.transport, gateway, facet, node.slots, config).await {
            Ok(connection) => {
                tracing::info!(%gateway, worker = %node.peer_id(), "registered with the gateway");
                let registered_at = tokio::time::Instant::now();
                loop {
                    tokio::time::sleep(REGISTRATION_CHECK).await;
                    let gone = match (&locator, &membership) {
                        (GatewayLocator::Membership | GatewayLocator::Member(_), Some(m)) => m
                            .view(&Query::new(Selector::Peer(Match::exact(
                                gateway.to_string(),
                            ))))
                            .is_empty(),
                        _ => false,
                    };
                    let heard = last_ping
                        .get()
                        .map_or(registered_at, |t| t.max(registered_at));
                    let silent = heard.elapsed() > REGISTRATION_SILENCE_MAX;
                    if connection.is_lost() || gone || silent {
                        tracing::info!(%gateway, worker = %node.peer_id(), "lost the gateway; registering again");
                        break;
                    }
                }
            }
            Err(e) => {
                tracing::debug!(%gateway, worker = %node.peer_id(), error = %e, "registration failed")
            }
        }
        tokio::time::sleep(REGISTRATION_RETRY).await;
    }
}

/// Registrations kept per gateway; dropping it ends them all.
struct Registrations<T: Transport> {
    node: Rc<WorkerNode<T>>,
    by_gateway: BTreeMap<PeerId, tokio::task::JoinHandle<()>>,
}

impl<T: Transport> Drop for Registrations<T> {
    fn drop(&mut self) {
        for task in self.by_gateway.values() {
            task.abort();
        }
    }
}

/// Keeps `node` registered with every gateway in the membership view (meta
/// `role=gateway`): one registration each, started when the gateway appears
/// and ended when it leaves. Each gateway is told all of the worker's slots;
/// the worker runs at most that many at once whoever calls (its slot
/// semaphore), and calls beyond them wait, at most `CALLS_WAITING_MAX` per
/// gateway, then are refused as overloaded and retried elsewhere by the
/// gateway. Runs until dropped. Must run inside a `LocalSet`.
pub async fn keep_registered_with_every_gateway<T: Transport>(
    node: Rc<WorkerNode<T>>,
    membership: Rc<Membership>,
    config: RpcConfig,
) {
    let mut held = Registrations {
        node,
        by_gateway: BTreeMap::new(),
    };
    let gateways = Query::new(Selector::Meta(Match::exact("role=gateway")));
    loop {
        let seen: BTreeSet<PeerId> = membership.view(&gateways).iter().map(|r| r.peer).collect();
        held.by_gateway.retain(|peer, task| {
            let keep = seen.contains(peer) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for peer in seen {
            if !held.by_gateway.contains_key(&peer) {
                let task = tokio::task::spawn_local(keep_registered(
                    held.node.clone(),
                    GatewayLocator::Member(peer),
                    Some(membership.clone()),
                    config,
                ));
                held.by_gateway.insert(peer, task);
            }
        }
        tokio::time::sleep(REGISTRATION_CHECK).await;
    }
}

/// Sends `worker` (taking `slots` runs at once) down `gateway`'s registration
/// channel; the gateway calls it over the returned connection, which must be
/// kept open.
pub async fn register_worker<T: Transport>(
    transport: &T,
    gateway: PeerId,
    worker: worker::Client,
    slots: u32,
    config: RpcConfig,
) -> Result<Connection<sender::Client>, RpcError> {
    let protocol = rpc::export_protocol(REGISTRATION_CHANNEL)?;
    let connection: Connection<sender::Client> =
        rpc::connect(transport, gateway, &protocol, config).await?;
    let mut request = connection.client().send_request();
    {
        let mut registration = request
            .get()
            .init_value()
            .init_as::<crate::schema::worker_capnp::registration::Builder>();
        registration.set_worker(worker);
        registration.set_slots(slots);
    }
    connection.call("register", request.send().promise).await?;
    Ok(connection)
}
