//! Result streams: a bounded buffer between a socket loop and a `find_peers` caller.

use std::cell::Cell;
use std::collections::{BTreeSet, VecDeque};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::PeerInfo;
use crate::transport::PeerId;

/// How many found peers a stream buffers before newer ones are dropped.
pub const STREAM_BUFFER: usize = 16;
/// How many distinct peers one stream remembers for deduplication.
pub const STREAM_SEEN_MAX: usize = 4096;

/// Peers found in a namespace, each at most once; ends after its limit, when its
/// source is done, or when the discovery object is dropped.
pub struct PeerStream {
    ready: VecDeque<PeerInfo>,
    live: Option<mpsc::Receiver<PeerInfo>>,
    _task: Option<TaskGuard>,
}

impl PeerStream {
    /// A stream that yields `peers` (deduplicated by id, at most `limit`) and ends.
    pub fn from_peers(peers: Vec<PeerInfo>, limit: Option<usize>) -> Self {
        let mut seen = BTreeSet::new();
        let ready = peers
            .into_iter()
            .filter(|p| seen.insert(p.peer))
            .take(limit.unwrap_or(usize::MAX))
            .collect();
        PeerStream {
            ready,
            live: None,
            _task: None,
        }
    }

    /// A live stream and the sink that feeds it; the stream ends when the sink is
    /// dropped or has delivered `limit` peers.
    pub fn channel(limit: Option<usize>) -> (PeerSink, PeerStream) {
        let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
        let progress = Rc::new(SinkProgress::default());
        if limit == Some(0) {
            progress.closed.set(true);
        }
        let sink = PeerSink {
            sender: (limit != Some(0)).then_some(sender),
            seen: BTreeSet::new(),
            remaining: limit,
            progress,
        };
        let stream = PeerStream {
            ready: VecDeque::new(),
            live: Some(receiver),
            _task: None,
        };
        (sink, stream)
    }

    /// Ties `task` to this stream: dropping the stream stops the task.
    pub(crate) fn owning(mut self, task: JoinHandle<()>) -> Self {
        self._task = Some(TaskGuard(task));
        self
    }
}

impl futures::Stream for PeerStream {
    type Item = PeerInfo;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<PeerInfo>> {
        if let Some(peer) = self.ready.pop_front() {
            return Poll::Ready(Some(peer));
        }
        match self.live.as_mut() {
            Some(receiver) => receiver.poll_recv(cx),
            None => Poll::Ready(None),
        }
    }
}

impl std::fmt::Debug for PeerStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerStream")
            .field("ready", &self.ready.len())
            .field("live", &self.live.is_some())
            .finish()
    }
}

/// What became of a peer offered to a [`PeerSink`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offer {
    /// Queued for the stream.
    Delivered,
    /// Already delivered on this stream.
    Duplicate,
    /// Dropped: the stream's buffer (or its memory of seen peers) is full.
    Full,
    /// Dropped: the stream has ended (limit reached or receiver dropped).
    Closed,
}

/// How a sink is doing, readable by tasks that do not own it.
#[derive(Default, Debug)]
pub struct SinkProgress {
    found: Cell<usize>,
    closed: Cell<bool>,
}

impl SinkProgress {
    /// Peers delivered so far.
    pub fn found(&self) -> usize {
        self.found.get()
    }

    /// Whether the stream takes no more peers.
    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }
}

/// The feeding end of a [`PeerStream`]: deduplicates, enforces the limit, never blocks.
pub struct PeerSink {
    sender: Option<mpsc::Sender<PeerInfo>>,
    seen: BTreeSet<PeerId>,
    remaining: Option<usize>,
    progress: Rc<SinkProgress>,
}

impl PeerSink {
    /// Whether `peer` was delivered to this stream already (or it is closed:
    /// nothing more is wanted either way).
    pub fn has(&self, peer: &PeerId) -> bool {
        self.sender.is_none() || self.seen.contains(peer)
    }

