//! ww-sched patch: a fast hasher for the maps the step loop looks hosts and
//! links up in on every step and every message.
//!
//! `IndexMap` iterates in insertion order whatever its hasher, so the hasher
//! changes the cost of a lookup and nothing else; SipHash (the default) is
//! built to resist flooding, which addresses chosen by the simulation do not
//! need.

use std::hash::{BuildHasherDefault, Hasher};

use indexmap::IndexMap;

/// An [`IndexMap`] with [`FxHasher`].
pub(crate) type FastMap<K, V> = IndexMap<K, V, BuildHasherDefault<FxHasher>>;

/// The Firefox/rustc hash: a rotate, an xor and a multiply per word.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        for &byte in chunks.remainder() {
            self.add(u64::from(byte));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn keeps_insertion_order_and_finds_every_key() {
        let mut map: FastMap<IpAddr, usize> = FastMap::default();
        let addrs: Vec<IpAddr> = (0..300u32)
            .map(|i| IpAddr::from([192, 168, (i / 256) as u8, (i % 256) as u8]))
            .rev()
            .collect();
        for (i, addr) in addrs.iter().enumerate() {
            map.insert(*addr, i);
        }
        assert!(map.keys().eq(addrs.iter()));
        for (i, addr) in addrs.iter().enumerate() {
            assert_eq!(map.get(addr), Some(&i));
        }
    }
}
