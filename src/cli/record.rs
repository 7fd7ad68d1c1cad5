//! `ww-sched record`: put bytes into the cluster's DHT, get them back by key.

use std::io::Write;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use ww::boot::WallClock;
use ww::records::{self, Record, RecordKey, PAYLOAD_BYTES_MAX, REPLICAS};
use ww::transport::Identity;

use super::anchor::{observe, ReachArgs};

/// Flags of `ww-sched record`.
#[derive(Args)]
pub struct RecordArgs {
    #[command(subcommand)]
    command: RecordCommand,
}

#[derive(Subcommand)]
enum RecordCommand {
    /// Store FILE's bytes (at most 4 MiB) on the hosts closest to its hash;
    /// prints the key (the SHA-256, hex). The record stays after this exits.
    Put {
        /// The file to store.
        file: std::path::PathBuf,
        /// Key file to sign with (by default a fresh identity).
        #[arg(long)]
        key: Option<std::path::PathBuf>,
        #[command(flatten)]
        reach: ReachArgs,
    },
    /// Print the bytes stored under KEY, checked against it and its signature.
    Get {
        /// The key `record put` printed.
        key: String,
        #[command(flatten)]
        reach: ReachArgs,
    },
}

/// Puts or gets one record.
pub async fn run(args: RecordArgs) -> Result<()> {
    match args.command {
        RecordCommand::Put { file, key, reach } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            if bytes.len() > PAYLOAD_BYTES_MAX {
                bail!(
                    "{} is {} bytes; a record holds at most {PAYLOAD_BYTES_MAX}",
                    file.display(),
                    bytes.len()
                );
            }
            let identity = match &key {
                Some(path) => Identity::load_or_create(path)?,
                None => Identity::generate(),
            };
            let record = Record::content(&identity, WallClock::host().now_ms(), bytes)?;
            let observer = observe(&reach).await?;
            tokio::time::sleep_until(observer.deadline).await;
            let hosts = observer.membership.view_peers();
            let stored = records::put(&observer.transport, &hosts, &record, REPLICAS).await?;
            eprintln!(
                "stored on {} of {} hosts:",
                stored.len(),
                REPLICAS.min(hosts.len())
            );
            for peer in &stored {
                eprintln!("  {peer}");
            }
            println!("{}", record.key());
        }
        RecordCommand::Get { key, reach } => {
            let key: RecordKey = key.parse()?;
            let observer = observe(&reach).await?;
            tokio::time::sleep_until(observer.deadline).await;
            let hosts = observer.membership.view_peers();
            let record = records::get(&observer.transport, &hosts, &key).await?;
            std::io::stdout().write_all(&record.payload)?;
        }
    }
    Ok(())
}
