use crate::envelope::{Envelope, Protocol};
use crate::host::Host;
use crate::rt::Rt;
use crate::{config, TRACING_TARGET};

use crate::fast_map::FastMap;
use indexmap::IndexMap;
use rand::{Rng, RngCore};
use rand_distr::{Distribution, Exp};
use std::collections::{BTreeSet, VecDeque};
use std::io::{Error, ErrorKind, Result};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::time::Instant;

/// Describes the network topology.
pub(crate) struct Topology {
    config: config::Link,

    /// Specific configuration overrides between specific hosts.
    links: FastMap<Pair, Link>,

    /// ww-sched patch: the network's clock as of the last `tick_by`. A link's
    /// own `now` is brought up to it whenever the link is touched, so a link
    /// with nothing in flight needs no visit on a step (upstream visits all n^2).
    now: Instant,

    /// ww-sched patch: (when, position in `links`) of each link with a message
    /// to deliver, at the earliest such message's time: `tick_by` visits only
    /// the links due by then (positions are stable: links are never removed).
    due: BTreeSet<(Instant, usize)>,

    /// ww-sched patch: by position in `links`, the time the link has in `due`.
    due_at: Vec<Option<Instant>>,

    /// ww-sched patch: for each host, the positions in `links` of the links
    /// holding messages ready for it. Ascending position is insertion order,
    /// the order of upstream's scan, so delivery (and the random draws a
    /// refused delivery makes) happens in exactly upstream's order.
    ready_for: FastMap<IpAddr, BTreeSet<usize>>,

    /// ww-sched patch: by position in `links`, what `ready_for` holds for the
    /// link ([`READY_A`], [`READY_B`]), so `refresh` touches it only when
    /// something changed.
    marks: Vec<u8>,

    /// We don't use a Rt for async. Right now, we just use it to tick time
    /// forward in the same way we do it elsewhere. We'd like to represent
    /// network state with async in the future.
    rt: Rt<'static>,
}

/// ww-sched patch: a mark of a link with messages ready for its lower address.
const READY_A: u8 = 2;
/// ww-sched patch: a mark of a link with messages ready for its higher address.
const READY_B: u8 = 4;

/// This type is used as the key in the [`Topology::links`] map. See [`new`]
/// which orders the addrs, such that this type uniquely identifies the link
/// between two hosts on the network.
#[derive(Debug, Clone, Hash, Eq, PartialEq)]
struct Pair(IpAddr, IpAddr);

impl Pair {
    fn new(a: IpAddr, b: IpAddr) -> Pair {
        assert_ne!(a, b);

        if a < b {
            Pair(a, b)
        } else {
            Pair(b, a)
        }
    }
}

/// An iterator for the network topology, providing access to all active links
/// in the simulated network.
pub struct LinksIter<'a> {
    iter: indexmap::map::IterMut<'a, Pair, Link>,
}

/// An iterator for the link, providing access to sent messages that have not
/// yet been delivered.
pub struct LinkIter<'a> {
    a: IpAddr,
    b: IpAddr,
    now: Instant,
    iter: std::collections::vec_deque::IterMut<'a, Sent>,
}

impl LinkIter<'_> {
    /// The [`IpAddr`] pair for the link. Always ordered to uniquely identify
    /// the link.
    pub fn pair(&self) -> (IpAddr, IpAddr) {
        (self.a, self.b)
    }

    /// Schedule all messages on the link for delivery the next time the
    /// simulation steps, consuming the iterator.
    pub fn deliver_all(self) {
        for sent in self {
            sent.deliver();
        }
    }
}

/// Provides a reference to a message that is currently inflight on the network
/// from one host to another.
pub struct SentRef<'a> {
    src: SocketAddr,
    dst: SocketAddr,
    now: Instant,
    sent: &'a mut Sent,
}

