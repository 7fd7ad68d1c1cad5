//! `ww-sched spawn`, `ps`, `wait` and `kill`: processes on a worker host's
//! Executor capability.
//!
//! A host is named by its address (as `ww-sched worker` prints it, ending in
//! /p2p/<peer id>), reached directly, or by its peer id alone, found in the
//! cluster (`--discover`, and its peer record if it was never dialled). A
//! process id, as these commands print and take it, is the host as named with
//! `/proc/<n>` appended (`/p2p/<peer id>/proc/<n>` for a host named by id): it
//! says which host the process is on and how to reach it, so `kill ID` and
//! `wait ID` need nothing else.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use ww::cluster::{Membership, Query, Selector};
use ww::exec::{ModuleRef, OutputStream};
use ww::process::{
    executor_protocol, ProcessEnd, ProcessId, ProcessInfo, ProcessLimits, ProcessSpec,
    ProcessState, RemoteExecutor,
};
use ww::rpc::{RpcConfig, RpcError};
use ww::transport::{Address, Identity, Libp2pTransport, PeerId, Transport};

use super::anchor::{observe_as, Observer, ReachArgs};

/// How often `--follow` asks for more output when the last read brought none.
const FOLLOW_POLL: Duration = Duration::from_millis(50);

/// Bytes one `--follow` read asks for.
const FOLLOW_READ_BYTES: u32 = 64 * 1024;

/// How long `ps` without `--peer` tries each host before reporting it unreachable.
const PS_HOST_CONNECT: Duration = Duration::from_secs(2);

/// How to reach a host: shared by every process command.
#[derive(Args)]
pub struct DialArgs {
    /// Give up on connecting, or on an answer, after this many milliseconds
    /// (`wait` without --follow waits at most this long for the end).
    #[arg(long, default_value_t = 60_000)]
    timeout_ms: u64,
    /// Key file of the caller's identity: on a worker started with --allow (or
    /// --swarm-key) only allowed peer ids may use its processes, as for `call`.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// How to find a host named by its peer id alone (unused for an address).
    #[command(flatten)]
    reach: ReachArgs,
}

impl DialArgs {
    fn identity(&self) -> Result<Identity> {
        match &self.key {
            Some(path) => Ok(Identity::load_or_create(path)?),
            None => Ok(Identity::generate()),
        }
    }

    fn rpc_config(&self) -> RpcConfig {
        let timeout = Duration::from_millis(self.timeout_ms);
        RpcConfig {
            connect_timeout: timeout,
            call_timeout: timeout,
        }
    }
}

/// A host as a command names it: an address to dial, or a peer id to find.
struct Host {
    /// As shown in process ids: the address, or `/p2p/<peer id>`.
    shown: String,
    peer: PeerId,
    /// Where to dial it; `None`: find it in the cluster.
    address: Option<Address>,
}

impl Host {
    fn parse(text: &str) -> Result<Host> {
        if let Ok(peer) = text.parse::<PeerId>() {
            return Ok(Host::by_id(peer));
        }
        let (address, peer) = Address::new(text.to_string()).split_peer()?;
        let Some(peer) = peer else {
            bail!(
                "{text}: expected a peer id, or an address ending in /p2p/<peer id> as \
                 `ww-sched worker` prints it"
            );
        };
        if address.to_string().is_empty() {
            return Ok(Host::by_id(peer));
        }
        Ok(Host {
            shown: text.to_string(),
            peer,
            address: Some(address),
        })
    }

    fn by_id(peer: PeerId) -> Host {
        Host {
            shown: format!("/p2p/{peer}"),
            peer,
            address: None,
        }
    }
}

/// A process id's two halves: the host and the number there.
struct ProcessRef {
    host: String,
    id: ProcessId,
}

impl ProcessRef {
    fn parse(text: &str) -> Result<ProcessRef> {
        let Some((host, number)) = text.rsplit_once("/proc/") else {
            bail!("process id {text}: expected <host>/proc/<n>, as `spawn` prints it");
        };
        let id = number
            .parse::<u64>()
            .with_context(|| format!("process id {text}: {number} is not a process number"))?;
        Ok(ProcessRef {
            host: host.to_string(),
            id: ProcessId(id),
        })
    }
}

impl std::fmt::Display for ProcessRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/proc/{}", self.host, self.id)
    }
}

/// An executor reached, with what must outlive its connection.
struct Reached {
    remote: RemoteExecutor,
    _transport: Option<Libp2pTransport>,
    _observer: Option<Observer>,
}

