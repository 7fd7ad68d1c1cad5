//! ww: a Wetware-style cluster stack.
//!
//! Layers, bottom up; each uses only those before it:
//!
//! - [`transport`]: the one networking seam ([`transport::Transport`]), with a
//!   libp2p implementation for real hosts and a turmoil one (feature `sim`) for
//!   seeded, deterministic simulations: node identity, byte streams by protocol,
//!   datagrams, a pubsub medium, a cluster's pre-shared swarm key.
//! - [`rpc`]: Cap'n Proto capabilities served and called over any transport.
//! - [`boot`]: discovery (multicast survey, static list, CIDR crawl, boot server).
//! - [`cluster`]: membership from heartbeats (a sans-IO routing table and its
//!   driver), with view queries and join/leave events.
//! - [`pubsub`] and [`csp`]: topics, and CSP channels with their capability.
//! - [`records`]: signed records on the hosts closest to their key, and
//!   resolution of a peer's addresses from its id.
//! - [`anchor`]: each host's tree of values and capabilities.
//! - [`exec`]: the WASM sandbox (wasmi, or wasmtime with feature `jit`) with
//!   fuel, memory and time limits; [`process`]: long-running guests on a host.
//!
//! [`schema`] holds the Rust generated from `ww/schema/*.capnp`.
//!
//! Every service is PA/EL: under a partition each side stays available with
//! its own view; consistency is stated per service, never implied.
//!
//! # Example
//!
//! A node: a libp2p transport on loopback, with pubsub on it; every module
//! has a runnable example of its own.
//!
//! ```
//! use ww::pubsub::PubSub;
//! use ww::transport::{Address, Identity, Libp2pConfig, Libp2pTransport, Transport};
//!
//! ww::rpc::block_on_local(async {
//!     let identity = Identity::generate();
//!     let transport = Libp2pTransport::new(Libp2pConfig::new(identity.clone()))?;
//!     assert_eq!(transport.local_peer_id(), identity.peer_id());
//!     let bound = transport.listen(Address::new("/ip4/127.0.0.1/tcp/0")).await?;
//!     assert!(bound.as_str().starts_with("/ip4/127.0.0.1/tcp/"));
//!     let topic = PubSub::new(transport).join("hello");
//!     let mut heard = topic.subscribe(1).await?;
//!     topic.publish(b"world".to_vec()).await?;
//!     assert_eq!(heard.recv().await.expect("heard").payload, b"world");
//!     Ok::<(), Box<dyn std::error::Error>>(())
//! })??;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod anchor;
pub mod boot;
pub mod cluster;
pub mod csp;
pub mod exec;
pub mod process;
pub mod pubsub;
pub mod records;
pub mod rpc;
pub mod schema;
pub mod transport;
