//! The hosts of an IPv4 block in a seeded pseudo-random order (sans-IO).

use std::net::Ipv4Addr;

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Every host address of a block exactly once, in an order fixed by the seed,
/// or outward from a node's own address.
///
/// The seeded order is `((i * a + b) mod 2^k) xor m` over `i = 0..2^k`, with `a`
/// odd: each step is a bijection on k-bit numbers, so the whole is a
/// permutation. The outward order ([`CidrHosts::outward_from`]) goes `own + 1,
/// own - 1, own + 2, ...`: bridges, DHCP and container runtimes hand out
/// addresses in sequence, so the nodes of a small cluster are usually a few
/// steps apart, and each node starts from its own place, so no host is asked
/// by everyone at once. The network and broadcast addresses (and the node's
/// own) are skipped; /31 and /32 blocks yield nothing.
#[derive(Clone, Debug)]
pub struct CidrHosts {
    network: u32,
    size: u64,
    multiplier: u64,
    offset: u64,
    mask: u64,
    /// The node's own host number, for the outward order.
    center: Option<u64>,
    index: u64,
}

impl CidrHosts {
    /// The hosts of `network/prefix_len` (host bits of `network` are ignored);
    /// `None` if the prefix is over 32.
    pub fn new(network: Ipv4Addr, prefix_len: u8, seed: u64) -> Option<Self> {
        if prefix_len > 32 {
            return None;
        }
        let host_bits = 32 - u32::from(prefix_len);
        let size = 1u64 << host_bits;
        let network = u32::from(network) & !((size - 1) as u32);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let low = size - 1;
        Some(CidrHosts {
            network,
            // /31 and /32 have no host addresses to crawl.
            size: if prefix_len >= 31 { 0 } else { size },
            multiplier: (rng.next_u64() | 1) & low.max(1),
            offset: rng.next_u64() & low,
            mask: rng.next_u64() & low,
            center: None,
            index: 0,
        })
    }

    /// The hosts of the block outward from `own`, if `own` is one of them
    /// (otherwise the seeded order, unchanged).
    pub fn outward_from(mut self, own: Ipv4Addr) -> Self {
        if self.contains(own) {
            self.center = Some(u64::from(u32::from(own)) - u64::from(self.network));
        }
        self
    }

    /// Whether `ip` lies in the block (a /31 or /32 contains nothing to crawl).
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let network = u64::from(self.network);
        (network..network + self.size).contains(&u64::from(u32::from(ip)))
    }

    /// Continues an order at `position` (a [`CidrHosts::position`] of an
    /// iterator made with the same block and seed), so a crawl cut short
    /// resumes where it stopped instead of starting over.
    pub fn resumed_at(mut self, position: u64) -> Self {
        self.index = position.min(self.steps());
        self
    }

    /// How far the order has gone: pass it to [`CidrHosts::resumed_at`].
    pub fn position(&self) -> u64 {
        self.index
    }

    /// How many host addresses the block has (what a full pass sends to).
    pub fn host_count(&self) -> u64 {
        self.size.saturating_sub(2)
    }

    /// The host number at step `index`, or `None` for a step outside the block.
    fn at(&self, index: u64) -> Option<u64> {
        if let Some(center) = self.center {
            let step = index / 2 + 1;
            return if index.is_multiple_of(2) {
                Some(center + step).filter(|host| *host < self.size)
            } else {
                center.checked_sub(step)
            };
        }
        let low = self.size - 1;
        Some(
            (index
                .wrapping_mul(self.multiplier)
                .wrapping_add(self.offset)
                & low)
                ^ self.mask,
        )
    }

    /// How many steps a whole pass takes.
    fn steps(&self) -> u64 {
        match self.center {
            // Outward, the far side of the block is up to size - 1 away.
            Some(_) => 2 * self.size,
            None => self.size,
        }
    }
}

impl Iterator for CidrHosts {
    type Item = Ipv4Addr;

