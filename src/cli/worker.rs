//! `ww-sched worker`: serve the Worker capability until Ctrl-C.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeSet;

use anyhow::{bail, Context, Result};
use clap::Args;
use ww::exec::{probe_native_stack, EngineKind, Sandbox, SandboxConfig};
use ww::process::ExecutorConfig;
use ww::transport::{Address, Identity, Libp2pTransport};
use ww_sched::worker::node::WorkerNode;
use ww_sched::worker::WorkerConfig;

use super::{ClusterArgs, LimitArgs};
use std::rc::Rc;
use ww::cluster::ViewEvent;
use ww::rpc::RpcConfig;
use ww::transport::{PeerId, Transport};
use ww_sched::worker::node::{
    keep_registered, keep_registered_with_every_gateway, Callers, GatewayLocator,
};

/// Flags of `ww-sched worker`.
#[derive(Args)]
pub struct WorkerArgs {
    /// Multiaddr to listen on (repeatable); port 0 picks a free port. Defaults
    /// to every interface with --swarm-key, loopback without one.
    #[arg(long = "listen")]
    listen: Vec<String>,
    /// Key file holding the node's identity, created if missing, so a restart keeps the
    /// peer id. Without it every start gets a new id.
    #[arg(long)]
    key: Option<PathBuf>,
    /// A gateway to register with: its peer id, or its address ending in
    /// /p2p/<peer id>; repeatable (several gateways share the worker's slots).
    /// Without it, the worker registers with every node the membership view
    /// shows with meta role=gateway, as they come and go (on a keyed cluster
    /// only key holders are in the view).
    #[arg(long, visible_alias = "gateway")]
    dial: Vec<String>,
    /// A peer id that may call this worker directly (`ww-sched call --key`;
    /// `ww-sched id --key FILE` prints a key's id); repeatable. The gateway needs
    /// none: it calls over the worker's registration. With --swarm-key only these
    /// peers may call; without a key (loopback only) any local caller may.
    #[arg(long = "allow", value_name = "PEER_ID")]
    allow: Vec<String>,
    /// Runs at once; more calls wait. Defaults to the number of cores.
    #[arg(long)]
    slots: Option<usize>,
    /// The WebAssembly engine: wasmi (an interpreter, quick to start) or
    /// wasmtime (a JIT, several times faster on long computations; only in a
    /// build with `--features jit`). Limits, WASI and errors are the same.
    #[arg(long, default_value = "wasmi", value_name = "ENGINE")]
    engine: EngineKind,
    /// Serve this worker's Prometheus metrics at http://ADDR/metrics (e.g.
    /// 127.0.0.1:9101; port 0 picks one). Read-only and without a token: keep
    /// it on loopback or a network only the scraper reaches.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// Do not look modules up in the cluster's records, nor leave there the
    /// ones the gateway sends: every module then comes from the gateway.
    #[arg(long)]
    no_records_modules: bool,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// Starts the worker, prints where to reach it, and serves until Ctrl-C.
pub async fn run(args: WorkerArgs) -> Result<()> {
    let identity = match &args.key {
        Some(path) => Identity::load_or_create(path)?,
        None => Identity::generate(),
    };
    let mut config = WorkerConfig {
        limits_max: args.limits.limits(),
        ..WorkerConfig::default()
    };
    if let Some(slots) = args.slots {
        if slots == 0 {
            bail!("--slots must be at least 1");
        }
        config.slots = slots;
    }
    let network = &args.cluster.network;
    let listen = network.listen_addresses(&args.listen)?;
    let transport = Libp2pTransport::new(network.libp2p_config(identity.clone())?)?;
    // A build whose interpreter leaks native stack per instruction would die at the
    // first long task; stop here instead, saying why.
    probe_native_stack().context("the sandbox's start-up check failed")?;
    let sandbox = Arc::new(Sandbox::new(SandboxConfig {
        engine: args.engine,
        ..SandboxConfig::default()
    }));
    let callers = callers(&args.allow, network.swarm_key.is_some())?;
    let slots = config.slots;
    // Anchors and records are served to every peer that can connect, as the view is.
    let mut host_services = super::HostServices::serve(&transport)?;
    // Processes get the worker's fuel and memory maximums, but no deadline
    // unless their spawner asks for one.
    let executor_config = ExecutorConfig {
        limits_max: config.limits_max,
        ..ExecutorConfig::default()
    };
    let node = WorkerNode::start(transport, sandbox.clone(), config, &listen, callers).await?;
    let (executor, _executor_serving) = node
        .serve_executor(executor_config)
        .context("cannot serve the executor")?;
    host_services.mirror_processes(executor);
    let _metrics = match args.metrics {
        None => None,
        Some(address) => {
            let (bound, task) =
                ww_sched::worker::metrics::serve(address, node.gauges(), sandbox, slots)
                    .await
                    .with_context(|| format!("cannot serve metrics on {address}"))?;
            println!("metrics on http://{bound}/metrics");
            Some(AbortOnDrop(task))
        }
    };
    // Wildcard listeners report one address per interface just after binding.
    tokio::time::sleep(Duration::from_millis(100)).await;
    println!("peer id: {}", node.peer_id());
    println!("engine: {}", args.engine);
    for address in node.dial_addresses() {
        println!("listening on {address}");
    }
    let membership = Rc::new(
        super::join_cluster(
            node.transport(),
            identity.clone(),
            &args.cluster,
            true,
            &[("role", "worker")],
        )
        .await?,
    );
    if !args.no_records_modules {
        host_services.share_modules(
            &node.module_source(),
            node.transport(),
            identity.clone(),
            membership.clone(),
        );
    }
    host_services.join_dht(node.transport(), identity, membership.clone());
    let dialed = dialed_gateways(&args.dial, node.transport())?;
    let mut registration = spawn_registration(Rc::new(node), dialed, membership.clone());
    println!(
        "joined namespace {} (instance {:016x})",
        args.cluster.namespace,
        membership.instance()
    );
    let mut events = membership.watch();
    // Registration and the membership watch are meant to run for ever: if
    // either ends, the worker can no longer serve its gateway, so it exits
    // non-zero for a supervisor to restart it.
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            ended = &mut registration => match ended {
                Err(e) if e.is_panic() => bail!("worker registration panicked; exiting"),
                _ => bail!("worker registration ended; exiting"),
            },
            event = events.next() => match event {
                Some(event) => print_event(&event),
                None => bail!("the membership view stopped; exiting"),
            },
        }
    }
}

