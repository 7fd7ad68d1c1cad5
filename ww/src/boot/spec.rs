//! Parsing `--discover`: which discovery to run, in multiaddr or URL style.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::str::FromStr;

use super::{PeerInfo, SpecError};
use crate::transport::Address;

/// The CLI's default: a multicast survey on the loopback interface.
pub const DEFAULT_DISCOVER: &str = "/ip4/228.8.8.8/udp/8822/multicast/lo";
/// The most addresses a static list may hold.
pub const STATIC_ADDRESSES_MAX: usize = 256;
/// The most discoveries one spec may combine with `+`.
pub const COMBINED_MAX: usize = 4;

/// Which discovery to run, as parsed from `--discover` (grammar in [`crate::boot`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiscoverySpec {
    /// No discovery: find nothing, advertise nowhere.
    None,
    /// Multicast survey on `group`, joined on `interface`; gradual if `gradual`.
    Multicast {
        /// The group and port.
        group: SocketAddrV4,
        /// The interface's address.
        interface: Ipv4Addr,
        /// Survey at growing distances rather than all at once.
        gradual: bool,
    },
    /// Crawl every host of `network/prefix_len` on UDP `port`.
    Cidr {
        /// The block's network address.
        network: Ipv4Addr,
        /// The prefix length (0..=32).
        prefix_len: u8,
        /// The port every node answers on.
        port: u16,
    },
    /// A fixed list of peers.
    Static(Vec<PeerInfo>),
    /// A boot server: register there and ask it for the others.
    Boot(PeerInfo),
    /// Several of the above at once (`A+B`): advertise through each, find
    /// peers through all.
    All(Vec<DiscoverySpec>),
}

impl FromStr for DiscoverySpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, SpecError> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("none") {
            return Ok(DiscoverySpec::None);
        }
        if s.contains('+') {
            return parse_combined(s);
        }
        if let Some(rest) = s.strip_prefix("multicast://") {
            return parse_multicast_url(rest, false);
        }
        if let Some(rest) = s.strip_prefix("survey://") {
            return parse_multicast_url(rest, true);
        }
        if let Some(rest) = s.strip_prefix("cidr://") {
            return parse_cidr_url(rest);
        }
        if let Some(rest) = s.strip_prefix("static://") {
            return parse_static(rest);
        }
        if let Some(server) = s.strip_suffix("/boot") {
            return parse_boot(server);
        }
        if s.contains("/p2p/") {
            return parse_static(s);
        }
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            ["", "ip4", group, "udp", port, "multicast", iface] => {
                multicast(group, port, Some(iface), false)
            }
            ["", "ip4", group, "udp", port, "multicast", iface, "survey"] => {
                multicast(group, port, Some(iface), true)
            }
            ["", "ip4", network, "udp", port, "cidr", prefix] => cidr(network, prefix, port),
            _ => Err(SpecError::new(
                s,
                "none, /ip4/<group>/udp/<port>/multicast/<iface>[/survey], \
                 /ip4/<network>/udp/<port>/cidr/<prefix>, a comma-separated list of \
                 <multiaddr>/p2p/<peer id>, a boot server as <multiaddr>/p2p/<peer id>/boot, several of these joined by +, or multicast://, survey://, cidr://, static:// URLs",
            )),
        }
    }
}

impl fmt::Display for DiscoverySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiscoverySpec::None => f.write_str("none"),
            DiscoverySpec::Multicast {
                group,
                interface,
                gradual,
            } => {
                write!(
                    f,
                    "/ip4/{}/udp/{}/multicast/{interface}",
                    group.ip(),
                    group.port()
                )?;
                if *gradual {
                    f.write_str("/survey")?;
                }
                Ok(())
            }
            DiscoverySpec::Cidr {
                network,
                prefix_len,
                port,
            } => write!(f, "/ip4/{network}/udp/{port}/cidr/{prefix_len}"),
            DiscoverySpec::Static(peers) => {
                let all: Vec<String> = peers
                    .iter()
                    .flat_map(|p| p.addresses.iter().map(|a| a.with_peer(&p.peer).to_string()))
                    .collect();
                f.write_str(&all.join(","))
            }
            DiscoverySpec::All(specs) => {
                let all: Vec<String> = specs.iter().map(ToString::to_string).collect();
                f.write_str(&all.join("+"))
            }
            DiscoverySpec::Boot(server) => {
                let all: Vec<String> = server
                    .addresses
                    .iter()
                    .map(|a| format!("{}/boot", a.with_peer(&server.peer)))
                    .collect();
                f.write_str(&all.join(","))
            }
        }
    }
}

fn ipv4(text: &str, what: &str) -> Result<Ipv4Addr, SpecError> {
    text.parse()
        .map_err(|_| SpecError::new(text, format!("{what} as an IPv4 address like 10.0.0.1")))
}

fn port(text: &str) -> Result<u16, SpecError> {
    match text.parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(SpecError::new(text, "a UDP port in 1..=65535")),
    }
}

fn interface(text: &str) -> Result<Ipv4Addr, SpecError> {
    match text {
        "lo" | "lo0" => Ok(Ipv4Addr::LOCALHOST),
        _ => text.parse().map_err(|_| {
            SpecError::new(
                text,
                "an interface as an IPv4 address (e.g. 192.168.1.10) or lo / lo0 for loopback",
            )
        }),
    }
}

