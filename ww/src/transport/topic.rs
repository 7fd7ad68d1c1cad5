//! The pubsub medium a transport provides: best-effort delivery of topic messages
//! to every node subscribed to the topic, each message tagged with its origin.
//!
//! Real hosts use gossipsub (origins authenticated by message signatures); the
//! simulation broadcasts datagrams to one multicast group. Neither delivers a
//! node's own messages back to it; the pubsub layer above does that locally.

use std::collections::BTreeMap;

use tokio::sync::mpsc;

use super::PeerId;

/// Messages waiting per transport-level subscriber; beyond this they are dropped.
pub const TOPIC_QUEUE_MAX: usize = 256;
/// Largest payload a topic message may carry.
pub const TOPIC_PAYLOAD_MAX: usize = 8 * 1024;
/// Longest topic name.
pub const TOPIC_NAME_MAX: usize = 128;

/// One message received on a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicMessage {
    /// The topic it was published on.
    pub topic: String,
    /// The node that published it.
    pub origin: PeerId,
    /// What it carries.
    pub payload: Vec<u8>,
}

/// Messages of one topic as the transport receives them.
pub struct TopicReceiver(mpsc::Receiver<TopicMessage>);

impl TopicReceiver {
    /// The next message; `None` once the transport has shut down.
    pub async fn recv(&mut self) -> Option<TopicMessage> {
        self.0.recv().await
    }

    /// The next message if one is waiting now.
    pub fn try_recv(&mut self) -> Option<TopicMessage> {
        self.0.try_recv().ok()
    }
}

/// Who, on this node, listens to which topic. Delivery never blocks: a full
/// subscriber loses the message and the loss is counted.
#[derive(Default)]
pub(crate) struct TopicSubscribers {
    by_topic: BTreeMap<String, Vec<mpsc::Sender<TopicMessage>>>,
    dropped: u64,
}

impl TopicSubscribers {
    /// Adds a subscriber; the flag says whether it is the topic's first.
    pub(crate) fn add(&mut self, topic: &str) -> (TopicReceiver, bool) {
        let (sender, receiver) = mpsc::channel(TOPIC_QUEUE_MAX);
        let senders = self.by_topic.entry(topic.to_string()).or_default();
        senders.retain(|s| !s.is_closed());
        let first = senders.is_empty();
        senders.push(sender);
        (TopicReceiver(receiver), first)
    }

