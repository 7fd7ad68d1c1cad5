//! Cluster-wide anchor paths as users write them: `/`, `/<peer id>`,
//! `/<peer id>/a/b`.

use std::fmt;
use std::str::FromStr;

use crate::transport::PeerId;

/// A path from the cluster's root: nothing (the root), or a host and the
/// segments below it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnchorPath {
    /// `/`: the hosts of the view.
    Root,
    /// `/<peer id>[/segment...]`.
    Host {
        /// The host serving the path.
        peer: PeerId,
        /// Segments below the host's root (checked by the host's tree).
        segments: Vec<String>,
    },
}

/// Why a path did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid anchor path {input:?}: {why}")]
pub struct PathError {
    /// The text given.
    pub input: String,
    /// What is wrong.
    pub why: String,
}

impl FromStr for AnchorPath {
    type Err = PathError;

    fn from_str(s: &str) -> Result<Self, PathError> {
        let error = |why: &str| PathError {
            input: s.to_string(),
            why: why.to_string(),
        };
        let Some(rest) = s.strip_prefix('/') else {
            return Err(error(
                "an anchor path starts with `/`, e.g. /12D3KooW.../jobs",
            ));
        };
        let mut parts = rest.split('/').filter(|part| !part.is_empty());
        let Some(host) = parts.next() else {
            return Ok(AnchorPath::Root);
        };
        let peer = host
            .parse::<PeerId>()
            .map_err(|e| error(&format!("its first segment must be a host's peer id ({e})")))?;
        Ok(AnchorPath::Host {
            peer,
            segments: parts.map(str::to_string).collect(),
        })
    }
}

impl fmt::Display for AnchorPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnchorPath::Root => f.write_str("/"),
            AnchorPath::Host { peer, segments } => {
                write!(f, "/{peer}")?;
                for segment in segments {
                    write!(f, "/{segment}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Identity;

    #[test]
    fn paths_parse_and_print() {
        let peer = Identity::from_secret([4; 32]).peer_id();
        assert_eq!("/".parse::<AnchorPath>().unwrap(), AnchorPath::Root);
        let text = format!("/{peer}/jobs/a");
        let path: AnchorPath = text.parse().unwrap();
        assert_eq!(
            path,
            AnchorPath::Host {
                peer,
                segments: vec!["jobs".into(), "a".into()]
            }
        );
        assert_eq!(path.to_string(), text);
        assert!("jobs".parse::<AnchorPath>().is_err());
        assert!("/not-a-peer/x".parse::<AnchorPath>().is_err());
    }
}
