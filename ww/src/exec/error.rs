//! Typed errors of the sandbox: one [`ErrorKind`] per way a run can fail.

use std::fmt;

/// Longest error message kept, in bytes; wasmi and guest text can echo large inputs.
pub const MESSAGE_BYTES_MAX: usize = 512;

/// Why a module could not be loaded or a run did not return values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    /// The bytes do not start with the `\0asm` magic.
    NotWasm,
    /// The bytes are WASM but fail to parse, validate, link or instantiate.
    BadModule,
    /// The module is larger than `SandboxConfig::module_bytes_max`.
    ModuleTooLarge,
    /// `ModuleRef::Hash` names a module that is not in the cache.
    UnknownModule,
    /// The requested export does not exist or is not a function.
    MissingExport,
    /// The export's signature or the arguments do not fit the i32/i64 calling convention.
    WrongSignature,
    /// The guest trapped (unreachable, out-of-bounds access, stack overflow, ...).
    Trap,
    /// The run used up `Limits::fuel_max`.
    FuelExhausted,
    /// The guest tried to use more than `Limits::memory_pages_max` pages.
    MemoryLimit,
    /// The run exceeded `Limits::wall_time_ms`.
    Deadline,
    /// The guest called `proc_exit` with a nonzero code (or outside `_start`).
    Exit,
    /// The caller asked the run to stop (its task was cancelled or timed out).
    Cancelled,
    /// A bug in the sandbox or the engine; never caused by well-formed limits.
    Internal,
}

const ALL_KINDS: [ErrorKind; 13] = [
    ErrorKind::NotWasm,
    ErrorKind::BadModule,
    ErrorKind::ModuleTooLarge,
    ErrorKind::UnknownModule,
    ErrorKind::MissingExport,
    ErrorKind::WrongSignature,
    ErrorKind::Trap,
    ErrorKind::FuelExhausted,
    ErrorKind::MemoryLimit,
    ErrorKind::Deadline,
    ErrorKind::Exit,
    ErrorKind::Cancelled,
    ErrorKind::Internal,
];

impl ErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: [ErrorKind; 13] = ALL_KINDS;

    /// The stable snake_case name used on the wire and in logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorKind::NotWasm => "not_wasm",
            ErrorKind::BadModule => "bad_module",
            ErrorKind::ModuleTooLarge => "module_too_large",
            ErrorKind::UnknownModule => "unknown_module",
            ErrorKind::MissingExport => "missing_export",
            ErrorKind::WrongSignature => "wrong_signature",
            ErrorKind::Trap => "trap",
            ErrorKind::FuelExhausted => "fuel_exhausted",
            ErrorKind::MemoryLimit => "memory_limit",
            ErrorKind::Deadline => "deadline",
            ErrorKind::Exit => "exit",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Internal => "internal",
        }
    }

    /// Inverse of [`ErrorKind::as_str`].
    pub fn from_str_name(name: &str) -> Option<Self> {
        ALL_KINDS.into_iter().find(|kind| kind.as_str() == name)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A typed sandbox error with a short, capped, human-readable message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct ExecError {
    kind: ErrorKind,
    message: String,
}

impl ExecError {
    /// Builds an error, truncating the message to [`MESSAGE_BYTES_MAX`] bytes.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: cap_text(message.into(), MESSAGE_BYTES_MAX),
        }
    }

    /// The error's kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The capped message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The code a guest passed to `proc_exit`, for an [`ErrorKind::Exit`] error.
    pub fn exit_code(&self) -> Option<i32> {
        if self.kind != ErrorKind::Exit {
            return None;
        }
        // Both engines build this message as `exit code {code}` (interp and jit
        // `classify`); a test below pins the format.
        self.message.strip_prefix("exit code ")?.parse().ok()
    }
}

// Lets a host call end the run with a typed limit (fuel, deadline, cancel) that
// `classify` recovers intact from wasmi's error.
impl wasmi::errors::HostError for ExecError {}

/// Truncates `text` to at most `max` bytes on a char boundary, marking the cut.
pub fn cap_text(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    const MARK: &str = "...";
    let mut cut = max.saturating_sub(MARK.len());
    while cut > 0 && !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    if max >= MARK.len() {
        text.push_str(MARK);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_str_name(kind.as_str()), Some(kind));
        }
        assert_eq!(ErrorKind::from_str_name("nope"), None);
    }

    #[test]
    fn exit_code_is_read_back_from_exit_errors_only() {
        let exit = ExecError::new(ErrorKind::Exit, format!("exit code {}", -3));
        assert_eq!(exit.exit_code(), Some(-3));
        assert_eq!(
            ExecError::new(ErrorKind::Trap, "exit code 3").exit_code(),
            None
        );
    }

    #[test]
    fn message_is_capped_on_char_boundary() {
        let long = "é".repeat(1000);
        let err = ExecError::new(ErrorKind::Trap, long);
        assert!(err.message().len() <= MESSAGE_BYTES_MAX);
        assert!(err.message().ends_with("..."));
        assert_eq!(cap_text("short".into(), 512), "short");
    }
}
