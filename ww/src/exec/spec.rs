//! What to run and what came back.

use super::error::{ErrorKind, ExecError};
use super::limits::Limits;
use sha2::{Digest, Sha256};
use std::fmt;

/// SHA-256 of a module's bytes: the module cache key and its identity on the wire.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModuleHash(pub [u8; 32]);

impl ModuleHash {
    /// Hashes module bytes.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// Parses 64 hex digits (either case).
    pub fn from_hex(s: &str) -> Result<Self, ExecError> {
        let bad = || {
            ExecError::new(
                ErrorKind::UnknownModule,
                "module hash must be 64 hex digits",
            )
        };
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = hex_value(pair[0]).ok_or_else(bad)?;
            let lo = hex_value(pair[1]).ok_or_else(bad)?;
            out[i] = (hi << 4) | lo;
        }
        Ok(Self(out))
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for ModuleHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ModuleHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ModuleHash({self})")
    }
}

/// The module of a run: its bytes (inserted into the cache) or the hash of a cached one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModuleRef {
    /// Module bytes; validated, compiled and cached unless already cached.
    Bytes(Vec<u8>),
    /// A module previously inserted; `UnknownModule` if it is not (or no longer) cached.
    Hash(ModuleHash),
}

/// One call of an exported function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSpec {
    /// The module to instantiate.
    pub module: ModuleRef,
    /// The exported function to call.
    pub export: String,
    /// Arguments, one per i32/i64 parameter (see `Sandbox::run` for i32 conversion).
    pub args: Vec<i64>,
    /// Limits for this run.
    pub limits: Limits,
}

/// The outcome of a run, with the captured output and the fuel spent, success or not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunReport {
    /// The export's results (i32 zero-extended, i64 as is) or why there are none.
    pub outcome: Result<Vec<i64>, ExecError>,
    /// Captured fd 1, truncated to `SandboxConfig::output_bytes_max`.
    pub stdout: Vec<u8>,
    /// Captured fd 2, truncated to `SandboxConfig::output_bytes_max`.
    pub stderr: Vec<u8>,
    /// Fuel consumed by instantiation, `_start` and the export.
    pub fuel_used: u64,
}

impl RunReport {
    /// A report for a run that failed before any guest code ran.
    pub fn failed(error: ExecError) -> Self {
        Self {
            outcome: Err(error),
            stdout: Vec::new(),
            stderr: Vec::new(),
            fuel_used: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let hash = ModuleHash::of(b"abc");
        let text = hash.to_string();
        assert_eq!(
            text,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(ModuleHash::from_hex(&text), Ok(hash));
        assert_eq!(ModuleHash::from_hex(&text.to_uppercase()), Ok(hash));
        assert!(ModuleHash::from_hex("abc").is_err());
        assert!(ModuleHash::from_hex(&"g".repeat(64)).is_err());
        assert!(ModuleHash::from_hex(&"é".repeat(32)).is_err());
    }
}
