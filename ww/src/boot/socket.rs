//! The socket driver shared by the survey and the crawl: a receive loop that checks
//! and dispatches packets, and a rate-limited send loop fed by a bounded queue.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::clock::{WallClock, FRESHNESS_WINDOW_MS};
use super::distance::should_answer;
use super::packet::{self, Body, Checks, Packet, ADDRESSES_MAX, ADDRESS_MAX_BYTES};
use super::rate::{SourceLimits, TokenBucket, SOURCES_MAX};
use super::stats::{DiscoveryStats, DropReason, StatsCell};
use super::stream::{Offer, PeerSink, PeerStream, SinkProgress, TaskGuard};
use super::tracker::{check_namespace, Advertised, Granted};
use super::{BootError, PeerInfo};
use crate::transport::{Address, Datagram, Identity, PeerId, SwarmKey, Transport};

/// How many `find_peers` streams may be open on one socket at once.
pub const STREAMS_MAX: usize = 64;
/// How long the receive loop pauses after a socket error, so a broken socket cannot spin.
const RECV_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// How long an answer to the group waits before it is sent. Every survey that
/// arrives meanwhile is answered by that one datagram: when many nodes survey at
/// once (a cluster starting), each answers once instead of once per survey, so
/// the group carries n answers rather than n^2 (each heard, and its signature
/// checked, by all n nodes).
pub const GROUP_ANSWER_DELAY: Duration = Duration::from_millis(50);

/// Socket-level settings common to every socket-based discovery.
#[derive(Clone, Debug)]
pub(crate) struct SocketConfig {
    /// Where surveys are answered: the group (survey) or `None` (answer the sender).
    pub group: Option<SocketAddr>,
    pub rate_per_s: u32,
    pub burst: u32,
    pub datagram_max_bytes: usize,
    pub send_queue_max: usize,
    /// Incoming datagrams per second one source IP may send, on average.
    pub source_rate_per_s: u32,
    /// Incoming datagrams one source IP may send at once.
    pub source_burst: u32,
    /// The cluster's key: packets are tagged with it and must carry its tag.
    pub swarm_key: Option<SwarmKey>,
    /// Stamps outgoing packets and judges the freshness of incoming ones.
    pub wall_clock: WallClock,
}

/// One outgoing datagram.
pub(crate) struct Outgoing {
    bytes: Vec<u8>,
    target: SocketAddr,
    /// Not sent before this instant.
    not_before: Option<Instant>,
    /// The namespace whose pending group answer this is.
    group_answer: Option<String>,
}

impl Outgoing {
    /// A datagram to send as soon as the rate allows.
    pub(crate) fn now(bytes: Vec<u8>, target: SocketAddr) -> Outgoing {
        Outgoing {
            bytes,
            target,
            not_before: None,
            group_answer: None,
        }
    }
}

/// State the socket tasks and the discovery object share (all on one thread).
pub(crate) struct Shared {
    identity: Identity,
    local: PeerId,
    addresses: Box<dyn Fn() -> Vec<Address>>,
    advertised: RefCell<Advertised>,
    sinks: RefCell<BTreeMap<String, Vec<PeerSink>>>,
    stats: StatsCell,
    outbound: mpsc::Sender<Outgoing>,
    /// Where this node's own requests go out, if apart from its answers
    /// ([`Socket::send_requests_from`]).
    requests_outbound: std::cell::OnceCell<mpsc::Sender<Outgoing>>,
    group: Option<SocketAddr>,
    datagram_max_bytes: usize,
    /// Namespaces with an answer to the group queued and not yet sent.
    group_answers_pending: RefCell<BTreeSet<String>>,
    swarm_key: Option<SwarmKey>,
    wall_clock: WallClock,
    /// Incoming rate limits, checked before anything else is spent on a datagram.
    sources: RefCell<SourceLimits>,
}

/// A running socket: its tasks stop when this is dropped.
pub(crate) struct Socket {
    shared: Rc<Shared>,
    tasks: Vec<TaskGuard>,
}

