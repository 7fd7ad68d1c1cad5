//! The pubsub invariants, judged on what the membership nodes published and
//! received on the traffic topic.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ww::transport::PeerId;

use crate::cluster::Observations;
use crate::scenario::verdict::{Check, Class};

/// Safety `pubsub_integrity`: every message received was published, names its
/// publisher as origin, and reaches each node at most once.
pub fn integrity(obs: &Observations, peer_of_host: &BTreeMap<String, PeerId>) -> Check {
    let mut wrong = Vec::new();
    for ((observer, payload), (origin, at, count)) in &obs.delivered {
        match obs.published.get(payload) {
            None => wrong.push(format!(
                "{observer} received {payload:?} at {:.3}s, never published",
                at.as_secs_f64()
            )),
            Some((publisher, _)) if peer_of_host.get(publisher) != Some(origin) => {
                wrong.push(format!(
                    "{observer} received {payload:?} with origin {origin}, published by {publisher}"
                ))
            }
            Some(_) => {}
        }
        if *count > 1 {
            wrong.push(format!("{observer} received {payload:?} {count} times"));
        }
    }
    let summary = format!(
        "{} published, {} receipts",
        obs.published.len(),
        obs.delivered.len()
    );
    Check::new("pubsub_integrity", Class::Safety, wrong, summary)
}

/// Liveness `pubsub_delivery_within_s`: every message published in
/// `[quiet_from + bound, end - bound]` reaches every host of `running` within
/// `bound`.
pub fn delivery_within(
    obs: &Observations,
    running: &BTreeSet<String>,
    quiet_from: Duration,
    end: Duration,
    bound: Duration,
) -> Check {
    let mut late = 0usize;
    let mut judged = 0usize;
    let mut examples = Vec::new();
    for (payload, (_, at)) in &obs.published {
        if *at < quiet_from + bound || *at + bound > end {
            continue;
        }
        judged += 1;
        for observer in running {
            let arrived = obs
                .delivered
                .get(&(observer.clone(), payload.clone()))
                .map(|(_, when, _)| *when);
            if arrived.is_none_or(|when| when > *at + bound) {
                late += 1;
                if examples.len() < 5 {
                    examples.push(format!(
                        "{payload:?} (published {:.3}s) at {observer}: {}",
                        at.as_secs_f64(),
                        arrived.map_or("never".into(), |w| format!("{:.3}s", w.as_secs_f64()))
                    ));
                }
            }
        }
    }
    let wrong = if judged == 0 {
        vec!["no message was published in the judged window".into()]
    } else if late == 0 {
        Vec::new()
    } else {
        vec![format!(
            "{late} of {} deliveries late or missing, e.g. {}",
            judged * running.len(),
            examples.join("; ")
        )]
    };
    let summary = format!("{judged} messages judged at {} nodes", running.len());
    Check::new("pubsub_delivery_within_s", Class::Liveness, wrong, summary)
}
