//! Conversions between the sandbox's types and their Cap'n Proto encoding.

use crate::schema::worker_capnp::{self as wire, run_report, task_spec};
use ww::exec::{ErrorKind, ExecError, Limits, ModuleHash, ModuleRef, RunReport, RunSpec};

/// Module bytes a spec may carry; larger specs are refused before any work.
pub use ww::exec::MODULE_BYTES_MAX;
/// Integer arguments a spec may carry.
pub const ARGS_MAX: u32 = 64;
/// Specs one `runMany` call may carry: 64 reports of at most 128 KiB of
/// output each stay far inside a message's traversal limit.
pub const RUN_MANY_MAX: u32 = 64;

fn kind_to_wire(kind: ErrorKind) -> wire::ErrorKind {
    match kind {
        ErrorKind::NotWasm => wire::ErrorKind::NotWasm,
        ErrorKind::BadModule => wire::ErrorKind::BadModule,
        ErrorKind::ModuleTooLarge => wire::ErrorKind::ModuleTooLarge,
        ErrorKind::UnknownModule => wire::ErrorKind::UnknownModule,
        ErrorKind::MissingExport => wire::ErrorKind::MissingExport,
        ErrorKind::WrongSignature => wire::ErrorKind::WrongSignature,
        ErrorKind::Trap => wire::ErrorKind::Trap,
        ErrorKind::FuelExhausted => wire::ErrorKind::FuelExhausted,
        ErrorKind::MemoryLimit => wire::ErrorKind::MemoryLimit,
        ErrorKind::Deadline => wire::ErrorKind::Deadline,
        ErrorKind::Exit => wire::ErrorKind::Exit,
        ErrorKind::Cancelled => wire::ErrorKind::Cancelled,
        ErrorKind::Internal => wire::ErrorKind::Internal,
    }
}

fn kind_from_wire(kind: wire::ErrorKind) -> Option<ErrorKind> {
    Some(match kind {
        wire::ErrorKind::None => return None,
        wire::ErrorKind::NotWasm => ErrorKind::NotWasm,
        wire::ErrorKind::BadModule => ErrorKind::BadModule,
        wire::ErrorKind::ModuleTooLarge => ErrorKind::ModuleTooLarge,
        wire::ErrorKind::UnknownModule => ErrorKind::UnknownModule,
        wire::ErrorKind::MissingExport => ErrorKind::MissingExport,
        wire::ErrorKind::WrongSignature => ErrorKind::WrongSignature,
        wire::ErrorKind::Trap => ErrorKind::Trap,
        wire::ErrorKind::FuelExhausted => ErrorKind::FuelExhausted,
        wire::ErrorKind::MemoryLimit => ErrorKind::MemoryLimit,
        wire::ErrorKind::Deadline => ErrorKind::Deadline,
        wire::ErrorKind::Exit => ErrorKind::Exit,
        wire::ErrorKind::Cancelled => ErrorKind::Cancelled,
        wire::ErrorKind::Internal => ErrorKind::Internal,
    })
}

/// Writes `spec` into a `TaskSpec` builder.
pub fn write_spec(spec: &RunSpec, mut out: task_spec::Builder<'_>) {
    match &spec.module {
        ModuleRef::Bytes(bytes) => out.reborrow().init_module().set_bytes(bytes),
        ModuleRef::Hash(hash) => out.reborrow().init_module().set_hash(&hash.0),
    }
    out.set_export(spec.export.as_str());
    let count = u32::try_from(spec.args.len()).unwrap_or(u32::MAX);
    let mut args = out.reborrow().init_args(count);
    for (i, value) in spec.args.iter().enumerate().take(count as usize) {
        args.set(i as u32, *value);
    }
    let mut limits = out.init_limits();
    limits.set_fuel_max(spec.limits.fuel_max);
    limits.set_memory_pages_max(spec.limits.memory_pages_max);
    limits.set_wall_time_ms(spec.limits.wall_time_ms);
}

/// Checks a `TaskSpec`'s module size and argument count without copying anything.
pub fn check_spec(spec: task_spec::Reader<'_>) -> Result<(), capnp::Error> {
    if let task_spec::module::Bytes(bytes) = spec.get_module().which()? {
        let size = bytes?.len();
        if size > MODULE_BYTES_MAX {
            return Err(capnp::Error::failed(format!(
                "module_too_large: {size} bytes, at most {MODULE_BYTES_MAX}"
            )));
        }
    }
    let args = spec.get_args()?.len();
    if args > ARGS_MAX {
        return Err(capnp::Error::failed(format!(
            "{args} arguments, at most {ARGS_MAX}"
        )));
    }
    Ok(())
}