impl Socket {
    /// Starts the receive and send loops on `socket`.
    pub(crate) fn start<T: Transport>(
        transport: &T,
        identity: Identity,
        socket: T::Datagram,
        config: SocketConfig,
    ) -> Result<Socket, BootError> {
        check_identity(transport, &identity)?;
        let bucket = TokenBucket::new(config.rate_per_s, config.burst, Instant::now())
            .ok_or_else(|| BootError::Config("rate_per_s and burst must be positive".into()))?;
        let sources = SourceLimits::new(config.source_rate_per_s, config.source_burst, SOURCES_MAX)
            .ok_or_else(|| {
                BootError::Config("source_rate_per_s and source_burst must be positive".into())
            })?;
        if !(256..=65_507).contains(&config.datagram_max_bytes) {
            return Err(BootError::Config(format!(
                "datagram_max_bytes {} is outside 256..=65507",
                config.datagram_max_bytes
            )));
        }
        let (outbound, queue) = mpsc::channel(config.send_queue_max.max(1));
        let listen = transport.clone();
        let shared = Rc::new(Shared {
            local: identity.peer_id(),
            identity,
            addresses: Box::new(move || listen.listen_addresses()),
            advertised: RefCell::new(Advertised::default()),
            sinks: RefCell::new(BTreeMap::new()),
            stats: StatsCell::default(),
            outbound,
            requests_outbound: std::cell::OnceCell::new(),
            group: config.group,
            datagram_max_bytes: config.datagram_max_bytes,
            group_answers_pending: RefCell::new(BTreeSet::new()),
            swarm_key: config.swarm_key,
            wall_clock: config.wall_clock,
            sources: RefCell::new(sources),
        });
        let socket = Rc::new(socket);
        let receiver = tokio::task::spawn_local(receive_loop(socket.clone(), shared.clone()));
        let sender =
            tokio::task::spawn_local(send_loop(socket, queue, bucket, Rc::downgrade(&shared)));
        Ok(Socket {
            shared,
            tasks: vec![TaskGuard(receiver), TaskGuard(sender)],
        })
    }

    /// Sends this node's own requests from `socket`, whose answers come back
    /// to it, at `rate_per_s` (burst `burst`) through a queue of `queue_max`.
    ///
    /// Why a socket apart: the kernel holds a datagram to an address whose
    /// link-layer address is unknown until its resolution fails (3 s on
    /// Linux), charged to the socket that sent it, and a crawl of a sparse
    /// block fills the socket's send buffer with them (about 170 of 212 KiB
    /// at the default `wmem`; `scripts/neighbour-hold` measures it). On the
    /// answering socket that would hold every answer to another crawler
    /// behind them for seconds.
    pub(crate) fn send_requests_from<D: Datagram + 'static>(
        &mut self,
        socket: D,
        rate_per_s: u32,
        burst: u32,
        queue_max: usize,
    ) -> Result<(), BootError> {
        let bucket = TokenBucket::new(rate_per_s, burst, Instant::now())
            .ok_or_else(|| BootError::Config("rate_per_s and burst must be positive".into()))?;
        let (outbound, queue) = mpsc::channel(queue_max.max(1));
        if self.shared.requests_outbound.set(outbound).is_err() {
            return Err(BootError::Config(
                "requests already have their own socket".into(),
            ));
        }
        let socket = Rc::new(socket);
        let receiver = tokio::task::spawn_local(receive_loop(socket.clone(), self.shared.clone()));
        let sender = tokio::task::spawn_local(send_loop(
            socket,
            queue,
            bucket,
            Rc::downgrade(&self.shared),
        ));
        self.tasks.push(TaskGuard(receiver));
        self.tasks.push(TaskGuard(sender));
        Ok(())
    }

    /// Answers for `namespace` until `ttl` elapses.
    pub(crate) fn advertise(&self, namespace: &str, ttl: Duration) -> Result<Granted, BootError> {
        if (self.shared.addresses)().is_empty() {
            return Err(BootError::NoListenAddresses {
                namespace: namespace.to_string(),
            });
        }
        self.shared
            .advertised
            .borrow_mut()
            .advertise(namespace, ttl, Instant::now())
    }

    /// Opens a result stream for responses in `namespace`.
    pub(crate) fn subscribe(
        &self,
        namespace: &str,
        limit: Option<usize>,
    ) -> Result<(PeerStream, Rc<SinkProgress>), BootError> {
        check_namespace(namespace)?;
        let mut sinks = self.shared.sinks.borrow_mut();
        prune(&mut sinks);
        let open: usize = sinks.values().map(Vec::len).sum();
        if open >= STREAMS_MAX {
            return Err(BootError::Config(format!(
                "{STREAMS_MAX} find_peers streams already open; drop one first"
            )));
        }
        let (sink, stream) = PeerStream::channel(limit);
        let progress = sink.progress();
        sinks.entry(namespace.to_string()).or_default().push(sink);
        Ok((stream, progress))
    }

    /// A handle for tasks that must not keep the socket alive.
    pub(crate) fn weak(&self) -> Weak<Shared> {
        Rc::downgrade(&self.shared)
    }

    /// The shared state, for sending from the discovery object itself.
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// The counters so far.
    pub(crate) fn stats(&self) -> DiscoveryStats {
        self.shared.stats.snapshot()
    }
}

