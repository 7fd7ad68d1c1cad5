//! `ww-sim`: runs scenario files in seeded simulations.
//!
//! `ww-sim run FILE [--seed N] [--swarm] [--sabotage NAME]` prints one run's
//! timeline and verdict; `ww-sim swarm DIR [--seeds N] [--from S]
//! [--costly-seeds C] [--jobs J]` runs every scenario under many seeds, each
//! varied per seed, and prints a summary table. Exit codes: 0 every invariant held, 1 a safety violation,
//! 2 a liveness violation (and no safety one), 3 a harness error (bad
//! arguments or file, or a simulation that failed or panicked).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use ww_sim::scenario::{self, swarm, RunOptions, Scenario, Verdict};
use ww_sim::Sabotage;
use ww_sim::{parse_seed, root_seed, SEED_ENV};

mod swarm_cmd;

/// The seed used when neither `--seed` nor the environment gives one.
const DEFAULT_SEED: u64 = 1;

const USAGE: &str = "usage: ww-sim run <scenario.toml> [--seed N] [--swarm] [--sabotage NAME]
       ww-sim swarm <dir> [--seeds N] [--from S] [--costly-seeds C] [--jobs J] [--sabotage NAME]

run    one scenario (see scenarios/README.md) under seed N (decimal or 0x hex;
       default: $WW_SIM_SEED, else 1); prints the timeline and a verdict.
       --swarm applies the seed's swarm variation (as `swarm` does), so a seed
       reported by `swarm` replays exactly.
swarm  every *.toml in <dir>, each under seeds S..S+N (default 1..=100), each
       run varied per seed (fault kinds switched off, fault times jittered,
       network latency); J runs at once (default: the machine's cores). Shows
       progress, then a table per scenario and invariant, then each failing
       seed with its replay command. A costly scenario (one that sets
       swarm_seeds_max) runs only its first swarm_seeds_max of those seeds,
       and with --costly-seeds C at most its first C.
--sabotage NAME  arms a deliberate bug the invariants must catch
       (lose-acked-task: the gateway acknowledges one task but never stores it;
       show-unsynced-results: its disk lies about fsync, so it shows run
       outcomes that are not durable and a crash can take back a result a
       client saw;
       refuse-submissions: it answers every POST /tasks with 500;
       accept-impossible-reports: it records worker reports that cannot be true;
       skip-republish: record holders never pass records on to the closest hosts;
       drop-anchor-set: a host acknowledges one anchor set but never applies it;
       lease-act-past-deadline: [leases] gateways act on replies however late,
       past their lease deadline; lease-start-cancelled: the lease store starts
       runs of cancelled tasks; shared-claim-hidden: gateways on a shared store
       take orphaned tasks but do not run them until their owned-task check;
       lease-on-gateway-clock: the shared store judges gateway-1's leases and
       claims by its clock, 9 s ahead, so it claims tasks of live owners).

Exit codes: 0 ok, 1 safety violation, 2 liveness violation, 3 harness error.";

/// Exit code of a harness error.
pub const EXIT_HARNESS: u8 = 3;

/// Parsed command line.
pub(crate) struct Args {
    /// `run` or `swarm`.
    pub command: String,
    /// The scenario file (`run`) or directory (`swarm`).
    pub path: PathBuf,
    /// `--seed`, if given.
    pub seed: Option<u64>,
    /// `--swarm`: apply the seed's swarm variation.
    pub swarm: bool,
    /// `--seeds`: how many seeds a swarm runs.
    pub seeds: u64,
    /// `--from`: a swarm's first seed.
    pub from: u64,
    /// `--costly-seeds`: at most this many seeds for a scenario that caps its
    /// swarm seeds (`swarm_seeds_max`), so a quick sample can still afford it.
    pub costly_seeds: Option<u64>,
    /// `--jobs`: runs at once.
    pub jobs: usize,
    /// `--sabotage`: the deliberate bug to arm.
    pub sabotage: Option<Sabotage>,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut rest = args.iter();
    let command = match rest.next().map(String::as_str) {
        Some(c @ ("run" | "swarm")) => c.to_string(),
        Some("-h" | "--help" | "help") => return Err(String::new()),
        Some(other) => return Err(format!("unknown command {other:?}")),
        None => return Err("missing command".into()),
    };
    let mut parsed = Args {
        command,
        path: PathBuf::new(),
        seed: None,
        swarm: false,
        seeds: 100,
        from: 1,
        costly_seeds: None,
        jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
        sabotage: None,
    };
    let mut path = None;
    let number = |flag: &str, value: Option<&String>| -> Result<u64, String> {
        let value = value.ok_or(format!("{flag} needs a value"))?;
        parse_seed(value).ok_or(format!("{flag} {value:?} is not a u64"))
    };
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--seed" => parsed.seed = Some(number("--seed", rest.next())?),
            "--seeds" => parsed.seeds = number("--seeds", rest.next())?,
            "--from" => parsed.from = number("--from", rest.next())?,
            "--costly-seeds" => {
                parsed.costly_seeds = Some(number("--costly-seeds", rest.next())?.max(1))
            }
            "--jobs" => parsed.jobs = number("--jobs", rest.next())?.clamp(1, 64) as usize,
            "--swarm" => parsed.swarm = true,
            "--sabotage" => {
                let name = rest.next().ok_or("--sabotage needs a name")?;
                parsed.sabotage =
                    Some(Sabotage::parse(name).ok_or(format!("unknown sabotage {name:?}"))?);
            }
            "-h" | "--help" => return Err(String::new()),
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag:?}")),
            p if path.is_none() => path = Some(PathBuf::from(p)),
            extra => return Err(format!("unexpected argument {extra:?}")),
        }
    }
    parsed.path = path.ok_or(match parsed.command.as_str() {
        "run" => "missing scenario file",
        _ => "missing scenario directory",
    })?;
    Ok(parsed)
}

