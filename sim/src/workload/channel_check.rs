//! The channel invariants, judged on the channel log.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::channel::{parse_value, ChannelLog, RecvRecord, SendOutcome, SendRecord};
use crate::scenario::format::receiver_name;
use crate::scenario::verdict::{Check, Class};

/// Safety `channel_exactly_once`: every acknowledged value is received exactly
/// once, no value twice, none that was never sent; at capacity 0 a send is
/// acknowledged only after a receive took its value.
pub fn exactly_once(log: &ChannelLog, capacity: usize) -> Check {
    let mut wrong = Vec::new();
    let sends: BTreeMap<(usize, u64), &SendRecord> =
        log.sends.iter().map(|s| ((s.sender, s.seq), s)).collect();
    let acked: BTreeSet<(usize, u64)> = log
        .sends
        .iter()
        .filter(|s| s.outcome == SendOutcome::Acked)
        .map(|s| (s.sender, s.seq))
        .collect();
    let mut received: BTreeMap<(usize, u64), &RecvRecord> = BTreeMap::new();
    for record in &log.receives {
        let key = parse_value(&record.value).filter(|k| sends.contains_key(k));
        let Some(key) = key else {
            wrong.push(format!("received a value never sent: {record:?}"));
            continue;
        };
        if let Some(first) = received.insert(key, record) {
            wrong.push(format!("received twice: {first:?} and {record:?}"));
        }
    }
    let mut unreceived = 0;
    for key in &acked {
        match received.get(key) {
            None => unreceived += 1,
            Some(record) if capacity == 0 && record.issued > sends[key].finished => {
                wrong.push(format!(
                    "rendezvous send acknowledged before any receive took it: {:?} / {record:?}",
                    sends[key]
                ));
            }
            Some(_) => {}
        }
    }
    if acked.is_empty() {
        wrong.push("no send was acknowledged: nothing was checked".into());
    }
    if unreceived > 0 {
        let examples: Vec<String> = acked
            .iter()
            .filter(|k| !received.contains_key(k))
            .take(5)
            .map(|k| format!("{:?}", sends[k]))
            .collect();
        wrong.push(format!(
            "{unreceived} acknowledged values never received, e.g. {}",
            examples.join(", ")
        ));
    }
    let timeouts = log
        .sends
        .iter()
        .filter(|s| s.outcome == SendOutcome::Timeout)
        .count();
    let summary = format!(
        "capacity {capacity}: {} sends, {} acknowledged, {timeouts} timed out, {} received",
        log.sends.len(),
        acked.len(),
        received.len()
    );
    Check::new("channel_exactly_once", Class::Safety, wrong, summary)
}

/// Safety `channel_order`: per sender, values arrive in the order sent, within
/// each receiver and across receivers.
pub fn order(log: &ChannelLog) -> Check {
    let mut wrong = Vec::new();
    let mut per_receiver: BTreeMap<(usize, usize), u64> = BTreeMap::new();
    for record in &log.receives {
        let Some((sender, seq)) = parse_value(&record.value) else {
            continue;
        };
        if let Some(prev) = per_receiver.insert((record.receiver, sender), seq) {
            if prev >= seq {
                wrong.push(format!(
                    "{} got s{sender}-{seq} after s{sender}-{prev}",
                    receiver_name(record.receiver)
                ));
            }
        }
    }
    // Across receivers. A held link delays a reply, so arrival times at
    // different receivers do not give the channel's delivery order; the sound
    // check is by intervals: value j > i of a sender must not have *arrived*
    // before the receive that got value i was even *issued* (j was then handed
    // out before i's receive reached the channel: out of order).
    let mut by_sender: BTreeMap<(usize, u64), &RecvRecord> = BTreeMap::new();
    for record in &log.receives {
        if let Some(key) = parse_value(&record.value) {
            by_sender.entry(key).or_insert(record);
        }
    }
    let mut latest_issue: BTreeMap<usize, (Duration, &RecvRecord)> = BTreeMap::new();
    for (&(sender, _), &record) in &by_sender {
        if let Some(&(issued, earlier)) = latest_issue.get(&sender) {
            if record.at < issued {
                wrong.push(format!(
                    "out of order across receivers: {record:?} arrived before the receive of \
                     the earlier {earlier:?} was issued"
                ));
            }
        }
        let later = latest_issue
            .get(&sender)
            .is_none_or(|(issued, _)| record.issued > *issued);
        if later {
            latest_issue.insert(sender, (record.issued, record));
        }
    }
    let summary = format!(
        "{} values from {} senders",
        log.receives.len(),
        latest_issue.len()
    );
    Check::new("channel_order", Class::Safety, wrong, summary)
}

