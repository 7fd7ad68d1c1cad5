//! The simulated transport's stream handshake, as a sans-IO codec.
//!
//! Every simulated stream starts with one frame each way. The dialer sends
//! `hello{its peer id, protocol, proof}`; the listener answers `ack{status, its
//! peer id, proof}`. A frame is a big-endian u16 length, then `WWS1`, then the
//! fields, each byte string prefixed with a u8 length. The proof stands in for
//! libp2p's pnet: empty on an open network, else the swarm key's tag of the
//! frame's other fields, and each side closes the stream unless the other's proof
//! matches its own key (or both have none).

use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{PeerId, Protocol, SwarmKey, TransportError};

const MAGIC: &[u8; 4] = b"WWS1";
const PROOF_DOMAIN: &[u8] = b"ww-sched/sim/handshake/v1";
/// No handshake frame is longer than this; longer length prefixes are refused.
pub const FRAME_LEN_MAX: usize = 512;

/// The listener's answer to a hello.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckStatus {
    /// The stream is accepted for the protocol.
    Accepted = 0,
    /// Nobody accepts this protocol here.
    Unsupported = 1,
    /// The protocol's accept queue is full; try again later.
    Busy = 2,
}

/// The dialer's first frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Who is dialing.
    pub dialer: PeerId,
    /// What it wants to speak.
    pub protocol: Protocol,
    /// The swarm key's tag of the fields above; empty on an open network.
    pub proof: Vec<u8>,
}

/// The listener's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    /// Accepted or why not.
    pub status: AckStatus,
    /// Who is listening, so the dialer can check it reached the right node.
    pub listener: PeerId,
    /// The swarm key's tag of the fields above; empty on an open network.
    pub proof: Vec<u8>,
}

/// The proof of `fields` under `key`: its tag, or nothing without a key.
fn prove(fields: &[u8], key: Option<&SwarmKey>) -> Vec<u8> {
    key.map(|k| k.tag(PROOF_DOMAIN, fields).to_vec())
        .unwrap_or_default()
}

/// Whether `proof` of `fields` shows the same network as `key`.
fn proven(fields: &[u8], proof: &[u8], key: Option<&SwarmKey>) -> bool {
    match key {
        None => proof.is_empty(),
        Some(key) => key.verify(PROOF_DOMAIN, fields, proof),
    }
}

fn malformed(detail: &str) -> TransportError {
    TransportError::io(
        "simulated handshake",
        std::io::Error::new(std::io::ErrorKind::InvalidData, detail.to_string()),
    )
}

fn push_bytes(frame: &mut Vec<u8>, bytes: &[u8]) {
    // Peer ids and protocol names are far below 255 bytes; checked at construction.
    debug_assert!(bytes.len() <= usize::from(u8::MAX));
    frame.push(bytes.len() as u8);
    frame.extend_from_slice(bytes);
}

fn take_bytes<'a>(body: &mut &'a [u8]) -> Result<&'a [u8], TransportError> {
    let (&len, rest) = body
        .split_first()
        .ok_or_else(|| malformed("truncated frame"))?;
    let len = usize::from(len);
    if rest.len() < len {
        return Err(malformed("truncated field"));
    }
    let (field, rest) = rest.split_at(len);
    *body = rest;
    Ok(field)
}

fn frame(body: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + MAGIC.len() + body.len());
    let len = (MAGIC.len() + body.len()) as u16;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&body);
    out
}

fn unframe(frame: &[u8]) -> Result<&[u8], TransportError> {
    frame
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| malformed("bad magic"))
}

impl Hello {
    /// A hello from `dialer` for `protocol`, proven under `key`.
    pub fn new(dialer: PeerId, protocol: Protocol, key: Option<&SwarmKey>) -> Self {
        let mut hello = Hello {
            dialer,
            protocol,
            proof: Vec::new(),
        };
        hello.proof = prove(&hello.fields(), key);
        hello
    }

    fn fields(&self) -> Vec<u8> {
        let mut body = Vec::new();
        push_bytes(&mut body, &self.dialer.to_bytes());
        push_bytes(&mut body, self.protocol.as_str().as_bytes());
        body
    }

    /// Whether the dialer is on the same network as a node holding `key`.
    pub fn proven(&self, key: Option<&SwarmKey>) -> bool {
        proven(&self.fields(), &self.proof, key)
    }

    /// The hello as one frame.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = self.fields();
        push_bytes(&mut body, &self.proof);
        frame(body)
    }

    /// Parses a frame body (after the length prefix).
    pub fn decode(frame: &[u8]) -> Result<Self, TransportError> {
        let mut body = unframe(frame)?;
        let dialer = PeerId::from_bytes(take_bytes(&mut body)?)?;
        let protocol = std::str::from_utf8(take_bytes(&mut body)?)
            .map_err(|_| malformed("protocol is not UTF-8"))?;
        let protocol = Protocol::new(protocol)?;
        let proof = take_bytes(&mut body)?.to_vec();
        if !body.is_empty() {
            return Err(malformed("trailing bytes"));
        }
        Ok(Hello {
            dialer,
            protocol,
            proof,
        })
    }
}

