//! Which namespaces a node currently answers for (sans-IO: the caller passes `now`).

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use super::packet::NAMESPACE_MAX_BYTES;
use super::BootError;

/// The longest ttl granted; longer requests are cut to this (and say so in the result).
pub const TTL_MAX: Duration = Duration::from_secs(24 * 60 * 60);
/// How many namespaces one node may advertise at once.
pub const NAMESPACES_MAX: usize = 64;

/// Advertised namespaces and when each lapses.
#[derive(Debug, Default)]
pub struct Advertised {
    deadlines: BTreeMap<String, Instant>,
}

/// The outcome of [`Advertised::advertise`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Granted {
    /// How long the namespace is answered for.
    pub ttl: Duration,
    /// Whether the namespace was not live before this call.
    pub newly: bool,
}

impl Advertised {
    /// Answers for `namespace` until `now + ttl` (ttl capped at [`TTL_MAX`]; zero stops).
    pub fn advertise(
        &mut self,
        namespace: &str,
        ttl: Duration,
        now: Instant,
    ) -> Result<Granted, BootError> {
        check_namespace(namespace)?;
        self.purge(now);
        let ttl = ttl.min(TTL_MAX);
        if ttl.is_zero() {
            self.deadlines.remove(namespace);
            return Ok(Granted { ttl, newly: false });
        }
        let newly = !self.deadlines.contains_key(namespace);
        if newly && self.deadlines.len() >= NAMESPACES_MAX {
            return Err(BootError::TooManyNamespaces {
                namespace: namespace.to_string(),
                max: NAMESPACES_MAX,
            });
        }
        self.deadlines.insert(namespace.to_string(), now + ttl);
        Ok(Granted { ttl, newly })
    }

    /// Whether `namespace` is advertised and not yet lapsed at `now`.
    pub fn is_live(&mut self, namespace: &str, now: Instant) -> bool {
        self.purge(now);
        self.deadlines.contains_key(namespace)
    }

    fn purge(&mut self, now: Instant) {
        self.deadlines.retain(|_, deadline| *deadline > now);
    }
}

/// Refuses namespaces that cannot travel in a packet.
pub(crate) fn check_namespace(namespace: &str) -> Result<(), BootError> {
    if namespace.len() > NAMESPACE_MAX_BYTES {
        return Err(BootError::NamespaceTooLong {
            len_bytes: namespace.len(),
            max_bytes: NAMESPACE_MAX_BYTES,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lapses_after_ttl_and_extends_on_repeat() {
        let start = Instant::now();
        let mut table = Advertised::default();
        let granted = table.advertise("ww", Duration::from_secs(10), start);
        assert!(matches!(granted, Ok(Granted { newly: true, .. })));
        assert!(table.is_live("ww", start + Duration::from_secs(9)));
        let again = table.advertise(
            "ww",
            Duration::from_secs(10),
            start + Duration::from_secs(9),
        );
        assert!(matches!(again, Ok(Granted { newly: false, .. })));
        assert!(table.is_live("ww", start + Duration::from_secs(18)));
        assert!(!table.is_live("ww", start + Duration::from_secs(19)));
        assert!(!table.is_live("other", start));
    }

    #[test]
    fn huge_ttl_is_capped_and_zero_stops() {
        let start = Instant::now();
        let mut table = Advertised::default();
        let granted = table.advertise("ww", Duration::MAX, start).expect("ok");
        assert_eq!(granted.ttl, TTL_MAX);
        table.advertise("ww", Duration::ZERO, start).expect("ok");
        assert!(!table.is_live("ww", start));
    }

    #[test]
    fn table_and_names_are_bounded() {
        let start = Instant::now();
        let mut table = Advertised::default();
        for n in 0..NAMESPACES_MAX {
            table
                .advertise(&n.to_string(), Duration::from_secs(1), start)
                .expect("room");
        }
        let full = table.advertise("one more", Duration::from_secs(1), start);
        assert!(matches!(full, Err(BootError::TooManyNamespaces { .. })));
        // Lapsed entries make room again.
        let later = start + Duration::from_secs(2);
        assert!(table
            .advertise("one more", Duration::from_secs(1), later)
            .is_ok());
        let long = "n".repeat(NAMESPACE_MAX_BYTES + 1);
        let refused = table.advertise(&long, Duration::from_secs(1), later);
        assert!(matches!(refused, Err(BootError::NamespaceTooLong { .. })));
    }
}
