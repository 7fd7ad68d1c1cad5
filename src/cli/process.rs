//! `ww-sched spawn`, `ps`, `wait` and `kill`: processes on a worker host's
//! Executor capability.
//!
//! A process id, as these commands print and take it, is the host's address
//! (as given to `--peer`, ending in /p2p/<peer id>) with `/proc/<n>` appended:
//! it says which host the process is on and how to reach it, so `kill ID` and
//! `wait ID` need nothing else.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use ww_sched::exec::{ModuleRef, OutputStream};
use ww_sched::process::{
    ProcessEnd, ProcessId, ProcessLimits, ProcessSpec, ProcessState, RemoteExecutor,
};
use ww_sched::rpc::{RpcConfig, RpcError};
use ww_sched::transport::{Address, Identity, Libp2pConfig, Libp2pTransport, SwarmKey, Transport};

/// How often `--follow` asks for more output when the last read brought none.
const FOLLOW_POLL: Duration = Duration::from_millis(50);

/// Bytes one `--follow` read asks for.
const FOLLOW_READ_BYTES: u32 = 64 * 1024;

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
    /// The cluster's swarm key file, to reach a keyed worker.
    #[arg(long, env = "WW_SCHED_SWARM_KEY", value_name = "FILE")]
    swarm_key: Option<PathBuf>,
}

/// A process id's two halves: the host's address and the number there.
struct ProcessRef {
    host: String,
    id: ProcessId,
}

impl ProcessRef {
    fn parse(text: &str) -> Result<ProcessRef> {
        let Some((host, number)) = text.rsplit_once("/proc/") else {
            bail!("process id {text}: expected <host address>/p2p/<peer id>/proc/<n>, as `spawn` prints it");
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

/// Dials the executor of the host at `address` (ending in /p2p/<peer id>).
async fn connect(address: &str, dial: &DialArgs) -> Result<(Libp2pTransport, RemoteExecutor)> {
    let (addr, peer) = Address::new(address.to_string()).split_peer()?;
    let Some(peer) = peer else {
        bail!(
            "{address} has no /p2p/<peer id> suffix; use an address as `ww-sched worker` prints it"
        );
    };
    let identity = match &dial.key {
        Some(path) => Identity::load_or_create(path)?,
        None => Identity::generate(),
    };
    let swarm_key = dial.swarm_key.as_deref().map(SwarmKey::load).transpose()?;
    let transport = Libp2pTransport::new(Libp2pConfig::new(identity).with_swarm_key(swarm_key))?;
    transport.add_peer_address(peer, addr)?;
    let timeout = Duration::from_millis(dial.timeout_ms);
    let config = RpcConfig {
        connect_timeout: timeout,
        call_timeout: timeout,
    };
    let remote = RemoteExecutor::connect(&transport, peer, config)
        .await
        .with_context(|| format!("cannot reach the executor of {address}"))?;
    // The transport must outlive the connection: returned beside it.
    Ok((transport, remote))
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
    /// The worker's address as `ww-sched worker` printed it, ending in /p2p/<peer id>.
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
    let (_transport, remote) = connect(&args.peer, &args.dial).await?;
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
        host: args.peer,
        id,
    };
    println!("{process}");
    std::io::stdout().flush()?;
    if args.follow {
        follow(&remote, &process).await?;
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
    /// The worker whose processes to list: its address as `ww-sched worker`
    /// printed it, ending in /p2p/<peer id>. Required: processes are listed
    /// per host, and a host is named by its address.
    #[arg(long)]
    peer: String,
    #[command(flatten)]
    dial: DialArgs,
}

/// Lists a host's processes: running ones and the most recently ended.
pub async fn ps(args: PsArgs) -> Result<()> {
    let (_transport, remote) = connect(&args.peer, &args.dial).await?;
    let rows = remote.list().await.map_err(refusal)?;
    println!(
        "{:<8} {:>5} {:>14}  {:<16} ID",
        "STATE", "CODE", "STARTED_MS", "MODULE"
    );
    for row in &rows {
        let id = ProcessRef {
            host: args.peer.clone(),
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
    let (_transport, remote) = connect(&process.host, &args.dial).await?;
    if args.follow {
        follow(&remote, &process).await?;
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
    let (_transport, remote) = connect(&process.host, &args.dial).await?;
    let end = remote
        .kill(process.id)
        .await
        .with_context(|| format!("cannot kill {process}"))?;
    println!("{}", describe(&end));
    Ok(())
}
