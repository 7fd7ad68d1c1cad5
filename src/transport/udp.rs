//! Real UDP sockets for discovery on real hosts.

use std::net::{Ipv4Addr, SocketAddr};

use super::{Datagram, TransportError};

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
}

impl Datagram for UdpDatagram {
    fn local_addr(&self) -> Result<SocketAddr, TransportError> {
        self.0
            .local_addr()
            .map_err(|e| TransportError::io("udp local address", e))
    }

    async fn send_to(&self, payload: &[u8], target: SocketAddr) -> Result<usize, TransportError> {
        self.0
            .send_to(payload, target)
            .await
            .map_err(|e| TransportError::io(format!("udp send to {target}"), e))
    }

    async fn recv_from(&self, buffer: &mut [u8]) -> Result<(usize, SocketAddr), TransportError> {
        self.0
            .recv_from(buffer)
            .await
            .map_err(|e| TransportError::io("udp receive", e))
    }

    fn join_multicast_v4(
        &self,
        group: Ipv4Addr,
        interface: Ipv4Addr,
    ) -> Result<(), TransportError> {
        self.0
            .join_multicast_v4(group, interface)
            .map_err(|e| TransportError::io(format!("join multicast {group} on {interface}"), e))
    }
}