/// The command that replays one run.
pub(crate) fn replay_command(
    file: &Path,
    seed: u64,
    swarm: bool,
    sabotage: Option<Sabotage>,
) -> String {
    let mut command = format!("ww-sim run {} --seed {seed}", file.display());
    if swarm {
        command.push_str(" --swarm");
    }
    if let Some(s) = sabotage {
        command.push_str(&format!(" --sabotage {}", s.name()));
    }
    command
}

/// The exit code a verdict calls for.
pub(crate) fn verdict_code(verdict: &Verdict) -> u8 {
    if !verdict.safety_violations.is_empty() {
        1
    } else if !verdict.liveness_violations.is_empty() {
        2
    } else {
        0
    }
}

/// Runs one scenario, catching a panic as a harness error.
pub(crate) fn run_once(
    scenario: &Scenario,
    seed: u64,
    sabotage: Option<Sabotage>,
) -> Result<Verdict, String> {
    let options = RunOptions { sabotage };
    match std::panic::catch_unwind(|| scenario::run_with(scenario, seed, options)) {
        Ok(Ok(verdict)) => Ok(verdict),
        Ok(Err(e)) => Err(e.to_string()),
        Err(panic) => Err(format!(
            "the run panicked: {}",
            panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)")
        )),
    }
}

fn run_command(args: &Args) -> u8 {
    let seed = match args.seed {
        Some(seed) => seed,
        None => match std::panic::catch_unwind(|| root_seed(DEFAULT_SEED)) {
            Ok(seed) => seed,
            Err(_) => {
                eprintln!("ww-sim: {SEED_ENV} is not a u64");
                return EXIT_HARNESS;
            }
        },
    };
    let replay = format!(
        "replay: {}",
        replay_command(&args.path, seed, args.swarm, args.sabotage)
    );
    println!("seed {seed}");
    let loaded = match Scenario::load(&args.path) {
        Ok(scenario) => scenario,
        Err(e) => {
            eprintln!("ww-sim: {e}");
            return EXIT_HARNESS;
        }
    };
    let scenario = if args.swarm {
        let (varied, how) = swarm::vary(&loaded, seed);
        println!("{how}");
        varied
    } else {
        loaded
    };
    let hosts = scenario.hosts().len();
    println!(
        "scenario {}: {hosts} hosts ({} membership nodes), {}s simulated, {} faults",
        scenario.name,
        scenario.cluster.nodes,
        scenario.duration_s,
        scenario.faults.len()
    );
    for line in scenario.description.trim().lines() {
        println!("  {}", line.trim());
    }
    if let Some(s) = args.sabotage {
        println!("sabotage armed: {}", s.name());
    }
    let started = Instant::now();
    let verdict = match run_once(&scenario, seed, args.sabotage) {
        Ok(verdict) => verdict,
        Err(e) => {
            eprintln!("HARNESS ERROR: {e}\n{replay}");
            return EXIT_HARNESS;
        }
    };
    let wall = started.elapsed();
    println!("timeline:");
    for line in &verdict.timeline {
        println!("  {line}");
    }
    println!("digest {}", verdict.digest);
    let speed = verdict.simulated.as_secs_f64() / wall.as_secs_f64().max(1e-9);
    // Slower than real time is common for big clusters: keep two figures then.
    let digits = if speed < 10.0 { 2 } else { 0 };
    println!(
        "wall {:.2}s ({speed:.digits$} simulated s per wall s)",
        wall.as_secs_f64()
    );
    for v in &verdict.safety_violations {
        println!("SAFETY VIOLATION: {v}");
    }
    for v in &verdict.liveness_violations {
        println!("LIVENESS VIOLATION: {v}");
    }
    let code = verdict_code(&verdict);
    match code {
        0 => {
            println!("verdict: ok");
            return 0;
        }
        1 => println!("verdict: safety violated"),
        _ => println!("verdict: liveness violated"),
    }
    println!("{replay}");
    if !args.swarm && args.sabotage.is_none() {
        println!(
            "or: {SEED_ENV}={seed} cargo test -p ww-sim --test scenarios {}",
            scenario.name
        );
    }
    code
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
            return ExitCode::from(if message.is_empty() { 0 } else { EXIT_HARNESS });
        }
    };
    ExitCode::from(match args.command.as_str() {
        "run" => run_command(&args),
        _ => swarm_cmd::swarm_command(&args),
    })
}
