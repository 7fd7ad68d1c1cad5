//! Example ww-sched task: find the smallest `counter >= 1` such that the lowercase
//! hex SHA-256 of `decimal(input) ++ decimal(counter)` starts with `zeros` '0's.
//!
//! Exported as `run(input: u32, zeros: u32) -> u32` for the wasm32-wasip1 target.

use sha2::{Digest, Sha256};

/// Writes the decimal form of `value` into `buf`, returning the used suffix.
fn decimal(mut value: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut pos = buf.len();
    loop {
        pos -= 1;
        buf[pos] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            return &buf[pos..];
        }
    }
}

/// Counts the leading '0' characters of the digest's lowercase hex form.
fn leading_hex_zeros(digest: &[u8]) -> u32 {
    let mut count = 0;
    for byte in digest {
        if *byte == 0 {
            count += 2;
        } else {
            if *byte < 0x10 {
                count += 1;
            }
            break;
        }
    }
    count
}

/// Solves the puzzle; returns 0 only if no counter in 1..=u32::MAX works.
#[no_mangle]
pub extern "C" fn run(input: u32, zeros: u32) -> u32 {
    let mut input_buf = [0u8; 10];
    let prefix = Sha256::new_with_prefix(decimal(input, &mut input_buf));
    let mut counter_buf = [0u8; 10];
    let mut counter: u32 = 1;
    loop {
        // Cloning the hasher reuses the work already done on the input's digits.
        let digest = prefix
            .clone()
            .chain_update(decimal(counter, &mut counter_buf))
            .finalize();
        if leading_hex_zeros(&digest) >= zeros {
            return counter;
        }
        counter = match counter.checked_add(1) {
            Some(next) => next,
            None => return 0,
        };
    }
}
