//! Unit tests of the channel state machine, one rule each.

use super::*;
use Effect::*;

fn chan(capacity: usize) -> Chan<u32> {
    let c = Chan::new(ChanConfig {
        capacity,
        waiting_max: 8,
    });
    c.expect("config in bounds")
}

fn offer(recv: OpId, value: u32) -> Effect<u32> {
    Offer { recv, value }
}

#[test]
fn rendezvous_send_completes_only_on_commit() {
    let mut c = chan(0);
    assert_eq!(c.send(1, 10), vec![]);
    assert_eq!(c.waiting_senders(), 1);
    assert_eq!(c.recv(2), vec![offer(2, 10)]);
    assert_eq!(c.in_flight(), 1);
    assert_eq!(c.commit(2), Ok(vec![SendDone(1)]));
    assert_eq!((c.in_flight(), c.waiting_senders(), c.len()), (0, 0, 0));
    // Receiver first, then sender: still completes only on commit.
    assert_eq!(c.recv(3), vec![]);
    assert_eq!(c.send(4, 11), vec![offer(3, 11)]);
    assert_eq!(c.commit(3), Ok(vec![SendDone(4)]));
}

#[test]
fn two_senders_wake_both_waiting_receivers() {
    // The Go SyncChan could leave the second receiver asleep here.
    for cap in [0, 1] {
        let mut c = chan(cap);
        assert!(c.recv(1).is_empty() && c.recv(2).is_empty());
        let mut fx = c.send(3, 30);
        fx.extend(c.send(4, 40));
        assert!(
            fx.contains(&offer(1, 30)) && fx.contains(&offer(2, 40)),
            "{fx:?}"
        );
        assert_eq!(c.waiting_receivers(), 0);
    }
}

#[test]
fn buffered_fifo_and_blocked_sender_promoted() {
    let mut c = chan(2);
    assert_eq!(c.send(1, 10), vec![SendDone(1)]);
    assert_eq!(c.send(2, 20), vec![SendDone(2)]);
    assert_eq!(c.send(3, 30), vec![]);
    assert_eq!((c.len(), c.waiting_senders()), (2, 1));
    assert_eq!(c.recv(4), vec![offer(4, 10), SendDone(3)]);
    assert_eq!(c.recv(5), vec![offer(5, 20)]);
    assert_eq!(c.recv(6), vec![offer(6, 30)]);
}

#[test]
fn abort_puts_value_back_at_front() {
    let mut c = chan(2);
    c.send(1, 10);
    c.send(2, 20);
    assert_eq!(c.recv(3), vec![offer(3, 10)]);
    c.send(4, 40);
    assert_eq!(c.abort(3), Ok(vec![]));
    assert_eq!(c.len(), 3, "capacity + 1 after an abort");
    assert_eq!(c.recv(5), vec![offer(5, 10)]);
    assert_eq!(c.recv(6), vec![offer(6, 20)]);
}

#[test]
fn aborts_in_any_order_keep_entry_order() {
    for first in [1, 2] {
        let mut c = chan(1);
        c.recv(1);
        c.recv(2);
        c.send(3, 30);
        c.send(4, 40);
        c.send(5, 50);
        assert_eq!(c.abort(first), Ok(vec![]));
        assert_eq!(c.abort(3 - first), Ok(vec![]));
        assert_eq!(c.len(), 3, "capacity + 2 after two aborts");
        assert_eq!(c.recv(6), vec![offer(6, 30)]);
        assert_eq!(c.recv(7), vec![offer(7, 40)]);
        assert_eq!(c.recv(8), vec![offer(8, 50)]);
    }
}

#[test]
fn abort_reoffers_to_next_receiver_and_rendezvous_sender_waits_at_head() {
    let mut c = chan(0);
    c.send(1, 10);
    c.send(2, 20);
    assert_eq!(c.recv(3), vec![offer(3, 10)]);
    assert_eq!(c.recv(4), vec![offer(4, 20)]);
    assert_eq!(c.abort(3), Ok(vec![]));
    assert_eq!(c.waiting_senders(), 1);
    assert_eq!(c.recv(5), vec![offer(5, 10)]);
    assert_eq!(c.commit(5), Ok(vec![SendDone(1)]));
    assert_eq!(c.commit(4), Ok(vec![SendDone(2)]));
    // An abort with a receive waiting goes straight to it.
    c.recv(6);
    c.recv(7);
    c.send(8, 80);
    assert_eq!(c.abort(6), Ok(vec![offer(7, 80)]));
}