    /// Hands `message` to every live subscriber of its topic.
    pub(crate) fn deliver(&mut self, message: &TopicMessage) {
        let Some(senders) = self.by_topic.get_mut(&message.topic) else {
            return;
        };
        senders.retain(|sender| match sender.try_send(message.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped += 1;
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
    }

    /// Messages lost because a subscriber was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// Checks a topic name and payload against the medium's limits.
pub(crate) fn check_topic(topic: &str, payload_len: usize) -> Result<(), super::TransportError> {
    if topic.is_empty() || topic.len() > TOPIC_NAME_MAX {
        return Err(super::TransportError::InvalidTopic(
            topic.chars().take(64).collect(),
        ));
    }
    if payload_len > TOPIC_PAYLOAD_MAX {
        return Err(super::TransportError::PayloadTooLarge {
            len: payload_len,
            max: TOPIC_PAYLOAD_MAX,
        });
    }
    Ok(())
}

/// The simulated broadcast's datagram: `WWP1`, origin, topic, payload; in a
/// private network `WWP2`, the same fields, then the swarm key's tag of all that
/// precedes it (the simulation's stand-in for pnet: a node without the key can
/// neither be heard nor forge a member's messages).
#[cfg(feature = "sim")]
pub(crate) mod sim_frame {
    use super::{PeerId, TopicMessage};
    use crate::transport::{SwarmKey, TAG_BYTES};

    const MAGIC_OPEN: &[u8; 4] = b"WWP1";
    const MAGIC_KEYED: &[u8; 4] = b"WWP2";
    const TAG_DOMAIN: &[u8] = b"ww-sched/sim/topic/v1";

    /// Encodes one message as one datagram, tagged under `key` if there is one.
    pub(crate) fn encode(
        origin: &PeerId,
        topic: &str,
        payload: &[u8],
        key: Option<&SwarmKey>,
    ) -> Vec<u8> {
        let origin = origin.to_bytes();
        let mut out =
            Vec::with_capacity(6 + origin.len() + topic.len() + payload.len() + TAG_BYTES);
        out.extend_from_slice(if key.is_some() {
            MAGIC_KEYED
        } else {
            MAGIC_OPEN
        });
        // Both lengths are checked against u8 by `check_topic` and PeerId's size.
        out.push(origin.len() as u8);
        out.extend_from_slice(&origin);
        out.push(topic.len() as u8);
        out.extend_from_slice(topic.as_bytes());
        out.extend_from_slice(payload);
        if let Some(key) = key {
            let tag = key.tag(TAG_DOMAIN, &out);
            out.extend_from_slice(&tag);
        }
        out
    }

    /// Decodes a datagram; `None` for anything malformed, or not proven under
    /// `key` (or proven under some key when this node has none).
    pub(crate) fn decode(bytes: &[u8], key: Option<&SwarmKey>) -> Option<TopicMessage> {
        let rest = match key {
            None => bytes.strip_prefix(MAGIC_OPEN.as_slice())?,
            Some(key) => {
                let split = bytes.len().checked_sub(TAG_BYTES)?;
                let (signed, tag) = bytes.split_at(split);
                if !key.verify(TAG_DOMAIN, signed, tag) {
                    return None;
                }
                signed.strip_prefix(MAGIC_KEYED.as_slice())?
            }
        };
        let (&origin_len, rest) = rest.split_first()?;
        let origin_len = usize::from(origin_len);
        if rest.len() < origin_len {
            return None;
        }
        let (origin, rest) = rest.split_at(origin_len);
        let (&topic_len, rest) = rest.split_first()?;
        let topic_len = usize::from(topic_len);
        if rest.len() < topic_len {
            return None;
        }
        let (topic, payload) = rest.split_at(topic_len);
        Some(TopicMessage {
            topic: std::str::from_utf8(topic).ok()?.to_string(),
            origin: PeerId::from_bytes(origin).ok()?,
            payload: payload.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Identity;

    #[cfg(feature = "sim")]
    #[test]
    fn sim_frames_round_trip_and_reject_garbage() {
        let origin = Identity::from_secret([4; 32]).peer_id();
        let bytes = sim_frame::encode(&origin, "ww", b"beat", None);
        let message = sim_frame::decode(&bytes, None).unwrap();
        assert_eq!(message.origin, origin);
        assert_eq!(
            (message.topic.as_str(), message.payload.as_slice()),
            ("ww", &b"beat"[..])
        );
        for cut in 0..bytes.len() - 4 {
            // Every cut before the payload is malformed; cuts inside it shorten it.
            if let Some(m) = sim_frame::decode(&bytes[..cut], None) {
                assert!(m.payload.len() < 4);
            }
        }
        assert!(sim_frame::decode(b"nope", None).is_none());
    }

    #[cfg(feature = "sim")]
    #[test]
    fn keyed_sim_frames_are_heard_only_by_holders_of_the_key() {
        use crate::transport::{SwarmKey, TAG_BYTES};
        let origin = Identity::from_secret([4; 32]).peer_id();
        let key = SwarmKey::from_bytes([1; 32]);
        let other = SwarmKey::from_bytes([2; 32]);
        let keyed = sim_frame::encode(&origin, "ww", b"beat", Some(&key));
        assert_eq!(
            sim_frame::decode(&keyed, Some(&key)).unwrap().payload,
            b"beat"
        );
        assert!(sim_frame::decode(&keyed, Some(&other)).is_none());
        assert!(sim_frame::decode(&keyed, None).is_none());
        let open = sim_frame::encode(&origin, "ww", b"beat", None);
        assert!(sim_frame::decode(&open, Some(&key)).is_none());
        let mut forged = keyed.clone();
        let last_payload = forged.len() - TAG_BYTES - 1;
        forged[last_payload] ^= 1;
        assert!(sim_frame::decode(&forged, Some(&key)).is_none());
    }

    #[test]
    fn full_subscribers_lose_messages_and_count_them() {
        let mut subscribers = TopicSubscribers::default();
        let (mut receiver, first) = subscribers.add("t");
        assert!(first);
        let message = TopicMessage {
            topic: "t".into(),
            origin: Identity::from_secret([5; 32]).peer_id(),
            payload: vec![1],
        };
        for _ in 0..TOPIC_QUEUE_MAX + 3 {
            subscribers.deliver(&message);
        }
        assert_eq!(subscribers.dropped(), 3);
        let mut got = 0;
        while receiver.0.try_recv().is_ok() {
            got += 1;
        }
        assert_eq!(got, TOPIC_QUEUE_MAX);
    }
}