impl SentRef<'_> {
    /// The (src, dst) [`SocketAddr`] pair for the message.
    pub fn pair(&self) -> (SocketAddr, SocketAddr) {
        (self.src, self.dst)
    }

    /// The message [`Protocol`].
    pub fn protocol(&self) -> &Protocol {
        &self.sent.protocol
    }

    /// Schedule the message for delivery the next time the simulation steps,
    /// consuming the item.
    pub fn deliver(self) {
        self.sent.deliver(self.now);
    }
}

impl<'a> Iterator for LinksIter<'a> {
    type Item = LinkIter<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        let (pair, link) = self.iter.next()?;

        Some(LinkIter {
            a: pair.0,
            b: pair.1,
            now: link.now,
            iter: link.sent.iter_mut(),
        })
    }
}

impl<'a> Iterator for LinkIter<'a> {
    type Item = SentRef<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        let sent = self.iter.next()?;

        Some(SentRef {
            src: sent.src,
            dst: sent.dst,
            now: self.now,
            sent,
        })
    }
}

/// A two-way link between two hosts on the network.
struct Link {
    /// The state of the link from node 'a' to node 'b'.
    /// Of the two nodes attached to a link, 'a' is the
    /// one whose ip address sorts smallest.
    state_a_b: State,
    /// The state of the link from node 'b' to node 'a'.
    /// Of the two nodes attached to a link, 'b' is the
    /// one whose ip address sorts greatest.
    state_b_a: State,

    /// Optional, per-link configuration.
    config: config::Link,

    /// Sent messages that are either scheduled for delivery in the future
    /// or are on hold.
    sent: VecDeque<Sent>,

    /// Messages that are ready to be delivered.
    deliverable: IndexMap<IpAddr, VecDeque<Envelope>>,

    /// The current network time, moved forward with [`Link::tick`].
    now: Instant,
}

/// States that a link between two nodes can be in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// The link is healthy.
    Healthy,

    /// The link was explicitly partitioned.
    ExplicitPartition,

    /// The link was randomly partitioned.
    RandPartition,

    /// Messages are being held indefinitely.
    Hold,
}

impl Topology {
    pub(crate) fn new(config: config::Link) -> Topology {
        let rt = Rt::no_software();
        Topology {
            config,
            links: FastMap::default(),
            now: rt.now(),
            due: BTreeSet::new(),
            due_at: Vec::new(),
            ready_for: FastMap::default(),
            marks: Vec::new(),
            rt,
        }
    }

    /// Register a link between two hosts
    pub(crate) fn register(&mut self, a: IpAddr, b: IpAddr) {
        let pair = Pair::new(a, b);
        let (position, previous) = self.links.insert_full(pair, Link::new(self.now));
        assert!(previous.is_none());
        debug_assert_eq!(position, self.marks.len());
        self.marks.push(0);
        self.due_at.push(None);
    }

    /// ww-sched patch: records when the link at `position` next has a message
    /// to deliver and, for each of its ends, whether messages are ready; called
    /// after anything that may change either, so `tick_by` and
    /// `deliver_messages` need only look at the links `due` and `ready_for`
    /// name.
    fn refresh(&mut self, position: usize) {
        let Some((pair, link)) = self.links.get_index(position) else {
            return;
        };
        // The map holds at most the link's two ends: a scan beats hashing.
        let ready = |end: IpAddr| {
            link.deliverable
                .iter()
                .any(|(dst, queue)| *dst == end && !queue.is_empty())
        };
        let earliest = link
            .sent
            .iter()
            .filter_map(|sent| match sent.status {
                DeliveryStatus::DeliverAfter(time) => Some(time),
                DeliveryStatus::Hold => None,
            })
            .min();
        if earliest != self.due_at[position] {
            if let Some(time) = self.due_at[position] {
                self.due.remove(&(time, position));
            }
            if let Some(time) = earliest {
                self.due.insert((time, position));
            }
            self.due_at[position] = earliest;
        }
        let mut mark = 0;
        if ready(pair.0) {
            mark |= READY_A;
        }
        if ready(pair.1) {
            mark |= READY_B;
        }
        let changed = self.marks[position] ^ mark;
        if changed == 0 {
            return;
        }
        self.marks[position] = mark;
        for (end, bit) in [(pair.0, READY_A), (pair.1, READY_B)] {
            if changed & bit == 0 {
                continue;
            }
            if mark & bit != 0 {
                self.ready_for.entry(end).or_default().insert(position);
            } else if let Some(positions) = self.ready_for.get_mut(&end) {
                positions.remove(&position);
            }
        }
    }

