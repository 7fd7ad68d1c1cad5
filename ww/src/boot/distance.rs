//! The survey-answer rule: which nodes answer a survey sent at a distance.
//!
//! Pure functions of two peer ids. The socket driver (`socket.rs`) answers by
//! them; surveys (`survey.rs`, `gradual.rs`) only send the distance. Kept apart
//! so the driver does not depend on the survey that is built on it.

use crate::transport::PeerId;

/// The last four bytes of a peer id as a number, the id's final byte most significant.
pub fn id_tail(id: &PeerId) -> u32 {
    let bytes = id.to_bytes();
    let n = bytes.len().min(4);
    let mut tail = [0u8; 4];
    tail[..n].copy_from_slice(&bytes[bytes.len() - n..]);
    u32::from_le_bytes(tail)
}

/// The responder rule on id tails: answer iff `(a ^ b) >> distance == 0`, and
/// always for a distance of 32 or more (a shift that would clear every bit).
pub fn within_distance(a: u32, b: u32, distance: u8) -> bool {
    match (a ^ b).checked_shr(u32::from(distance)) {
        Some(rest) => rest == 0,
        None => true,
    }
}

/// Whether `local` answers a survey from `remote` at `distance`.
pub fn should_answer(local: &PeerId, remote: &PeerId, distance: u8) -> bool {
    within_distance(id_tail(local), id_tail(remote), distance)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Identity;

    #[test]
    fn distance_zero_needs_identical_tails() {
        assert!(within_distance(0xdead_beef, 0xdead_beef, 0));
        assert!(!within_distance(0xdead_beef, 0xdead_beee, 0));
    }

    #[test]
    fn distance_32_or_more_answers_everyone() {
        for distance in [32, 33, 200, 255] {
            assert!(within_distance(0, u32::MAX, distance));
        }
        assert!(!within_distance(0, 0x8000_0000, 31));
    }

    #[test]
    fn worked_examples() {
        // xor 1: differs in the lowest bit only.
        assert!(!within_distance(1, 0, 0));
        assert!(within_distance(1, 0, 1));
        // xor 0xf0: needs the low 8 bits free.
        assert!(!within_distance(0xff, 0x0f, 7));
        assert!(within_distance(0xff, 0x0f, 8));
    }

    #[test]
    fn tail_reads_last_byte_as_most_significant() {
        let id = Identity::from_secret([7; 32]).peer_id();
        let bytes = id.to_bytes();
        let last = bytes[bytes.len() - 1];
        assert_eq!(id_tail(&id) >> 24, u32::from(last));
        assert!(should_answer(&id, &id, 0));
        let other = Identity::from_secret([8; 32]).peer_id();
        assert!(should_answer(&id, &other, 32));
    }
}
