//! `ww-sim`: runs a scenario file in a seeded simulation and prints its timeline
//! and verdict.
//!
//! Exit codes: 0 every invariant held, 1 a safety violation, 2 a liveness
//! violation (and no safety one), 3 a harness error (bad arguments or file, or
//! the simulation itself failed).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use ww_sim::scenario::{self, Scenario};
use ww_sim::{root_seed, SEED_ENV};

/// The seed used when neither `--seed` nor the environment gives one.
const DEFAULT_SEED: u64 = 1;

const USAGE: &str = "usage: ww-sim run <scenario.toml> [--seed N]

Runs one scenario (see scenarios/README.md) under seed N (decimal or 0x hex;
default: $WW_SIM_SEED, else 1) and prints the timeline and a verdict.
Exit codes: 0 ok, 1 safety violation, 2 liveness violation, 3 harness error.";

fn parse_seed(text: &str) -> Option<u64> {
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

struct Args {
    file: PathBuf,
    seed: Option<u64>,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut rest = args.iter();
    match rest.next().map(String::as_str) {
        Some("run") => {}
        Some("-h" | "--help" | "help") => return Err(String::new()),
        Some(other) => return Err(format!("unknown command {other:?}")),
        None => return Err("missing command".into()),
    }
    let mut file = None;
    let mut seed = None;
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--seed" => {
                let value = rest.next().ok_or("--seed needs a value")?;
                seed = Some(parse_seed(value).ok_or(format!("--seed {value:?} is not a u64"))?);
            }
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag:?}")),
            path if file.is_none() => file = Some(PathBuf::from(path)),
            extra => return Err(format!("unexpected argument {extra:?}")),
        }
    }
    Ok(Args {
        file: file.ok_or("missing scenario file")?,
        seed,
    })
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&argv) {
        Ok(args) => args,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("ww-sim: {message}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(if message.is_empty() { 0 } else { 3 });
        }
    };
    let seed = match args.seed {
        Some(seed) => seed,
        None => match std::panic::catch_unwind(|| root_seed(DEFAULT_SEED)) {
            Ok(seed) => seed,
            Err(_) => {
                eprintln!("ww-sim: {SEED_ENV} is not a u64");
                return ExitCode::from(3);
            }
        },
    };
    let file = args.file.display().to_string();
    let replay = format!("replay: ww-sim run {file} --seed {seed}");
    println!("seed {seed}");
    let scenario = match Scenario::load(&args.file) {
        Ok(scenario) => scenario,
        Err(e) => {
            eprintln!("ww-sim: {e}");
            return ExitCode::from(3);
        }
    };
    println!(
        "scenario {}: {} nodes, {}s simulated, {} faults",
        scenario.name,
        scenario.cluster.nodes,
        scenario.duration_s,
        scenario.faults.len()
    );
    for line in scenario.description.trim().lines() {
        println!("  {}", line.trim());
    }
    let started = Instant::now();
    let outcome = std::panic::catch_unwind(|| scenario::run(&scenario, seed));
    let wall = started.elapsed();
    let verdict = match outcome {
        Ok(Ok(verdict)) => verdict,
        Ok(Err(e)) => {
            eprintln!("HARNESS ERROR: {e}\n{replay}");
            return ExitCode::from(3);
        }
        Err(_) => {
            eprintln!("HARNESS ERROR: the run panicked\n{replay}");
            return ExitCode::from(3);
        }
    };
    println!("timeline:");
    for line in &verdict.timeline {
        println!("  {line}");
    }
    println!("digest {}", verdict.digest);
    println!("wall {:.2}s", wall.as_secs_f64());
    for v in &verdict.safety_violations {
        println!("SAFETY VIOLATION: {v}");
    }
    for v in &verdict.liveness_violations {
        println!("LIVENESS VIOLATION: {v}");
    }
    if verdict.is_clean() {
        println!("verdict: ok");
        return ExitCode::SUCCESS;
    }
    let code = if verdict.safety_violations.is_empty() {
        println!("verdict: liveness violated");
        2
    } else {
        println!("verdict: safety violated");
        1
    };
    println!("{replay}");
    println!(
        "or: {SEED_ENV}={seed} cargo test -p ww-sim --test scenarios {}",
        scenario.name
    );
    ExitCode::from(code)
}
