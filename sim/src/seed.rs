//! One root seed per run, overridable from the environment, and per-node seeds
//! derived from it.

use sha2::{Digest, Sha256};
use ww::transport::{SimConfig, SwarmKey};

/// The environment variable that overrides a test's root seed.
pub const SEED_ENV: &str = "WW_SIM_SEED";

/// The root seed: `WW_SIM_SEED` if set (decimal or `0x` hex), else `default`.
/// Panics with a readable message on a malformed value: a silently ignored
/// override would replay the wrong run.
pub fn root_seed(default: u64) -> u64 {
    match std::env::var(SEED_ENV) {
        Ok(text) => parse_seed(&text).unwrap_or_else(|| panic!("{SEED_ENV}={text:?} is not a u64")),
        Err(_) => default,
    }
}

/// Parses a seed: decimal, or hexadecimal after `0x`.
pub fn parse_seed(text: &str) -> Option<u64> {
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// A seed for one purpose (a node, a workload) derived from the root seed.
pub fn derive_seed(root: u64, purpose: &str) -> u64 {
    let digest = Sha256::new()
        .chain_update(root.to_le_bytes())
        .chain_update(purpose.as_bytes())
        .finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(bytes)
}

/// The cluster's swarm key in a keyed scenario: derived from the root seed, so
/// the same seed gives the same key.
pub fn cluster_key(root: u64) -> SwarmKey {
    let digest = Sha256::new()
        .chain_update(root.to_le_bytes())
        .chain_update(b"ww-sim swarm key")
        .finalize();
    SwarmKey::from_bytes(digest.into())
}

/// Host `name`'s transport settings under `root`: its seeded identity, and the
/// cluster's key when the scenario is keyed.
pub fn host_config(root: u64, name: &str, keyed: bool) -> SimConfig {
    let mut config = SimConfig::from_seed(root, name);
    config.swarm_key = keyed.then(|| cluster_key(root));
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_seeds_are_stable_and_distinct() {
        assert_eq!(derive_seed(1, "a"), derive_seed(1, "a"));
        assert_ne!(derive_seed(1, "a"), derive_seed(1, "b"));
        assert_ne!(derive_seed(1, "a"), derive_seed(2, "a"));
    }
}
