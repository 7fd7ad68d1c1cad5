//! `ww-sim swarm`: every scenario of a directory under many seeds, each run
//! varied per seed, on a few threads; progress on stderr, a summary table per
//! scenario and invariant, and a replay command for each failing seed.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use ww_sim::scenario::{self, swarm, Class, Scenario, Verdict};

use crate::{replay_command, run_once, verdict_code, Args, EXIT_HARNESS};

/// Stack of a runner thread: a simulation runs every host (and the WASM
/// sandbox) on it.
const RUNNER_STACK_BYTES: usize = 64 * 1024 * 1024;
/// How often the progress line is refreshed.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// Failing runs listed in full at the end.
const FAILURES_LISTED_MAX: usize = 30;

struct Outcome {
    file: usize,
    seed: u64,
    result: Result<Verdict, String>,
}

/// Per scenario and invariant: runs checked, safety and liveness violations.
#[derive(Default)]
struct Row {
    checked: u64,
    violated: u64,
    class: Option<Class>,
}

fn scenario_files(dir: &std::path::Path) -> Result<Vec<PathBuf>, String> {
    let files = scenario::scenario_files(dir).map_err(|e| e.to_string())?;
    if files.is_empty() {
        return Err(format!("{}: no *.toml scenario files", dir.display()));
    }
    Ok(files)
}

/// Runs the swarm; returns the exit code.
pub fn swarm_command(args: &Args) -> u8 {
    let (files, scenarios) = match load_scenarios(&args.path) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("ww-sim: {e}");
            return EXIT_HARNESS;
        }
    };
    let seeds: Vec<u64> = (0..args.seeds).map(|i| args.from.wrapping_add(i)).collect();
    println!(
        "swarm: {} scenarios x {} seeds ({}..={}) on {} threads{}",
        scenarios.len(),
        seeds.len(),
        args.from,
        args.from.wrapping_add(args.seeds.saturating_sub(1)),
        args.jobs,
        args.sabotage
            .map(|s| format!(", sabotage {}", s.name()))
            .unwrap_or_default()
    );
    let caps = seed_caps(args, &scenarios, seeds.len());
    let work: Arc<Vec<(usize, u64)>> = Arc::new(
        seeds
            .iter()
            .enumerate()
            .flat_map(|(i, seed)| {
                let caps = &caps;
                (0..scenarios.len())
                    .filter(move |f| i < caps[*f])
                    .map(move |f| (f, *seed))
            })
            .collect(),
    );
    let total = work.len();
    let scenarios = Arc::new(scenarios);
    let started = Instant::now();
    let (threads, outcomes) = match spawn_runners(args, work, scenarios.clone()) {
        Ok(running) => running,
        Err(e) => {
            eprintln!("ww-sim: cannot start a runner thread: {e}");
            return EXIT_HARNESS;
        }
    };
    let mut tally = Tally::default();
    let mut last_progress = Instant::now();
    for outcome in outcomes {
        tally.record(&outcome, &files[outcome.file], &scenarios, args);
        if last_progress.elapsed() >= PROGRESS_EVERY || tally.done == total {
            last_progress = Instant::now();
            eprint!(
                "\r[{}/{total}] {:.0}s elapsed, {} failing runs   ",
                tally.done,
                started.elapsed().as_secs_f64(),
                tally.failing
            );
            let _ = std::io::stderr().flush();
        }
    }
    eprintln!();
    for thread in threads {
        let _ = thread.join();
    }
    tally.print(&scenarios, total, started);
    tally.worst
}

/// The scenario files of `dir`, each loaded.
fn load_scenarios(dir: &std::path::Path) -> Result<(Vec<PathBuf>, Vec<Scenario>), String> {
    let files = scenario_files(dir)?;
    let scenarios = files
        .iter()
        .map(|file| Scenario::load(file).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((files, scenarios))
}

/// How many of the `seeds` each scenario runs: a costly scenario caps its
/// seeds (`swarm_seeds_max`, and `--costly-seeds` lower still) and gets the
/// first ones.
fn seed_caps(args: &Args, scenarios: &[Scenario], seeds: usize) -> Vec<usize> {
    let caps: Vec<usize> = scenarios
        .iter()
        .map(|s| {
            s.swarm_seeds_max.map_or(seeds, |cap| {
                let cap = args.costly_seeds.map_or(cap, |costly| costly.min(cap));
                usize::try_from(cap).unwrap_or(usize::MAX).min(seeds)
            })
        })
        .collect();
    for (scenario, cap) in scenarios.iter().zip(&caps) {
        if *cap < seeds {
            println!(
                "swarm: {} runs only the first {cap} seeds (swarm_seeds_max{})",
                scenario.name,
                if args.costly_seeds.is_some() {
                    ", --costly-seeds"
                } else {
                    ""
                }
            );
        }
    }
    caps
}

/// Starts the runner threads, which take `(scenario, seed)` pairs from `work`
/// in turn; their outcomes come on the receiver.
fn spawn_runners(
    args: &Args,
    work: Arc<Vec<(usize, u64)>>,
    scenarios: Arc<Vec<Scenario>>,
) -> std::io::Result<(Vec<std::thread::JoinHandle<()>>, mpsc::Receiver<Outcome>)> {
    let next = Arc::new(AtomicUsize::new(0));
    let (report, outcomes) = mpsc::channel::<Outcome>();
    let mut threads = Vec::new();
    for _ in 0..args.jobs.min(work.len().max(1)) {
        let (work, scenarios, next, report) = (
            work.clone(),
            scenarios.clone(),
            next.clone(),
            report.clone(),
        );
        let sabotage = args.sabotage;
        let handle = std::thread::Builder::new()
            .stack_size(RUNNER_STACK_BYTES)
            .spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(&(file, seed)) = work.get(i) else {
                    return;
                };
                let (varied, _) = swarm::vary(&scenarios[file], seed);
                let result = run_once(&varied, seed, sabotage);
                if report.send(Outcome { file, seed, result }).is_err() {
                    return;
                }
            })?;
        threads.push(handle);
    }
    Ok((threads, outcomes))
}