impl Ack {
    /// An answer from `listener`, proven under `key`.
    pub fn new(status: AckStatus, listener: PeerId, key: Option<&SwarmKey>) -> Self {
        let mut ack = Ack {
            status,
            listener,
            proof: Vec::new(),
        };
        ack.proof = prove(&ack.fields(), key);
        ack
    }

    fn fields(&self) -> Vec<u8> {
        let mut body = vec![self.status as u8];
        push_bytes(&mut body, &self.listener.to_bytes());
        body
    }

    /// Whether the listener is on the same network as a node holding `key`.
    pub fn proven(&self, key: Option<&SwarmKey>) -> bool {
        proven(&self.fields(), &self.proof, key)
    }

    /// The ack as one frame.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = self.fields();
        push_bytes(&mut body, &self.proof);
        frame(body)
    }

    /// Parses a frame body (after the length prefix).
    pub fn decode(frame: &[u8]) -> Result<Self, TransportError> {
        let mut body = unframe(frame)?;
        let (&status, rest) = body.split_first().ok_or_else(|| malformed("no status"))?;
        body = rest;
        let status = match status {
            0 => AckStatus::Accepted,
            1 => AckStatus::Unsupported,
            2 => AckStatus::Busy,
            _ => return Err(malformed("unknown status")),
        };
        let listener = PeerId::from_bytes(take_bytes(&mut body)?)?;
        let proof = take_bytes(&mut body)?.to_vec();
        if !body.is_empty() {
            return Err(malformed("trailing bytes"));
        }
        Ok(Ack {
            status,
            listener,
            proof,
        })
    }
}

/// Reads one length-prefixed frame, refusing lengths over [`FRAME_LEN_MAX`].
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Vec<u8>, TransportError> {
    let mut len = [0u8; 2];
    reader
        .read_exact(&mut len)
        .await
        .map_err(|e| TransportError::io("read handshake length", e))?;
    let len = usize::from(u16::from_be_bytes(len));
    if len > FRAME_LEN_MAX {
        return Err(malformed("frame too long"));
    }
    let mut frame = vec![0u8; len];
    reader
        .read_exact(&mut frame)
        .await
        .map_err(|e| TransportError::io("read handshake frame", e))?;
    Ok(frame)
}

/// Writes one encoded frame and flushes it.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    frame: &[u8],
) -> Result<(), TransportError> {
    writer
        .write_all(frame)
        .await
        .map_err(|e| TransportError::io("write handshake", e))?;
    writer
        .flush()
        .await
        .map_err(|e| TransportError::io("flush handshake", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Identity;

    fn peer(n: u8) -> PeerId {
        Identity::from_secret([n; 32]).peer_id()
    }

    #[test]
    fn hello_and_ack_round_trip() {
        let key = SwarmKey::from_bytes([5; 32]);
        for key in [None, Some(&key)] {
            let hello = Hello::new(peer(1), Protocol::new("/ww-sched/0.1/worker").unwrap(), key);
            let bytes = hello.encode();
            assert_eq!(Hello::decode(&bytes[2..]).unwrap(), hello);
            let ack = Ack::new(AckStatus::Busy, peer(2), key);
            let bytes = ack.encode();
            assert_eq!(Ack::decode(&bytes[2..]).unwrap(), ack);
        }
    }

    #[test]
    fn proofs_hold_only_between_nodes_of_one_network() {
        let key = SwarmKey::from_bytes([5; 32]);
        let other = SwarmKey::from_bytes([6; 32]);
        let protocol = Protocol::new("/p").unwrap();
        let keyed = Hello::new(peer(1), protocol.clone(), Some(&key));
        assert!(keyed.proven(Some(&key)));
        assert!(!keyed.proven(Some(&other)));
        assert!(!keyed.proven(None), "an open node took a keyed dialer");
        let open = Hello::new(peer(1), protocol.clone(), None);
        assert!(open.proven(None));
        assert!(!open.proven(Some(&key)), "a keyed node took an open dialer");
        // A proof does not carry over to another dialer or protocol.
        let mut moved = keyed.clone();
        moved.dialer = peer(9);
        assert!(!moved.proven(Some(&key)));
        let ack = Ack::new(AckStatus::Accepted, peer(2), Some(&key));
        assert!(ack.proven(Some(&key)) && !ack.proven(Some(&other)) && !ack.proven(None));
    }

    #[test]
    fn malformed_frames_are_refused_not_panicked_on() {
        let good = Hello::new(peer(3), Protocol::new("/p").unwrap(), None).encode();
        for cut in 2..good.len() {
            assert!(
                Hello::decode(&good[2..cut]).is_err(),
                "prefix of {cut} bytes accepted"
            );
        }
        assert!(Hello::decode(b"XXXX\x01\x02").is_err());
        assert!(Ack::decode(b"WWS1\x09\x00").is_err());
    }
}
