//! The vendored turmoil's fix (vendor/turmoil/PATCHES.md, patch 3): random
//! message loss must not erase an explicit one-way partition. Upstream, a random
//! break of a link set both directions, and the random repair that followed
//! made both healthy, so a partitioned direction quietly worked again.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use turmoil::net::UdpSocket;

const PORT: u16 = 9000;
const DATAGRAMS: u64 = 400;

/// Sends `DATAGRAMS` datagrams to `peer` every 10 ms while counting what arrives.
async fn chatter(peer: &'static str, received: Arc<AtomicU64>) -> turmoil::Result {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, PORT)).await?;
    let target: SocketAddr = (turmoil::lookup(peer), PORT).into();
    let mut buf = [0u8; 16];
    for _ in 0..DATAGRAMS {
        socket.send_to(b"ping", target).await?;
        let deadline = tokio::time::sleep(Duration::from_millis(10));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                biased;
                _ = &mut deadline => break,
                got = socket.recv_from(&mut buf) => {
                    got?;
                    received.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }
    Ok(())
}

#[test]
fn random_loss_does_not_heal_a_one_way_partition() {
    let mut sim = turmoil::Builder::new()
        .rng_seed(7)
        .fail_rate(0.2)
        .repair_rate(0.5)
        .simulation_duration(Duration::from_secs(30))
        .build();
    let (at_a, at_b) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let counter = at_a.clone();
    sim.client("a", async move { chatter("b", counter).await });
    let counter = at_b.clone();
    sim.client("b", async move { chatter("a", counter).await });
    // Let the hosts bind, then cut a -> b only.
    sim.step().expect("step");
    sim.partition_oneway("a", "b");
    sim.run().expect("simulation");
    let (heard_by_a, heard_by_b) = (at_a.load(Ordering::SeqCst), at_b.load(Ordering::SeqCst));
    assert_eq!(
        heard_by_b, 0,
        "b heard {heard_by_b} datagrams from a through a one-way partition"
    );
    // The other direction is lossy but open: most datagrams get through, and
    // the random breaks did happen (some were lost).
    assert!(
        heard_by_a > DATAGRAMS / 4 && heard_by_a < DATAGRAMS,
        "a heard {heard_by_a} of {DATAGRAMS} from b"
    );
}
