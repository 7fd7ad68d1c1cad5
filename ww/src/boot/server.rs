//! The boot server: a [`Registry`] served as the `BootServer` capability on
//! [`BOOT_PROTOCOL`] over any [`Transport`].
//!
//! A registration must be the caller's own: its envelope is checked as a
//! multicast answer is (swarm-key tag, signature, freshness, size) and must be
//! a `Response` naming the peer at the other end of the connection, which the
//! transport has authenticated. So a client can register only itself, and a
//! reader gets back exactly the bytes the registrant signed.

use std::cell::RefCell;
use std::rc::Rc;

use capnp::capability::Rc as CapRc;

use super::clock::{WallClock, FRESHNESS_WINDOW_MS};
use super::packet::{self, Body, Checks, DATAGRAM_MAX_BYTES};
use super::registry::{Registry, RegistryLimits};
use super::tracker::check_namespace;
use crate::rpc::{serve_per_peer, RpcError, ServeHandle, ServeLimits};
use crate::schema::boot_capnp::boot_server;
use crate::transport::{PeerId, Protocol, SwarmKey, Transport};

/// The stream protocol a boot server serves its capability on.
pub const BOOT_PROTOCOL: &str = "/ww-sched/0.1/boot";

/// Envelopes one `discover` answer carries at most.
pub const DISCOVER_MAX: usize = 512;

/// [`BOOT_PROTOCOL`] as a checked [`Protocol`].
pub fn boot_protocol() -> Protocol {
    Protocol::new(BOOT_PROTOCOL).expect("BOOT_PROTOCOL is a valid protocol name")
}

/// What a boot server accepts and how long it keeps it (by default: the
/// registry's bounds, no key, the host's clock, the default connection limits).
#[derive(Clone, Default)]
pub struct BootServerConfig {
    /// Bounds on the table and the longest TTL granted.
    pub limits: RegistryLimits,
    /// The cluster's key: registrations must carry its tag (and none without one).
    pub swarm_key: Option<SwarmKey>,
    /// Judges freshness and times TTLs (virtual in a simulation).
    pub wall_clock: WallClock,
    /// Connections held at once.
    pub serve_limits: ServeLimits,
}

/// A boot server's state, shared by every connection (all on one thread).
#[derive(Clone)]
pub struct BootService {
    registry: Rc<RefCell<Registry>>,
    config: Rc<BootServerConfig>,
}

impl BootService {
    /// An empty server.
    pub fn new(config: BootServerConfig) -> Self {
        BootService {
            registry: Rc::new(RefCell::new(Registry::new(config.limits))),
            config: Rc::new(config),
        }
    }

    /// Serves the capability to every peer that dials `transport` for
    /// [`BOOT_PROTOCOL`]. Must be called inside a `LocalSet`.
    pub fn serve<T: Transport>(&self, transport: &T) -> Result<ServeHandle, RpcError> {
        let service = self.clone();
        serve_per_peer(
            transport,
            &boot_protocol(),
            self.config.serve_limits,
            move |caller| {
                let server = Caller {
                    service: service.clone(),
                    caller,
                };
                let client: boot_server::Client = capnp_rpc::new_client(server);
                Some(client.client)
            },
        )
    }

    /// Registrations held now (expired ones dropped first).
    pub fn registrations(&self) -> usize {
        let now_ms = self.config.wall_clock.now_ms();
        let mut registry = self.registry.borrow_mut();
        registry.expire(now_ms);
        registry.len()
    }

    /// Checks `envelope` as `caller`'s registration and keeps it; the TTL granted.
    pub fn register(&self, caller: PeerId, envelope: &[u8], ttl_ms: u64) -> Result<u64, String> {
        let now_ms = self.config.wall_clock.now_ms();
        let checks = Checks {
            max_bytes: DATAGRAM_MAX_BYTES,
            key: self.config.swarm_key.as_ref(),
            now_ms,
            freshness_window_ms: FRESHNESS_WINDOW_MS,
        };
        let packet = packet::open(envelope, &checks)
            .map_err(|reason| format!("envelope refused ({reason:?}); not registered"))?;
        let Body::Response { peer, addresses } = &packet.body else {
            return Err("envelope is not a response (peer and addresses); not registered".into());
        };
        if *peer != caller {
            return Err(format!(
                "envelope names {peer} but the connection is {caller}: a peer registers only itself; not registered"
            ));
        }
        if addresses.is_empty() {
            return Err("envelope lists no address; not registered".into());
        }
        check_namespace(&packet.namespace).map_err(|e| e.to_string())?;
        let granted_ms = self
            .registry
            .borrow_mut()
            .register(&packet.namespace, caller, envelope.to_vec(), ttl_ms, now_ms)
            .map_err(|e| e.to_string())?;
        tracing::debug!(peer = %caller, namespace = %packet.namespace, granted_ms, "registered");
        Ok(granted_ms)
    }

    /// The live envelopes of `namespace`, at most `limit` (and [`DISCOVER_MAX`]).
    pub fn discover(&self, namespace: &str, limit: usize) -> Result<Vec<Vec<u8>>, String> {
        check_namespace(namespace).map_err(|e| e.to_string())?;
        let now_ms = self.config.wall_clock.now_ms();
        Ok(self
            .registry
            .borrow_mut()
            .discover(namespace, limit.min(DISCOVER_MAX), now_ms))
    }
}

/// The capability as one connection sees it: calls know who is calling.
struct Caller {
    service: BootService,
    caller: PeerId,
}

impl boot_server::Server for Caller {
    async fn register(
        self: CapRc<Self>,
        params: boot_server::RegisterParams,
        mut results: boot_server::RegisterResults,
    ) -> Result<(), capnp::Error> {
        let params = params.get()?;
        let granted_ms = self
            .service
            .register(self.caller, params.get_envelope()?, params.get_ttl_ms())
            .map_err(capnp::Error::failed)?;
        results.get().set_granted_ms(granted_ms);
        Ok(())
    }

    async fn discover(
        self: CapRc<Self>,
        params: boot_server::DiscoverParams,
        mut results: boot_server::DiscoverResults,
    ) -> Result<(), capnp::Error> {
        let params = params.get()?;
        let namespace = params
            .get_namespace()?
            .to_str()
            .map_err(|e| capnp::Error::failed(format!("namespace is not UTF-8: {e}")))?;
        let limit = usize::try_from(params.get_limit()).unwrap_or(usize::MAX);
        let envelopes = self
            .service
            .discover(namespace, limit)
            .map_err(capnp::Error::failed)?;
        let len = u32::try_from(envelopes.len()).expect("at most DISCOVER_MAX envelopes");
        let mut list = results.get().init_envelopes(len);
        for (i, envelope) in envelopes.iter().enumerate() {
            list.set(i as u32, envelope);
        }
        Ok(())
    }
}