    /// ww-sched patch: runs `f` on the link between `a` and `b`, its clock
    /// brought up to the network's first, then refreshes the link's entries in
    /// `due` and `ready_for`.
    fn with_link<R>(&mut self, a: IpAddr, b: IpAddr, f: impl FnOnce(&mut Link) -> R) -> R {
        let pair = Pair::new(a, b);
        let (position, _, link) = self
            .links
            .get_full_mut(&pair)
            .unwrap_or_else(|| panic!("unable to find link between {pair:?}"));
        link.now = self.now;
        let result = f(link);
        self.refresh(position);
        result
    }

    pub(crate) fn set_max_message_latency(&mut self, value: Duration) {
        self.config.latency_mut().max_message_latency = value;
    }

    pub(crate) fn set_link_message_latency(&mut self, a: IpAddr, b: IpAddr, value: Duration) {
        let pair = Pair::new(a, b);
        let latency = self
            .links
            .get_mut(&pair)
            .unwrap_or_else(|| panic!("unable to find link between {pair:?}"))
            .latency(self.config.latency());
        latency.min_message_latency = value;
        latency.max_message_latency = value;
    }

    pub(crate) fn set_link_max_message_latency(&mut self, a: IpAddr, b: IpAddr, value: Duration) {
        let pair = Pair::new(a, b);
        self.links
            .get_mut(&pair)
            .unwrap_or_else(|| panic!("unable to find link between {pair:?}"))
            .latency(self.config.latency())
            .max_message_latency = value;
    }

    pub(crate) fn set_message_latency_curve(&mut self, value: f64) {
        self.config.latency_mut().latency_distribution = Exp::new(value).unwrap();
    }

    pub(crate) fn set_fail_rate(&mut self, value: f64) {
        self.config.message_loss_mut().fail_rate = value;
    }

    pub(crate) fn set_link_fail_rate(&mut self, a: IpAddr, b: IpAddr, value: f64) {
        let pair = Pair::new(a, b);
        self.links
            .get_mut(&pair)
            .unwrap_or_else(|| panic!("unable to find link between {pair:?}"))
            .message_loss(self.config.message_loss())
            .fail_rate = value;
    }

    // Send a `message` from `src` to `dst`. This method returns immediately,
    // and message delivery happens at a later time (or never, if the link is
    // broken).
    pub(crate) fn enqueue_message(
        &mut self,
        rand: &mut dyn RngCore,
        src: SocketAddr,
        dst: SocketAddr,
        message: Protocol,
    ) -> Result<()> {
        if let Some((position, _, link)) = self.links.get_full_mut(&Pair::new(src.ip(), dst.ip())) {
            link.now = self.now;
            let result = link.enqueue_message(&self.config, rand, src, dst, message);
            self.refresh(position);
            result
        } else {
            Err(Error::new(
                ErrorKind::ConnectionRefused,
                "Connection refused",
            ))
        }
    }

    // Move messages from any network links to the `dst` host.
    pub(crate) fn deliver_messages(&mut self, rand: &mut dyn RngCore, dst: &mut Host) {
        // Only the links with messages ready for `dst`, in ascending position:
        // the links upstream's scan finds something on, in the same order, so
        // the simulation's randomness is consumed exactly as upstream does.
        // Delivering on one link can only make messages ready for its other
        // end (a refusal answered), never for `dst`, so the set taken here is
        // the set upstream would find.
        let Some(ready) = self.ready_for.get(&dst.addr) else {
            return;
        };
        if ready.is_empty() {
            return;
        }
        let ready: Vec<usize> = ready.iter().copied().collect();
        for position in ready {
            if let Some((_, link)) = self.links.get_index_mut(position) {
                link.now = self.now;
                link.deliver_messages(&self.config, rand, dst);
            }
            self.refresh(position);
        }
    }

