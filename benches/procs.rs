//! Real processes on loopback (issue 14, part 3): a `ww-sched gateway` and N
//! `ww-sched worker` processes, the data directory on disk, tasks submitted
//! and followed over HTTP as a user would.
//!
//! ```sh
//! cargo bench --bench procs                      # the whole table
//! cargo bench --bench procs -- --workers 2 --repeats 1000,10000 --small 0
//! cargo bench --bench procs -- --bin /tmp/ww-sched-before   # another build
//! ```
//!
//! Two figures:
//! - runs/s of one no-op task of `repeats` R with `delay_ms` 0, from the
//!   moment its `POST /tasks` is sent until a poll (`GET /tasks/{id}`, every
//!   `--poll-ms`, default 10) shows it `succeeded`; for each worker count the
//!   processes start once, a warm-up task sends the module to every worker,
//!   then each R runs `--rounds` times and the median is shown;
//! - tasks/s of `--small` one-run no-op tasks submitted by `--clients`
//!   keep-alive HTTP clients at once (2 workers by default, `--small-workers`),
//!   from the first submission until `/healthz` counts them all finished.
//!
//! `--store pg` keeps the tasks in PostgreSQL instead (a throwaway server
//! this harness starts, as the tests do: Debian's `postgresql` installed),
//! and `--gateways N` starts N gateways on it, each worker registered with
//! every gateway: a task of R runs becomes N tasks of R/N, one per gateway,
//! and the small tasks' clients take turns over the gateways.
//!
//! Every process it starts is killed (SIGKILL) and reaped when the harness
//! ends, panics included, and each data directory is removed.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[path = "../tests/pg_support/mod.rs"]
mod pg_support;

const NOOP_WAT: &str = r#"(module (func (export "run") (result i32) i32.const 0))"#;

/// What to measure, from the command line.
struct Options {
    bin: PathBuf,
    workers: Vec<usize>,
    repeats: Vec<u32>,
    rounds: usize,
    poll: Duration,
    small: usize,
    clients: usize,
    small_workers: usize,
    slots: Option<usize>,
    root: PathBuf,
    /// Tasks in PostgreSQL (a throwaway server) instead of redb.
    postgres: bool,
    gateways: usize,
}

fn list<T: std::str::FromStr>(text: &str) -> Vec<T> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.replace('_', "")
                .parse()
                .unwrap_or_else(|_| panic!("bad number {s:?}"))
        })
        .collect()
}

impl Options {
    fn parse() -> Options {
        let mut options = Options {
            bin: PathBuf::from(env!("CARGO_BIN_EXE_ww-sched")),
            workers: vec![1, 2, 4],
            repeats: vec![100, 1_000, 10_000],
            rounds: 3,
            poll: Duration::from_millis(10),
            small: 10_000,
            clients: 16,
            small_workers: 2,
            slots: None,
            // /tmp is on disk here (/dev/shm is the tmpfs): fsyncs are real.
            root: std::env::temp_dir(),
            postgres: false,
            gateways: 1,
        };
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            let mut value = || {
                args.next()
                    .unwrap_or_else(|| panic!("{flag} needs a value"))
            };
            match flag.as_str() {
                "--bin" => options.bin = PathBuf::from(value()),
                "--workers" => options.workers = list(&value()),
                "--repeats" => options.repeats = list(&value()),
                "--rounds" => options.rounds = value().parse().expect("--rounds N"),
                "--poll-ms" => {
                    options.poll = Duration::from_millis(value().parse().expect("--poll-ms N"))
                }
                "--small" => options.small = value().replace('_', "").parse().expect("--small N"),
                "--clients" => options.clients = value().parse().expect("--clients N"),
                "--small-workers" => {
                    options.small_workers = value().parse().expect("--small-workers N")
                }
                "--slots" => options.slots = Some(value().parse().expect("--slots N")),
                "--root" => options.root = PathBuf::from(value()),
                "--store" => match value().as_str() {
                    "pg" | "postgres" => options.postgres = true,
                    "redb" => options.postgres = false,
                    other => panic!("--store redb|pg, not {other}"),
                },
                "--gateways" => options.gateways = value().parse().expect("--gateways N"),
                // cargo bench passes --bench; anything else is a mistake.
                "--bench" => {}
                other => panic!("unknown flag {other}"),
            }
        }
        options
    }
}

