//! The pubsub layer: local echo, bounded subscriber buffers, and topics that
//! outlive the handle they were joined with (simulated transport).

use std::time::Duration;

use ww::pubsub::{PubSub, PubSubError};
use ww::transport::{SimConfig, SimTransport, Transport};

type HostResult = Result<(), Box<dyn std::error::Error>>;

#[test]
fn subscribers_hear_local_and_remote_messages_and_full_buffers_drop() {
    let mut sim = turmoil::Builder::new()
        .rng_seed(8)
        .simulation_duration(Duration::from_secs(10))
        .build();
    sim.client("listener", async {
        let transport = SimTransport::new(SimConfig::from_seed(8, "listener"));
        let mut subscription = {
            // The handle goes away at once; the subscription must keep the feed.
            let pubsub = PubSub::new(transport.clone());
            pubsub.join("news").subscribe(2).await?
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let talker = SimConfig::from_seed(8, "talker").identity.peer_id();
        let mut heard = Vec::new();
        while let Some(message) = subscription.try_recv() {
            if message.origin != talker {
                return Err("wrong origin".into());
            }
            heard.push(message.payload);
        }
        // Five were sent into a buffer of two: two kept, three dropped and counted
        // (in whatever order the network delivered them: pubsub does not order).
        if heard.len() != 2 || subscription.dropped() != 3 {
            return Err(format!("heard {heard:?}, dropped {}", subscription.dropped()).into());
        }
        HostResult::Ok(())
    });
    sim.client("talker", async {
        let transport = SimTransport::new(SimConfig::from_seed(8, "talker"));
        let pubsub = PubSub::new(transport.clone());
        let topic = pubsub.join("news");
        let mut own = topic.subscribe(16).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        for i in 0..5 {
            topic.publish(i.to_string().into_bytes()).await?;
        }
        // The publisher hears itself, immediately and exactly once per message.
        let mut echoed = 0;
        while let Some(message) = own.try_recv() {
            if message.origin != transport.local_peer_id() {
                return Err("echo with a foreign origin".into());
            }
            echoed += 1;
        }
        if echoed != 5 {
            return Err(format!("{echoed} echoes").into());
        }
        match topic.subscribe(0).await {
            Err(PubSubError::BadBuffer(0)) => Ok(()),
            other => Err(format!("a zero buffer was accepted: {:?}", other.is_ok()).into()),
        }
    });
    sim.run().unwrap();
}