    pub(crate) fn hold(&mut self, a: IpAddr, b: IpAddr) {
        self.with_link(a, b, Link::hold);
    }

    pub(crate) fn release(&mut self, a: IpAddr, b: IpAddr) {
        self.with_link(a, b, Link::release);
    }

    pub(crate) fn partition(&mut self, a: IpAddr, b: IpAddr) {
        self.with_link(a, b, Link::explicit_partition);
    }

    pub(crate) fn partition_oneway(&mut self, a: IpAddr, b: IpAddr) {
        self.with_link(a, b, |link| link.partition_oneway(a, b));
    }

    pub(crate) fn repair(&mut self, a: IpAddr, b: IpAddr) {
        self.with_link(a, b, Link::explicit_repair);
    }

    pub(crate) fn repair_oneway(&mut self, a: IpAddr, b: IpAddr) {
        self.with_link(a, b, |link| link.repair_oneway(a, b));
    }

    pub(crate) fn tick_by(&mut self, duration: Duration) {
        let _ = self.rt.tick(duration);
        self.now = self.rt.now();
        // A link with nothing due has nothing to move; its clock catches up
        // when it is next touched. The order links are ticked in does not
        // matter: ticking draws no randomness and touches only its own link.
        let due: Vec<usize> = self
            .due
            .range(..=(self.now, usize::MAX))
            .map(|&(_, position)| position)
            .collect();
        for position in due {
            if let Some((_, link)) = self.links.get_index_mut(position) {
                link.tick(self.now);
            }
            self.refresh(position);
        }
    }

    /// ww-sched patch: refreshes every link, after callers of `iter_mut` may
    /// have scheduled deliveries (`SentRef::deliver`) behind `refresh`'s back.
    pub(crate) fn refresh_all(&mut self) {
        for position in 0..self.links.len() {
            self.refresh(position);
        }
    }

    pub(crate) fn iter_mut(&mut self) -> LinksIter<'_> {
        // Callers see (and schedule deliveries at) each link's `now`.
        for link in self.links.values_mut() {
            link.now = self.now;
        }
        LinksIter {
            iter: self.links.iter_mut(),
        }
    }
}

/// Represents a message sent between two hosts on the network.
struct Sent {
    src: SocketAddr,
    dst: SocketAddr,
    status: DeliveryStatus,
    protocol: Protocol,
}

impl Sent {
    fn deliver(&mut self, now: Instant) {
        self.status = DeliveryStatus::DeliverAfter(now);
    }
}

enum DeliveryStatus {
    DeliverAfter(Instant),
    Hold,
}

impl Link {
    fn new(now: Instant) -> Link {
        Link {
            state_a_b: State::Healthy,
            state_b_a: State::Healthy,
            config: config::Link::default(),
            sent: VecDeque::new(),
            deliverable: IndexMap::new(),
            now,
        }
    }

    fn enqueue_message(
        &mut self,
        global_config: &config::Link,
        rand: &mut dyn RngCore,
        src: SocketAddr,
        dst: SocketAddr,
        message: Protocol,
    ) -> Result<()> {
        tracing::trace!(target: TRACING_TARGET, ?src, ?dst, protocol = %message, "Send");

        self.rand_partition_or_repair(global_config, rand);
        let result = self.enqueue(global_config, rand, src, dst, message);
        self.process_deliverables();
        result
    }

