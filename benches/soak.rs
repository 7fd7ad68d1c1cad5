//! The soak harness: a real `ww-sched gateway` process on disk with two real
//! workers, sent no-op tasks over HTTP by concurrent clients, while the
//! gateway's resident memory is sampled. It checks that every task is
//! acknowledged and finishes, and that the gateway's memory stays flat after
//! warm-up and under its bound (it must not grow with history).
//!
//! ```sh
//! cargo bench --bench soak                       # 1,000,000 tasks (several minutes)
//! SOAK_TASKS=50000 cargo bench --bench soak      # a quick look
//! ```
//!
//! The clients keep at most `SOAK_WINDOW` tasks unfinished (default 5,000):
//! two workers run fewer no-op tasks per second than 16 clients submit, and an
//! unbounded backlog would measure the backlog (unfinished tasks live in memory,
//! up to `--open-tasks-max`), not whether memory grows with history.
//!
//! Settings from the environment: `SOAK_TASKS` (default 1,000,000),
//! `SOAK_CLIENTS` (concurrent HTTP clients, default 16), `SOAK_CSV` (where the
//! samples go, default `target/soak.csv`), `SOAK_DIR` (the data directory's
//! parent, default the system temp dir, which is on disk here). One line of
//! progress every `REPORT_EVERY`; the exit code is 0 only when every check held.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[path = "../tests/support/mod.rs"]
mod support;

use support::{http_agent, start_gateway, start_worker};

/// The resident-memory bound of the gateway, after warm-up.
const RSS_MAX_MIB: f64 = 150.0;
/// Growth allowed between the first and the last third of the run (after
/// warm-up), as a fraction: "flat".
const RSS_GROWTH_MAX: f64 = 0.10;
/// The share of tasks acknowledged before memory counts as warmed up.
const WARM_UP: f64 = 0.10;
/// How often memory and progress are sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(500);
/// How often a progress line is printed.
const REPORT_EVERY: Duration = Duration::from_secs(10);
/// The longest the run may take before it is declared stuck.
const RUN_MAX: Duration = Duration::from_secs(4 * 3600);

const NOOP_WAT: &str = r#"(module (func (export "run") (result i32) i32.const 0))"#;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// The gateway's resident memory, in MiB (0 if it cannot be read).
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn agent() -> ureq::Agent {
    http_agent(Duration::from_secs(60))
}

fn get_json(agent: &ureq::Agent, url: &str) -> Value {
    agent
        .get(url)
        .call()
        .expect("gateway answers")
        .body_mut()
        .read_json()
        .expect("JSON")
}

/// Counts shared by the clients and the sampler.
#[derive(Default)]
struct Progress {
    next: AtomicUsize,
    acked: AtomicU64,
    /// Finished tasks, as the gateway last reported.
    finished: AtomicU64,
    busy: AtomicU64,
    errors: AtomicU64,
}

