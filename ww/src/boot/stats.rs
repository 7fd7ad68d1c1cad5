//! Counters of what a discovery socket did with each packet.

use std::cell::Cell;

/// A snapshot of a discovery object's counters since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiscoveryStats {
    /// Datagrams received (before any check).
    pub received: u64,
    /// Datagrams handed to the socket successfully.
    pub sent: u64,
    /// Datagrams the socket refused to send (e.g. no such host).
    pub send_failed: u64,
    /// Received datagrams over the size cap.
    pub dropped_oversized: u64,
    /// Received datagrams that do not decode as an envelope or packet.
    pub dropped_malformed: u64,
    /// Received datagrams from a source over its rate (before any other check).
    pub dropped_source_rate_limited: u64,
    /// Received envelopes whose swarm-key tag is missing, wrong, or present when
    /// this node has no key.
    pub dropped_unauthenticated: u64,
    /// Received envelopes without a signer or signature.
    pub dropped_unsigned: u64,
    /// Received envelopes whose signature does not verify.
    pub dropped_bad_signature: u64,
    /// Received packets signed by someone other than the peer they name.
    pub dropped_signer_mismatch: u64,
    /// Received packets whose `sent_ms` is outside the freshness window of our clock.
    pub dropped_not_fresh: u64,
    /// Received packets for a namespace we neither advertise (requests, surveys)
    /// nor search (responses).
    pub dropped_namespace: u64,
    /// Received packets that we sent ourselves (multicast loopback, self-crawl).
    pub dropped_self: u64,
    /// Outgoing packets dropped because the rate-limited send queue was full.
    pub dropped_rate_limited: u64,
    /// Found peers dropped because a result stream's buffer was full.
    pub dropped_stream_full: u64,
    /// Surveys answered by a group answer that was already waiting to be sent.
    pub answers_suppressed: u64,
}

/// Why a received packet (or a result) was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Over the datagram size cap.
    Oversized,
    /// Not a well-formed envelope or packet.
    Malformed,
    /// The source sent more than its rate allows.
    SourceRateLimited,
    /// The swarm-key tag is missing or wrong (or present when we have no key).
    Unauthenticated,
    /// No signer or no signature.
    Unsigned,
    /// The signature does not verify.
    BadSignature,
    /// Signed by another peer than the packet names.
    SignerMismatch,
    /// Sent too long ago, or too far ahead, by our clock.
    NotFresh,
    /// A namespace we neither advertise nor search.
    Namespace,
    /// Our own packet.
    FromSelf,
    /// The outgoing queue was full.
    RateLimited,
    /// A result stream's buffer was full.
    StreamFull,
}

/// Live counters shared by a discovery object's tasks (all on one thread).
#[derive(Default)]
pub(crate) struct StatsCell(Cell<DiscoveryStats>);

impl StatsCell {
    /// The counters as they are now.
    pub(crate) fn snapshot(&self) -> DiscoveryStats {
        self.0.get()
    }

    fn update(&self, change: impl FnOnce(&mut DiscoveryStats)) {
        let mut stats = self.0.get();
        change(&mut stats);
        self.0.set(stats);
    }

    /// Counts one received datagram.
    pub(crate) fn received(&self) {
        self.update(|s| s.received = s.received.saturating_add(1));
    }

    /// Counts one sent datagram.
    pub(crate) fn sent(&self) {
        self.update(|s| s.sent = s.sent.saturating_add(1));
    }

    /// Counts one refused send.
    pub(crate) fn send_failed(&self) {
        self.update(|s| s.send_failed = s.send_failed.saturating_add(1));
    }

    /// Counts one survey covered by a pending group answer.
    pub(crate) fn suppressed(&self) {
        self.update(|s| s.answers_suppressed = s.answers_suppressed.saturating_add(1));
    }

    /// Counts one drop for `reason`.
    pub(crate) fn dropped(&self, reason: DropReason) {
        self.update(|s| {
            let counter = match reason {
                DropReason::Oversized => &mut s.dropped_oversized,
                DropReason::Malformed => &mut s.dropped_malformed,
                DropReason::SourceRateLimited => &mut s.dropped_source_rate_limited,
                DropReason::Unauthenticated => &mut s.dropped_unauthenticated,
                DropReason::NotFresh => &mut s.dropped_not_fresh,
                DropReason::Unsigned => &mut s.dropped_unsigned,
                DropReason::BadSignature => &mut s.dropped_bad_signature,
                DropReason::SignerMismatch => &mut s.dropped_signer_mismatch,
                DropReason::Namespace => &mut s.dropped_namespace,
                DropReason::FromSelf => &mut s.dropped_self,
                DropReason::RateLimited => &mut s.dropped_rate_limited,
                DropReason::StreamFull => &mut s.dropped_stream_full,
            };
            *counter = counter.saturating_add(1);
        });
    }
}