    fn next(&mut self) -> Option<Ipv4Addr> {
        while self.index < self.steps() {
            let host = self.at(self.index);
            self.index += 1;
            let Some(host) = host else { continue };
            if host == 0 || host == self.size - 1 || Some(host) == self.center {
                continue;
            }
            return Some(Ipv4Addr::from(self.network | host as u32));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    proptest! {
        #[test]
        fn order_is_a_permutation_of_the_hosts(prefix in 24u8..=32, seed in any::<u64>(), a in any::<u8>()) {
            let network = Ipv4Addr::new(10, 1, a, 0);
            let hosts: Vec<_> = CidrHosts::new(network, prefix, seed).expect("valid").collect();
            let unique: BTreeSet<_> = hosts.iter().copied().collect();
            prop_assert_eq!(unique.len(), hosts.len());
            let size = 1u32 << (32 - u32::from(prefix));
            let base = u32::from(network) & !(size - 1);
            let expected: BTreeSet<Ipv4Addr> = if prefix >= 31 {
                BTreeSet::new()
            } else {
                (base + 1..base + size - 1).map(Ipv4Addr::from).collect()
            };
            prop_assert_eq!(unique, expected);
        }
    }

    proptest! {
        #[test]
        fn outward_order_is_a_permutation_of_the_others(prefix in 20u8..=32, own in any::<u8>(), seed in any::<u64>()) {
            let network = Ipv4Addr::new(10, 1, 0, 0);
            let own = Ipv4Addr::new(10, 1, 0, own);
            let outward: Vec<_> = CidrHosts::new(network, prefix, seed).expect("valid").outward_from(own).collect();
            let mut expected: BTreeSet<_> = CidrHosts::new(network, prefix, seed).expect("valid").collect();
            let inside = expected.remove(&own);
            let unique: BTreeSet<_> = outward.iter().copied().collect();
            prop_assert_eq!(unique.len(), outward.len());
            if inside || CidrHosts::new(network, prefix, seed).expect("valid").host_count() == 0 {
                prop_assert_eq!(unique, expected);
            }
        }
    }

    #[test]
    fn outward_order_starts_next_to_its_own_address() {
        let own = Ipv4Addr::new(10, 0, 0, 2);
        let first: Vec<_> = CidrHosts::new(Ipv4Addr::new(10, 0, 0, 0), 24, 1)
            .expect("ok")
            .outward_from(own)
            .take(4)
            .collect();
        let expected: Vec<_> = [3, 1, 4, 5].map(|n| Ipv4Addr::new(10, 0, 0, n)).to_vec();
        assert_eq!(first, expected);
        // An address outside the block leaves the seeded order.
        let seeded: Vec<_> = CidrHosts::new(Ipv4Addr::new(10, 0, 0, 0), 24, 1)
            .expect("ok")
            .collect();
        let outside: Vec<_> = CidrHosts::new(Ipv4Addr::new(10, 0, 0, 0), 24, 1)
            .expect("ok")
            .outward_from(Ipv4Addr::new(10, 0, 1, 2))
            .collect();
        assert_eq!(seeded, outside);
    }

    #[test]
    fn skips_network_and_broadcast() {
        let hosts: BTreeSet<_> = CidrHosts::new(Ipv4Addr::new(127, 0, 0, 0), 29, 9)
            .expect("valid")
            .collect();
        let expected: BTreeSet<_> = (1..=6).map(|n| Ipv4Addr::new(127, 0, 0, n)).collect();
        assert_eq!(hosts, expected);
    }

    #[test]
    fn seeds_change_the_order_and_host_bits_are_ignored() {
        let a: Vec<_> = CidrHosts::new(Ipv4Addr::new(10, 0, 0, 0), 24, 1)
            .expect("ok")
            .collect();
        let b: Vec<_> = CidrHosts::new(Ipv4Addr::new(10, 0, 0, 77), 24, 2)
            .expect("ok")
            .collect();
        assert_ne!(a, b);
        assert_eq!(
            a.iter().collect::<BTreeSet<_>>(),
            b.iter().collect::<BTreeSet<_>>()
        );
        assert_eq!(a.len(), 254);
    }

    #[test]
    fn a_resumed_order_continues_where_the_first_stopped() {
        let whole: Vec<_> = CidrHosts::new(Ipv4Addr::new(10, 0, 0, 0), 24, 3)
            .expect("ok")
            .collect();
        let mut first = CidrHosts::new(Ipv4Addr::new(10, 0, 0, 0), 24, 3).expect("ok");
        let head: Vec<_> = first.by_ref().take(100).collect();
        let tail: Vec<_> = CidrHosts::new(Ipv4Addr::new(10, 0, 0, 0), 24, 3)
            .expect("ok")
            .resumed_at(first.position())
            .collect();
        assert_eq!([head, tail].concat(), whole);
    }

    #[test]
    fn large_blocks_are_lazy_and_bad_prefixes_refused() {
        let mut all = CidrHosts::new(Ipv4Addr::UNSPECIFIED, 0, 5).expect("valid");
        assert_eq!(all.host_count(), (1u64 << 32) - 2);
        assert!(all.next().is_some());
        assert!(CidrHosts::new(Ipv4Addr::UNSPECIFIED, 33, 5).is_none());
    }
}
