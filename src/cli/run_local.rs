//! `ww-sched run-local`: one run in the sandbox, no network.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use ww::exec::{ModuleRef, RunSpec, Sandbox, SandboxConfig};

use super::LimitArgs;

/// Flags of `ww-sched run-local`.
#[derive(Args)]
pub struct RunLocalArgs {
    /// The WASM module.
    #[arg(long)]
    wasm: PathBuf,
    /// Export to call.
    #[arg(long, default_value = "run")]
    export: String,
    /// Integer arguments of the export, in order (repeatable).
    #[arg(long = "arg", allow_negative_numbers = true)]
    args: Vec<i64>,
    /// Shorthand for the hash puzzle: first argument.
    #[arg(long, conflicts_with = "args", requires = "difficulty")]
    input: Option<i64>,
    /// Shorthand for the hash puzzle: second argument.
    #[arg(long, conflicts_with = "args", requires = "input")]
    difficulty: Option<i64>,
    #[command(flatten)]
    limits: LimitArgs,
}

/// Runs the module; prints its results on stdout and its output as it wrote it.
pub fn run(args: RunLocalArgs) -> Result<()> {
    let wasm = super::read_module(&args.wasm)?;
    let call_args = match (args.input, args.difficulty) {
        (Some(input), Some(difficulty)) => vec![input, difficulty],
        _ => args.args,
    };
    let sandbox = Sandbox::new(SandboxConfig::default());
    let report = sandbox.run(&RunSpec {
        module: ModuleRef::Bytes(wasm),
        export: args.export,
        args: call_args,
        limits: args.limits.limits(),
    });
    std::io::stdout().write_all(&report.stdout)?;
    std::io::stderr().write_all(&report.stderr)?;
    match report.outcome {
        Ok(values) => {
            let text: Vec<String> = values.iter().map(i64::to_string).collect();
            println!("{}", text.join(" "));
            eprintln!("fuel used: {}", report.fuel_used);
            Ok(())
        }
        Err(e) => bail!(
            "run failed ({}): {} [fuel used: {}]",
            e.kind().as_str(),
            e.message(),
            report.fuel_used
        ),
    }
}