#[test]
fn close_delivers_buffered_then_fails() {
    let mut c = chan(1);
    c.send(1, 10);
    c.send(2, 20);
    assert_eq!(c.close(), Ok(vec![SendFailed(2, ChanError::Closed)]));
    assert_eq!(c.close(), Err(ChanError::AlreadyClosed));
    assert!(c.is_closed() && c.len() == 1);
    assert_eq!(c.send(3, 30), vec![SendFailed(3, ChanError::Closed)]);
    assert_eq!(c.recv(4), vec![offer(4, 10)]);
    // An offer is out and could come back, so this receive waits.
    assert_eq!(c.recv(5), vec![]);
    assert_eq!(c.abort(4), Ok(vec![offer(5, 10)]));
    c.recv(6);
    assert_eq!(c.commit(5), Ok(vec![RecvFailed(6, ChanError::Closed)]));
    assert_eq!(c.recv(7), vec![RecvFailed(7, ChanError::Closed)]);
}

#[test]
fn close_rendezvous_with_offers_out() {
    let mut c = chan(0);
    c.send(1, 10);
    c.send(2, 20);
    c.send(9, 90);
    c.recv(3);
    c.recv(4);
    assert_eq!(c.close(), Ok(vec![SendFailed(9, ChanError::Closed)]));
    // A rendezvous value cannot come back after close, so receives fail now.
    assert_eq!(c.recv(5), vec![RecvFailed(5, ChanError::Closed)]);
    assert_eq!(c.commit(3), Ok(vec![SendDone(1)]));
    assert_eq!(c.abort(4), Ok(vec![SendFailed(2, ChanError::Closed)]));
    assert_eq!(c.pending(), 0);
}

#[test]
fn cancel_withdraws_without_trace() {
    let mut c = chan(0);
    c.send(1, 10);
    c.send(2, 20);
    assert_eq!(c.cancel(1), vec![]);
    assert_eq!(c.recv(3), vec![offer(3, 20)]);
    // Cancelling the offered sender: commit then names nobody.
    assert_eq!(c.cancel(2), vec![]);
    assert_eq!(c.commit(3), Ok(vec![]));
    c.send(4, 40);
    c.recv(5);
    c.cancel(4);
    assert_eq!(c.abort(5), Ok(vec![]), "withdrawn value is dropped");
    assert_eq!((c.waiting_senders(), c.in_flight()), (0, 0));
    // Cancelling an offered receive is an abort; unknown ids are a no-op.
    let mut b = chan(1);
    b.send(6, 60);
    b.recv(7);
    b.recv(8);
    assert_eq!(b.cancel(7), vec![offer(8, 60)]);
    assert_eq!(b.waiting_receivers(), 0);
    assert_eq!(b.cancel(8), vec![]);
    assert_eq!(b.cancel(99), vec![]);
    assert_eq!(b.len(), 1);
    assert_eq!(b.check_invariants(), Ok(()));
}

#[test]
fn bounds_and_bad_ids() {
    let mut c = Chan::new(ChanConfig {
        capacity: 1,
        waiting_max: 2,
    })
    .expect("in bounds");
    c.send(1, 10);
    c.send(2, 20);
    c.send(3, 30);
    let full = ChanError::QueueFull { pending: 2, max: 2 };
    assert_eq!(c.send(4, 40), vec![SendFailed(4, full.clone())]);
    assert_eq!(
        c.send(2, 21),
        vec![SendFailed(2, ChanError::DuplicateOp(2))]
    );
    assert_eq!(c.recv(3), vec![RecvFailed(3, ChanError::DuplicateOp(3))]);
    // This receive frees room for a blocked sender, so it is not refused.
    assert_eq!(c.recv(5), vec![offer(5, 10), SendDone(2)]);
    assert_eq!(c.commit(6), Err(ChanError::UnknownOp(6)));
    assert_eq!(c.abort(6), Err(ChanError::UnknownOp(6)));
    assert_eq!(c.recv(7), vec![offer(7, 20), SendDone(3)]);
    assert_eq!(
        c.recv(8),
        vec![RecvFailed(8, ChanError::QueueFull { pending: 2, max: 2 })]
    );
    assert!(Chan::<u32>::new(ChanConfig {
        capacity: CAPACITY_LIMIT + 1,
        waiting_max: 1
    })
    .is_err());
    assert!(Chan::<u32>::new(ChanConfig {
        capacity: 0,
        waiting_max: WAITING_LIMIT + 1
    })
    .is_err());
    assert_eq!(ChanConfig::default().waiting_max, WAITING_MAX_DEFAULT);
}