    /// Offers a found peer without waiting; a full buffer drops it (it may be offered again).
    pub fn offer(&mut self, peer: PeerInfo) -> Offer {
        let Some(sender) = &self.sender else {
            return Offer::Closed;
        };
        if self.seen.contains(&peer.peer) {
            return Offer::Duplicate;
        }
        if self.seen.len() >= STREAM_SEEN_MAX {
            return Offer::Full;
        }
        let id = peer.peer;
        match sender.try_send(peer) {
            Ok(()) => self.delivered(id),
            Err(mpsc::error::TrySendError::Full(_)) => Offer::Full,
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.close();
                Offer::Closed
            }
        }
    }

    /// Offers a found peer, waiting for room in the buffer: for sources that
    /// can wait (another stream), unlike a socket loop.
    pub async fn deliver(&mut self, peer: PeerInfo) -> Offer {
        let Some(sender) = self.sender.clone() else {
            return Offer::Closed;
        };
        if self.seen.contains(&peer.peer) {
            return Offer::Duplicate;
        }
        if self.seen.len() >= STREAM_SEEN_MAX {
            return Offer::Full;
        }
        let id = peer.peer;
        match sender.reserve_owned().await {
            Ok(permit) => {
                permit.send(peer);
                self.delivered(id)
            }
            Err(_) => {
                self.close();
                Offer::Closed
            }
        }
    }

    /// Books a peer just queued: seen, counted, and the limit closer.
    fn delivered(&mut self, id: PeerId) -> Offer {
        self.seen.insert(id);
        self.progress.found.set(self.progress.found.get() + 1);
        if let Some(remaining) = &mut self.remaining {
            *remaining = remaining.saturating_sub(1);
            if *remaining == 0 {
                self.close();
            }
        }
        Offer::Delivered
    }

    /// Whether the stream takes no more peers (limit reached or stream dropped).
    pub fn is_closed(&self) -> bool {
        self.sender.as_ref().is_none_or(|s| s.is_closed())
    }

    /// A handle for watching this sink from elsewhere.
    pub fn progress(&self) -> Rc<SinkProgress> {
        self.progress.clone()
    }

    fn close(&mut self) {
        // Dropping the sender ends the stream once its buffer is drained.
        self.sender = None;
        self.progress.closed.set(true);
    }
}

/// Aborts a background task when dropped.
pub(crate) struct TaskGuard(pub(crate) JoinHandle<()>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Identity;
    use futures::StreamExt;

    fn info(n: u8) -> PeerInfo {
        PeerInfo {
            peer: Identity::from_secret([n; 32]).peer_id(),
            addresses: Vec::new(),
        }
    }

    #[tokio::test]
    async fn sink_deduplicates_and_ends_at_limit() {
        let (mut sink, stream) = PeerStream::channel(Some(2));
        assert_eq!(sink.offer(info(1)), Offer::Delivered);
        assert_eq!(sink.offer(info(1)), Offer::Duplicate);
        assert_eq!(sink.offer(info(2)), Offer::Delivered);
        assert_eq!(sink.offer(info(3)), Offer::Closed);
        assert!(sink.is_closed());
        let got: Vec<_> = stream.collect().await;
        assert_eq!(got, vec![info(1), info(2)]);
    }

    #[tokio::test]
    async fn full_buffer_drops_newest_without_blocking() {
        let (mut sink, mut stream) = PeerStream::channel(None);
        for n in 0..STREAM_BUFFER as u8 {
            assert_eq!(sink.offer(info(n)), Offer::Delivered);
        }
        let extra = STREAM_BUFFER as u8;
        assert_eq!(sink.offer(info(extra)), Offer::Full);
        assert_eq!(stream.next().await, Some(info(0)));
        // Not remembered as seen, so it can still arrive later.
        assert_eq!(sink.offer(info(extra)), Offer::Delivered);
        assert_eq!(sink.progress().found(), STREAM_BUFFER + 1);
    }

    #[tokio::test]
    async fn dropped_stream_closes_sink() {
        let (mut sink, stream) = PeerStream::channel(None);
        drop(stream);
        assert!(sink.is_closed());
        assert_eq!(sink.offer(info(1)), Offer::Closed);
    }

    #[tokio::test]
    async fn static_stream_deduplicates_truncates_and_ends() {
        let stream = PeerStream::from_peers(vec![info(1), info(1), info(2), info(3)], Some(2));
        let got: Vec<_> = stream.collect().await;
        assert_eq!(got, vec![info(1), info(2)]);
    }
}
