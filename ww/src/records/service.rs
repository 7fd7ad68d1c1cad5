//! A host's part in the DHT: serving its store as the `Records` capability,
//! putting and getting across the k closest hosts, and passing records on as
//! the view changes.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::Duration;

use capnp::capability::Rc as CapRc;

use super::record::{Record, RecordKey};
use super::store::{closest, RecordStore, StoreLimits};
use crate::boot::WallClock;
use crate::rpc::{connect, serve, RpcConfig, RpcError, ServeHandle};
use crate::schema::records_capnp::records;
use crate::transport::{PeerId, Protocol, Transport};

/// The stream protocol a host serves its records on.
pub const RECORDS_PROTOCOL: &str = "/ww-sched/0.1/records";
/// Hosts a record is stored on by default.
pub const REPLICAS: usize = 3;
/// Records passed on per republish round, so a round's work is bounded.
pub const REPUBLISH_BATCH_MAX: usize = 256;

/// [`RECORDS_PROTOCOL`] as a checked [`Protocol`].
pub fn records_protocol() -> Protocol {
    Protocol::new(RECORDS_PROTOCOL).expect("RECORDS_PROTOCOL is a valid protocol name")
}

/// Why a put or get across the cluster failed.
#[derive(Debug, thiserror::Error)]
pub enum DhtError {
    /// No host is in the view to store on or ask.
    #[error("no host in the cluster view to hold record {0}")]
    NoHosts(String),
    /// Fewer hosts than asked took the record.
    #[error("record {key} stored on {stored} of {wanted} hosts: {errors}")]
    TooFewCopies {
        /// The record's key.
        key: String,
        /// Hosts that took it.
        stored: usize,
        /// Hosts asked.
        wanted: usize,
        /// What the others said.
        errors: String,
    },
    /// No host holds a record that checks out under the key.
    #[error("no host of {asked} holds record {key}{}", if .errors.is_empty() { String::new() } else { format!(" ({})", .errors) })]
    NotFound {
        /// The key asked for.
        key: String,
        /// Hosts asked.
        asked: usize,
        /// What went wrong on the way.
        errors: String,
    },
}

/// Settings of a host's record service.
#[derive(Clone)]
pub struct RecordsConfig {
    /// Bounds of the store.
    pub limits: StoreLimits,
    /// Judges a record's age (virtual in a simulation).
    pub wall_clock: WallClock,
    /// Hosts each record goes to.
    pub replicas: usize,
    /// How often held records are passed on to the hosts now closest.
    pub republish_every: Duration,
}

impl Default for RecordsConfig {
    fn default() -> Self {
        RecordsConfig {
            limits: StoreLimits::default(),
            wall_clock: WallClock::host(),
            replicas: REPLICAS,
            republish_every: Duration::from_secs(60),
        }
    }
}

/// A host's store, shared by its server and its republisher (one thread).
#[derive(Clone)]
pub struct RecordService {
    store: Rc<RefCell<RecordStore>>,
    config: Rc<RecordsConfig>,
}

impl RecordService {
    /// An empty store.
    pub fn new(config: RecordsConfig) -> Self {
        RecordService {
            store: Rc::new(RefCell::new(RecordStore::new(config.limits))),
            config: Rc::new(config),
        }
    }

    /// Serves the store to every peer that can connect. Must be called inside a `LocalSet`.
    pub fn serve<T: Transport>(&self, transport: &T) -> Result<ServeHandle, RpcError> {
        let client: records::Client = capnp_rpc::new_client(self.clone());
        serve(transport, &records_protocol(), client.client)
    }

    /// Checks `bytes` and keeps the record.
    pub fn keep(&self, bytes: &[u8]) -> Result<RecordKey, String> {
        let record = Record::open(bytes).map_err(|e| e.to_string())?;
        let now_ms = self.config.wall_clock.now_ms();
        self.store
            .borrow_mut()
            .put(&record, now_ms)
            .map_err(|e| e.to_string())?;
        Ok(record.key())
    }

