//! Checks of a module's bytes that wasmi does not make before it relies on
//! them. wasmi 2.0.0's parser, under the strict enforced limits this sandbox
//! uses, divides a code section's size by its declared function count: a
//! code section that declares no function but holds 1,000 bytes or more
//! panics it (a division by zero; a `debug_assert` in debug builds). Found
//! by fuzzing (`fuzz/regressions/rpc_worker/`). Such a section is malformed
//! anyway (a count of 0 leaves no room for anything after it), so it is
//! refused here as a bad module before wasmi sees it.

use super::error::{ErrorKind, ExecError};

/// Reads an unsigned LEB128 `u32` at `*at`, advancing past it.
fn leb_u32(bytes: &[u8], at: &mut usize) -> Option<u32> {
    let mut value: u32 = 0;
    for shift in (0..35).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u32::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// The section id of the code section.
const CODE_SECTION: u8 = 10;

/// Refuses a code section whose declared function count is 0 but which
/// holds more than that count. Anything it cannot read it leaves to wasmi.
pub(super) fn check_code_section(bytes: &[u8]) -> Result<(), ExecError> {
    let mut at = 8; // magic and version
    while at < bytes.len() {
        let id = bytes[at];
        at += 1;
        let Some(size) = leb_u32(bytes, &mut at) else {
            return Ok(());
        };
        let start = at;
        // The declared size counts, not the bytes present: wasmi sees the
        // section's start (and divides by its count) before it finds a
        // truncated section short.
        let Some(end) = start.checked_add(size as usize) else {
            return Ok(());
        };
        if id == CODE_SECTION {
            let mut cursor = start;
            if let Some(0) = leb_u32(bytes, &mut cursor) {
                if cursor < end {
                    return Err(ExecError::new(
                        ErrorKind::BadModule,
                        format!(
                            "the code section declares no function but {} bytes",
                            end - start
                        ),
                    ));
                }
            }
            return Ok(());
        }
        at = end;
    }
    Ok(())
}
