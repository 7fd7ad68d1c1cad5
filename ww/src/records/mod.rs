//! Records: a DHT of immutable, signed records over the [`Transport`] seam.
//!
//! A content record is addressed by the SHA-256 of its bytes and signed by its
//! publisher; a peer record holds a peer's addresses under a key derived from
//! its id. Each lives on the [`REPLICAS`] hosts of the membership view whose
//! ids hash closest to its key (XOR distance, as in Kademlia; with the full
//! view at hand a lookup needs no iterative routing: one hop). Holders pass
//! their records to the hosts now closest every republish period, so a record
//! outlives its publisher and up to k-1 holders leaving at once. Readers check
//! format, signature and key, so a holder can withhold a record but not forge
//! or alter one.
//!
//! [`Transport`]: crate::transport::Transport
//!
//! # Example
//!
//! A signed content record, checked and kept by a host's store (sans-IO: the
//! service around it finds the hosts closest to its key).
//!
//! ```
//! use ww::records::{Record, RecordStore, StoreLimits};
//! use ww::transport::Identity;
//!
//! let author = Identity::generate();
//! let now_ms = 1_000_000;
//! let record = Record::content(&author, now_ms, b"hello".to_vec())?;
//! // Anyone can check a record from its bytes alone.
//! assert_eq!(Record::open(&record.bytes)?.key(), record.key());
//! let mut store = RecordStore::new(StoreLimits::default());
//! store.put(&record, now_ms)?;
//! assert_eq!(store.get(&record.key(), now_ms), Some(record.bytes.clone()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod record;
mod service;
mod store;

pub use record::{
    Record, RecordError, RecordKey, RecordKind, PAYLOAD_BYTES_MAX, PEER_ADDRESSES_MAX,
    SIGNATURE_DOMAIN,
};
pub use service::{
    fetch_from, get, get_within, put, records_protocol, resolve, store_at, take_part, DhtError,
    RecordService, RecordsConfig, RECORDS_PROTOCOL, REPLICAS, REPUBLISH_BATCH_MAX,
};
pub use store::{closest, RecordStore, StoreError, StoreLimits, Stored};

#[cfg(test)]
mod tests;
