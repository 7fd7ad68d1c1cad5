//! Shared by the turmoil tests of discovery and membership (`boot_sim.rs`,
//! `cluster_auth.rs`): the simulation, a node on its transport, and the
//! simulated wall clock.

#![allow(dead_code)]

use std::time::Duration;

use ww::boot::WallClock;
use ww::transport::{Address, Identity, PeerId, SimConfig, SimTransport, Transport};

/// What a simulated host returns.
pub type SimResult = Result<(), Box<dyn std::error::Error>>;

/// The simulated wall clock's reading at the start of every run.
pub const EPOCH_MS: u64 = 1_700_000_000_000;

/// Simulated time plus `skew_ms` from a fixed epoch: deterministic, never the host's clock.
pub fn clock(skew_ms: i64) -> WallClock {
    WallClock::new(move || {
        let elapsed = turmoil::sim_elapsed().unwrap_or_default().as_millis();
        let now = EPOCH_MS + u64::try_from(elapsed).unwrap_or(u64::MAX);
        now.saturating_add_signed(skew_ms)
    })
}

/// The peer id host `name` has under `seed`.
pub fn peer_of(seed: u64, name: &str) -> PeerId {
    SimConfig::from_seed(seed, name).identity.peer_id()
}

/// A simulation under `seed` lasting `duration`.
pub fn sim(seed: u64, duration: Duration) -> turmoil::Sim<'static> {
    turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(duration)
        // A real socket buffers a few hundred KB; 64 datagrams would model a tiny one
        // and turn a 32-node burst into loss.
        .udp_capacity(4096)
        .build()
}

/// A simulated node listening on `/dns4/<name>/tcp/7000`.
pub async fn node(
    seed: u64,
    name: &str,
) -> Result<(SimTransport, Identity), Box<dyn std::error::Error>> {
    let config = SimConfig::from_seed(seed, name);
    let identity = config.identity.clone();
    let transport = SimTransport::new(config);
    transport
        .listen(Address::new(format!("/dns4/{name}/tcp/7000")))
        .await?;
    Ok((transport, identity))
}