/// Who may call the worker directly: the `--allow`ed peers; anyone local when
/// none is given and the cluster has no key (loopback only).
fn callers(allow: &[String], keyed: bool) -> Result<Callers> {
    let mut allowed = BTreeSet::new();
    for text in allow {
        allowed.insert(
            text.parse::<PeerId>()
                .with_context(|| format!("--allow {text}: expected a peer id"))?,
        );
    }
    Ok(if !keyed && allowed.is_empty() {
        Callers::Open
    } else {
        Callers::Only(allowed)
    })
}

/// The gateways `--dial` names, each a peer id or an address ending in
/// /p2p/<peer id> (then added to the transport's address book).
fn dialed_gateways<T: Transport>(dial: &[String], transport: &T) -> Result<Vec<PeerId>> {
    let mut dialed = Vec::with_capacity(dial.len());
    for text in dial {
        let (address, peer) = match text.parse::<PeerId>() {
            Ok(peer) => (None, Some(peer)),
            Err(_) => {
                let (address, peer) = Address::new(text.clone()).split_peer()?;
                (Some(address), peer)
            }
        };
        let Some(peer) = peer else {
            bail!("--dial {text}: expected a peer id or an address ending in /p2p/<peer id>");
        };
        if let Some(address) = address {
            transport.add_peer_address(peer, address)?;
        }
        dialed.push(peer);
    }
    Ok(dialed)
}

/// Keeps the worker registered: with each dialed gateway, or with every
/// gateway in the membership view when none was dialed.
fn spawn_registration(
    node: Rc<WorkerNode<Libp2pTransport>>,
    dialed: Vec<PeerId>,
    membership: Rc<ww::cluster::Membership>,
) -> tokio::task::JoinHandle<()> {
    if dialed.is_empty() {
        return tokio::task::spawn_local(keep_registered_with_every_gateway(
            node,
            membership,
            RpcConfig::default(),
        ));
    }
    let each: Vec<_> = dialed
        .into_iter()
        .map(|peer| {
            keep_registered(
                node.clone(),
                GatewayLocator::Peer(peer),
                Some(membership.clone()),
                RpcConfig::default(),
            )
        })
        .collect();
    tokio::task::spawn_local(async move {
        futures::future::join_all(each).await;
    })
}

/// One line per membership change, for people and for scripts that wait on it.
fn print_event(event: &ViewEvent) {
    match event {
        ViewEvent::Joined(record) => {
            let meta: Vec<String> = record
                .heartbeat
                .meta()
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            println!(
                "peer joined: {} host={} {}",
                record.peer,
                record.heartbeat.host(),
                meta.join(",")
            );
        }
        ViewEvent::Left {
            peer,
            instance,
            reason,
        } => println!("peer left: {peer} instance={instance:016x} reason={reason:?}"),
        ViewEvent::Updated(_) => {}
    }
}

/// Stops the metrics server when the worker's `run` returns.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
