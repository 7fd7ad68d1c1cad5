//! The subcommands of `ww-sched`, one file each, and what they share.

pub mod anchor;
pub mod boot_server;
pub mod call;
pub mod demo;
pub mod gateway;
mod host;
pub mod http;
pub mod keys;
pub mod logs;
pub mod peers;
pub mod process;
pub mod record;
pub mod run_local;
pub mod submit;
pub mod worker;

use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use ww::boot::{AnyDiscovery, DiscoverySpec, WallClock, DEFAULT_DISCOVER};
use ww::cluster::{parse_meta, Membership, MembershipConfig};
use ww::exec::Limits;
use ww::pubsub::PubSub;
use ww::transport::{Address, Identity, Libp2pConfig, SwarmKey, Transport};

/// Largest module file the CLI reads.
const MODULE_FILE_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// How a listing command prints: a table for people, JSON for programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns with a header line.
    Table,
    /// One JSON array.
    Json,
}

/// Runs a node's async work on a current-thread runtime with a `LocalSet`.
pub fn on_node_thread(work: impl Future<Output = Result<()>>) -> Result<()> {
    ww::rpc::block_on_local(work).context("cannot start the node's runtime")?
}

/// Reads a module file, refusing anything over the size limit before reading it.
pub fn read_module(path: &Path) -> Result<Vec<u8>> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read module {}", path.display()))?
        .len();
    if size > MODULE_FILE_BYTES_MAX {
        bail!(
            "module {} is {size} bytes; the limit is {MODULE_FILE_BYTES_MAX}",
            path.display()
        );
    }
    std::fs::read(path).with_context(|| format!("cannot read module {}", path.display()))
}

/// Sandbox limits as flags.
#[derive(Args)]
pub struct LimitArgs {
    /// Most fuel (about one unit per WASM instruction) a run may burn.
    #[arg(long, default_value_t = Limits::default().fuel_max)]
    pub fuel_max: u64,
    /// Most 64 KiB memory pages a run may use.
    #[arg(long, default_value_t = Limits::default().memory_pages_max)]
    pub memory_pages_max: u32,
    /// Most wall-clock milliseconds a run may take.
    #[arg(long, default_value_t = Limits::default().wall_time_ms)]
    pub wall_time_ms: u64,
}

impl LimitArgs {
    /// The limits these flags describe.
    pub fn limits(&self) -> Limits {
        Limits {
            fuel_max: self.fuel_max,
            memory_pages_max: self.memory_pages_max,
            wall_time_ms: self.wall_time_ms,
        }
    }
}

/// Who may connect: the cluster's swarm key, or the explicit choice to run open.
#[derive(Args, Clone, Debug, Default)]
pub struct NetworkArgs {
    /// The cluster's swarm key file (make one with `ww-sched swarm-key`). Every
    /// node of a cluster needs the same one: connections are encrypted under it
    /// and discovery packets and heartbeats are authenticated with it, so a node
    /// without it can neither connect, nor be discovered, nor join the view.
    /// Without a key a node listens on loopback only (see --insecure-open).
    #[arg(long, env = "WW_SCHED_SWARM_KEY", value_name = "FILE")]
    pub swarm_key: Option<PathBuf>,
    /// Listen beyond loopback without a swarm key: anyone who can reach this
    /// node can then connect, call it and join its cluster. For trusted networks only.
    #[arg(long)]
    pub insecure_open: bool,
}

impl NetworkArgs {
    /// Reads the swarm key, if one was given.
    pub fn swarm_key(&self) -> Result<Option<SwarmKey>> {
        let Some(path) = &self.swarm_key else {
            return Ok(None);
        };
        Ok(Some(SwarmKey::load(path)?))
    }

    /// The transport's settings for `identity` under these flags.
    pub fn libp2p_config(&self, identity: Identity) -> Result<Libp2pConfig> {
        let key = self.swarm_key()?;
        if let Some(key) = &key {
            tracing::info!(fingerprint = %key.fingerprint(), "private network");
        }
        Ok(Libp2pConfig::new(identity).with_swarm_key(key))
    }

    /// The addresses to listen on: `given`, or by default every interface with a
    /// swarm key and loopback without one. Refuses a non-loopback address
    /// without a key unless --insecure-open was given.
    pub fn listen_addresses(&self, given: &[String]) -> Result<Vec<Address>> {
        if given.is_empty() {
            let default = if self.swarm_key.is_some() {
                "/ip4/0.0.0.0/tcp/0"
            } else {
                "/ip4/127.0.0.1/tcp/0"
            };
            return Ok(vec![Address::new(default)]);
        }
        let mut addresses = Vec::with_capacity(given.len());
        for text in given {
            if self.swarm_key.is_none() && !self.insecure_open && !is_loopback_multiaddr(text) {
                bail!(
                    "refusing to listen on {text} without a swarm key: anyone who can reach \
                     it could join the cluster. Give every node --swarm-key FILE (make one \
                     with `ww-sched swarm-key > swarm.key`), or --insecure-open on a \
                     trusted network"
                );
            }
            addresses.push(Address::new(text.clone()));
        }
        Ok(addresses)
    }

