//! `ww-sched boot-server`: a meeting point for nodes where multicast is off.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use ww::boot::{BootServerConfig, BootService, RegistryLimits, WallClock};
use ww::transport::{Identity, Libp2pTransport, Transport};

use super::NetworkArgs;

/// Flags of `ww-sched boot-server`.
#[derive(Args)]
pub struct BootServerArgs {
    /// Multiaddr to listen on (repeatable); port 0 picks a free port. Defaults
    /// to every interface with --swarm-key, loopback without one.
    #[arg(long = "listen")]
    listen: Vec<String>,
    /// Key file holding the server's identity, created if missing: nodes name
    /// the server by its peer id, so keep it to keep their --discover valid.
    #[arg(long)]
    key: Option<PathBuf>,
    /// The longest registration granted, in ms; nodes re-register at half of it.
    /// At most 30,000: a served registration must be fresh for its reader.
    #[arg(long, default_value_t = 30_000)]
    ttl_max_ms: u64,
    /// Registrations kept for one namespace; more are refused until some expire.
    #[arg(long, default_value_t = 4_096)]
    per_namespace_max: usize,
    #[command(flatten)]
    network: NetworkArgs,
}

/// Serves registrations until Ctrl-C; prints the address nodes pass to --discover.
pub async fn run(args: BootServerArgs) -> Result<()> {
    let defaults = RegistryLimits::default();
    if args.ttl_max_ms == 0 || args.ttl_max_ms > defaults.ttl_max_ms {
        anyhow::bail!(
            "--ttl-max-ms must be in 1..={} (a registration served later than the \
             freshness window would be refused by its reader)",
            defaults.ttl_max_ms
        );
    }
    if args.per_namespace_max == 0 {
        anyhow::bail!("--per-namespace-max must be at least 1");
    }
    let identity = match &args.key {
        Some(path) => Identity::load_or_create(path)?,
        None => Identity::generate(),
    };
    let listen = args.network.listen_addresses(&args.listen)?;
    let transport = Libp2pTransport::new(args.network.libp2p_config(identity.clone())?)?;
    for address in &listen {
        transport
            .listen(address.clone())
            .await
            .with_context(|| format!("cannot listen on {address}"))?;
    }
    let service = BootService::new(BootServerConfig {
        limits: RegistryLimits {
            ttl_max_ms: args.ttl_max_ms,
            per_namespace_max: args.per_namespace_max,
            ..defaults
        },
        swarm_key: args.network.swarm_key()?,
        wall_clock: WallClock::host(),
        ..BootServerConfig::default()
    });
    let _serving = service.serve(&transport)?;
    // Wildcard listeners report one address per interface just after binding.
    tokio::time::sleep(Duration::from_millis(100)).await;
    println!("peer id: {}", transport.local_peer_id());
    for address in transport.listen_addresses() {
        println!(
            "boot server on {}/boot",
            address.with_peer(&transport.local_peer_id())
        );
    }
    let mut report = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = report.tick() => {
                tracing::info!(registrations = service.registrations(), "boot server");
            }
        }
    }
}
