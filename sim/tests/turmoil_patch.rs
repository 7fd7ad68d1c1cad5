//! The vendored turmoil's patches (vendor/turmoil/PATCHES.md). Patch 3: random
//! message loss must not erase an explicit one-way partition. Upstream, a random
//! break of a link set both directions, and the random repair that followed
//! made both healthy, so a partitioned direction quietly worked again.
//! Patches 1 and 4: a step visits only links with messages in flight or ready,
//! and reads each host's clock as its last tick left it; a link left idle must
//! still time what it carries from the network's present, not from when it was
//! last visited.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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

/// When (simulated) each datagram arrived at a host, by payload.
type Arrivals = Arc<Mutex<Vec<(String, Duration)>>>;

/// Receives datagrams on `PORT` for `seconds`, recording each one's arrival.
async fn listen(arrivals: Arrivals, seconds: u64) -> turmoil::Result {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, PORT)).await?;
    let mut buf = [0u8; 64];
    let until = tokio::time::sleep(Duration::from_secs(seconds));
    tokio::pin!(until);
    loop {
        tokio::select! {
            biased;
            _ = &mut until => return Ok(()),
            got = socket.recv_from(&mut buf) => {
                let (len, _) = got?;
                let at = turmoil::sim_elapsed().unwrap_or_default();
                let payload = String::from_utf8_lossy(&buf[..len]).into_owned();
                arrivals.lock().unwrap().push((payload, at));
            }
        }
    }
}

/// Sends one datagram named `payload` to `peer` at each of `at_ms`
/// (simulated), recording when it went.
async fn send_at(peer: &'static str, at_ms: Vec<u64>, sent: Arrivals) -> turmoil::Result {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, PORT)).await?;
    let target: SocketAddr = (turmoil::lookup(peer), PORT).into();
    for (i, at_ms) in at_ms.into_iter().enumerate() {
        let now = turmoil::sim_elapsed().unwrap_or_default();
        tokio::time::sleep(Duration::from_millis(at_ms).saturating_sub(now)).await;
        let payload = format!("d{i}");
        sent.lock()
            .unwrap()
            .push((payload.clone(), turmoil::sim_elapsed().unwrap_or_default()));
        socket.send_to(payload.as_bytes(), target).await?;
    }
    Ok(())
}

#[test]
fn a_link_idle_for_seconds_still_delays_by_its_latency() {
    const LATENCY: Duration = Duration::from_millis(200);
    let mut sim = turmoil::Builder::new()
        .rng_seed(3)
        .tick_duration(Duration::from_millis(10))
        .simulation_duration(Duration::from_secs(20))
        .build();
    let (sent, arrived) = (Arrivals::default(), Arrivals::default());
    let log = arrived.clone();
    sim.client("b", async move { listen(log, 12).await });
    let log = sent.clone();
    // The first datagram is sent at once; the others after the link has
    // carried nothing for seconds (so no step visited it meanwhile).
    sim.client("a", async move {
        send_at("b", vec![0, 3_000, 9_500], log).await
    });
    sim.set_link_latency("a", "b", LATENCY);
    sim.run().expect("simulation");
    let (sent, arrived) = (
        sent.lock().unwrap().clone(),
        arrived.lock().unwrap().clone(),
    );
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert_eq!(arrived.len(), 3, "{arrived:?}");
    for ((name, at), (got, heard)) in sent.iter().zip(&arrived) {
        assert_eq!(name, got);
        let took = heard.saturating_sub(*at);
        // A link whose clock was left behind would count the latency from
        // its last visit, and deliver at once.
        assert!(
            took >= LATENCY && took <= LATENCY + Duration::from_millis(20),
            "{name} sent at {at:?} arrived at {heard:?}: {took:?} for a {LATENCY:?} link"
        );
    }
}

#[test]
fn a_held_link_left_idle_delivers_on_release() {
    let mut sim = turmoil::Builder::new()
        .rng_seed(5)
        .tick_duration(Duration::from_millis(10))
        .simulation_duration(Duration::from_secs(20))
        .build();
    let (sent, arrived) = (Arrivals::default(), Arrivals::default());
    let log = arrived.clone();
    sim.client("b", async move { listen(log, 10).await });
    let log = sent.clone();
    sim.client("a", async move { send_at("b", vec![500, 600], log).await });
    sim.step().expect("step");
    sim.hold("a", "b");
    while sim.elapsed() < Duration::from_secs(4) {
        sim.step().expect("step");
    }
    assert!(arrived.lock().unwrap().is_empty(), "held, yet delivered");
    sim.release("a", "b");
    let released = sim.elapsed();
    while sim.elapsed() < released + Duration::from_millis(50) {
        sim.step().expect("step");
    }
    let arrived = arrived.lock().unwrap().clone();
    let names: Vec<&str> = arrived.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["d0", "d1"], "{arrived:?}");
    assert!(arrived.iter().all(|(_, at)| *at >= released), "{arrived:?}");
}

#[test]
fn many_senders_to_one_host_replay_exactly() {
    // Who is heard first, and when, depends on the order the network visits
    // links and on its random latencies: the same seed must give the same
    // arrivals, another seed other ones.
    let arrivals = |seed: u64| {
        let mut sim = turmoil::Builder::new()
            .rng_seed(seed)
            .tick_duration(Duration::from_millis(10))
            .simulation_duration(Duration::from_secs(10))
            .build();
        let arrived = Arrivals::default();
        let log = arrived.clone();
        sim.client("sink", async move { listen(log, 5).await });
        for i in 0..12u64 {
            let name: &'static str = Box::leak(format!("src-{i}").into_boxed_str());
            sim.client(name, async move {
                let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, PORT)).await?;
                let target: SocketAddr = (turmoil::lookup("sink"), PORT).into();
                for k in 0..20u64 {
                    tokio::time::sleep(Duration::from_millis(37 + i)).await;
                    socket
                        .send_to(format!("{name}/{k}").as_bytes(), target)
                        .await?;
                }
                Ok(())
            });
        }
        sim.run().expect("simulation");
        let mut heard = Vec::new();
        heard.extend(arrived.lock().unwrap().iter().cloned());
        heard
    };
    let first = arrivals(11);
    assert_eq!(first.len(), 240);
    assert_eq!(first, arrivals(11));
    assert_ne!(first, arrivals(12));
}
