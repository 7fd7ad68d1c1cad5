//! The `ww-sched` command line.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use ww_sched::exec::{Limits, ModuleRef, RunSpec, Sandbox, SandboxConfig};
use ww_sched::rpc::{self, RpcConfig};
use ww_sched::transport::{Address, Identity, Libp2pConfig, Libp2pTransport, Transport};
use ww_sched::worker::{self, RemoteWorker, WorkerConfig, WorkerServer};

/// Largest module file the CLI reads.
const MODULE_FILE_BYTES_MAX: u64 = 16 * 1024 * 1024;

#[derive(Parser)]
#[command(
    name = "ww-sched",
    version,
    about = "A distributed job scheduler for WebAssembly tasks",
    long_about = "A distributed job scheduler for WebAssembly tasks.\n\n\
        Start a worker with `ww-sched worker`; it prints its address. In another shell, \
        `ww-sched call --peer <that address> --wasm tasks/hash-puzzle/hash-puzzle.wasm \
        --input 7 --difficulty 3` runs the module's `run(input, difficulty)` export on it. \
        `ww-sched run-local` runs a module in the sandbox without any network.\n\n\
        Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=debug) for more."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a worker node: print its peer id and addresses, then serve until Ctrl-C.
    Worker(WorkerArgs),
    /// Call `assign` on a remote worker and print the result.
    Call(CallArgs),
    /// Run a module in the local sandbox, without a network.
    RunLocal(RunLocalArgs),
}

#[derive(Args)]
struct WorkerArgs {
    /// Multiaddr to listen on (repeatable). Port 0 picks a free port.
    #[arg(long = "listen", default_value = "/ip4/0.0.0.0/tcp/0")]
    listen: Vec<String>,
    /// Key file holding the node's identity, created if missing, so a restart keeps the
    /// peer id. Without it every start gets a new id.
    #[arg(long)]
    key: Option<PathBuf>,
    /// Runs at once; more calls wait. Defaults to the number of cores.
    #[arg(long)]
    slots: Option<usize>,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Args)]
struct LimitArgs {
    /// Most fuel (about one unit per WASM instruction) a run may burn.
    #[arg(long, default_value_t = Limits::default().fuel_max)]
    fuel_max: u64,
    /// Most 64 KiB memory pages a run may use.
    #[arg(long, default_value_t = Limits::default().memory_pages_max)]
    memory_pages_max: u32,
    /// Most wall-clock milliseconds a run may take.
    #[arg(long, default_value_t = Limits::default().wall_time_ms)]
    wall_time_ms: u64,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits {
            fuel_max: self.fuel_max,
            memory_pages_max: self.memory_pages_max,
            wall_time_ms: self.wall_time_ms,
        }
    }
}

#[derive(Args)]
struct CallArgs {
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
    /// Give up on connecting or on the answer after this many milliseconds.
    #[arg(long, default_value_t = 60_000)]
    timeout_ms: u64,
}

#[derive(Args)]
struct RunLocalArgs {
    /// The WASM module.
    #[arg(long)]
    wasm: PathBuf,
    /// Export to call.
    #[arg(long, default_value = "run")]
    export: String,
    /// Integer arguments of the export, in order (repeatable).
    #[arg(long = "arg", allow_negative_numbers = true)]
    args: Vec<i64>,
    /// Shorthand for the hash puzzle: first argument.
    #[arg(long, conflicts_with = "args", requires = "difficulty")]
    input: Option<i64>,
    /// Shorthand for the hash puzzle: second argument.
    #[arg(long, conflicts_with = "args", requires = "input")]
    difficulty: Option<i64>,
    #[command(flatten)]
    limits: LimitArgs,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,ww_sched=info".into()),
        )
        .init();
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Worker(args) => rpc::block_on_local(run_worker(args)).map_err(Into::into),
        Command::Call(args) => rpc::block_on_local(call(args)).map_err(Into::into),
        Command::RunLocal(args) => run_local(args).map(Ok),
    };
    match outcome.and_then(|inner| inner) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn read_module(path: &Path) -> Result<Vec<u8>> {
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

async fn run_worker(args: WorkerArgs) -> Result<()> {
    let identity = match &args.key {
        Some(path) => Identity::load_or_create(path)?,
        None => Identity::generate(),
    };
    let transport = Libp2pTransport::new(Libp2pConfig::new(identity))?;
    let sandbox = Arc::new(Sandbox::new(SandboxConfig::default()));
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
    let server = WorkerServer::new(sandbox, config);
    let _serving = rpc::serve(
        &transport,
        &worker::worker_protocol(),
        server.into_client().client,
    )?;
    let peer = transport.local_peer_id();
    for listen in &args.listen {
        transport.listen(Address::new(listen.clone())).await?;
    }
    // Wildcard listeners report one address per interface shortly after binding.
    tokio::time::sleep(Duration::from_millis(100)).await;
    println!("peer id: {peer}");
    for address in transport.listen_addresses() {
        println!("listening on {}", address.with_peer(&peer));
    }
    tokio::signal::ctrl_c().await?;
    Ok(())
}

async fn call(args: CallArgs) -> Result<()> {
    let wasm = read_module(&args.wasm)?;
    let (address, peer) = Address::new(args.peer.clone()).split_peer()?;
    let Some(peer) = peer else {
        bail!(
            "--peer {} has no /p2p/<peer id> suffix; use an address as `ww-sched worker` prints it",
            args.peer
        );
    };
    let transport = Libp2pTransport::new(Libp2pConfig::new(Identity::generate()))?;
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

fn run_local(args: RunLocalArgs) -> Result<()> {
    let wasm = read_module(&args.wasm)?;
    let call_args = match (args.input, args.difficulty) {
        (Some(input), Some(difficulty)) => vec![input, difficulty],
        _ => args.args,
    };
    let sandbox = Sandbox::new(SandboxConfig::default());
    let report = sandbox.run(&RunSpec {
        module: ModuleRef::Bytes(wasm),
        export: args.export,
        args: call_args,
        limits: args.limits.limits(),
    });
    use std::io::Write;
    std::io::stdout().write_all(&report.stdout)?;
    std::io::stderr().write_all(&report.stderr)?;
    match report.outcome {
        Ok(values) => {
            let text: Vec<String> = values.iter().map(i64::to_string).collect();
            println!("{}", text.join(" "));
            eprintln!("fuel used: {}", report.fuel_used);
            Ok(())
        }
        Err(e) => bail!(
            "run failed ({}): {} [fuel used: {}]",
            e.kind().as_str(),
            e.message(),
            report.fuel_used
        ),
    }
}
