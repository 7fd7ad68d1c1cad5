//! `ww-sched submit` and `ww-sched tasks`: the REST API from the command line.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use serde_json::{json, Value};

use super::http;

/// Flags of `ww-sched submit`.
#[derive(Args)]
pub struct SubmitArgs {
    /// The WASM module; it must export `run(i32, i32) -> i32` (see --export).
    wasm: PathBuf,
    /// First argument of the export.
    #[arg(long)]
    input: i64,
    /// Second argument of the export.
    #[arg(long)]
    difficulty: i64,
    /// Seconds before the first run.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Seconds between runs.
    #[arg(long, default_value_t = 0)]
    delay: u64,
    /// Number of runs.
    #[arg(long, default_value_t = 1)]
    repeats: u32,
    /// Time limit of each run, in seconds.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Task id (generated when absent).
    #[arg(long)]
    id: Option<String>,
    /// Export to call.
    #[arg(long, default_value = "run")]
    export: String,
    /// The gateway's HTTP address.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    gateway: String,
    /// Print the task id and return without following it.
    #[arg(long)]
    no_follow: bool,
    #[command(flatten)]
    auth: AuthArgs,
}

/// Where `submit` and `tasks` find the gateway's API token.
#[derive(Args)]
pub struct AuthArgs {
    /// The gateway's data directory: its api-token is sent when readable and
    /// WW_SCHED_TOKEN is not set (a gateway on loopback needs none).
    #[arg(long, default_value = "ww-sched-data")]
    data: PathBuf,
}

impl AuthArgs {
    fn client(&self) -> http::Client {
        http::Client::new(http::find_token(&self.data))
    }
}

/// Flags of `ww-sched tasks`.
#[derive(Args)]
pub struct TasksArgs {
    /// Show this task and its runs (as JSON) instead of the list.
    id: Option<String>,
    /// Only tasks with this status (pending, running, succeeded, failed, cancelled).
    #[arg(long)]
    status: Option<String>,
    /// Cancel the task given as ID.
    #[arg(long, requires = "id")]
    cancel: bool,
    /// Delete the finished task given as ID, with its runs, now.
    #[arg(long, requires = "id", conflicts_with = "cancel")]
    purge: bool,
    /// The gateway's HTTP address.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    gateway: String,
    #[command(flatten)]
    auth: AuthArgs,
}

/// Submits, prints the id, then follows the task to the end.
pub fn submit(args: SubmitArgs) -> Result<()> {
    let wasm = super::read_module(&args.wasm)?;
    let gateway = args.gateway.trim_end_matches('/');
    let client = args.auth.client();
    let module = client.upload_module(gateway, &wasm)?;
    let mut body = json!({
        "module": module,
        "export": args.export,
        "args": [args.input, args.difficulty],
        "start_ms": args.start.saturating_mul(1000),
        "delay_ms": args.delay.saturating_mul(1000),
        "repeats": args.repeats,
        "duration_ms": args.duration.saturating_mul(1000),
    });
    if let Some(id) = &args.id {
        body["id"] = json!(id);
    }
    let task = client.post_json(&format!("{gateway}/tasks"), &body)?;
    let id = task["id"].as_str().unwrap_or_default().to_string();
    println!("{id}");
    if args.no_follow {
        return Ok(());
    }
    let task = follow(&client, gateway, &id)?;
    print_runs(&all_runs(&client, gateway, &id)?);
    if task["status"] != "succeeded" {
        bail!("task {id} ended {}", task["status"]);
    }
    Ok(())
}

/// Polls the task, printing a progress line whenever it changes, until it ends.
pub fn follow(client: &http::Client, gateway: &str, id: &str) -> Result<Value> {
    let mut last = String::new();
    loop {
        let task = client.get_json(&format!("{gateway}/tasks/{id}?runs_limit=1"))?;
        let status = task["status"].as_str().unwrap_or("?").to_string();
        let line = format!(
            "{id}: {status}, {}/{} runs due so far, {} completions",
            task["runs_total"], task["repeats"], task["completions"]
        );
        if line != last {
            eprintln!("{line}");
            last = line;
        }
        if http::is_final(&status) {
            return Ok(task);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Every run of a task, page by page.
pub fn all_runs(client: &http::Client, gateway: &str, id: &str) -> Result<Vec<Value>> {
    let mut runs = Vec::new();
    loop {
        let url = format!(
            "{gateway}/tasks/{id}?runs_offset={}&runs_limit={RUNS_PAGE}",
            runs.len()
        );
        let page = client.get_json(&url)?;
        let got = page["runs"].as_array().cloned().unwrap_or_default();
        let last = got.len() < RUNS_PAGE;
        runs.extend(got);
        if last {
            return Ok(runs);
        }
    }
}

/// Runs asked for per request (the gateway's page maximum).
const RUNS_PAGE: usize = 1000;

/// One line per run: index, attempt, worker, status, result or error.
pub fn print_runs(runs: &[Value]) {
    for run in runs {
        let outcome = match run["status"].as_str() {
            Some("succeeded") => format!("result {}", run["results"]),
            _ => format!(
                "{} {}",
                run["error_kind"].as_str().unwrap_or(""),
                run["error"].as_str().unwrap_or("")
            ),
        };
        println!(
            "run {} attempt {} on {}: {} {}",
            run["index"],
            run["attempt"],
            run["worker"].as_str().unwrap_or("-"),
            run["status"].as_str().unwrap_or("?"),
            outcome.trim()
        );
    }
}

/// Lists tasks, shows one, or cancels one.
pub fn tasks(args: TasksArgs) -> Result<()> {
    let gateway = args.gateway.trim_end_matches('/');
    let client = args.auth.client();
    match (&args.id, args.cancel) {
        (Some(id), _) if args.purge => {
            client.delete(&format!("{gateway}/tasks/{id}?purge=true"))?;
            println!("{id}: purged");
        }
        (Some(id), true) => {
            let task = client.delete(&format!("{gateway}/tasks/{id}"))?;
            println!("{id}: {}", task["status"].as_str().unwrap_or("?"));
        }
        (Some(id), false) => {
            let task = client.get_json(&format!("{gateway}/tasks/{id}"))?;
            println!("{}", serde_json::to_string_pretty(&task)?);
        }
        (None, _) => {
            println!(
                "{:<24} {:<10} {:>11} {:>7}  DESCRIPTION",
                "ID", "STATUS", "COMPLETIONS", "REPEATS"
            );
            // Page through every task with the id cursor.
            let mut after = String::new();
            loop {
                let mut url = format!("{gateway}/tasks?limit={RUNS_PAGE}&after={after}");
                if let Some(status) = &args.status {
                    url.push_str(&format!("&status={status}"));
                }
                let tasks = client.get_json(&url)?;
                let page = tasks.as_array().cloned().unwrap_or_default();
                for task in &page {
                    println!(
                        "{:<24} {:<10} {:>11} {:>7}  {}",
                        task["id"].as_str().unwrap_or(""),
                        task["status"].as_str().unwrap_or(""),
                        task["completions"].to_string(),
                        task["repeats"].to_string(),
                        task["description"].as_str().unwrap_or("")
                    );
                }
                match page.last().and_then(|t| t["id"].as_str()) {
                    Some(last) if page.len() == RUNS_PAGE => after = last.to_string(),
                    _ => break,
                }
            }
        }
    }
    Ok(())
}
