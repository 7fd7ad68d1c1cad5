//! The gateway's live events (`GET /events`): small typed changes of tasks,
//! runs and the worker pool, for pages that show them without polling.
//!
//! The core publishes a task's and its runs' changes only when the batch that
//! holds them has committed (the same moment a held answer is released), so
//! an event never shows what a crash could take back; pool changes (never
//! stored) are published as they happen. The bus is a bounded
//! `tokio::sync::broadcast`: publishing never waits and keeps nothing when
//! nobody listens; a subscriber that falls more than [`EVENTS_CAPACITY`]
//! events behind gets one [`Event::Resync`] (reload your lists) in place of
//! what it missed. At most [`SUBSCRIBERS_MAX`] subscribers at once.

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::{broadcast, OwnedSemaphorePermit, Semaphore};

use crate::sched::{RunStatus, TaskId, TaskStatus, WorkerId};

/// Events a subscriber may fall behind before it gets [`Event::Resync`].
pub const EVENTS_CAPACITY: usize = 1024;
/// Subscribers (open `/events` streams) at once; the next one is refused.
pub const SUBSCRIBERS_MAX: usize = 64;

/// One change, as `/events` sends it (JSON with a `type`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The first event of every stream, once it is subscribed: (re)load
    /// what you show, and follow the events from here.
    Hello,
    /// A task was committed with this status (new, changed or final).
    Task {
        /// The task's id.
        id: TaskId,
        /// Its status as committed.
        status: TaskStatus,
    },
    /// A run of a task was committed in this state.
    Run {
        /// The task's id.
        task: TaskId,
        /// The run's index.
        index: u32,
        /// Its attempt (0 before the first dispatch).
        attempt: u32,
        /// Its status as committed.
        status: RunStatus,
    },
    /// A worker joined the pool (or registered again).
    WorkerJoined {
        /// Its peer id.
        peer: WorkerId,
        /// Runs it takes at once.
        slots: u32,
    },
    /// A worker left the pool.
    WorkerLeft {
        /// Its peer id.
        peer: WorkerId,
        /// Why.
        reason: String,
    },
    /// This subscriber missed `missed` events: reload whatever it shows.
    Resync {
        /// How many events it missed.
        missed: u64,
    },
}

/// The broadcast of [`Event`]s and the bound on its subscribers.
#[derive(Debug)]
pub struct EventBus {
    sender: broadcast::Sender<Event>,
    subscribers: Arc<Semaphore>,
}

impl EventBus {
    /// A bus of [`EVENTS_CAPACITY`] events and [`SUBSCRIBERS_MAX`] subscribers.
    pub fn new() -> Arc<EventBus> {
        EventBus::with_limits(EVENTS_CAPACITY, SUBSCRIBERS_MAX)
    }

    /// A bus holding `capacity` events for the slowest subscriber, with at
    /// most `subscribers_max` subscribers.
    pub fn with_limits(capacity: usize, subscribers_max: usize) -> Arc<EventBus> {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Arc::new(EventBus {
            sender,
            subscribers: Arc::new(Semaphore::new(subscribers_max)),
        })
    }

    /// Sends `event` to every subscriber; never waits, and keeps nothing
    /// when there is none.
    pub fn publish(&self, event: Event) {
        // An error only means that nobody listens.
        let _ = self.sender.send(event);
    }

    /// A new subscriber, or `None` when [`SUBSCRIBERS_MAX`] are subscribed.
    pub fn subscribe(&self) -> Option<Subscription> {
        let permit = self.subscribers.clone().try_acquire_owned().ok()?;
        Some(Subscription {
            receiver: self.sender.subscribe(),
            _permit: permit,
        })
    }

    /// Subscribers at the moment.
    pub fn subscribers(&self) -> usize {
        self.sender.receiver_count()
    }
}

/// One subscriber's events, from the moment it subscribed.
#[derive(Debug)]
pub struct Subscription {
    receiver: broadcast::Receiver<Event>,
    _permit: OwnedSemaphorePermit,
}

impl Subscription {
    /// The next event: [`Event::Resync`] after falling behind; `None` once
    /// the bus is gone.
    pub async fn next(&mut self) -> Option<Event> {
        match self.receiver.recv().await {
            Ok(event) => Some(event),
            Err(broadcast::error::RecvError::Lagged(missed)) => Some(Event::Resync { missed }),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u8) -> WorkerId {
        WorkerId::from(ww::transport::Identity::from_secret([n; 32]).peer_id())
    }

    fn worker(n: u8) -> Event {
        Event::WorkerJoined {
            peer: peer(n),
            slots: u32::from(n),
        }
    }

    #[tokio::test]
    async fn a_lagging_subscriber_gets_resync_then_the_rest() {
        let bus = EventBus::with_limits(4, 8);
        let mut sub = bus.subscribe().unwrap();
        for n in 0..10 {
            bus.publish(worker(n));
        }
        assert_eq!(sub.next().await, Some(Event::Resync { missed: 6 }));
        for n in 6..10 {
            assert_eq!(sub.next().await, Some(worker(n)));
        }
    }

    #[test]
    fn subscribers_are_bounded_and_freed_on_drop() {
        let bus = EventBus::with_limits(4, 2);
        let a = bus.subscribe().unwrap();
        let _b = bus.subscribe().unwrap();
        assert!(bus.subscribe().is_none());
        drop(a);
        assert!(bus.subscribe().is_some());
    }

    #[test]
    fn events_serialize_with_their_type() {
        let run = Event::Run {
            task: TaskId::parse("t").unwrap(),
            index: 2,
            attempt: 1,
            status: RunStatus::TimedOut,
        };
        assert_eq!(
            serde_json::to_value(&run).unwrap(),
            serde_json::json!({"type":"run","task":"t","index":2,"attempt":1,"status":"timed_out"})
        );
        let left = Event::WorkerLeft {
            peer: peer(1),
            reason: "r".into(),
        };
        let left = serde_json::to_value(&left).unwrap();
        assert_eq!(left["type"], "worker_left");
        assert_eq!(left["peer"], peer(1).as_str());
    }
}