/// A started process, killed and reaped when dropped; its stdout is read on
/// a thread (so the pipe never fills) and handed over line by line.
struct Proc {
    child: Child,
    lines: Receiver<String>,
}

impl Proc {
    fn start(bin: &PathBuf, args: &[&str]) -> Proc {
        let mut child = Command::new(bin)
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("WW_PROCS_LOG").unwrap_or_default(),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // Keep reading after the receiver is gone: the pipe must drain.
                let _ = sender.send(line);
            }
        });
        Proc { child, lines }
    }

    /// The rest of the first line starting with `prefix`.
    fn wait_for(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no line {prefix:?} from the process"));
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.to_string();
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time the process has used so far (user + system, every thread),
    /// from /proc: 10 ms resolution, Linux only (zero elsewhere).
    fn cpu(&self) -> Duration {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())) else {
            return Duration::ZERO;
        };
        // Fields after the command name, which ends at the last ')'.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        // utime and stime are fields 14 and 15 of stat, 11 and 12 after the name;
        // the kernel counts in USER_HZ, 100 on Linux.
        Duration::from_millis((ticks(11) + ticks(12)) * 10)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A data directory removed when dropped.
struct DataDir(PathBuf);

impl DataDir {
    fn new(root: &std::path::Path, label: &str) -> DataDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = root.join(format!("ww-procs-{label}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create data dir");
        DataDir(path)
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Gateways and their workers; dropping it kills them all, workers first,
/// then removes the data (and the database).
struct Cluster {
    workers: Vec<Proc>,
    gateways: Vec<Proc>,
    /// Each gateway's REST API.
    https: Vec<String>,
    hash: String,
    agent: ureq::Agent,
    _data: Vec<DataDir>,
    _db: Option<pg_support::PgDatabase>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.workers.clear();
        self.gateways.clear();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .max_idle_connections_per_host(64)
        .build()
        .into()
}

fn get(agent: &ureq::Agent, url: &str) -> Value {
    agent
        .get(url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .body_mut()
        .read_json()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

fn post_json(agent: &ureq::Agent, url: &str, body: &Value) -> Value {
    let mut response = agent
        .post(url)
        .header("content-type", "application/json")
        .send(body.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = response.status();
    let answer: Value = response.body_mut().read_json().unwrap_or(Value::Null);
    assert_eq!(status, 201, "POST {url}: {answer}");
    answer
}

impl Cluster {
    /// CPU time used so far by the gateways and by all workers.
    fn cpu(&self) -> (Duration, Duration) {
        (
            self.gateways.iter().map(Proc::cpu).sum(),
            self.workers.iter().map(Proc::cpu).sum(),
        )
    }

    fn start(options: &Options, workers: usize) -> Cluster {
        let db = options
            .postgres
            .then(|| pg_support::PgDatabase::new(&format!("procs_w{workers}")));
        let mut data = Vec::new();
        let mut gateways = Vec::new();
        let (mut dials, mut https) = (Vec::new(), Vec::new());
        for n in 0..options.gateways.max(1) {
            let dir = DataDir::new(&options.root, &format!("w{workers}-g{n}"));
            let dir_text = dir.0.to_str().expect("utf-8 path").to_string();
            let mut args = vec![
                "gateway",
                "--http",
                "127.0.0.1:0",
                "--data",
                &dir_text,
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--discover",
                "none",
            ];
            if let Some(db) = &db {
                args.extend_from_slice(&["--store", &db.url]);
            }
            let mut gateway = Proc::start(&options.bin, &args);
            gateway.wait_for("gateway peer id: ");
            dials.push(gateway.wait_for("listening on "));
            https.push(gateway.wait_for("http on "));
            gateways.push(gateway);
            data.push(dir);
        }
        let slots = options.slots.map(|s| s.to_string());
        let mut procs = Vec::new();
        for _ in 0..workers {
            let mut args = vec![
                "worker",
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--discover",
                "none",
            ];
            for dial in &dials {
                args.extend_from_slice(&["--dial", dial]);
            }
            if let Some(slots) = &slots {
                args.extend_from_slice(&["--slots", slots]);
            }
            let mut worker = Proc::start(&options.bin, &args);
            worker.wait_for("peer id: ");
            procs.push(worker);
        }
        let agent = agent();
        let deadline = Instant::now() + Duration::from_secs(60);
        for http in &https {
            loop {
                let pool = get(&agent, &format!("{http}/workers"));
                if pool.as_array().map_or(0, Vec::len) == workers {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "pool never had {workers} workers: {pool}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let http = https[0].clone();
        let wasm = wat::parse_str(NOOP_WAT).expect("no-op module");
        let mut response = agent
            .post(&format!("{http}/modules"))
            .header("content-type", "application/wasm")
            .send(&wasm[..])
            .expect("upload");
        assert_eq!(response.status(), 201, "module upload refused");
        let answer: Value = response.body_mut().read_json().expect("upload answer");
        let hash = answer["hash"].as_str().expect("hash").to_string();
        let cluster = Cluster {
            workers: procs,
            gateways,
            https,
            hash,
            agent,
            _data: data,
            _db: db,
        };
        // Warm up: every worker gets the module (a run per slot at least).
        cluster.run_task(64, options.poll);
        cluster
    }

    /// Submits `repeats` no-op runs, as one task per gateway (their share of
    /// the runs each); the time until polls show them all succeeded.
    fn run_task(&self, repeats: u32, poll: Duration) -> Duration {
        let share = repeats / self.https.len() as u32;
        let started = Instant::now();
        let mut urls = Vec::new();
        for (n, http) in self.https.iter().enumerate() {
            let extra = u32::from((n as u32) < repeats % self.https.len() as u32);
            let body = json!({
                "description": "procs bench",
                "module": self.hash,
                "repeats": share + extra,
                "delay_ms": 0,
            });
            let task = post_json(&self.agent, &format!("{http}/tasks"), &body);
            urls.push(format!(
                "{http}/tasks/{}?runs_limit=1",
                task["id"].as_str().expect("id")
            ));
        }
        for url in urls {
            loop {
                let task = get(&self.agent, &url);
                match task["status"].as_str().unwrap_or("") {
                    "succeeded" => break,
                    "failed" | "cancelled" => panic!("task ended {task}"),
                    _ => std::thread::sleep(poll),
                }
            }
        }
        started.elapsed()
    }

    /// Finished tasks in the store (shared by every gateway on PostgreSQL).
    fn finished_tasks(&self) -> u64 {
        let health = get(&self.agent, &format!("{}/healthz", self.https[0]));
        health["finished_tasks"]
            .as_u64()
            .unwrap_or_else(|| panic!("/healthz: {health}"))
    }

    /// `count` one-run tasks from `clients` threads: acknowledged/s,
    /// finished/s, and CPU µs per task of the gateway and of all workers.
    fn small_tasks(&self, count: usize, clients: usize, poll: Duration) -> [f64; 4] {
        let before = self.finished_tasks();
        let (gateway_before, workers_before) = self.cpu();
        let body = Arc::new(json!({
            "description": "procs bench, small",
            "module": self.hash,
            "repeats": 1,
        }));
        let started = Instant::now();
        let threads: Vec<_> = (0..clients)
            .map(|client| {
                let body = body.clone();
                let url = format!("{}/tasks", self.https[client % self.https.len()]);
                let share = count / clients + usize::from(client < count % clients);
                std::thread::spawn(move || {
                    let agent = agent();
                    for _ in 0..share {
                        post_json(&agent, &url, &body);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("a client failed");
        }
        let acknowledged = started.elapsed();
        let target = before + count as u64;
        while self.finished_tasks() < target {
            std::thread::sleep(poll);
        }
        let finished = started.elapsed();
        let (gateway_after, workers_after) = self.cpu();
        let per_task = |d: Duration| d.as_secs_f64() * 1e6 / count as f64;
        [
            count as f64 / acknowledged.as_secs_f64(),
            count as f64 / finished.as_secs_f64(),
            per_task(gateway_after - gateway_before),
            per_task(workers_after - workers_before),
        ]
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn main() {
    let options = Options::parse();
    println!(
        "binary {} (slots {}), {} gateway(s) on {}, data under {}, poll {:?}, {} rounds, median runs/s",
        options.bin.display(),
        options
            .slots
            .map_or("default".to_string(), |s| s.to_string()),
        options.gateways,
        if options.postgres { "PostgreSQL" } else { "redb" },
        options.root.display(),
        options.poll,
        options.rounds,
    );
    if !options.repeats.is_empty() {
        let header: Vec<String> = options.repeats.iter().map(|r| format!("R={r}")).collect();
        println!("| workers | {} |", header.join(" | "));
        println!("|---|{}", "---|".repeat(options.repeats.len()));
        let mut cpu_rows = Vec::new();
        for &workers in &options.workers {
            let cluster = Cluster::start(&options, workers);
            eprintln!("gateway pid {}", cluster.gateways[0].pid());
            let mut cells = Vec::new();
            let mut cpu_cells = Vec::new();
            for &repeats in &options.repeats {
                let (gateway_before, workers_before) = cluster.cpu();
                let rates: Vec<f64> = (0..options.rounds)
                    .map(|_| {
                        let took = cluster.run_task(repeats, options.poll);
                        f64::from(repeats) / took.as_secs_f64()
                    })
                    .collect();
                let (gateway_after, workers_after) = cluster.cpu();
                let runs = f64::from(repeats) * options.rounds as f64;
                let per_run = |d: Duration| d.as_secs_f64() * 1e6 / runs;
                let cpu = (
                    per_run(gateway_after - gateway_before),
                    per_run(workers_after - workers_before),
                );
                eprintln!(
                    "workers {workers} R={repeats}: {rates:.0?} runs/s; CPU per run: gateway {:.0} µs, workers {:.0} µs",
                    cpu.0, cpu.1
                );
                cells.push(format!("{:.0}", median(rates)));
                cpu_cells.push(format!("{:.0} + {:.0}", cpu.0, cpu.1));
            }
            println!("| {workers} | {} |", cells.join(" | "));
            cpu_rows.push(format!("| {workers} | {} |", cpu_cells.join(" | ")));
        }
        println!("\nCPU per run, µs (gateway + all workers, every round):\n");
        println!("| workers | {} |", header.join(" | "));
        println!("|---|{}", "---|".repeat(options.repeats.len()));
        for row in cpu_rows {
            println!("{row}");
        }
    }
    if options.small > 0 {
        let cluster = Cluster::start(&options, options.small_workers);
        eprintln!("gateway pid {}", cluster.gateways[0].pid());
        let mut figures: [Vec<f64>; 4] = Default::default();
        for _ in 0..options.rounds {
            let round = cluster.small_tasks(options.small, options.clients, options.poll);
            eprintln!(
                "small tasks: acknowledged {:.0}/s, finished {:.0}/s; CPU per task: gateway {:.0} µs, workers {:.0} µs",
                round[0], round[1], round[2], round[3]
            );
            for (all, one) in figures.iter_mut().zip(round) {
                all.push(one);
            }
        }
        let [acked, finished, gateway_cpu, workers_cpu] = figures.map(median);
        println!(
            "\n{} one-run tasks, {} clients, {} workers: acknowledged {acked:.0} tasks/s, \
             finished {finished:.0} tasks/s; CPU per task: gateway {gateway_cpu:.0} µs, workers {workers_cpu:.0} µs",
            options.small, options.clients, options.small_workers,
        );
    }
}