    fn get_state_for_message(&self, src: IpAddr, dst: IpAddr) -> State {
        // Between each pair of ip-addresses there can exist a link.
        // A link between two such pairs can be constructed as
        // Pair::new(x,y) or Pair::new(y,x). These two expressions create
        // the exact same link. We denote one of the ends of the link as 'a',
        // and the other 'b'. 'a' is always the one that compares smaller, i.e,
        // `a < b` holds.
        if src < dst {
            self.state_a_b
        } else {
            self.state_b_a
        }
    }

    // src -> link -> dst
    //        ^-- you are here!
    //
    // Messages may be dropped, sit on the link for a while (due to latency, or
    // because the link has stalled), or be delivered immediately.
    // Link will return an Err(()) if the socket buffer is full.
    fn enqueue(
        &mut self,
        global_config: &config::Link,
        rand: &mut dyn RngCore,
        src: SocketAddr,
        dst: SocketAddr,
        message: Protocol,
    ) -> Result<()> {
        let state = self.get_state_for_message(src.ip(), dst.ip());
        let status = match state {
            State::Healthy => {
                let delay = self.delay(global_config.latency(), rand);
                DeliveryStatus::DeliverAfter(self.now + delay)
            }
            // Only A->B is blocked, so B can send, so we can send if src is B
            State::Hold => {
                tracing::trace!(target: TRACING_TARGET,?src, ?dst, protocol = %message, "Hold");
                DeliveryStatus::Hold
            }
            _ => {
                tracing::trace!(target: TRACING_TARGET,?src, ?dst, protocol = %message, "Drop");
                return Ok(());
            }
        };

        let sent = Sent {
            src,
            dst,
            status,
            protocol: message,
        };

        self.sent.push_back(sent);
        Ok(())
    }

    fn tick(&mut self, now: Instant) {
        self.now = now;
        self.process_deliverables();
    }

    fn process_deliverables(&mut self) {
        // TODO: `drain_filter` is not yet stable, and so we have a low quality
        // implementation here that avoids clones.
        let mut deliverable = 0;
        for i in 0..self.sent.len() {
            let index = i - deliverable;
            let sent = &self.sent[index];
            if let DeliveryStatus::DeliverAfter(time) = sent.status {
                if time <= self.now {
                    let sent = self.sent.remove(index).unwrap();
                    let envelope = Envelope {
                        src: sent.src,
                        dst: sent.dst,
                        message: sent.protocol,
                    };
                    self.deliverable
                        .entry(sent.dst.ip())
                        .or_default()
                        .push_back(envelope);
                    deliverable += 1;
                }
            }
        }
    }

    // FIXME: This implementation does not respect message delivery order. If
    // host A and host B are ordered (by addr), and B sends before A, then this
    // method will deliver A's message before B's.
    fn deliver_messages(
        &mut self,
        global_config: &config::Link,
        rand: &mut dyn RngCore,
        host: &mut Host,
    ) {
        // ww-sched patch: most links have nothing for this host on most steps;
        // skip them without inserting into (or allocating from) the map.
        if self.deliverable.values().all(VecDeque::is_empty) {
            return;
        }
        let Some(queue) = self.deliverable.get_mut(&host.addr) else {
            return;
        };
        if queue.is_empty() {
            return;
        }
        let deliverable = queue.drain(..).collect::<Vec<Envelope>>();

        for message in deliverable {
            let (src, dst) = (message.src, message.dst);
            if let Err(message) = host.receive_from_network(message) {
                let _ = self.enqueue_message(global_config, rand, dst, src, message);
            }
        }
    }

