//! `ww-sched ls` and `ww-sched anchor`: read and write the cluster's anchors.

use std::io::{Read, Write};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use tokio::time::Instant;
use ww::anchor::{anchor_protocol, AnchorPath};
use ww::cluster::{Query, Selector};
use ww::rpc::{connect, Connection, RpcConfig};
use ww::schema::anchor_capnp::{anchor, entry, Holds};
use ww::transport::{Identity, Libp2pTransport, PeerId, Protocol, Transport};

use super::ClusterArgs;

/// Flags every anchor command shares: how to reach the cluster.
#[derive(Args)]
pub struct ReachArgs {
    /// How long to look for the cluster (and the host named), in ms. `ls /`
    /// listens this long for heartbeats before printing.
    #[arg(long, default_value_t = 4_000)]
    wait_ms: u64,
    #[command(flatten)]
    pub(super) cluster: ClusterArgs,
}

impl ReachArgs {
    /// How long to look for the cluster, in ms.
    pub fn wait_ms(&self) -> u64 {
        self.wait_ms
    }
}

/// Flags of `ww-sched ls`.
#[derive(Args)]
pub struct LsArgs {
    /// `/` lists the hosts of the cluster view; `/<peer id>[/path]` lists the
    /// anchors below that path on that host.
    #[arg(default_value = "/")]
    path: String,
    #[command(flatten)]
    reach: ReachArgs,
}

/// Flags of `ww-sched anchor`.
#[derive(Args)]
pub struct AnchorArgs {
    #[command(subcommand)]
    command: AnchorCommand,
}

#[derive(Subcommand)]
enum AnchorCommand {
    /// Print the bytes an anchor holds (`/<peer id>/path`).
    Get {
        /// The anchor, `/<peer id>/path`.
        path: String,
        #[command(flatten)]
        reach: ReachArgs,
    },
    /// Make an anchor hold VALUE (`-` reads it from stdin), creating it and its parents.
    Set {
        /// The anchor, `/<peer id>/path`.
        path: String,
        /// The bytes to hold (at most 64 KiB); `-` for stdin.
        value: String,
        #[command(flatten)]
        reach: ReachArgs,
    },
    /// Remove an anchor and everything below it.
    Rm {
        /// The anchor, `/<peer id>/path`.
        path: String,
        #[command(flatten)]
        reach: ReachArgs,
    },
}

/// A transport that has joined the cluster as a silent observer.
pub struct Observer {
    /// Its transport.
    pub transport: Libp2pTransport,
    /// Its view of the cluster.
    pub membership: ww::cluster::Membership,
    /// When to stop looking.
    pub deadline: Instant,
}

/// Joins the cluster as a silent observer (in nobody's view).
pub async fn observe(reach: &ReachArgs) -> Result<Observer> {
    observe_as(reach, Identity::generate()).await
}

/// [`observe`] under `identity` (a caller's key, for hosts that admit only
/// allowed peer ids).
pub async fn observe_as(reach: &ReachArgs, identity: Identity) -> Result<Observer> {
    let transport = Libp2pTransport::new(reach.cluster.network.libp2p_config(identity.clone())?)?;
    let membership = super::join_cluster(&transport, identity, &reach.cluster, false, &[]).await?;
    Ok(Observer {
        transport,
        membership,
        deadline: Instant::now() + Duration::from_millis(reach.wait_ms),
    })
}

/// How long an observer waits before looking a peer record up again.
const PEER_RECORD_RETRY: Duration = Duration::from_millis(500);

impl Observer {
    /// Whether `peer` is in the observer's view.
    fn in_view(&self, peer: PeerId) -> bool {
        self.membership.view_peers().contains(&peer)
    }

    /// Connects to `peer`'s anchors, retrying until discovery has found it or
    /// the deadline passes.
    async fn connect(&self, peer: PeerId) -> Result<Connection<anchor::Client>> {
        let config = RpcConfig {
            connect_timeout: Duration::from_secs(2),
            call_timeout: Duration::from_secs(10),
        };
        self.connect_to(peer, &anchor_protocol(), "anchors", config)
            .await
    }

