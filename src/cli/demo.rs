//! `ww-sched demo`: the main job on an embedded default. Workers start on
//! loopback in this process, hash-puzzle tasks go to them over libp2p and Cap'n
//! Proto, and every result is checked against the native reference.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;
use futures::stream::{FuturesUnordered, StreamExt};
use ww_sched::exec::{Sandbox, SandboxConfig};
use ww_sched::node::WorkerNode;
use ww_sched::rpc::RpcConfig;
use ww_sched::tasks::{hash_puzzle, HASH_PUZZLE_WASM};
use ww_sched::transport::{Address, Identity, Libp2pConfig, Libp2pTransport, Transport};
use ww_sched::worker::{RemoteWorker, WorkerConfig};

/// Flags of `ww-sched demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Worker nodes to start.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=32))]
    workers: u32,
    /// Hash-puzzle tasks to run (inputs 1, 2, ...).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=1000))]
    tasks: u32,
    /// Leading zero hex digits each puzzle asks for (about 16^N hashes each).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(0..=6))]
    difficulty: u32,
}

fn short(peer: &impl std::fmt::Display) -> String {
    let text = peer.to_string();
    let tail = text.len().saturating_sub(6);
    format!("…{}", &text[tail..])
}

/// Runs the demo and prints each task's worker and result.
pub async fn run(args: DemoArgs) -> Result<()> {
    let started = Instant::now();
    let sandbox = Arc::new(Sandbox::new(SandboxConfig::default()));
    let loopback = [Address::new("/ip4/127.0.0.1/tcp/0")];
    let mut nodes = Vec::new();
    for _ in 0..args.workers {
        let transport = Libp2pTransport::new(Libp2pConfig::new(Identity::generate()))?;
        let config = WorkerConfig {
            slots: 1,
            ..WorkerConfig::default()
        };
        nodes.push(WorkerNode::start(transport, sandbox.clone(), config, &loopback).await?);
    }
    let caller = Libp2pTransport::new(Libp2pConfig::new(Identity::generate()))?;
    let mut workers = Vec::new();
    for node in &nodes {
        for address in node.transport().listen_addresses() {
            caller.add_peer_address(node.peer_id(), address)?;
        }
        workers.push(RemoteWorker::connect(&caller, node.peer_id(), RpcConfig::default()).await?);
        println!(
            "worker {} listening on {}",
            short(&node.peer_id()),
            node.dial_addresses()[0]
        );
    }
    println!(
        "running {} hash-puzzle tasks (difficulty {}) on {} workers",
        args.tasks, args.difficulty, args.workers
    );
    let mut pending: FuturesUnordered<_> = (1..=args.tasks)
        .map(|input| {
            let worker = &workers[(input as usize - 1) % workers.len()];
            async move {
                let sent = Instant::now();
                let answer = worker
                    .assign(
                        HASH_PUZZLE_WASM,
                        i64::from(input),
                        i64::from(args.difficulty),
                    )
                    .await;
                (input, worker.peer(), answer, sent.elapsed())
            }
        })
        .collect();
    let mut done = 0;
    let mut wrong = 0;
    while let Some((input, peer, answer, took)) = pending.next().await {
        done += 1;
        let answer = answer?;
        let expected = hash_puzzle(input, args.difficulty).to_string();
        let verdict = if answer == expected {
            "verified"
        } else {
            wrong += 1;
            "WRONG"
        };
        println!(
            "[{done}/{}] task {input}: run({input}, {}) = {answer} on worker {} in {:.2} s ({verdict})",
            args.tasks,
            args.difficulty,
            short(&peer),
            took.as_secs_f64()
        );
    }
    println!(
        "{} tasks, {} verified, {} workers, {:.2} s",
        args.tasks,
        args.tasks - wrong,
        args.workers,
        started.elapsed().as_secs_f64()
    );
    if wrong > 0 {
        bail!("{wrong} results disagree with the native reference");
    }
    Ok(())
}
