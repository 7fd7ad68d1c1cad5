//! `ww-sched call`: the original system's `assign` call on a remote worker.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use ww::rpc::RpcConfig;
use ww::transport::{Address, Identity, Libp2pConfig, Libp2pTransport, SwarmKey, Transport};
use ww_sched::worker::RemoteWorker;

/// Flags of `ww-sched call`.
#[derive(Args)]
pub struct CallArgs {
    /// The worker's address as `ww-sched worker` printed it, ending in /p2p/<peer id>.
    #[arg(long)]
    peer: String,
    /// The WASM module; it must export `run(i32, i32) -> i32`.
    #[arg(long)]
    wasm: PathBuf,
    /// First argument of `run`.
    #[arg(long)]
    input: i64,
    /// Second argument of `run` (for the hash puzzle: leading zero hex digits).
    #[arg(long)]
    difficulty: i64,
    /// Give up on connecting, or on the answer, after this many milliseconds.
    #[arg(long, default_value_t = 60_000)]
    timeout_ms: u64,
    /// Key file of the caller's identity (`ww-sched id --key FILE` prints its
    /// peer id, for the worker's --allow). Without it the caller is anonymous.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// The cluster's swarm key file, to reach a keyed worker.
    #[arg(long, env = "WW_SCHED_SWARM_KEY", value_name = "FILE")]
    swarm_key: Option<PathBuf>,
}

/// Calls `assign` and prints the result.
pub async fn run(args: CallArgs) -> Result<()> {
    let wasm = super::read_module(&args.wasm)?;
    let (address, peer) = Address::new(args.peer.clone()).split_peer()?;
    let Some(peer) = peer else {
        bail!(
            "--peer {} has no /p2p/<peer id> suffix; use an address as `ww-sched worker` prints it",
            args.peer
        );
    };
    let identity = match &args.key {
        Some(path) => Identity::load_or_create(path)?,
        None => Identity::generate(),
    };
    let swarm_key = args.swarm_key.as_deref().map(SwarmKey::load).transpose()?;
    let transport = Libp2pTransport::new(Libp2pConfig::new(identity).with_swarm_key(swarm_key))?;
    transport.add_peer_address(peer, address)?;
    let timeout = Duration::from_millis(args.timeout_ms);
    let config = RpcConfig {
        connect_timeout: timeout,
        call_timeout: timeout,
    };
    let remote = RemoteWorker::connect(&transport, peer, config).await?;
    let result = remote.assign(&wasm, args.input, args.difficulty).await?;
    println!("{result}");
    Ok(())
}