/// Reads a `TaskSpec`, refusing oversized modules and argument lists.
pub fn read_spec(spec: task_spec::Reader<'_>) -> Result<RunSpec, capnp::Error> {
    check_spec(spec)?;
    let module = match spec.get_module().which()? {
        task_spec::module::Bytes(bytes) => ModuleRef::Bytes(bytes?.to_vec()),
        task_spec::module::Hash(hash) => {
            let hash: [u8; 32] = hash?.try_into().map_err(|_| {
                capnp::Error::failed("module hash must be 32 bytes (SHA-256)".into())
            })?;
            ModuleRef::Hash(ModuleHash(hash))
        }
    };
    let args = spec.get_args()?;
    let limits = spec.get_limits()?;
    Ok(RunSpec {
        module,
        export: spec.get_export()?.to_str()?.to_string(),
        args: args.iter().collect(),
        limits: Limits {
            fuel_max: limits.get_fuel_max(),
            memory_pages_max: limits.get_memory_pages_max(),
            wall_time_ms: limits.get_wall_time_ms(),
        },
    })
}

/// Writes `report` into a `RunReport` builder.
pub fn write_report(report: &RunReport, mut out: run_report::Builder<'_>) {
    out.set_stdout(&report.stdout);
    out.set_stderr(&report.stderr);
    out.set_fuel_used(report.fuel_used);
    match &report.outcome {
        Ok(values) => {
            out.set_status(wire::RunStatus::Succeeded);
            out.set_error_kind(wire::ErrorKind::None);
            let count = u32::try_from(values.len()).unwrap_or(u32::MAX);
            let mut results = out.init_results(count);
            for (i, value) in values.iter().enumerate().take(count as usize) {
                results.set(i as u32, *value);
            }
        }
        Err(e) => {
            out.set_status(wire::RunStatus::Failed);
            out.set_error_kind(kind_to_wire(e.kind()));
            out.set_error_message(e.message());
        }
    }
}

/// Reads a `RunReport`.
pub fn read_report(report: run_report::Reader<'_>) -> Result<RunReport, capnp::Error> {
    let outcome = match report.get_status()? {
        wire::RunStatus::Succeeded => Ok(report.get_results()?.iter().collect()),
        wire::RunStatus::Failed => {
            let kind = kind_from_wire(report.get_error_kind()?).unwrap_or(ErrorKind::Internal);
            Err(ExecError::new(kind, report.get_error_message()?.to_str()?))
        }
    };
    Ok(RunReport {
        outcome,
        stdout: report.get_stdout()?.to_vec(),
        stderr: report.get_stderr()?.to_vec(),
        fuel_used: report.get_fuel_used(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip_report(report: &RunReport) -> RunReport {
        let mut message = capnp::message::Builder::new_default();
        write_report(report, message.init_root());
        let reader = message.get_root_as_reader::<run_report::Reader>().unwrap();
        read_report(reader).unwrap()
    }

    #[test]
    fn reports_survive_the_wire() {
        let ok = RunReport {
            outcome: Ok(vec![7, -1]),
            stdout: b"out".to_vec(),
            stderr: b"err".to_vec(),
            fuel_used: 42,
        };
        let back = round_trip_report(&ok);
        assert_eq!(back.outcome.unwrap(), vec![7, -1]);
        assert_eq!(
            (back.stdout, back.stderr, back.fuel_used),
            (ok.stdout, ok.stderr, 42)
        );
        let failed = RunReport {
            outcome: Err(ExecError::new(ErrorKind::FuelExhausted, "out of fuel")),
            stdout: Vec::new(),
            stderr: Vec::new(),
            fuel_used: 9,
        };
        let error = round_trip_report(&failed).outcome.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::FuelExhausted);
        assert_eq!(error.message(), "out of fuel");
    }

    #[test]
    fn specs_survive_the_wire() {
        let spec = RunSpec {
            module: ModuleRef::Hash(ModuleHash([5; 32])),
            export: "run".into(),
            args: vec![1, 2, 3],
            limits: Limits {
                fuel_max: 10,
                memory_pages_max: 2,
                wall_time_ms: 30,
            },
        };
        let mut message = capnp::message::Builder::new_default();
        write_spec(&spec, message.init_root());
        let back = read_spec(message.get_root_as_reader().unwrap()).unwrap();
        assert!(matches!(back.module, ModuleRef::Hash(h) if h == ModuleHash([5; 32])));
        assert_eq!((back.export, back.args), ("run".to_string(), vec![1, 2, 3]));
        assert_eq!(back.limits.fuel_max, 10);
        assert_eq!(back.limits.memory_pages_max, 2);
        assert_eq!(back.limits.wall_time_ms, 30);
    }

    #[test]
    fn every_error_kind_maps_both_ways() {
        use ErrorKind::*;
        for kind in [
            NotWasm,
            BadModule,
            ModuleTooLarge,
            UnknownModule,
            MissingExport,
            WrongSignature,
            Trap,
            FuelExhausted,
            MemoryLimit,
            Deadline,
            Exit,
            Internal,
        ] {
            assert_eq!(kind_from_wire(kind_to_wire(kind)), Some(kind));
        }
    }
}
