//! An export's signature as both engines see it, and the run's arguments checked
//! against it: only i32 and i64 parameters and results cross the boundary.

use super::error::{ErrorKind, ExecError};

/// An argument converted to its parameter's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Arg {
    /// An i32 parameter; values above `i32::MAX` were passed as their u32 bit pattern.
    I32(i32),
    /// An i64 parameter.
    I64(i64),
}

/// A parameter or result type as the engine names it: `Some(is_i64)` for the two
/// integer types, `None` for anything else.
pub(crate) type IntType = Option<bool>;

/// Checks that `export` takes and returns only integers and that `args` fit its
/// parameters; `describe` renders the engine's type for the error message.
pub(crate) fn typed_args(
    export: &str,
    params: &[IntType],
    results: &[IntType],
    describe: impl FnOnce() -> String,
    args: &[i64],
) -> Result<Vec<Arg>, ExecError> {
    let wrong = |message: String| ExecError::new(ErrorKind::WrongSignature, message);
    if params.iter().chain(results).any(Option::is_none) {
        return Err(wrong(format!(
            "export {export:?} has type {}; only i32/i64 are supported",
            describe()
        )));
    }
    if params.len() != args.len() {
        return Err(wrong(format!(
            "export {export:?} takes {} arguments, {} given",
            params.len(),
            args.len()
        )));
    }
    params
        .iter()
        .zip(args)
        .enumerate()
        .map(|(i, (is_i64, &arg))| {
            if *is_i64 == Some(true) {
                return Ok(Arg::I64(arg));
            }
            match i32::try_from(arg) {
                Ok(v) => Ok(Arg::I32(v)),
                Err(_) => u32::try_from(arg)
                    .map(|v| Arg::I32(v as i32))
                    .map_err(|_| wrong(format!("argument {i} ({arg}) does not fit in i32"))),
            }
        })
        .collect()
}

/// The error for an export that is missing, or is not a function.
pub(crate) fn missing_export(export: &str, exists: bool) -> ExecError {
    let message = if exists {
        format!("export {export:?} is not a function")
    } else {
        format!("no export named {export:?}")
    };
    ExecError::new(ErrorKind::MissingExport, message)
}