/// Dials the executor of `host`: directly at its address, or found by its
/// peer id in the cluster.
async fn connect(host: &Host, dial: &DialArgs) -> Result<Reached> {
    let identity = dial.identity()?;
    let network = &dial.reach.cluster.network;
    match &host.address {
        Some(address) => {
            let transport = Libp2pTransport::new(network.libp2p_config(identity)?)?;
            transport.add_peer_address(host.peer, address.clone())?;
            let remote = RemoteExecutor::connect(&transport, host.peer, dial.rpc_config())
                .await
                .with_context(|| format!("cannot reach the executor of {}", host.shown))?;
            Ok(Reached {
                remote,
                _transport: Some(transport),
                _observer: None,
            })
        }
        None => {
            let observer = observe_as(&dial.reach, identity).await?;
            let connection = observer
                .connect_to(
                    host.peer,
                    &executor_protocol(),
                    "executor",
                    dial.rpc_config(),
                )
                .await?;
            Ok(Reached {
                remote: RemoteExecutor::from_connection(connection),
                _transport: None,
                _observer: Some(observer),
            })
        }
    }
}

/// Explains a call's failure: a worker closes the connection of a caller it
/// does not admit, which reads as a lost connection.
fn refusal(error: RpcError) -> anyhow::Error {
    if error.is_connection_lost() {
        anyhow::Error::new(error).context(
            "the worker closed the connection: it admits only its --allow peer ids \
             (pass the caller's key with --key), or it stopped",
        )
    } else {
        anyhow::Error::new(error).context("refused")
    }
}

/// Flags of `ww-sched spawn`.
#[derive(Args)]
pub struct SpawnArgs {
    /// The worker: its peer id (found through --discover), or its address as
    /// `ww-sched worker` printed it, ending in /p2p/<peer id>.
    #[arg(long)]
    peer: String,
    /// The WASM module.
    #[arg(long)]
    wasm: PathBuf,
    /// Export to call (a module's `_start` runs first).
    #[arg(long, default_value = "run")]
    export: String,
    /// Integer arguments of the export, in order (repeatable).
    #[arg(long = "arg", allow_negative_numbers = true)]
    args: Vec<i64>,
    /// Most fuel the process may burn; 0 means the worker's maximum (its --fuel-max).
    #[arg(long, default_value_t = 0)]
    fuel_max: u64,
    /// Most 64 KiB memory pages; 0 means the worker's maximum.
    #[arg(long, default_value_t = 0)]
    memory_pages_max: u32,
    /// Stop the process after this many milliseconds; 0 means no deadline.
    #[arg(long, default_value_t = 0)]
    wall_time_ms: u64,
    /// After printing the id, print the process's stdout (and its stderr on
    /// stderr) as it comes, until it ends; then how it ended, on stderr.
    #[arg(long)]
    follow: bool,
    #[command(flatten)]
    dial: DialArgs,
}

/// Spawns a process and prints its id (then follows it with --follow).
pub async fn spawn(args: SpawnArgs) -> Result<()> {
    let wasm = super::read_module(&args.wasm)?;
    let host = Host::parse(&args.peer)?;
    let reached = connect(&host, &args.dial).await?;
    let remote = &reached.remote;
    let spec = ProcessSpec {
        module: ModuleRef::Bytes(wasm),
        export: args.export,
        args: args.args,
        limits: ProcessLimits {
            fuel_max: args.fuel_max,
            memory_pages_max: args.memory_pages_max,
            deadline: (args.wall_time_ms > 0).then(|| Duration::from_millis(args.wall_time_ms)),
        },
    };
    let id = remote.spawn(&spec).await.map_err(refusal)?;
    let process = ProcessRef {
        host: host.shown,
        id,
    };
    println!("{process}");
    std::io::stdout().flush()?;
    if args.follow {
        follow(remote, &process).await?;
    }
    Ok(())
}

/// Prints the process's output as it comes until both streams end, then its end.
async fn follow(remote: &RemoteExecutor, process: &ProcessRef) -> Result<()> {
    let mut offsets = [0u64; 2];
    let mut done = [false; 2];
    let streams = [OutputStream::Stdout, OutputStream::Stderr];
    while !done.iter().all(|d| *d) {
        let mut got_any = false;
        for (i, stream) in streams.iter().enumerate() {
            if done[i] {
                continue;
            }
            let chunk = remote
                .read(process.id, *stream, offsets[i], FOLLOW_READ_BYTES)
                .await
                .with_context(|| format!("cannot read the output of {process}"))?;
            if chunk.skipped > 0 {
                tracing::warn!(process = %process, skipped = chunk.skipped,
                    "output dropped by the host before it was read");
            }
            got_any |= !chunk.data.is_empty();
            match stream {
                OutputStream::Stdout => {
                    let mut out = std::io::stdout();
                    out.write_all(&chunk.data)?;
                    out.flush()?;
                }
                OutputStream::Stderr => std::io::stderr().write_all(&chunk.data)?,
            }
            offsets[i] = chunk.next_offset;
            done[i] = chunk.eof;
        }
        if !got_any {
            tokio::time::sleep(FOLLOW_POLL).await;
        }
    }
    let end = remote.wait(process.id).await?;
    eprintln!("process {process}: {}", describe(&end));
    Ok(())
}

/// `exited 0`, `killed 137`, `failed 134 fuel_exhausted: ...`.
fn describe(end: &ProcessEnd) -> String {
    let mut text = format!("{} {}", end.state.name(), end.exit_code());
    if let (ProcessState::Failed(_), Some(error)) = (end.state, &end.error) {
        text.push_str(&format!(" {error}"));
    }
    text
}