fn multicast(
    group: &str,
    port_text: &str,
    iface: Option<&str>,
    gradual: bool,
) -> Result<DiscoverySpec, SpecError> {
    let ip = ipv4(group, "a multicast group")?;
    if !ip.is_multicast() {
        return Err(SpecError::new(group, "a multicast group in 224.0.0.0/4"));
    }
    Ok(DiscoverySpec::Multicast {
        group: SocketAddrV4::new(ip, port(port_text)?),
        interface: iface.map_or(Ok(Ipv4Addr::LOCALHOST), interface)?,
        gradual,
    })
}

fn cidr(network: &str, prefix: &str, port_text: &str) -> Result<DiscoverySpec, SpecError> {
    let network = ipv4(network, "a network address")?;
    let prefix_len = match prefix.parse::<u8>() {
        Ok(len) if len <= 32 => len,
        _ => return Err(SpecError::new(prefix, "a prefix length in 0..=32")),
    };
    let host_mask = u32::MAX.checked_shr(u32::from(prefix_len)).unwrap_or(0);
    Ok(DiscoverySpec::Cidr {
        network: Ipv4Addr::from(u32::from(network) & !host_mask),
        prefix_len,
        port: port(port_text)?,
    })
}

/// `<group>:<port>[?iface=<iface>]`
fn parse_multicast_url(rest: &str, gradual: bool) -> Result<DiscoverySpec, SpecError> {
    let (hostport, query) = match rest.split_once('?') {
        Some((hostport, query)) => (hostport, Some(query)),
        None => (rest, None),
    };
    let (group, port_text) = hostport
        .rsplit_once(':')
        .ok_or_else(|| SpecError::new(hostport, "<group>:<port>, e.g. 228.8.8.8:8822"))?;
    let iface = match query {
        None => None,
        Some(query) => match query.strip_prefix("iface=") {
            Some(iface) if !iface.contains('&') => Some(iface),
            _ => return Err(SpecError::new(query, "iface=<IPv4 address or lo>")),
        },
    };
    multicast(group, port_text, iface, gradual)
}

/// `<network>/<prefix>:<port>`
fn parse_cidr_url(rest: &str) -> Result<DiscoverySpec, SpecError> {
    let expected = "<network>/<prefix>:<port>, e.g. 10.0.0.0/24:2020";
    let (block, port_text) = rest
        .rsplit_once(':')
        .ok_or_else(|| SpecError::new(rest, expected))?;
    let (network, prefix) = block
        .split_once('/')
        .ok_or_else(|| SpecError::new(block, expected))?;
    cidr(network, prefix, port_text)
}

/// `<multiaddr>/p2p/<id>[,<multiaddr>/p2p/<id>…]`, grouped by peer in first-seen order.
fn parse_static(list: &str) -> Result<DiscoverySpec, SpecError> {
    let entries: Vec<&str> = list.split(',').map(str::trim).collect();
    if entries.len() > STATIC_ADDRESSES_MAX {
        return Err(SpecError::new(
            format!("{} addresses", entries.len()),
            format!("at most {STATIC_ADDRESSES_MAX} static addresses"),
        ));
    }
    let mut peers: Vec<PeerInfo> = Vec::new();
    for entry in entries {
        let expected = "<multiaddr>/p2p/<peer id>, e.g. /ip4/10.0.0.1/tcp/4001/p2p/12D3KooW…";
        if !entry.starts_with('/') {
            return Err(SpecError::new(entry, expected));
        }
        let (address, peer) = Address::new(entry)
            .split_peer()
            .map_err(|e| SpecError::new(entry, format!("{expected} ({e})")))?;
        let peer = peer.ok_or_else(|| SpecError::new(entry, expected))?;
        if address.as_str().is_empty() {
            return Err(SpecError::new(entry, expected));
        }
        match peers.iter_mut().find(|p| p.peer == peer) {
            Some(known) if !known.addresses.contains(&address) => known.addresses.push(address),
            Some(_) => {}
            None => peers.push(PeerInfo {
                peer,
                addresses: vec![address],
            }),
        }
    }
    Ok(DiscoverySpec::Static(peers))
}

/// `A+B[+…]`: each part a spec of its own (not `none`), at most [`COMBINED_MAX`].
fn parse_combined(s: &str) -> Result<DiscoverySpec, SpecError> {
    let parts: Vec<&str> = s.split('+').map(str::trim).collect();
    if parts.len() > COMBINED_MAX {
        return Err(SpecError::new(
            s,
            format!("at most {COMBINED_MAX} discoveries joined by +"),
        ));
    }
    let mut specs = Vec::with_capacity(parts.len());
    for part in parts {
        match part.parse::<DiscoverySpec>()? {
            DiscoverySpec::None => {
                return Err(SpecError::new(
                    part,
                    "a discovery to combine (none finds nothing; leave it out)",
                ))
            }
            spec => specs.push(spec),
        }
    }
    Ok(DiscoverySpec::All(specs))
}

/// `<multiaddr>/p2p/<id>` of a boot server (the `/boot` already stripped).
fn parse_boot(server: &str) -> Result<DiscoverySpec, SpecError> {
    let expected = "<multiaddr>/p2p/<peer id>/boot, e.g. /ip4/10.0.0.1/tcp/4001/p2p/12D3KooW…/boot";
    if server.contains(',') {
        return Err(SpecError::new(
            server,
            format!("one boot server: {expected}"),
        ));
    }
    match parse_static(server) {
        Ok(DiscoverySpec::Static(mut peers)) if peers.len() == 1 => {
            Ok(DiscoverySpec::Boot(peers.remove(0)))
        }
        Ok(_) => Err(SpecError::new(server, expected)),
        Err(e) => Err(SpecError::new(e.input, expected)),
    }
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
