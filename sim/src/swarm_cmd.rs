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
    let files = match scenario_files(&args.path) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("ww-sim: {e}");
            return EXIT_HARNESS;
        }
    };
    let mut scenarios = Vec::new();
    for file in &files {
        match Scenario::load(file) {
            Ok(s) => scenarios.push(s),
            Err(e) => {
                eprintln!("ww-sim: {e}");
                return EXIT_HARNESS;
            }
        }
    }
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
    // A costly scenario caps its seeds (`swarm_seeds_max`, and `--costly-seeds`
    // lower still): it gets the first ones.
    let caps: Vec<usize> = scenarios
        .iter()
        .map(|s| {
            s.swarm_seeds_max.map_or(seeds.len(), |cap| {
                let cap = args.costly_seeds.map_or(cap, |costly| costly.min(cap));
                usize::try_from(cap).unwrap_or(usize::MAX).min(seeds.len())
            })
        })
        .collect();
    for (scenario, cap) in scenarios.iter().zip(&caps) {
        if *cap < seeds.len() {
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
    let next = Arc::new(AtomicUsize::new(0));
    let (report, outcomes) = mpsc::channel::<Outcome>();
    let started = Instant::now();
    let mut threads = Vec::new();
    for _ in 0..args.jobs.min(total.max(1)) {
        let (work, scenarios, next, report) = (
            work.clone(),
            scenarios.clone(),
            next.clone(),
            report.clone(),
        );
        let sabotage = args.sabotage;
        let spawned = std::thread::Builder::new()
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
            });
        match spawned {
            Ok(handle) => threads.push(handle),
            Err(e) => {
                eprintln!("ww-sim: cannot start a runner thread: {e}");
                return EXIT_HARNESS;
            }
        }
    }
    drop(report);

    let mut rows: BTreeMap<(usize, &'static str), Row> = BTreeMap::new();
    let mut harness_errors: BTreeMap<usize, u64> = BTreeMap::new();
    let mut failures: Vec<String> = Vec::new();
    let (mut done, mut failing, mut worst) = (0usize, 0usize, 0u8);
    let mut last_progress = Instant::now();
    for outcome in outcomes {
        done += 1;
        let file = &files[outcome.file];
        let replay = replay_command(file, outcome.seed, true, args.sabotage);
        match &outcome.result {
            Ok(verdict) => {
                for check in &verdict.checks {
                    let row = rows.entry((outcome.file, check.invariant)).or_default();
                    row.checked += 1;
                    row.violated += u64::from(!check.held());
                    row.class = Some(check.class);
                }
                let code = verdict_code(verdict);
                if code != 0 {
                    failing += 1;
                    worst = worse(worst, code);
                    let first = verdict
                        .safety_violations
                        .iter()
                        .chain(&verdict.liveness_violations)
                        .next()
                        .map(|v| truncate(v, 240))
                        .unwrap_or_default();
                    failures.push(format!(
                        "{} seed {}: {first}\n    replay: {replay}",
                        scenarios[outcome.file].name, outcome.seed
                    ));
                }
            }
            Err(e) => {
                failing += 1;
                worst = worse(worst, EXIT_HARNESS);
                *harness_errors.entry(outcome.file).or_default() += 1;
                failures.push(format!(
                    "{} seed {}: HARNESS ERROR {}\n    replay: {replay}",
                    scenarios[outcome.file].name,
                    outcome.seed,
                    truncate(e, 240)
                ));
            }
        }
        if last_progress.elapsed() >= PROGRESS_EVERY || done == total {
            last_progress = Instant::now();
            eprint!(
                "\r[{done}/{total}] {:.0}s elapsed, {failing} failing runs   ",
                started.elapsed().as_secs_f64()
            );
            let _ = std::io::stderr().flush();
        }
    }
    eprintln!();
    for thread in threads {
        let _ = thread.join();
    }

    println!(
        "{:<24} {:<26} {:>9} {:>6} {:>9}",
        "scenario", "invariant", "class", "runs", "violated"
    );
    for ((file, invariant), row) in &rows {
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
    for (file, count) in &harness_errors {
        println!(
            "{:<24} {:<26} {:>9} {:>6} {:>9}",
            scenarios[*file].name, "(harness errors)", "-", "-", count
        );
    }
    for failure in failures.iter().take(FAILURES_LISTED_MAX) {
        println!("FAILED {failure}");
    }
    if failures.len() > FAILURES_LISTED_MAX {
        println!(
            "... and {} more failing runs",
            failures.len() - FAILURES_LISTED_MAX
        );
    }
    println!(
        "swarm: {total} runs, {failing} failing, {} invariant checks violated, wall {:.1}s",
        rows.values().map(|r| r.violated).sum::<u64>(),
        started.elapsed().as_secs_f64()
    );
    worst
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
