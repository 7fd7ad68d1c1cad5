//! The `ww-sched` command line.

#![forbid(unsafe_code)]

mod cli;

use std::io::IsTerminal as _;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ww-sched",
    version,
    about = "A distributed job scheduler for WebAssembly tasks",
    long_about = "A distributed job scheduler for WebAssembly tasks.\n\n\
        `ww-sched demo` runs the whole thing on this machine: workers on loopback, \
        hash-puzzle tasks sent to them, results checked and printed.\n\n\
        By hand: start a worker with `ww-sched worker`; it prints its address. In \
        another shell, `ww-sched call --peer <that address> --wasm \
        tasks/hash-puzzle/hash-puzzle.wasm --input 7 --difficulty 3` runs the module's \
        `run(input, difficulty)` export on it. `ww-sched run-local` runs a module in \
        the sandbox without any network.\n\n\
        Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=debug) for more, and \
        --log-format json for one JSON object a line."
)]
struct Cli {
    /// How log lines on stderr look: `text` for people, `json` for machines
    /// (one JSON object a line, with task, index, peer and worker as fields).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// The `--log-format` choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// tracing's human-readable lines.
    Text,
    /// One JSON object a line (tracing-subscriber's json format).
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Start workers on loopback, send them hash-puzzle tasks, print checked results.
    Demo(cli::demo::DemoArgs),
    /// Start the gateway: REST API, scheduler and task store; workers register with it.
    /// On a storage error it stops acknowledging and exits 1, for a supervisor to restart it.
    Gateway(cli::gateway::GatewayArgs),
    /// Start a worker node: print its peer id and addresses, then serve until Ctrl-C.
    Worker(cli::worker::WorkerArgs),
    /// Serve as a boot server: nodes started with `--discover <its address>/boot`
    /// register there and find each other, where multicast does not reach.
    /// Prints that address, then serves until Ctrl-C.
    BootServer(cli::boot_server::BootServerArgs),
    /// List the cluster's anchors: `/` prints every host of the view as
    /// `/<peer id>`; `/<peer id>/path` lists what that host holds there.
    Ls(cli::anchor::LsArgs),
    /// Read, write or remove an anchor: bytes a host keeps at a path for others.
    Anchor(cli::anchor::AnchorArgs),
    /// Put a file into the cluster's DHT (prints its key) or get one back by key.
    Record(cli::record::RecordArgs),
    /// Listen to the cluster's heartbeats for a few seconds and print who is there.
    Peers(cli::peers::PeersArgs),
    /// Call `assign` on a remote worker and print the result.
    Call(cli::call::CallArgs),
    /// Start a WASM module as a long-running process on a worker and print its
    /// id (`<host>/proc/<n>`, the host as --peer named it); with --follow, print its output
    /// until it ends. No deadline unless --wall-time-ms is given.
    Spawn(cli::process::SpawnArgs),
    /// List processes (running, and the most recently ended) with state, exit
    /// code, start time and module: one worker's (--peer), or every worker's in
    /// the cluster view.
    Ps(cli::process::PsArgs),
    /// Wait for a process to end and print how: `exited <code>`, `killed 137`
    /// or `failed 134 <error>`; with --follow, print its output meanwhile.
    Wait(cli::process::WaitArgs),
    /// Stop a running process (by the id `spawn` printed) and print `killed 137`.
    Kill(cli::process::KillArgs),
    /// Submit a task to the gateway, print its id, follow it, print the results.
    Submit(cli::submit::SubmitArgs),
    /// List the gateway's tasks (or watch the list), or show (or cancel) one.
    Tasks(cli::submit::TasksArgs),
    /// Print each run's stdout in index order; with --follow, as runs finish,
    /// until the task is final.
    Logs(cli::logs::LogsArgs),
    /// Run a module in the local sandbox, without a network.
    RunLocal(cli::run_local::RunLocalArgs),
    /// Print a new swarm key (libp2p PSK v1 format): give the file to every node
    /// of a cluster with --swarm-key, and only nodes holding it can connect.
    SwarmKey(cli::keys::SwarmKeyArgs),
    /// Print the peer id of a node's key file, creating the key if it is missing.
    Id(cli::keys::IdArgs),
    /// Print the gateway's OpenAPI 3.1 document (what `GET /openapi.json`
    /// serves), e.g. to generate a client; needs no running gateway.
    Openapi,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The demo's own lines tell the story; node logs would drown them.
    let default_filter = match cli.command {
        Command::Demo(_) => "warn",
        _ => "warn,ww=info,ww_sched=info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| default_filter.into());
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into a pipe or file.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        // Fields at the top level, beside the message, so a log pipeline can
        // filter on `task` or `peer` without digging into a nested object.
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    let outcome = match cli.command {
        Command::Demo(args) => cli::on_node_thread(cli::demo::run(args)),
        Command::Gateway(args) => cli::on_node_thread(cli::gateway::run(args)),
        Command::Worker(args) => cli::on_node_thread(cli::worker::run(args)),
        Command::Submit(args) => cli::submit::submit(args),
        Command::Tasks(args) => cli::submit::tasks(args),
        Command::Logs(args) => cli::logs::run(args),
        Command::Call(args) => cli::on_node_thread(cli::call::run(args)),
        Command::Spawn(args) => cli::on_node_thread(cli::process::spawn(args)),
        Command::Ps(args) => cli::on_node_thread(cli::process::ps(args)),
        Command::Wait(args) => cli::on_node_thread(cli::process::wait(args)),
        Command::Kill(args) => cli::on_node_thread(cli::process::kill(args)),
        Command::Peers(args) => cli::on_node_thread(cli::peers::run(args)),
        Command::BootServer(args) => cli::on_node_thread(cli::boot_server::run(args)),
        Command::Ls(args) => cli::on_node_thread(cli::anchor::ls(args)),
        Command::Record(args) => cli::on_node_thread(cli::record::run(args)),
        Command::Anchor(args) => cli::on_node_thread(cli::anchor::run(args)),
        Command::RunLocal(args) => cli::run_local::run(args),
        Command::SwarmKey(args) => cli::keys::swarm_key(args),
        Command::Id(args) => cli::keys::id(args),
        Command::Openapi => serde_json::to_string_pretty(&ww_sched::gateway::openapi())
            .map(|text| println!("{text}"))
            .map_err(anyhow::Error::from),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