/// What the runs so far found.
#[derive(Default)]
struct Tally {
    rows: BTreeMap<(usize, &'static str), Row>,
    harness_errors: BTreeMap<usize, u64>,
    failures: Vec<String>,
    done: usize,
    failing: usize,
    worst: u8,
}

impl Tally {
    /// Counts one run of scenario `file`'s file `path`.
    fn record(
        &mut self,
        outcome: &Outcome,
        path: &std::path::Path,
        scenarios: &[Scenario],
        args: &Args,
    ) {
        self.done += 1;
        let name = &scenarios[outcome.file].name;
        let replay = replay_command(path, outcome.seed, true, args.sabotage);
        match &outcome.result {
            Ok(verdict) => {
                for check in &verdict.checks {
                    let row = self
                        .rows
                        .entry((outcome.file, check.invariant))
                        .or_default();
                    row.checked += 1;
                    row.violated += u64::from(!check.held());
                    row.class = Some(check.class);
                }
                let code = verdict_code(verdict);
                if code != 0 {
                    self.failing += 1;
                    self.worst = worse(self.worst, code);
                    let first = verdict
                        .safety_violations
                        .iter()
                        .chain(&verdict.liveness_violations)
                        .next()
                        .map(|v| truncate(v, 240))
                        .unwrap_or_default();
                    self.failures.push(format!(
                        "{name} seed {}: {first}\n    replay: {replay}",
                        outcome.seed
                    ));
                }
            }
            Err(e) => {
                self.failing += 1;
                self.worst = worse(self.worst, EXIT_HARNESS);
                *self.harness_errors.entry(outcome.file).or_default() += 1;
                self.failures.push(format!(
                    "{name} seed {}: HARNESS ERROR {}\n    replay: {replay}",
                    outcome.seed,
                    truncate(e, 240)
                ));
            }
        }
    }

    /// The summary table per scenario and invariant, then the failing runs.
    fn print(&self, scenarios: &[Scenario], total: usize, started: Instant) {
        println!(
            "{:<24} {:<26} {:>9} {:>6} {:>9}",
            "scenario", "invariant", "class", "runs", "violated"
        );
        for ((file, invariant), row) in &self.rows {
            let class = match row.class {
                Some(Class::Safety) => "safety",
                Some(Class::Liveness) => "liveness",
                None => "-",
            };
            println!(
                "{:<24} {:<26} {:>9} {:>6} {:>9}",
                scenarios[*file].name, invariant, class, row.checked, row.violated
            );
        }
        for (file, count) in &self.harness_errors {
            println!(
                "{:<24} {:<26} {:>9} {:>6} {:>9}",
                scenarios[*file].name, "(harness errors)", "-", "-", count
            );
        }
        for failure in self.failures.iter().take(FAILURES_LISTED_MAX) {
            println!("FAILED {failure}");
        }
        if self.failures.len() > FAILURES_LISTED_MAX {
            println!(
                "... and {} more failing runs",
                self.failures.len() - FAILURES_LISTED_MAX
            );
        }
        println!(
            "swarm: {total} runs, {} failing, {} invariant checks violated, wall {:.1}s",
            self.failing,
            self.rows.values().map(|r| r.violated).sum::<u64>(),
            started.elapsed().as_secs_f64()
        );
    }
}

/// The more serious of two exit codes: safety, then harness, then liveness.
fn worse(a: u8, b: u8) -> u8 {
    let rank = |code: u8| match code {
        1 => 3,
        3 => 2,
        2 => 1,
        _ => 0,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

fn truncate(text: &str, chars_max: usize) -> String {
    if text.chars().count() <= chars_max {
        text.to_string()
    } else {
        format!("{}...", text.chars().take(chars_max).collect::<String>())
    }
}