    /// Connects to `peer`'s capability `protocol` (`what`, for errors) by
    /// its id alone: retried until discovery has found the host, through its
    /// peer record if it is in the view but was never dialled, or until the
    /// deadline passes.
    pub async fn connect_to<C>(
        &self,
        peer: PeerId,
        protocol: &Protocol,
        what: &str,
        config: RpcConfig,
    ) -> Result<Connection<C>>
    where
        C: capnp::capability::FromClientHook + Clone,
    {
        // The peer record is looked up again while it is not found: a view
        // still filling (an observer just joined) can name other holders
        // than the ones the record was put on.
        let mut resolved = false;
        let mut next_lookup = Instant::now();
        loop {
            match connect(&self.transport, peer, protocol, config).await {
                Ok(connection) => return Ok(connection),
                // A host in the view that was never discovered directly (its
                // heartbeats came relayed): its peer record says where it is.
                Err(_) if !resolved && Instant::now() >= next_lookup && self.in_view(peer) => {
                    next_lookup = Instant::now() + PEER_RECORD_RETRY;
                    let hosts = self.membership.view_peers();
                    match ww::records::resolve(&self.transport, &hosts, peer).await {
                        Ok(addresses) => {
                            resolved = true;
                            tracing::info!(
                                %peer,
                                addresses = addresses.len(),
                                "found through its peer record"
                            );
                        }
                        Err(e) => tracing::debug!(%peer, error = %e, "no peer record yet"),
                    }
                }
                Err(e) if Instant::now() >= self.deadline => {
                    bail!(
                        "cannot reach host {peer}'s {what} ({e}); {}",
                        if self.in_view(peer) {
                            "it is in the view, but did not answer"
                        } else {
                            "it is not in the cluster view: check the id, --discover and --ns"
                        }
                    );
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }
}

fn host_path(text: &str) -> Result<(PeerId, Vec<String>)> {
    match text.parse::<AnchorPath>()? {
        AnchorPath::Root => {
            bail!("`/` holds only the hosts; name a path below one, /<peer id>/...")
        }
        AnchorPath::Host { peer, segments } => Ok((peer, segments)),
    }
}

fn set_path(mut list: capnp::text_list::Builder<'_>, segments: &[String]) {
    for (i, segment) in segments.iter().enumerate() {
        list.set(i as u32, segment.as_str());
    }
}

/// Lists the hosts (`/`) or the anchors below a host's path.
pub async fn ls(args: LsArgs) -> Result<()> {
    let path: AnchorPath = args.path.parse()?;
    let observer = observe(&args.reach).await?;
    let (peer, segments) = match path {
        AnchorPath::Root => {
            tokio::time::sleep_until(observer.deadline).await;
            let local = observer.transport.local_peer_id();
            for record in observer.membership.view(&Query::new(Selector::All)) {
                if record.peer != local {
                    println!("/{}", record.peer);
                }
            }
            return Ok(());
        }
        AnchorPath::Host { peer, segments } => (peer, segments),
    };
    let connection = observer.connect(peer).await?;
    let mut request = connection.client().list_request();
    set_path(request.get().init_path(segments.len() as u32), &segments);
    let shown = AnchorPath::Host {
        peer,
        segments: segments.clone(),
    }
    .to_string();
    connection
        .call(&format!("list {shown}"), async {
            let answer = request.send().promise.await?;
            for child in answer.get()?.get_children()?.iter() {
                let name = child.get_name()?.to_str().unwrap_or("?");
                let holds = match child.get_holds() {
                    Ok(Holds::Value) => "value",
                    Ok(Holds::Capability) => "capability",
                    _ => "-",
                };
                println!("{shown}/{name}\t{holds}\t{} children", child.get_children());
            }
            Ok(())
        })
        .await?;
    Ok(())
}

/// Gets, sets or removes one anchor.
pub async fn run(args: AnchorArgs) -> Result<()> {
    match args.command {
        AnchorCommand::Get { path, reach } => {
            let (peer, segments) = host_path(&path)?;
            let observer = observe(&reach).await?;
            let connection = observer.connect(peer).await?;
            let mut request = connection.client().get_request();
            set_path(request.get().init_path(segments.len() as u32), &segments);
            let bytes = connection
                .call(&format!("get {path}"), async {
                    let answer = request.send().promise.await?;
                    let entry = answer.get()?.get_entry()?;
                    Ok(match entry.which()? {
                        entry::Which::Value(bytes) => Some(bytes?.to_vec()),
                        entry::Which::Nothing(()) | entry::Which::Capability(_) => None,
                    })
                })
                .await?;
            match bytes {
                Some(bytes) => std::io::stdout().write_all(&bytes)?,
                None => bail!("{path} holds no bytes (only children, or a capability)"),
            }
        }
        AnchorCommand::Set { path, value, reach } => {
            let (peer, segments) = host_path(&path)?;
            let bytes = if value == "-" {
                let mut bytes = Vec::new();
                std::io::stdin()
                    .take(64 * 1024 + 1)
                    .read_to_end(&mut bytes)
                    .context("reading the value from stdin")?;
                bytes
            } else {
                value.into_bytes()
            };
            let observer = observe(&reach).await?;
            let connection = observer.connect(peer).await?;
            let mut request = connection.client().set_request();
            set_path(request.get().init_path(segments.len() as u32), &segments);
            request.get().set_value(&bytes);
            connection
                .call(&format!("set {path}"), async {
                    request.send().promise.await?;
                    Ok(())
                })
                .await?;
        }
        AnchorCommand::Rm { path, reach } => {
            let (peer, segments) = host_path(&path)?;
            let observer = observe(&reach).await?;
            let connection = observer.connect(peer).await?;
            let mut request = connection.client().remove_request();
            set_path(request.get().init_path(segments.len() as u32), &segments);
            let removed = connection
                .call(&format!("remove {path}"), async {
                    Ok(request.send().promise.await?.get()?.get_removed())
                })
                .await?;
            println!("removed {removed} anchors");
        }
    }
    Ok(())
}
