//! The decoders of bytes from the network: discovery packets and envelopes,
//! heartbeats, and the Cap'n Proto readers of `TaskSpec` and `RunReport`.

use ww::boot::packet::{Envelope, Packet};
use ww::cluster::Heartbeat;
use ww_sched::schema::worker_capnp::{run_report as report_wire, task_spec as spec_wire};
use ww_sched::worker::wire;

/// A discovery packet or signed envelope: decoding never panics, and what
/// decodes encodes and decodes again to the same value.
pub fn discovery_packet(data: &[u8]) {
    if let Ok(packet) = Packet::decode(data) {
        let bytes = packet.encode().expect("a decoded packet encodes");
        assert_eq!(Packet::decode(&bytes), Ok(packet), "packet round trip");
    }
    if let Ok(envelope) = Envelope::decode(data) {
        let bytes = envelope.encode().expect("a decoded envelope encodes");
        assert_eq!(
            Envelope::decode(&bytes),
            Ok(envelope),
            "envelope round trip"
        );
    }
}

/// A heartbeat: decoding never panics, and what decodes round-trips.
pub fn heartbeat(data: &[u8]) {
    if let Ok(beat) = Heartbeat::decode(data) {
        let bytes = beat.encode();
        assert_eq!(bytes.len(), beat.encoded_len(), "encoded_len");
        assert_eq!(Heartbeat::decode(&bytes), Ok(beat), "heartbeat round trip");
    }
}

/// Reads `data` as one Cap'n Proto message (flat, as a stream carries it)
/// with the RPC layer's limits.
fn message(data: &[u8]) -> Option<capnp::message::Reader<capnp::serialize::OwnedSegments>> {
    let mut slice = data;
    capnp::serialize::read_message(&mut slice, ww::rpc::reader_options()).ok()
}

/// A `TaskSpec` as a worker reads it: refused or read within its bounds.
pub fn task_spec(data: &[u8]) {
    let Some(message) = message(data) else { return };
    let Ok(root) = message.get_root::<spec_wire::Reader<'_>>() else {
        return;
    };
    if let Ok(spec) = wire::read_spec(root) {
        assert!(
            spec.args.len() <= wire::ARGS_MAX as usize,
            "args over the bound"
        );
        if let ww::exec::ModuleRef::Bytes(bytes) = &spec.module {
            assert!(
                bytes.len() <= wire::MODULE_BYTES_MAX,
                "module over the bound"
            );
        }
    }
}

/// A `RunReport` as the gateway reads it: never a panic.
pub fn run_report(data: &[u8]) {
    let Some(message) = message(data) else { return };
    let Ok(root) = message.get_root::<report_wire::Reader<'_>>() else {
        return;
    };
    let _ = wire::read_report(root);
}

/// A DHT record or an anchor path from the network: opening a record never
/// panics, and one that opens is the record its own bytes open to, under its
/// key (a record that checked out once checks out again, unchanged); an
/// anchor path (the input as text) never panics and prints back to itself.
pub fn dht_record(data: &[u8]) {
    if let Ok(record) = ww::records::Record::open(data) {
        assert_eq!(record.bytes, data, "a record keeps its exact bytes");
        let again = ww::records::Record::open_as(&record.bytes, &record.key())
            .expect("an opened record opens under its own key");
        assert_eq!(again, record, "record round trip");
        assert!(record.payload.len() <= ww::records::PAYLOAD_BYTES_MAX);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(path) = text.parse::<ww::anchor::AnchorPath>() {
            let printed = path.to_string();
            assert_eq!(
                printed.parse::<ww::anchor::AnchorPath>().ok(),
                Some(path),
                "anchor path round trip"
            );
        }
    }
}
