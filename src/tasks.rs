//! Example tasks shipped with ww-sched, with native references to check them by.

use sha2::{Digest, Sha256};

/// `tasks/hash-puzzle/hash-puzzle.wasm`: exports `run(input: u32, zeros: u32) -> u32`.
pub const HASH_PUZZLE_WASM: &[u8] = include_bytes!("../tasks/hash-puzzle/hash-puzzle.wasm");

/// The hash puzzle computed natively: the smallest `counter >= 1` such that the
/// lowercase hex SHA-256 of `decimal(input)` followed by `decimal(counter)` starts
/// with `zeros` '0' characters. Expected work is about `16^zeros` hashes.
pub fn hash_puzzle(input: u32, zeros: u32) -> u32 {
    let prefix = input.to_string();
    let mut counter: u32 = 1;
    loop {
        let mut hasher = Sha256::new();
        hasher.update(prefix.as_bytes());
        hasher.update(counter.to_string().as_bytes());
        if leading_hex_zeros(&hasher.finalize()) >= zeros {
            return counter;
        }
        // As in the original, the u32 counter wraps; unreachable for sane difficulties.
        counter = counter.wrapping_add(1);
    }
}

/// How many '0' characters the digest's lowercase hex form starts with.
fn leading_hex_zeros(digest: &[u8]) -> u32 {
    let mut zeros = 0;
    for byte in digest {
        if *byte == 0 {
            zeros += 2;
            continue;
        }
        if *byte < 0x10 {
            zeros += 1;
        }
        break;
    }
    zeros
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_difficulty_is_solved_by_the_first_counter() {
        assert_eq!(hash_puzzle(42, 0), 1);
    }

    #[test]
    fn answer_really_has_the_leading_zeros() {
        for input in [0u32, 7, 123_456] {
            let counter = hash_puzzle(input, 2);
            let text = format!("{input}{counter}");
            let hex: String = Sha256::digest(text.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert!(hex.starts_with("00"), "{text} -> {hex}");
            // And no smaller counter works.
            for smaller in 1..counter {
                let hex: String = Sha256::digest(format!("{input}{smaller}").as_bytes())
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                assert!(!hex.starts_with("00"));
            }
        }
    }
}