/// One client: submits until `total` are taken, retrying on 503 busy, while
/// at most `window` tasks are unfinished.
fn client(http: String, module: String, total: usize, window: u64, progress: Arc<Progress>) {
    let agent = agent();
    let body = json!({ "module": module, "export": "run", "args": [] });
    while progress.next.fetch_add(1, Ordering::SeqCst) < total {
        while progress.acked.load(Ordering::SeqCst)
            > progress.finished.load(Ordering::SeqCst) + window
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        loop {
            let answer = agent.post(&format!("{http}/tasks")).send_json(&body);
            match answer.map(|r| r.status().as_u16()) {
                Ok(201) => {
                    progress.acked.fetch_add(1, Ordering::SeqCst);
                    break;
                }
                Ok(503) => {
                    progress.busy.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(200));
                }
                other => {
                    progress.errors.fetch_add(1, Ordering::SeqCst);
                    eprintln!("submission answered {other:?}");
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }
}

/// One sample: seconds since start, tasks acknowledged, finished, RSS.
struct Sample {
    at_s: f64,
    acked: u64,
    finished: u64,
    rss_mib: f64,
}

/// Keeps `progress.finished` at the gateway's finished count, fresh enough
/// for the clients' window, until all `tasks` finished.
fn watch_finished(
    http: String,
    progress: Arc<Progress>,
    tasks: usize,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let health_agent = http_agent(Duration::from_secs(60));
        while progress.finished.load(Ordering::SeqCst) < tasks as u64 {
            let health = get_json(&health_agent, &format!("{http}/healthz"));
            let finished = health["finished_tasks"].as_u64().unwrap_or(0);
            progress.finished.store(finished, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

fn main() {
    // `cargo bench` passes `--bench`; anything else is a filter criterion
    // would take, which this harness has no use for.
    let tasks: usize = env_or("SOAK_TASKS", 1_000_000);
    let clients: usize = env_or("SOAK_CLIENTS", 16);
    let window: u64 = env_or("SOAK_WINDOW", 5_000);
    let csv = PathBuf::from(
        std::env::var("SOAK_CSV")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target/soak.csv").into()),
    );
    let root = std::env::var("SOAK_DIR").map_or_else(|_| std::env::temp_dir(), PathBuf::from);
    let data = root.join(format!("ww-sched-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);

    let gateway = start_gateway(
        data.to_str().expect("utf-8 path"),
        "/ip4/127.0.0.1/tcp/0",
        &[],
    );
    let http = gateway.http.clone();
    // Two workers with the default slots, registering with the gateway directly.
    let workers: Vec<_> = (0..2)
        .map(|_| start_worker("none", &["--slots", "2", "--dial", &gateway.dial]))
        .collect();
    let agent = agent();
    let module = upload_noop(&agent, &http);
    eprintln!(
        "soak: {tasks} no-op tasks, {clients} clients, at most {window} unfinished, gateway {http}, data {}",
        data.display()
    );

    let progress = Arc::new(Progress::default());
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (http, module, progress) = (http.clone(), module.clone(), progress.clone());
            std::thread::spawn(move || client(http, module, tasks, window, progress))
        })
        .collect();
    let watcher = watch_finished(http.clone(), progress.clone(), tasks);
    let samples = sample_until_done(&agent, &http, gateway.proc.pid(), &progress, tasks, started);
    for thread in threads {
        thread.join().expect("client");
    }
    watcher.join().expect("watcher");
    let elapsed_s = started.elapsed().as_secs_f64();

    write_csv(&csv, &samples);

    // Checks.
    let health = get_json(&agent, &format!("{http}/healthz"));
    let acked = progress.acked.load(Ordering::SeqCst);
    let warm: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.acked as f64 >= WARM_UP * tasks as f64)
        .collect();
    let third = (warm.len() / 3).max(1);
    let peak = |part: &[&Sample]| part.iter().map(|s| s.rss_mib).fold(0.0, f64::max);
    let early = peak(&warm[..third.min(warm.len())]);
    let late = peak(&warm[warm.len().saturating_sub(third)..]);
    let max = peak(&warm);
    let mut failures = Vec::new();
    if acked != tasks as u64 {
        failures.push(format!("{acked} of {tasks} acknowledged"));
    }
    if health["open_tasks"] != 0 || health["finished_tasks"].as_u64() != Some(tasks as u64) {
        failures.push(format!("not every task finished: {health}"));
    }
    let failed_runs = get_json(&agent, &format!("{http}/tasks?status=failed&limit=10"));
    if failed_runs.as_array().is_some_and(|f| !f.is_empty()) {
        failures.push(format!("tasks failed: {failed_runs}"));
    }
    if max > RSS_MAX_MIB {
        failures.push(format!(
            "gateway RSS reached {max:.1} MiB (bound {RSS_MAX_MIB})"
        ));
    }
    if late > early * (1.0 + RSS_GROWTH_MAX) {
        failures.push(format!(
            "gateway RSS grew from {early:.1} MiB (first third after warm-up) to {late:.1} MiB (last third)"
        ));
    }
    println!(
        "soak: {tasks} tasks in {elapsed_s:.1} s ({:.0} tasks/s acknowledged and finished), \
         {} busy answers, {} errors; gateway RSS after warm-up: peak {max:.1} MiB, first third \
         {early:.1} MiB, last third {late:.1} MiB; samples in {}",
        tasks as f64 / elapsed_s,
        progress.busy.load(Ordering::SeqCst),
        progress.errors.load(Ordering::SeqCst),
        csv.display()
    );
    drop(workers);
    drop(gateway);
    let _ = std::fs::remove_dir_all(&data);
    if failures.is_empty() {
        println!("soak: PASS");
    } else {
        println!("soak: FAIL\n  {}", failures.join("\n  "));
        std::process::exit(1);
    }
}

/// Waits for both workers to register, then uploads the no-op module; its hash.
fn upload_noop(agent: &ureq::Agent, http: &str) -> String {
    let started = Instant::now();
    while get_json(agent, &format!("{http}/workers"))
        .as_array()
        .map_or(0, Vec::len)
        < 2
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "workers did not register"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let wasm = wat::parse_str(NOOP_WAT).expect("wat");
    let module: Value = agent
        .post(&format!("{http}/modules"))
        .header("Content-Type", "application/wasm")
        .send(&wasm[..])
        .expect("upload")
        .body_mut()
        .read_json()
        .expect("JSON");
    module["hash"].as_str().expect("hash").to_string()
}

/// Samples the gateway (acknowledged, finished, its RSS) until every task
/// finished, printing progress now and then.
fn sample_until_done(
    agent: &ureq::Agent,
    http: &str,
    pid: u32,
    progress: &Progress,
    tasks: usize,
    started: Instant,
) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut last_report = Instant::now();
    loop {
        let health = get_json(agent, &format!("{http}/healthz"));
        let sample = Sample {
            at_s: started.elapsed().as_secs_f64(),
            acked: progress.acked.load(Ordering::SeqCst),
            finished: health["finished_tasks"].as_u64().unwrap_or(0),
            rss_mib: rss_mib(pid),
        };
        let done = sample.finished >= tasks as u64;
        if last_report.elapsed() >= REPORT_EVERY || done {
            eprintln!(
                "{:>7.1} s: {} acknowledged, {} finished, {} open, gateway RSS {:.1} MiB, {} busy answers",
                sample.at_s,
                sample.acked,
                sample.finished,
                health["open_tasks"],
                sample.rss_mib,
                progress.busy.load(Ordering::SeqCst)
            );
            last_report = Instant::now();
        }
        samples.push(sample);
        if done {
            break;
        }
        assert!(
            started.elapsed() < RUN_MAX,
            "the soak did not finish within {RUN_MAX:?}"
        );
        std::thread::sleep(SAMPLE_EVERY);
    }
    samples
}

/// The samples as CSV, for a plot.
fn write_csv(csv: &std::path::Path, samples: &[Sample]) {
    let mut file = std::fs::File::create(csv).expect("csv");
    writeln!(file, "seconds,acknowledged,finished,gateway_rss_mib").expect("csv");
    for s in samples {
        writeln!(
            file,
            "{:.1},{},{},{:.1}",
            s.at_s, s.acked, s.finished, s.rss_mib
        )
        .expect("csv");
    }
}
