//! `ww-sched submit` and `ww-sched tasks`: the REST API from the command line.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use serde_json::{json, Value};

use super::http::AuthArgs;
use super::logs::run_is_final;
use super::{http, OutputFormat};

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
    /// How to print the list: a table, or one JSON array.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    output: OutputFormat,
    /// Redraw the list every second until Ctrl-C (piped: print it again only
    /// when it changed).
    #[arg(long, conflicts_with_all = ["id", "cancel", "purge"])]
    watch: bool,
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

/// How far a task has got: runs final so far, how many of those did not
/// succeed, of how many in all.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Progress {
    status: String,
    done: u64,
    failed: u64,
    total: u64,
}

impl Progress {
    /// The plain line printed when piped.
    fn line(&self, id: &str) -> String {
        format!(
            "{id}: {}, {}/{} runs done, {} failed",
            self.status, self.done, self.total, self.failed
        )
    }

    /// A bar for a terminal: `[#####.....] 5/10 runs, 1 failed, running`.
    fn bar(&self, id: &str) -> String {
        const WIDTH: u64 = 30;
        let filled = (self.done * WIDTH)
            .checked_div(self.total)
            .unwrap_or(0)
            .min(WIDTH);
        format!(
            "{id} [{}{}] {}/{} runs, {} failed, {}",
            "#".repeat(filled as usize),
            ".".repeat((WIDTH - filled) as usize),
            self.done,
            self.total,
            self.failed,
            self.status
        )
    }
}

/// Polls the task until it ends, showing its progress on stderr: a bar
/// redrawn in place on a terminal, a plain line per change when piped.
pub fn follow(client: &http::Client, gateway: &str, id: &str) -> Result<Value> {
    let terminal = std::io::stderr().is_terminal();
    let mut shown: Option<Progress> = None;
    // Runs below `cursor` are final, `failed_below` of them not succeeded:
    // each poll reads one page from the first unfinished run on (a run more
    // than a page past it is counted once the cursor comes near).
    let mut cursor: u64 = 0;
    let mut failed_below: u64 = 0;
    loop {
        let url = format!("{gateway}/tasks/{id}?runs_offset={cursor}&runs_limit={RUNS_PAGE}");
        let task = client.get_json_patiently(&url)?;
        let runs = task["runs"].as_array().cloned().unwrap_or_default();
        let mut rest = runs.iter().peekable();
        while let Some(run) = rest.next_if(|run| run_is_final(run)) {
            cursor += 1;
            failed_below += u64::from(run["status"] != "succeeded");
        }
        let (mut done, mut failed) = (cursor, failed_below);
        for run in rest.filter(|run| run_is_final(run)) {
            done += 1;
            failed += u64::from(run["status"] != "succeeded");
        }
        let status = task["status"].as_str().unwrap_or("?").to_string();
        let progress = Progress {
            done,
            failed,
            total: task["repeats"].as_u64().unwrap_or(0),
            status: status.clone(),
        };
        if shown.as_ref() != Some(&progress) {
            let mut err = std::io::stderr().lock();
            if terminal {
                // Back to the line's start, draw, clear what a longer bar left.
                let _ = write!(err, "\r{}\x1b[K", progress.bar(id));
            } else {
                let _ = writeln!(err, "{}", progress.line(id));
            }
            let _ = err.flush();
            shown = Some(progress);
        }
        if http::is_final(&status) {
            if terminal {
                eprintln!();
            }
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
        (None, _) if args.watch => watch(&client, gateway, &args)?,
        (None, _) => print!(
            "{}",
            render(&list_all(&client, gateway, &args)?, args.output)?
        ),
    }
    Ok(())
}

/// Every task the gateway lists (under `--status`), page by page with the id cursor.
fn list_all(client: &http::Client, gateway: &str, args: &TasksArgs) -> Result<Vec<Value>> {
    let mut all = Vec::new();
    let mut after = String::new();
    loop {
        let mut url = format!("{gateway}/tasks?limit={RUNS_PAGE}&after={after}");
        if let Some(status) = &args.status {
            url.push_str(&format!("&status={status}"));
        }
        let page = client.get_json_patiently(&url)?;
        let page = page.as_array().cloned().unwrap_or_default();
        let next = match page.last().and_then(|t| t["id"].as_str()) {
            Some(last) if page.len() == RUNS_PAGE => Some(last.to_string()),
            _ => None,
        };
        all.extend(page);
        match next {
            Some(last) => after = last,
            None => return Ok(all),
        }
    }
}

/// The list as a table, or as one JSON array, ending in a newline.
fn render(tasks: &[Value], output: OutputFormat) -> Result<String> {
    if output == OutputFormat::Json {
        return Ok(format!("{}\n", serde_json::to_string_pretty(tasks)?));
    }
    let mut text = format!(
        "{:<24} {:<10} {:>11} {:>7}  DESCRIPTION\n",
        "ID", "STATUS", "COMPLETIONS", "REPEATS"
    );
    for task in tasks {
        text.push_str(&format!(
            "{:<24} {:<10} {:>11} {:>7}  {}\n",
            task["id"].as_str().unwrap_or(""),
            task["status"].as_str().unwrap_or(""),
            task["completions"].to_string(),
            task["repeats"].to_string(),
            task["description"].as_str().unwrap_or("")
        ));
    }
    Ok(text)
}

/// `tasks --watch`: on a terminal, clears the screen and redraws every second;
/// piped, prints the list again only when it changed. Runs until killed.
fn watch(client: &http::Client, gateway: &str, args: &TasksArgs) -> Result<()> {
    let terminal = std::io::stdout().is_terminal();
    let mut last = String::new();
    loop {
        let text = render(&list_all(client, gateway, args)?, args.output)?;
        let mut out = std::io::stdout().lock();
        if terminal {
            // Home the cursor and clear the screen, then draw.
            write!(out, "\x1b[H\x1b[2J{text}")?;
        } else if text != last {
            write!(out, "{text}")?;
        }
        out.flush()?;
        last = text;
        std::thread::sleep(Duration::from_secs(1));
    }
}
