//! `ww-sched peers`: join the cluster as a silent observer and print its view.

use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;
use ww::cluster::{parse_selector, Query, Record};
use ww::transport::{Identity, Libp2pTransport, Transport};

use super::{ClusterArgs, OutputFormat};

/// Flags of `ww-sched peers`.
#[derive(Args)]
pub struct PeersArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// How long to listen for heartbeats before printing, in ms (a node beats
    /// every TTL/6, so the default hears every live node at least twice).
    #[arg(long, default_value_t = 4_000)]
    wait_ms: u64,
    /// Which records: all, peer=ID, peer^=PREFIX, instance=HEX, host=NAME,
    /// host^=PREFIX, meta=KEY=VALUE, meta^=KEY=PREFIX.
    #[arg(long, default_value = "all")]
    select: String,
    /// Print at most this many records.
    #[arg(long)]
    limit: Option<usize>,
    /// Print JSON (one array of records) instead of a table; the same as `--output json`.
    #[arg(long)]
    json: bool,
    /// How to print the view: a table, or one JSON array.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    output: OutputFormat,
}

#[derive(Serialize)]
struct PeerRow {
    peer: String,
    host: String,
    instance: String,
    meta: std::collections::BTreeMap<String, String>,
    ttl_ms: u32,
    expires_in_ms: u64,
}

fn row(record: &Record, now_ms: u64) -> PeerRow {
    PeerRow {
        peer: record.peer.to_string(),
        host: record.heartbeat.host().to_string(),
        instance: record.heartbeat.instance_hex(),
        meta: record.heartbeat.meta().iter().cloned().collect(),
        ttl_ms: record.heartbeat.ttl_ms(),
        expires_in_ms: record.deadline_ms.saturating_sub(now_ms),
    }
}

/// Listens for `--wait-ms`, then prints the view.
pub async fn run(args: PeersArgs) -> Result<()> {
    let selector =
        parse_selector(&args.select).with_context(|| format!("--select {}", args.select))?;
    let identity = Identity::generate();
    let transport = Libp2pTransport::new(args.cluster.network.libp2p_config(identity.clone())?)?;
    let membership = super::join_cluster(&transport, identity, &args.cluster, false, &[]).await?;
    tokio::time::sleep(Duration::from_millis(args.wait_ms)).await;
    let mut query = Query::new(selector);
    if let Some(limit) = args.limit {
        query = query.with_limit(limit);
    }
    let now_ms = membership.now_ms();
    let rows: Vec<PeerRow> = membership
        .view(&query)
        .iter()
        .filter(|r| r.peer != transport.local_peer_id())
        .map(|r| row(r, now_ms))
        .collect();
    if args.json || args.output == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<54} {:<20} {:<16} {:>10}  META",
        "PEER", "HOST", "INSTANCE", "EXPIRES"
    );
    for row in &rows {
        let meta: Vec<String> = row.meta.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "{:<54} {:<20} {:<16} {:>8}ms  {}",
            row.peer,
            row.host,
            row.instance,
            row.expires_in_ms,
            meta.join(",")
        );
    }
    println!(
        "{} peers in namespace {}",
        rows.len(),
        args.cluster.namespace
    );
    Ok(())
}