    /// Refuses discovery beyond this machine (multicast on another interface, a
    /// CIDR crawl) without a swarm key unless --insecure-open was given: its
    /// packets could not be authenticated.
    pub fn check_discovery(&self, spec: &DiscoverySpec) -> Result<()> {
        if self.swarm_key.is_some() || self.insecure_open {
            return Ok(());
        }
        fn local(spec: &DiscoverySpec) -> bool {
            match spec {
                // Peers named one by one (or a boot server): connections to them
                // are authenticated by their ids, whatever the network.
                DiscoverySpec::None | DiscoverySpec::Static(_) | DiscoverySpec::Boot(_) => true,
                DiscoverySpec::Multicast { interface, .. } => interface.is_loopback(),
                DiscoverySpec::Cidr { network, .. } => network.is_loopback(),
                DiscoverySpec::All(parts) => parts.iter().all(local),
            }
        }
        if !local(spec) {
            bail!(
                "refusing discovery beyond this machine without a swarm key (its packets \
                 could not be authenticated). Give every node --swarm-key FILE, or \
                 --insecure-open on a trusted network"
            );
        }
        Ok(())
    }
}

/// Whether a multiaddr's host is a loopback IP (`/ip4/127.x`, `/ip6/::1`);
/// wildcards, other IPs and DNS names are not.
pub fn is_loopback_multiaddr(text: &str) -> bool {
    let mut parts = text.split('/').skip(1);
    match (parts.next(), parts.next()) {
        (Some("ip4" | "ip6"), Some(ip)) => ip.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()),
        _ => false,
    }
}

/// How a node finds and joins the cluster.
#[derive(Args)]
pub struct ClusterArgs {
    /// How to find peers: a multicast group (default, this machine only), a CIDR
    /// block to crawl, a comma-separated list of /p2p/ addresses, a boot server
    /// (its /p2p/ address followed by /boot, as `ww-sched boot-server` prints
    /// it), or `none`. Examples: /ip4/228.8.8.8/udp/8822/multicast/lo,
    /// /ip4/10.0.0.0/udp/8822/cidr/24, /ip4/10.0.0.5/tcp/4001/p2p/12D3KooW...,
    /// /ip4/10.0.0.9/tcp/7000/p2p/12D3KooW.../boot, multicast://228.8.8.8:8822?iface=10.0.0.2.
    /// Join up to 4 with + to use them together, e.g. a boot server + multicast.
    #[arg(long, default_value = DEFAULT_DISCOVER)]
    pub discover: String,
    /// The cluster's namespace: only nodes in the same namespace see each other.
    #[arg(long = "ns", default_value = "ww")]
    pub namespace: String,
    /// How long others keep this node in their view without a heartbeat, in ms.
    #[arg(long, default_value_t = 10_000)]
    pub ttl_ms: u32,
    /// A key=value pair others can select this node by (repeatable).
    #[arg(long = "meta")]
    pub meta: Vec<String>,
    /// The host name others see; defaults to this machine's.
    #[arg(long)]
    pub host: Option<String>,
    #[command(flatten)]
    pub network: NetworkArgs,
}

/// This machine's host name, or `localhost` when it cannot be read.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Starts discovery, pubsub and membership for a node.
pub async fn join_cluster<T: Transport>(
    transport: &T,
    identity: Identity,
    args: &ClusterArgs,
    announce: bool,
    extra_meta: &[(&str, &str)],
) -> Result<Membership> {
    let spec: DiscoverySpec = args
        .discover
        .parse()
        .with_context(|| format!("--discover {}", args.discover))?;
    args.network.check_discovery(&spec)?;
    let seed: u64 = rand::random();
    let swarm_key = args.network.swarm_key()?;
    let wall_clock = WallClock::host();
    let discovery = AnyDiscovery::from_spec(
        &spec,
        transport,
        identity,
        seed,
        swarm_key.clone(),
        wall_clock.clone(),
    )
    .await?;
    let mut meta = Vec::new();
    for text in &args.meta {
        meta.push(parse_meta(text).with_context(|| format!("--meta {text}"))?);
    }
    for (key, value) in extra_meta {
        meta.push((key.to_string(), value.to_string()));
    }
    let config = MembershipConfig {
        namespace: args.namespace.clone(),
        ttl_ms: args.ttl_ms,
        host: args.host.clone().unwrap_or_else(host_name),
        meta,
        seed,
        announce,
        swarm_key,
        wall_clock,
    };
    let pubsub = PubSub::new(transport.clone());
    Ok(Membership::start(transport.clone(), &pubsub, discovery, config).await?)
}

pub use host::HostServices;
