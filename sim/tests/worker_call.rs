//! The same worker and caller code as on real hosts, in a seeded turmoil
//! simulation: a correct answer, a timeout within its deadline under a partition,
//! a new call after repair, and an identical trace for the same seed.

use std::sync::Arc;
use std::time::Duration;

use ww::exec::{Sandbox, SandboxConfig, SeededHost};
use ww::rpc::{self, RpcConfig, RpcError};
use ww::transport::{Address, SimConfig, SimTransport, Transport};
use ww_sched::tasks::{hash_puzzle, HASH_PUZZLE_WASM};
use ww_sched::worker::{self, ExecMode, RemoteWorker, WorkerConfig, WorkerServer};
use ww_sim::{derive_seed, root_seed, Trace};

type HostResult = Result<(), Box<dyn std::error::Error>>;

const WORKER_PORT: u16 = 7000;
/// The call deadline under test; a partitioned call must fail within it.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Slack for the simulated clock's tick granularity when checking the deadline.
const TICK_SLACK: Duration = Duration::from_millis(50);

fn sim_clock_ns() -> u64 {
    u64::try_from(turmoil::sim_elapsed().unwrap_or_default().as_nanos()).unwrap_or(u64::MAX)
}

async fn run_worker(seed: u64) -> HostResult {
    let transport = SimTransport::new(SimConfig::from_seed(seed, "worker"));
    let host = SeededHost::new(derive_seed(seed, "worker-sandbox"), Arc::new(sim_clock_ns));
    let sandbox = Arc::new(Sandbox::new(SandboxConfig {
        host: Arc::new(host),
        ..SandboxConfig::default()
    }));
    let config = WorkerConfig {
        mode: ExecMode::Inline,
        slots: 1,
        ..WorkerConfig::default()
    };
    let server = WorkerServer::new(sandbox, config).into_client();
    let _serving = rpc::serve(&transport, &worker::worker_protocol(), server.client)?;
    transport
        .listen(Address::new(format!("/dns4/worker/tcp/{WORKER_PORT}")))
        .await?;
    std::future::pending::<()>().await;
    Ok(())
}

async fn connect_with_retry(
    transport: &SimTransport,
    seed: u64,
    config: RpcConfig,
) -> Result<RemoteWorker, RpcError> {
    let worker = SimConfig::from_seed(seed, "worker").identity.peer_id();
    transport.add_peer_address(
        worker,
        Address::new(format!("/dns4/worker/tcp/{WORKER_PORT}")),
    )?;
    let mut attempt = 0;
    loop {
        match RemoteWorker::connect(transport, worker, config).await {
            Ok(remote) => return Ok(remote),
            // The worker host may not be listening yet at the very start.
            Err(e) if attempt < 10 => {
                tracing::debug!(attempt, error = %e, "connect retry");
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn run_caller(seed: u64, trace: Trace) -> HostResult {
    let transport = SimTransport::new(SimConfig::from_seed(seed, "caller"));
    let config = RpcConfig {
        connect_timeout: CALL_TIMEOUT,
        call_timeout: CALL_TIMEOUT,
    };

    let remote = connect_with_retry(&transport, seed, config).await?;
    let answer = remote.assign(HASH_PUZZLE_WASM, 7, 2).await?;
    trace.record(format!("caller: assign(7, 2) = {answer}"));
    if answer != hash_puzzle(7, 2).to_string() {
        return Err(format!("wrong answer {answer}, expected {}", hash_puzzle(7, 2)).into());
    }

    turmoil::partition("caller", "worker");
    trace.record("caller: partitioned from worker");
    let started = tokio::time::Instant::now();
    let cut_off = remote.assign(HASH_PUZZLE_WASM, 8, 2).await;
    let waited = started.elapsed();
    trace.record(format!(
        "caller: partitioned call -> {cut_off:?} after {waited:?}"
    ));
    match cut_off {
        Err(RpcError::Timeout { .. }) => {}
        other => return Err(format!("expected a timeout under partition, got {other:?}").into()),
    }
    if waited > CALL_TIMEOUT + TICK_SLACK {
        return Err(format!("timeout took {waited:?}, deadline {CALL_TIMEOUT:?}").into());
    }
    if !remote.is_lost() {
        return Err("a timed-out connection must be marked lost".into());
    }
    drop(remote);

    turmoil::repair("caller", "worker");
    trace.record("caller: repaired");
    let remote = connect_with_retry(&transport, seed, config).await?;
    let answer = remote.assign(HASH_PUZZLE_WASM, 8, 2).await?;
    trace.record(format!("caller: assign(8, 2) = {answer}"));
    if answer != hash_puzzle(8, 2).to_string() {
        return Err(format!("wrong answer {answer} after repair").into());
    }
    Ok(())
}

/// Runs the whole scenario under `seed` and returns its trace.
fn run_scenario(seed: u64) -> Trace {
    let trace = Trace::new();
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(Duration::from_secs(60))
        .build();
    sim.host("worker", move || run_worker(seed));
    let caller_trace = trace.clone();
    sim.client("caller", run_caller(seed, caller_trace));
    let outcome = trace.capture(|| sim.run());
    let replay = format!("WW_SIM_SEED={seed} cargo test -p ww-sim --test worker_call");
    if let Err(e) = outcome {
        panic!(
            "simulation failed under seed {seed}: {e}\nreplay: {replay}\ntrace:\n{}",
            trace.lines().join("\n")
        );
    }
    trace
}

#[test]
fn worker_call_survives_partition_and_replays_identically() {
    let seed = root_seed(42);
    eprintln!("seed {seed} (replay with WW_SIM_SEED={seed})");
    let first = run_scenario(seed);
    let lines = first.lines();
    assert!(
        lines.iter().any(|l| l.contains("assign(8, 2) =")),
        "the post-repair call never happened:\n{}",
        lines.join("\n")
    );
    let second = run_scenario(seed);
    assert_eq!(
        first.lines(),
        second.lines(),
        "same seed {seed}, different traces"
    );
    assert_eq!(first.digest(), second.digest());
    let other = run_scenario(seed.wrapping_add(1));
    assert_ne!(
        first.digest(),
        other.digest(),
        "a different seed should give a different trace (node ids differ)"
    );
}

/// Keeps the test honest: the trace is really collected from the library's events.
#[test]
fn trace_contains_transport_events() {
    let trace = run_scenario(root_seed(7));
    let lines = trace.lines();
    let has = |needle: &str| lines.iter().any(|l| l.contains(needle));
    assert!(has("sim dial ok"), "no dial events:\n{}", lines.join("\n"));
    assert!(has("sim stream accepted"), "no accept events");
}