    // Randomly break or repair this link.
    fn rand_partition_or_repair(&mut self, global_config: &config::Link, rand: &mut dyn RngCore) {
        let do_rand = self.rand_partition(global_config.message_loss(), rand);
        // Random loss only moves directions between Healthy and RandPartition:
        // upstream set both directions, so a random break and repair erased an
        // explicit one-way partition (ww-sched patch 3, see PATCHES.md).
        let swap = |state: &mut State, from: State, to: State| {
            if *state == from {
                *state = to;
            }
        };
        match (self.state_a_b, self.state_b_a) {
            (State::Healthy, _) | (_, State::Healthy) if do_rand => {
                swap(&mut self.state_a_b, State::Healthy, State::RandPartition);
                swap(&mut self.state_b_a, State::Healthy, State::RandPartition);

                self.sent.clear();
            }
            (State::RandPartition, _) | (_, State::RandPartition)
                if self.rand_repair(global_config.message_loss(), rand) =>
            {
                swap(&mut self.state_a_b, State::RandPartition, State::Healthy);
                swap(&mut self.state_b_a, State::RandPartition, State::Healthy);
            }
            _ => {}
        }
    }

    fn hold(&mut self) {
        self.state_a_b = State::Hold;
        self.state_b_a = State::Hold;

        for sent in &mut self.sent {
            sent.status = DeliveryStatus::Hold;
        }
    }

    // This link becomes healthy, and any held messages are scheduled for delivery.
    fn release(&mut self) {
        self.state_a_b = State::Healthy;
        self.state_b_a = State::Healthy;
        for sent in &mut self.sent {
            if let DeliveryStatus::Hold = sent.status {
                sent.deliver(self.now);
            }
        }
    }

    fn explicit_partition(&mut self) {
        self.state_a_b = State::ExplicitPartition;
        self.state_b_a = State::ExplicitPartition;

        self.sent.clear();
    }

    fn partition_oneway(&mut self, from: IpAddr, to: IpAddr) {
        if from < to {
            self.state_a_b = State::ExplicitPartition;
        } else {
            self.state_b_a = State::ExplicitPartition;
        }

        self.sent.retain(|sent| sent.src.ip() != from);
    }

    fn repair_oneway(&mut self, from: IpAddr, to: IpAddr) {
        if from < to {
            self.state_a_b = State::Healthy;
        } else {
            self.state_b_a = State::Healthy;
        }
    }

    // Repair the link, without releasing any held messages.
    fn explicit_repair(&mut self) {
        self.state_a_b = State::Healthy;
        self.state_b_a = State::Healthy;
    }

    /// Should the link be randomly partitioned
    fn rand_partition(&self, global: &config::MessageLoss, rand: &mut dyn RngCore) -> bool {
        let config = self.config.message_loss.as_ref().unwrap_or(global);
        let fail_rate = config.fail_rate;
        fail_rate > 0.0 && rand.random_bool(fail_rate)
    }

    fn rand_repair(&self, global: &config::MessageLoss, rand: &mut dyn RngCore) -> bool {
        let config = self.config.message_loss.as_ref().unwrap_or(global);
        let repair_rate = config.repair_rate;
        repair_rate > 0.0 && rand.random_bool(repair_rate)
    }

    fn delay(&self, global: &config::Latency, rand: &mut dyn RngCore) -> Duration {
        let config = self.config.latency.as_ref().unwrap_or(global);

        let mult = config.latency_distribution.sample(rand);
        let range = (config.max_message_latency - config.min_message_latency).as_millis() as f64;
        let delay = config.min_message_latency + Duration::from_millis((range * mult) as _);

        std::cmp::min(delay, config.max_message_latency)
    }

    fn latency(&mut self, global: &config::Latency) -> &mut config::Latency {
        self.config.latency.get_or_insert_with(|| global.clone())
    }

    fn message_loss(&mut self, global: &config::MessageLoss) -> &mut config::MessageLoss {
        self.config
            .message_loss
            .get_or_insert_with(|| global.clone())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Link;

    use super::*;

    #[test]
    #[should_panic(expected = "unable to find link between Pair(10.0.0.1, 192.168.0.1)")]
    fn link_access_gives_useful_panic_message() {
        let mut topo = Topology::new(Link::default());
        topo.hold("10.0.0.1".parse().unwrap(), "192.168.0.1".parse().unwrap());
    }
}
