//! Real UDP sockets for discovery on real hosts.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use super::TransportError;

/// A tokio UDP socket behind the [`Datagram`] trait.
pub struct UdpDatagram(tokio::net::UdpSocket);

impl UdpDatagram {
    /// Binds a UDP socket on `address`.
    pub async fn bind(address: SocketAddr) -> Result<Self, TransportError> {
        tokio::net::UdpSocket::bind(address)
            .await
            .map(UdpDatagram)
            .map_err(|e| TransportError::io(format!("bind udp {address}"), e))
    }

    /// Binds `<group>:<port>` (`0.0.0.0:<port>` off unix) with address reuse, so every node on a host can
    /// listen to the group, joins the group on `interface`, and sends through it.
    pub fn bind_multicast(
        group: SocketAddrV4,
        interface: Ipv4Addr,
    ) -> Result<Self, TransportError> {
        use socket2::{Domain, Protocol, Socket, Type};
        let context = format!("bind multicast {group} on {interface}");
        let io = |e| TransportError::io(context.clone(), e);
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(io)?;
        socket.set_reuse_address(true).map_err(io)?;
        #[cfg(unix)]
        socket.set_reuse_port(true).map_err(io)?;
        socket.set_nonblocking(true).map_err(io)?;
        // Bound to the group itself, the socket takes only datagrams sent to the
        // group: unicast to this port from any host never reaches discovery.
        // Windows cannot bind a multicast address, so it listens on every address.
        #[cfg(unix)]
        let bind: SocketAddr = SocketAddr::V4(group);
        #[cfg(not(unix))]
        let bind: SocketAddr = (Ipv4Addr::UNSPECIFIED, group.port()).into();
        socket.bind(&bind.into()).map_err(io)?;
        socket
            .join_multicast_v4(group.ip(), &interface)
            .map_err(io)?;
        socket.set_multicast_if_v4(&interface).map_err(io)?;
        socket.set_multicast_loop_v4(true).map_err(io)?;
        // Discovery stays on the local network segment.
        socket.set_multicast_ttl_v4(1).map_err(io)?;
        let socket = tokio::net::UdpSocket::from_std(socket.into()).map_err(io)?;
        Ok(UdpDatagram(socket))
    }
}

impl_datagram!(UdpDatagram, "udp");