    /// The record held under `key`.
    pub fn held(&self, key: &RecordKey) -> Option<Vec<u8>> {
        let now_ms = self.config.wall_clock.now_ms();
        self.store.borrow_mut().get(key, now_ms)
    }

    /// Records held now.
    pub fn len(&self) -> usize {
        let now_ms = self.config.wall_clock.now_ms();
        let mut store = self.store.borrow_mut();
        store.expire(now_ms);
        store.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every `republish_every`, passes each held record (a bounded slice per
    /// round) to the hosts now closest to its key, so records follow the view
    /// and outlive hosts that leave. `hosts` reads the current view. Runs until
    /// dropped; must run inside a `LocalSet`.
    pub async fn republish<T: Transport>(self, transport: T, hosts: impl Fn() -> BTreeSet<PeerId>) {
        let local = transport.local_peer_id();
        let mut after = None;
        loop {
            tokio::time::sleep(self.config.republish_every).await;
            let keys = self.store.borrow().keys_after(after, REPUBLISH_BATCH_MAX);
            after = if keys.len() < REPUBLISH_BATCH_MAX {
                None
            } else {
                keys.last().copied()
            };
            let view = hosts();
            for key in keys {
                let Some(bytes) = self.held(&key) else {
                    continue;
                };
                for peer in closest(&key, view.iter().copied(), self.config.replicas) {
                    if peer == local {
                        continue;
                    }
                    if let Err(e) = store_at(&transport, peer, &bytes).await {
                        tracing::debug!(%peer, %key, error = %e, "republish failed");
                    }
                }
            }
        }
    }
}

impl records::Server for RecordService {
    async fn put(
        self: CapRc<Self>,
        params: records::PutParams,
        _: records::PutResults,
    ) -> Result<(), capnp::Error> {
        let bytes = params.get()?.get_record()?;
        self.keep(bytes).map(|_| ()).map_err(capnp::Error::failed)
    }

    async fn get(
        self: CapRc<Self>,
        params: records::GetParams,
        mut results: records::GetResults,
    ) -> Result<(), capnp::Error> {
        let key: [u8; 32] = params
            .get()?
            .get_key()?
            .try_into()
            .map_err(|_| capnp::Error::failed("a record key is 32 bytes".into()))?;
        if let Some(bytes) = self.held(&RecordKey(key)) {
            results.get().set_record(&bytes);
            results.get().set_found(true);
        }
        Ok(())
    }
}

fn rpc_config() -> RpcConfig {
    RpcConfig {
        connect_timeout: Duration::from_secs(5),
        call_timeout: Duration::from_secs(20),
    }
}

/// Asks `peer` to keep the record `bytes`.
pub async fn store_at<T: Transport>(
    transport: &T,
    peer: PeerId,
    bytes: &[u8],
) -> Result<(), RpcError> {
    let connection =
        connect::<_, records::Client>(transport, peer, &records_protocol(), rpc_config()).await?;
    let mut request = connection.client().put_request();
    request.get().set_record(bytes);
    connection
        .call("put a record", async {
            request.send().promise.await?;
            Ok(())
        })
        .await
}

/// Asks `peer` for the record under `key` (unchecked bytes, or none).
pub async fn fetch_from<T: Transport>(
    transport: &T,
    peer: PeerId,
    key: &RecordKey,
) -> Result<Option<Vec<u8>>, RpcError> {
    let connection =
        connect::<_, records::Client>(transport, peer, &records_protocol(), rpc_config()).await?;
    let mut request = connection.client().get_request();
    request.get().set_key(&key.0);
    connection
        .call("get a record", async {
            let answer = request.send().promise.await?;
            let answer = answer.get()?;
            answer
                .get_found()
                .then(|| answer.get_record().map(<[u8]>::to_vec))
                .transpose()
        })
        .await
}

/// Stores `record` on the `replicas` hosts of `hosts` closest to its key
/// that take it (a host that cannot be reached is passed over for the next
/// nearest); the hosts that took it. Fails if none did.
pub async fn put<T: Transport>(
    transport: &T,
    hosts: &BTreeSet<PeerId>,
    record: &Record,
    replicas: usize,
) -> Result<Vec<PeerId>, DhtError> {
    let key = record.key();
    let order = closest(&key, hosts.iter().copied(), hosts.len());
    if order.is_empty() {
        return Err(DhtError::NoHosts(key.to_hex()));
    }
    let mut stored = Vec::new();
    let mut errors = Vec::new();
    for peer in &order {
        if stored.len() >= replicas {
            break;
        }
        match store_at(transport, *peer, &record.bytes).await {
            Ok(()) => stored.push(*peer),
            Err(e) => errors.push(format!("{peer}: {e}")),
        }
    }
    if stored.is_empty() {
        return Err(DhtError::TooFewCopies {
            key: key.to_hex(),
            stored: 0,
            wanted: replicas.min(order.len()),
            errors: errors.join("; "),
        });
    }
    Ok(stored)
}

/// Finds the record under `key`: asks the hosts closest to it, nearest first,
/// then the rest of the view (a record may not have moved yet after a
/// change), and returns the first that checks out (format, signature, key).
pub async fn get<T: Transport>(
    transport: &T,
    hosts: &BTreeSet<PeerId>,
    key: &RecordKey,
) -> Result<Record, DhtError> {
    get_within(transport, hosts, key, hosts.len()).await
}

/// [`get`], asking at most the `ask_max` hosts nearest the key: for a caller
/// with something else to fall back on.
pub async fn get_within<T: Transport>(
    transport: &T,
    hosts: &BTreeSet<PeerId>,
    key: &RecordKey,
    ask_max: usize,
) -> Result<Record, DhtError> {
    let order = closest(key, hosts.iter().copied(), ask_max);
    let mut errors = Vec::new();
    for peer in &order {
        match fetch_from(transport, *peer, key).await {
            Ok(Some(bytes)) => match Record::open_as(&bytes, key) {
                Ok(record) => return Ok(record),
                Err(e) => errors.push(format!("{peer} sent a bad record: {e}")),
            },
            Ok(None) => {}
            Err(e) => errors.push(format!("{peer}: {e}")),
        }
    }
    Err(DhtError::NotFound {
        key: key.to_hex(),
        asked: order.len(),
        errors: errors.join("; "),
    })
}

/// Finds `peer`'s addresses in its peer record and hands them to the
/// transport, so `dial(peer)` works for a host never discovered directly.
pub async fn resolve<T: Transport>(
    transport: &T,
    hosts: &BTreeSet<PeerId>,
    peer: PeerId,
) -> Result<Vec<crate::transport::Address>, DhtError> {
    let record = get(transport, hosts, &RecordKey::of_peer(&peer)).await?;
    let addresses = record.addresses();
    for address in &addresses {
        if let Err(e) = transport.add_peer_address(peer, address.clone()) {
            tracing::debug!(%peer, %address, error = %e, "address from a peer record not usable");
        }
    }
    Ok(addresses)
}

/// What a host does for the DHT beyond serving its store: publishes its own
/// peer record (signed by `identity`, its current listen addresses) every
/// republish period, and passes held records on to the hosts now closest.
/// `hosts` reads the current view. Runs until dropped; must run inside a `LocalSet`.
pub async fn take_part<T: Transport>(
    service: RecordService,
    transport: T,
    identity: crate::transport::Identity,
    hosts: impl Fn() -> BTreeSet<PeerId> + Clone + 'static,
) {
    let republish = service.clone().republish(transport.clone(), hosts.clone());
    let publish_own = async {
        // The view fills within a heartbeat or two of joining.
        tokio::time::sleep(Duration::from_secs(2)).await;
        loop {
            let now_ms = service.config.wall_clock.now_ms();
            let addresses = transport.listen_addresses();
            match Record::peer(&identity, now_ms, &addresses) {
                Ok(record) => {
                    let view = hosts();
                    if let Err(e) = put(&transport, &view, &record, service.config.replicas).await {
                        tracing::debug!(error = %e, "publishing our peer record failed");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot sign our peer record"),
            }
            tokio::time::sleep(service.config.republish_every).await;
        }
    };
    futures::join!(republish, publish_own);
}