impl Shared {
    /// This node's id.
    pub(crate) fn local(&self) -> PeerId {
        self.local
    }

    /// The IPv4 addresses this node listens on (`/ip4/<a.b.c.d>/...`).
    pub(crate) fn listen_ipv4(&self) -> Vec<std::net::Ipv4Addr> {
        (self.addresses)()
            .iter()
            .filter_map(|a| {
                a.as_str()
                    .strip_prefix("/ip4/")?
                    .split('/')
                    .next()?
                    .parse()
                    .ok()
            })
            .collect()
    }

    /// Seals `body` for `namespace` and queues it without waiting; a full queue drops it.
    pub(crate) fn try_send(&self, namespace: &str, body: Body, target: SocketAddr) {
        match self.seal_bytes(namespace, body) {
            Ok(bytes) => self.try_queue(bytes, target),
            Err(e) => tracing::warn!(error = %e, "boot packet not encodable; not sent"),
        }
    }

    /// The queue of this node's own requests: their socket's, if they have
    /// one, else the answers' one.
    pub(crate) fn requests_outbound(&self) -> mpsc::Sender<Outgoing> {
        self.requests_outbound
            .get()
            .unwrap_or(&self.outbound)
            .clone()
    }

    /// Seals `body` for `namespace` as an [`Outgoing`] datagram to `target`.
    pub(crate) fn seal(&self, namespace: &str, body: Body, target: SocketAddr) -> Option<Outgoing> {
        match self.seal_bytes(namespace, body) {
            Ok(bytes) => Some(Outgoing::now(bytes, target)),
            Err(e) => {
                tracing::warn!(error = %e, "boot packet not encodable; not sent");
                None
            }
        }
    }

    /// Sends our response for `namespace` to `target` (the requester).
    pub(crate) fn respond(&self, namespace: &str, target: SocketAddr) {
        if let Some(bytes) = self.response_bytes(namespace) {
            self.try_queue(bytes, target);
        }
    }

    /// Answers for `namespace` to the group, after [`GROUP_ANSWER_DELAY`]; an
    /// answer already waiting covers this one too.
    pub(crate) fn respond_to_group(&self, namespace: &str, group: SocketAddr) {
        if self.group_answers_pending.borrow().contains(namespace) {
            tracing::trace!(%namespace, "group answer already pending");
            self.stats.suppressed();
            return;
        }
        let Some(bytes) = self.response_bytes(namespace) else {
            return;
        };
        let outgoing = Outgoing {
            bytes,
            target: group,
            not_before: Some(Instant::now() + GROUP_ANSWER_DELAY),
            group_answer: Some(namespace.to_string()),
        };
        if self.outbound.try_send(outgoing).is_err() {
            self.stats.dropped(DropReason::RateLimited);
            return;
        }
        self.group_answers_pending
            .borrow_mut()
            .insert(namespace.to_string());
    }

