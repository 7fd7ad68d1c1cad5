//! `ww-sched logs`: each run's stdout, in index order, as the runs finish.

use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::Value;

use super::http;
use super::http::AuthArgs;

/// Flags of `ww-sched logs`.
#[derive(Args)]
pub struct LogsArgs {
    /// The task whose runs to print.
    id: String,
    /// Keep going until the task is final, printing each run once it finishes.
    #[arg(long, short = 'f')]
    follow: bool,
    /// Milliseconds between polls while following.
    #[arg(long, default_value_t = 500)]
    poll_ms: u64,
    /// The gateway's HTTP address.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    gateway: String,
    #[command(flatten)]
    auth: AuthArgs,
}

/// Runs asked for per request (the gateway's page maximum).
const RUNS_PAGE: usize = 1000;

/// Whether a run's status is final (it will not change and its stdout is all there).
pub fn run_is_final(run: &Value) -> bool {
    matches!(
        run["status"].as_str(),
        Some("succeeded" | "failed" | "timed_out" | "cancelled")
    )
}

/// Prints the finished runs (and, with `--follow`, waits for the rest).
pub fn run(args: LogsArgs) -> Result<()> {
    let gateway = args.gateway.trim_end_matches('/');
    let client = args.auth.client();
    let id = &args.id;
    let mut out = std::io::stdout().lock();
    // Runs are printed in index order: `next` is the first not printed yet.
    let mut next: u32 = 0;
    loop {
        let url = format!("{gateway}/tasks/{id}?runs_offset={next}&runs_limit={RUNS_PAGE}");
        let task = client.get_json_patiently(&url)?;
        let task_final = http::is_final(task["status"].as_str().unwrap_or(""));
        let runs = task["runs"].as_array().cloned().unwrap_or_default();
        let full_page = runs.len() == RUNS_PAGE;
        let mut waiting = false;
        for run in &runs {
            // A final task's leftover runs will never change: print them as they are.
            if !run_is_final(run) && !task_final {
                if args.follow {
                    waiting = true;
                    break;
                }
                // Without --follow, an unfinished run is skipped, not waited for.
                next += 1;
                continue;
            }
            let index = run["index"].as_u64().unwrap_or(u64::from(next));
            let stdout =
                client.get_text_patiently(&format!("{gateway}/tasks/{id}/runs/{index}/stdout"))?;
            print_run(&mut out, run, &stdout).context("cannot write to stdout")?;
            next += 1;
        }
        if full_page && !waiting {
            // The whole page went out: the next one may be ready now.
            continue;
        }
        if !args.follow || task_final {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(args.poll_ms));
    }
}

/// A header line naming the run, then its stdout ending in a newline.
fn print_run(out: &mut impl std::io::Write, run: &Value, stdout: &str) -> std::io::Result<()> {
    let mut header = format!(
        "==> run {} {} (attempt {}",
        run["index"],
        run["status"].as_str().unwrap_or("?"),
        run["attempt"]
    );
    if let Some(worker) = run["worker"].as_str() {
        header.push_str(&format!(", worker {worker}"));
    }
    if let Some(error) = run["error"].as_str() {
        // One line per header, whatever the error text holds.
        header.push_str(&format!(", {}", error.replace(['\n', '\r'], " ")));
    }
    writeln!(out, "{header}) <==")?;
    out.write_all(stdout.as_bytes())?;
    if !stdout.is_empty() && !stdout.ends_with('\n') {
        writeln!(out)?;
    }
    out.flush()
}
