//! `ww-sched demo`: the main job on an embedded default. A gateway and workers
//! start in this process on loopback; workers register through the gateway's
//! channel; hash-puzzle tasks are submitted over the REST API like any client
//! would; each run's worker and result are printed, checked against the native
//! reference.

use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};
use ww::exec::{probe_native_stack, Sandbox, SandboxConfig};
use ww::rpc::RpcConfig;
use ww::transport::{Address, Identity, Libp2pConfig, Libp2pTransport, PeerId, Transport};
use ww_sched::tasks::{hash_puzzle, HASH_PUZZLE_WASM};
use ww_sched::worker::node::{keep_registered, Callers, GatewayLocator, WorkerNode};
use ww_sched::worker::WorkerConfig;

use super::http;

/// Flags of `ww-sched demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Worker nodes to start.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=32))]
    workers: u32,
    /// Hash-puzzle tasks to submit (inputs 1, 2, ...).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=1000))]
    tasks: u32,
    /// Leading zero hex digits each puzzle asks for (about 16^N hashes each).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(0..=6))]
    difficulty: u32,
}

fn short(peer: &str) -> String {
    let tail = peer.len().saturating_sub(6);
    format!("…{}", &peer[tail..])
}

/// Runs blocking HTTP off the node's thread (the gateway serves on that thread).
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .context("HTTP client thread failed")?
}

/// Runs the demo and prints each task's worker and result.
pub async fn run(args: DemoArgs) -> Result<()> {
    let started = Instant::now();
    let data = std::env::temp_dir().join(format!("ww-sched-demo-{}", std::process::id()));
    let outcome = run_in(&args, &data, started).await;
    let _ = std::fs::remove_dir_all(&data);
    outcome
}

/// The demo with its gateway's data in `data`.
async fn run_in(args: &DemoArgs, data: &std::path::Path, started: Instant) -> Result<()> {
    let loopback = Address::new("/ip4/127.0.0.1/tcp/0");
    let gateway_transport = Libp2pTransport::new(Libp2pConfig::new(Identity::generate()))?;
    let gateway_address = gateway_transport.listen(loopback.clone()).await?;
    let gateway_peer = gateway_transport.local_peer_id();
    let running = super::gateway::start(
        &gateway_transport,
        None,
        data,
        "127.0.0.1:0".parse()?,
        &super::gateway::GatewayLimits::default(),
    )
    .await?;
    let base = format!("http://{}", running.http);
    println!(
        "gateway {} with its REST API on {base}",
        short(&gateway_peer.to_string())
    );
    let registrations =
        start_workers(args.workers, &loopback, gateway_peer, &gateway_address).await?;
    wait_for_workers(&base, args.workers).await?;
    let ids = submit_puzzles(&base, args).await?;
    let wrong = follow_puzzles(&base, args, ids).await?;
    println!(
        "{} tasks, {} verified, {} workers, {:.2} s",
        args.tasks,
        args.tasks - wrong,
        args.workers,
        started.elapsed().as_secs_f64()
    );
    for registration in registrations {
        registration.abort();
    }
    if wrong > 0 {
        bail!("{wrong} results disagree with the native reference");
    }
    Ok(())
}

/// Starts `count` workers on loopback, each registering with the gateway;
/// their registration tasks.
async fn start_workers(
    count: u32,
    loopback: &Address,
    gateway_peer: PeerId,
    gateway_address: &Address,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    probe_native_stack().context("the sandbox's start-up check failed")?;
    let sandbox = Arc::new(Sandbox::new(SandboxConfig::default()));
    let mut registrations = Vec::new();
    for _ in 0..count {
        let transport = Libp2pTransport::new(Libp2pConfig::new(Identity::generate()))?;
        transport.add_peer_address(gateway_peer, gateway_address.clone())?;
        let config = WorkerConfig {
            slots: 1,
            ..WorkerConfig::default()
        };
        let node = Rc::new(
            WorkerNode::start(
                transport,
                sandbox.clone(),
                config,
                std::slice::from_ref(loopback),
                // The gateway calls over the registration; nobody else needs to.
                Callers::Only(Default::default()),
            )
            .await?,
        );
        println!("worker {} started", short(&node.peer_id().to_string()));
        registrations.push(tokio::task::spawn_local(keep_registered(
            node,
            GatewayLocator::Peer(gateway_peer),
            None,
            RpcConfig::default(),
        )));
    }
    Ok(registrations)
}

/// Workers register through the gateway's channel; waits until all `count`
/// are in its pool (30 s at most).
async fn wait_for_workers(base: &str, count: u32) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let url = format!("{base}/workers");
        let workers = blocking(move || http::get_json(&url)).await?;
        let registered = workers.as_array().map_or(0, Vec::len);
        if registered == count as usize {
            println!("{registered} workers registered with the gateway");
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {registered} of {count} workers registered in 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Uploads the hash-puzzle module and submits one task per input; the
/// inputs with their task ids.
async fn submit_puzzles(base: &str, args: &DemoArgs) -> Result<Vec<(u32, String)>> {
    let url = base.to_string();
    let module = blocking(move || http::upload_module(&url, HASH_PUZZLE_WASM)).await?;
    println!(
        "submitting {} hash-puzzle tasks (difficulty {}) as module {}…",
        args.tasks,
        args.difficulty,
        &module[..12]
    );
    let mut ids = Vec::new();
    for input in 1..=args.tasks {
        let body = json!({
            "id": format!("puzzle-{input}"),
            "description": format!("hash puzzle {input}/{}", args.difficulty),
            "module": module,
            "args": [input, args.difficulty],
        });
        let url = format!("{base}/tasks");
        let task = blocking(move || http::post_json(&url, &body)).await?;
        ids.push((input, task["id"].as_str().unwrap_or_default().to_string()));
    }
    Ok(ids)
}

/// Follows the tasks until all are final, checking each answer against the
/// native reference; how many disagree.
async fn follow_puzzles(base: &str, args: &DemoArgs, ids: Vec<(u32, String)>) -> Result<u32> {
    let mut pending: BTreeSet<(u32, String)> = ids.into_iter().collect();
    let mut done = 0;
    let mut wrong = 0;
    while !pending.is_empty() {
        tokio::time::sleep(Duration::from_millis(50)).await;
        for (input, id) in pending.clone() {
            let url = format!("{base}/tasks/{id}");
            let task: Value = blocking(move || http::get_json(&url)).await?;
            let status = task["status"].as_str().unwrap_or("");
            if !http::is_final(status) {
                continue;
            }
            pending.remove(&(input, id.clone()));
            done += 1;
            let run = &task["runs"][0];
            let answer = run["results"][0]
                .as_i64()
                .map(|v| v.to_string())
                .unwrap_or_default();
            let expected = hash_puzzle(input, args.difficulty).to_string();
            let verdict = if status == "succeeded" && answer == expected {
                "verified"
            } else {
                wrong += 1;
                "WRONG"
            };
            let took_ms = run["finished_ms"]
                .as_u64()
                .unwrap_or(0)
                .saturating_sub(run["started_ms"].as_u64().unwrap_or(0));
            println!(
                "[{done}/{}] {id}: run({input}, {}) = {answer} on worker {} in {:.2} s, {status} ({verdict})",
                args.tasks,
                args.difficulty,
                short(run["worker"].as_str().unwrap_or("")),
                took_ms as f64 / 1e3
            );
        }
    }
    Ok(wrong)
}