    /// Stamps `body` for `namespace` with our clock, signs it and tags it.
    fn seal_bytes(&self, namespace: &str, body: Body) -> Result<Vec<u8>, packet::PacketError> {
        let packet = Packet {
            namespace: namespace.to_string(),
            sent_ms: self.wall_clock.now_ms(),
            body,
        };
        packet::seal(&self.identity, self.swarm_key.as_ref(), &packet)
    }

    fn try_queue(&self, bytes: Vec<u8>, target: SocketAddr) {
        if self
            .outbound
            .try_send(Outgoing::now(bytes, target))
            .is_err()
        {
            self.stats.dropped(DropReason::RateLimited);
        }
    }

    /// Our current listen addresses, as many as fit one datagram.
    fn response_bytes(&self, namespace: &str) -> Option<Vec<u8>> {
        let mut addresses: Vec<Address> = (self.addresses)()
            .into_iter()
            .filter(|a| a.as_str().len() <= ADDRESS_MAX_BYTES)
            .take(ADDRESSES_MAX)
            .collect();
        loop {
            let body = Body::Response {
                peer: self.local,
                addresses: addresses.clone(),
            };
            match self.seal_bytes(namespace, body) {
                Ok(bytes) if bytes.len() <= self.datagram_max_bytes => return Some(bytes),
                Ok(_) if !addresses.is_empty() => {
                    addresses.pop();
                }
                Ok(_) => {
                    tracing::warn!(%namespace, "no response fits a datagram; not answering");
                    return None;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "response not encodable; not answering");
                    return None;
                }
            }
        }
    }

    /// Checks one received datagram and acts on it.
    fn handle(&self, datagram: &[u8], source: SocketAddr, now: Instant) {
        self.stats.received();
        if !self.sources.borrow_mut().allow(source.ip(), now) {
            return self.drop_packet(DropReason::SourceRateLimited, source);
        }
        let checks = Checks {
            max_bytes: self.datagram_max_bytes,
            key: self.swarm_key.as_ref(),
            now_ms: self.wall_clock.now_ms(),
            freshness_window_ms: FRESHNESS_WINDOW_MS,
        };
        let packet = match packet::open(datagram, &checks) {
            Ok(packet) => packet,
            Err(reason) => return self.drop_packet(reason, source),
        };
        let Packet {
            namespace, body, ..
        } = packet;
        match body {
            Body::Request { from } => self.answer(&namespace, from, None, source, now),
            Body::Survey { from, distance } => {
                self.answer(&namespace, from, Some(distance), source, now)
            }
            Body::Response { peer, addresses } => self.deliver(namespace, peer, addresses, source),
        }
    }

    /// Answers a request (to its sender) or a survey (to the group, if we are near).
    fn answer(
        &self,
        namespace: &str,
        from: PeerId,
        distance: Option<u8>,
        source: SocketAddr,
        now: Instant,
    ) {
        if !self.advertised.borrow_mut().is_live(namespace, now) {
            return self.drop_packet(DropReason::Namespace, source);
        }
        if from == self.local {
            return self.drop_packet(DropReason::FromSelf, source);
        }
        match distance {
            None => {
                tracing::trace!(%namespace, %from, %source, "answering request");
                self.respond(namespace, source);
                self.ask_back(namespace, from, source);
            }
            Some(distance) if should_answer(&self.local, &from, distance) => {
                tracing::trace!(%namespace, %from, distance, "answering survey");
                match self.group {
                    Some(group) => self.respond_to_group(namespace, group),
                    None => self.respond(namespace, source),
                }
            }
            Some(distance) => tracing::trace!(%namespace, %from, distance, "survey not for us"),
        }
    }

    /// A crawler that asked us is a peer our own streams may still lack: a
    /// node that crawled an empty block before the crawler started would
    /// otherwise learn of it only at its next pass. The request carries no
    /// addresses, so we ask its sender back; its signed answer goes to our
    /// streams like any other. Sent only while a stream of `namespace` lacks
    /// `from`, so two crawlers never ask each other back and forth.
    fn ask_back(&self, namespace: &str, from: PeerId, source: SocketAddr) {
        let wanted = self
            .sinks
            .borrow()
            .get(namespace)
            .is_some_and(|sinks| sinks.iter().any(|sink| !sink.has(&from)));
        if !wanted {
            return;
        }
        let request = Body::Request { from: self.local };
        match self.seal_bytes(namespace, request) {
            Ok(bytes) => {
                tracing::trace!(%namespace, %from, %source, "asking a crawler back");
                self.try_queue(bytes, source);
            }
            Err(e) => tracing::warn!(error = %e, "request not encodable; not asked back"),
        }
    }

    fn deliver(
        &self,
        namespace: String,
        peer: PeerId,
        addresses: Vec<Address>,
        source: SocketAddr,
    ) {
        let mut sinks = self.sinks.borrow_mut();
        let Some(listeners) = sinks.get_mut(&namespace) else {
            return self.drop_packet(DropReason::Namespace, source);
        };
        if peer == self.local {
            return self.drop_packet(DropReason::FromSelf, source);
        }
        for sink in listeners.iter_mut() {
            let info = PeerInfo {
                peer,
                addresses: addresses.clone(),
            };
            match sink.offer(info) {
                Offer::Delivered => tracing::debug!(%namespace, %peer, "peer found"),
                Offer::Full => self.stats.dropped(DropReason::StreamFull),
                Offer::Duplicate | Offer::Closed => {}
            }
        }
        prune(&mut sinks);
    }

    fn drop_packet(&self, reason: DropReason, source: SocketAddr) {
        tracing::trace!(?reason, %source, "boot packet dropped");
        self.stats.dropped(reason);
    }
}

