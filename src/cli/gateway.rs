//! `ww-sched gateway`: the REST API and scheduler, with workers registering
//! through its `lb` channel.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::{Context, Result};
use clap::Args;
use ww_sched::cluster::Membership;
use ww_sched::gateway::{Clock, Gateway, GatewayConfig};
use ww_sched::transport::{Address, Identity, Libp2pConfig, Libp2pTransport, Transport};

use super::ClusterArgs;

/// Flags of `ww-sched gateway`.
#[derive(Args)]
pub struct GatewayArgs {
    /// Address of the REST API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// Directory of the task database (and of the key file); created if missing.
    #[arg(long, default_value = "ww-sched-data")]
    data: PathBuf,
    /// Multiaddr workers reach the gateway on (repeatable).
    #[arg(long = "listen", default_value = "/ip4/0.0.0.0/tcp/0")]
    listen: Vec<String>,
    /// Key file of the gateway's identity; defaults to DATA/gateway.key, so a
    /// restarted gateway keeps its peer id and workers find it again.
    #[arg(long)]
    key: Option<PathBuf>,
    /// Largest request body (and module upload), in bytes.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    body_bytes_max: usize,
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// The wall clock in ms since the Unix epoch: stored times stay meaningful
/// across a restart.
pub fn wall_clock() -> Clock {
    Rc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    })
}

/// A gateway serving HTTP on `http` (port 0: any free port).
pub struct RunningGateway {
    /// The gateway; dropping it stops the core.
    pub _gateway: Gateway,
    /// Where its REST API listens.
    pub http: SocketAddr,
    /// The HTTP server task.
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Starts a gateway over `transport` and serves its API.
pub async fn start(
    transport: &Libp2pTransport,
    membership: Option<Rc<Membership>>,
    data: &Path,
    http: SocketAddr,
    body_bytes_max: usize,
) -> Result<RunningGateway> {
    let mut config = GatewayConfig::new(data.to_path_buf());
    config.body_bytes_max = body_bytes_max;
    config.sched.seed = rand::random();
    let gateway = Gateway::start(transport, membership, wall_clock(), config).await?;
    let listener = tokio::net::TcpListener::bind(http)
        .await
        .with_context(|| format!("cannot serve HTTP on {http}"))?;
    let http = listener.local_addr()?;
    let router = gateway.router();
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(RunningGateway {
        _gateway: gateway,
        http,
        server,
    })
}

/// Runs the gateway until Ctrl-C.
pub async fn run(args: GatewayArgs) -> Result<()> {
    std::fs::create_dir_all(&args.data)
        .with_context(|| format!("cannot create data directory {}", args.data.display()))?;
    let key = args
        .key
        .clone()
        .unwrap_or_else(|| args.data.join("gateway.key"));
    let identity = Identity::load_or_create(&key)?;
    let transport = Libp2pTransport::new(Libp2pConfig::new(identity.clone()))?;
    for listen in &args.listen {
        transport.listen(Address::new(listen.clone())).await?;
    }
    let membership = Rc::new(
        super::join_cluster(
            &transport,
            identity,
            &args.cluster,
            true,
            &[("role", "gateway")],
        )
        .await?,
    );
    let running = start(
        &transport,
        Some(membership),
        &args.data,
        args.http,
        args.body_bytes_max,
    )
    .await?;
    // Wildcard listeners report one address per interface just after binding.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let peer = transport.local_peer_id();
    println!("gateway peer id: {peer}");
    for address in transport.listen_addresses() {
        println!("listening on {}", address.with_peer(&peer));
    }
    println!("http on http://{}", running.http);
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(()),
        served = running.server => match served {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(e.into()),
        },
    }
}
