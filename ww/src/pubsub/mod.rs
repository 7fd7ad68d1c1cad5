//! Topics: join, publish, subscribe. Best effort, like the medium under it
//! (gossipsub on real hosts, a simulated broadcast in turmoil), with two
//! additions: a node hears its own messages, and every local subscriber has a
//! bounded buffer that drops (and counts) rather than blocks.
//!
//! # Example
//!
//! A node hears its own messages on a topic it subscribed to (and, in a
//! cluster, every member's).
//!
//! ```
//! use ww::pubsub::PubSub;
//! use ww::transport::{Identity, Libp2pConfig, Libp2pTransport};
//!
//! ww::rpc::block_on_local(async {
//!     let transport = Libp2pTransport::new(Libp2pConfig::new(Identity::generate()))?;
//!     let pubsub = PubSub::new(transport);
//!     let news = pubsub.join("news");
//!     let mut heard = news.subscribe(16).await?;
//!     news.publish(b"hello".to_vec()).await?;
//!     let message = heard.recv().await.expect("the message");
//!     assert_eq!(message.payload, b"hello");
//!     Ok::<(), Box<dyn std::error::Error>>(())
//! })??;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use tokio::sync::mpsc;

use crate::transport::{PeerId, TopicMessage, Transport, TransportError};

/// Buffer of a subscription unless the caller asks for another size.
pub const SUBSCRIPTION_BUFFER_DEFAULT: usize = 64;
/// Largest buffer a subscription may ask for.
pub const SUBSCRIPTION_BUFFER_MAX: usize = 4096;

/// A pubsub failure; nothing was published or subscribed.
#[derive(Debug, thiserror::Error)]
pub enum PubSubError {
    /// The medium refused.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// Buffers hold 1 to 4096 messages.
    #[error("subscription buffer of {0} messages: must be 1 to 4096")]
    BadBuffer(usize),
}

/// A node's pubsub service over its transport. Clones share topics.
#[derive(Clone)]
pub struct PubSub<T: Transport> {
    transport: T,
    topics: Rc<RefCell<BTreeMap<String, Rc<Fanout>>>>,
}

/// The local subscribers of one topic and the task that feeds them.
struct Fanout {
    subscribers: RefCell<Vec<Subscriber>>,
    task: RefCell<Option<tokio::task::JoinHandle<()>>>,
}

struct Subscriber {
    sender: mpsc::Sender<TopicMessage>,
    dropped: Rc<Cell<u64>>,
}

impl Drop for Fanout {
    fn drop(&mut self) {
        if let Some(task) = self.task.borrow_mut().take() {
            task.abort();
        }
    }
}

impl Fanout {
    fn deliver(&self, message: &TopicMessage) {
        self.subscribers
            .borrow_mut()
            .retain(|s| match s.sender.try_send(message.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    s.dropped.set(s.dropped.get() + 1);
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
    }
}

impl<T: Transport> PubSub<T> {
    /// Pubsub over `transport`. Must be used inside a `LocalSet`.
    pub fn new(transport: T) -> Self {
        PubSub {
            transport,
            topics: Rc::new(RefCell::new(BTreeMap::new())),
        }
    }

    /// A handle on `name`; joining costs nothing until someone subscribes.
    pub fn join(&self, name: &str) -> Topic<T> {
        Topic {
            pubsub: self.clone(),
            name: name.to_string(),
        }
    }

    fn local_peer_id(&self) -> PeerId {
        self.transport.local_peer_id()
    }

    async fn fanout(&self, name: &str) -> Result<Rc<Fanout>, PubSubError> {
        if let Some(fanout) = self.topics.borrow().get(name) {
            return Ok(fanout.clone());
        }
        let mut incoming = self.transport.subscribe_topic(name).await?;
        // Another subscribe may have raced us across the await; keep the first.
        if let Some(fanout) = self.topics.borrow().get(name) {
            return Ok(fanout.clone());
        }
        let fanout = Rc::new(Fanout {
            subscribers: RefCell::new(Vec::new()),
            task: RefCell::new(None),
        });
        let weak = Rc::downgrade(&fanout);
        let task = tokio::task::spawn_local(async move {
            while let Some(message) = incoming.recv().await {
                match weak.upgrade() {
                    Some(fanout) => fanout.deliver(&message),
                    None => return,
                }
            }
        });
        *fanout.task.borrow_mut() = Some(task);
        self.topics
            .borrow_mut()
            .insert(name.to_string(), fanout.clone());
        Ok(fanout)
    }
}

/// One topic of a [`PubSub`].
#[derive(Clone)]
pub struct Topic<T: Transport> {
    pubsub: PubSub<T>,
    name: String,
}

impl<T: Transport> Topic<T> {
    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Publishes `payload`: local subscribers get it at once, other nodes best
    /// effort. Success means handed over, not delivered.
    pub async fn publish(&self, payload: Vec<u8>) -> Result<(), PubSubError> {
        let local = self.pubsub.topics.borrow().get(&self.name).cloned();
        let message = TopicMessage {
            topic: self.name.clone(),
            origin: self.pubsub.local_peer_id(),
            payload,
        };
        self.pubsub
            .transport
            .publish_topic(&self.name, message.payload.clone())
            .await?;
        if let Some(fanout) = local {
            fanout.deliver(&message);
        }
        Ok(())
    }

    /// Subscribes with room for `buffer` waiting messages; when full, new
    /// messages are dropped and counted by [`Subscription::dropped`].
    pub async fn subscribe(&self, buffer: usize) -> Result<Subscription, PubSubError> {
        if buffer == 0 || buffer > SUBSCRIPTION_BUFFER_MAX {
            return Err(PubSubError::BadBuffer(buffer));
        }
        let fanout = self.pubsub.fanout(&self.name).await?;
        let (sender, receiver) = mpsc::channel(buffer);
        let dropped = Rc::new(Cell::new(0));
        fanout.subscribers.borrow_mut().push(Subscriber {
            sender,
            dropped: dropped.clone(),
        });
        Ok(Subscription {
            receiver,
            dropped,
            _fanout: fanout,
        })
    }
}

/// Messages of one topic for one local subscriber.
pub struct Subscription {
    receiver: mpsc::Receiver<TopicMessage>,
    dropped: Rc<Cell<u64>>,
    /// Keeps the topic's feed running while anyone listens, even if every
    /// [`PubSub`] handle is gone.
    _fanout: Rc<Fanout>,
}

impl Subscription {
    /// The next message; `None` once the topic's medium has closed.
    pub async fn recv(&mut self) -> Option<TopicMessage> {
        self.receiver.recv().await
    }

    /// The next message if one is waiting now.
    pub fn try_recv(&mut self) -> Option<TopicMessage> {
        self.receiver.try_recv().ok()
    }

    /// Messages this subscription lost because its buffer was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }
}