/// Forgets sinks whose streams have ended.
fn prune(sinks: &mut BTreeMap<String, Vec<PeerSink>>) {
    for listeners in sinks.values_mut() {
        listeners.retain(|s| !s.is_closed());
    }
    sinks.retain(|_, listeners| !listeners.is_empty());
}

/// Refuses an identity that is not the transport's own, since peers would dial the
/// transport but trust the identity.
pub(crate) fn check_identity<T: Transport>(
    transport: &T,
    identity: &Identity,
) -> Result<(), BootError> {
    if identity.peer_id() != transport.local_peer_id() {
        return Err(BootError::IdentityMismatch {
            identity: identity.peer_id().to_string(),
            transport: transport.local_peer_id().to_string(),
        });
    }
    Ok(())
}

async fn receive_loop<D: Datagram>(socket: Rc<D>, shared: Rc<Shared>) {
    // One byte over the cap, so an oversized datagram shows as such instead of truncated.
    let mut buffer = vec![0u8; shared.datagram_max_bytes + 1];
    loop {
        match socket.recv_from(&mut buffer).await {
            Ok((len, source)) => shared.handle(&buffer[..len], source, Instant::now()),
            Err(e) => {
                tracing::warn!(error = %e, "boot socket receive failed; retrying");
                tokio::time::sleep(RECV_ERROR_PAUSE).await;
            }
        }
    }
}

async fn send_loop<D: Datagram>(
    socket: Rc<D>,
    mut queue: mpsc::Receiver<Outgoing>,
    mut bucket: TokenBucket,
    shared: Weak<Shared>,
) {
    while let Some(outgoing) = queue.recv().await {
        if let Some(at) = outgoing.not_before {
            tokio::time::sleep_until(at).await;
        }
        while let Err(wait) = bucket.try_take(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        let result = socket.send_to(&outgoing.bytes, outgoing.target).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if let Some(namespace) = &outgoing.group_answer {
            shared.group_answers_pending.borrow_mut().remove(namespace);
        }
        match result {
            Ok(_) => shared.stats.sent(),
            Err(e) => {
                tracing::debug!(error = %e, target = %outgoing.target, "boot send failed");
                shared.stats.send_failed();
            }
        }
    }
}