/// Liveness `channel_drains_within_s`: by `deadline`, every sender is done and
/// the channel's buffer has been sampled empty (and stayed so to the end).
pub fn drains_within(log: &ChannelLog, senders: usize, deadline: Duration) -> Check {
    let mut wrong = Vec::new();
    for sender in 0..senders {
        match log.senders_done.get(&sender) {
            Some(at) if *at <= deadline => {}
            Some(at) => wrong.push(format!(
                "sender-{sender} done at {:.3}s, after {:.3}s",
                at.as_secs_f64(),
                deadline.as_secs_f64()
            )),
            None => wrong.push(format!("sender-{sender} never finished")),
        }
    }
    match log.buffered.last() {
        Some((at, 0)) if *at <= deadline => {}
        Some((at, len)) => wrong.push(format!(
            "{len} values buffered since {:.3}s (deadline {:.3}s)",
            at.as_secs_f64(),
            deadline.as_secs_f64()
        )),
        None => wrong.push("the channel never reported its length".into()),
    }
    let summary = format!(
        "{} receive errors, {} failed connects",
        log.recv_errors.len(),
        log.connect_errors.len()
    );
    Check::new("channel_drains_within_s", Class::Liveness, wrong, summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keeps the checks honest: a log with each kind of violation is caught.
    #[test]
    fn checks_catch_each_violation() {
        let ms = Duration::from_millis;
        let send = |sender, seq, outcome| SendRecord {
            sender,
            seq,
            started: ms(seq * 100),
            finished: ms(seq * 100 + 50),
            outcome,
        };
        let got = |receiver, value: &str, issued, at| RecvRecord {
            receiver,
            value: value.to_string(),
            issued: ms(issued),
            at: ms(at),
        };
        let log = ChannelLog {
            sends: vec![
                send(0, 0, SendOutcome::Acked),
                send(0, 1, SendOutcome::Acked),
                send(0, 2, SendOutcome::Acked),
                send(0, 3, SendOutcome::Acked),
                send(1, 0, SendOutcome::Acked),
                send(1, 1, SendOutcome::Acked),
                send(1, 2, SendOutcome::Timeout),
            ],
            receives: vec![
                // s0-1 before s0-0 in one receiver's log.
                got(0, "s0-1", 0, 10),
                got(0, "s0-0", 20, 30),
                // s1-1 arrived at receiver 1 before receiver 2 even asked for s1-0.
                got(1, "s1-1", 0, 10),
                got(2, "s1-0", 20, 30),
                // Received twice; s0-3 never; a value nobody sent.
                got(1, "s0-2", 40, 50),
                got(2, "s0-2", 60, 70),
                got(2, "s7-0", 80, 90),
            ],
            buffered: vec![(ms(0), 3)],
            ..ChannelLog::default()
        };
        let once = exactly_once(&log, 8).violations;
        let ordered = order(&log).violations;
        let drained = drains_within(&log, 2, ms(1_000)).violations;
        let found = |list: &[String], needle: &str| list.iter().any(|p| p.contains(needle));
        assert!(
            found(&ordered, "receiver-0 got s0-0 after s0-1"),
            "{ordered:#?}"
        );
        assert!(
            found(&ordered, "out of order across receivers"),
            "{ordered:#?}"
        );
        assert!(found(&once, "received twice"), "{once:#?}");
        assert!(
            found(&once, "acknowledged values never received"),
            "{once:#?}"
        );
        assert!(found(&once, "never sent"), "{once:#?}");
        assert!(found(&drained, "never finished"), "{drained:#?}");
        assert!(found(&drained, "values buffered"), "{drained:#?}");
    }
}