/// Flags of `ww-sched ps`.
#[derive(Args)]
pub struct PsArgs {
    /// The worker whose processes to list: its peer id, or its address as
    /// `ww-sched worker` printed it. Without it, every worker in the cluster
    /// view (found through --discover within --wait-ms) is listed.
    #[arg(long)]
    peer: Option<String>,
    #[command(flatten)]
    dial: DialArgs,
}

/// Lists processes, running ones and the most recently ended: one host's, or
/// every worker's in the cluster view.
pub async fn ps(args: PsArgs) -> Result<()> {
    let header = || {
        println!(
            "{:<8} {:>5} {:>14}  {:<16} ID",
            "STATE", "CODE", "STARTED_MS", "MODULE"
        )
    };
    if let Some(peer) = &args.peer {
        let host = Host::parse(peer)?;
        let reached = connect(&host, &args.dial).await?;
        // Its rows are read before anything is printed: a refusal prints none.
        let rows = reached.remote.list().await.map_err(refusal)?;
        header();
        return print_rows(&rows, &host.shown);
    }
    let observer = observe_as(&args.dial.reach, args.dial.identity()?).await?;
    tokio::time::sleep_until(observer.deadline).await;
    let workers = workers_in_view(&observer.membership);
    if workers.is_empty() {
        bail!(
            "no worker in the cluster view after {} ms: check --discover and --ns",
            args.dial.reach.wait_ms()
        );
    }
    let config = RpcConfig {
        connect_timeout: PS_HOST_CONNECT,
        call_timeout: Duration::from_millis(args.dial.timeout_ms),
    };
    header();
    let mut unreachable = 0;
    for peer in workers {
        let host = Host::by_id(peer);
        let listed = match observer
            .connect_to(peer, &executor_protocol(), "executor", config)
            .await
        {
            Ok(connection) => {
                let remote = RemoteExecutor::from_connection(connection);
                match remote.list().await {
                    Ok(rows) => print_rows(&rows, &host.shown),
                    Err(e) => Err(refusal(e)),
                }
            }
            Err(e) => Err(e),
        };
        if let Err(e) = listed {
            // The CLI's own report: the other hosts are still listed.
            eprintln!("{}: not listed: {e:#}", host.shown);
            unreachable += 1;
        }
    }
    if unreachable > 0 {
        bail!("{unreachable} worker(s) could not be listed");
    }
    Ok(())
}

/// The workers (meta `role=worker`) in `membership`'s view, in id order.
fn workers_in_view(membership: &Membership) -> Vec<PeerId> {
    let mut workers: Vec<PeerId> = membership
        .view(&Query::new(Selector::All))
        .into_iter()
        .filter(|r| {
            r.heartbeat
                .meta()
                .iter()
                .any(|(k, v)| k == "role" && v == "worker")
        })
        .map(|r| r.peer)
        .collect();
    workers.sort();
    workers.dedup();
    workers
}

/// Prints processes `rows`, their ids under `host`.
fn print_rows(rows: &[ProcessInfo], host: &str) -> Result<()> {
    for row in rows {
        let id = ProcessRef {
            host: host.to_string(),
            id: row.id,
        };
        let code = row
            .state
            .exit_code()
            .map_or_else(|| "-".to_string(), |code| code.to_string());
        println!(
            "{:<8} {:>5} {:>14}  {:<16} {id}",
            row.state.name(),
            code,
            row.started_ms,
            &row.module.to_string()[..16]
        );
    }
    std::io::stdout().flush()?;
    Ok(())
}

/// Flags of `ww-sched wait`.
#[derive(Args)]
pub struct WaitArgs {
    /// The process id, as `spawn` printed it.
    id: String,
    /// Print the process's output as it comes until it ends, as `spawn --follow` does.
    #[arg(long)]
    follow: bool,
    #[command(flatten)]
    dial: DialArgs,
}

/// Waits for a process to end and prints how: `exited 3`, `killed 137`, ...
pub async fn wait(args: WaitArgs) -> Result<()> {
    let process = ProcessRef::parse(&args.id)?;
    let reached = connect(&Host::parse(&process.host)?, &args.dial).await?;
    let remote = &reached.remote;
    if args.follow {
        follow(remote, &process).await?;
    }
    let end = remote.wait(process.id).await?;
    println!("{}", describe(&end));
    Ok(())
}

/// Flags of `ww-sched kill`.
#[derive(Args)]
pub struct KillArgs {
    /// The process id, as `spawn` printed it.
    id: String,
    #[command(flatten)]
    dial: DialArgs,
}

/// Stops a running process and prints how it ended (`killed 137`).
pub async fn kill(args: KillArgs) -> Result<()> {
    let process = ProcessRef::parse(&args.id)?;
    let reached = connect(&Host::parse(&process.host)?, &args.dial).await?;
    let end = reached
        .remote
        .kill(process.id)
        .await
        .with_context(|| format!("cannot kill {process}"))?;
    println!("{}", describe(&end));
    Ok(())
}
