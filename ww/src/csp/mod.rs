//! CSP channels: the state machine behind the `Chan` capability. Sans-IO; the
//! RPC server drives it and carries out its effects.
//!
//! # Example
//!
//! The state machine alone: a send to a buffered channel completes at once,
//! and a receive is offered the value, which the driver commits once handed over.
//!
//! ```
//! use ww::csp::{Chan, ChanConfig, Effect};
//!
//! let mut chan = Chan::new(ChanConfig { capacity: 1, ..ChanConfig::default() })?;
//! assert_eq!(chan.send(1, "hello"), vec![Effect::SendDone(1)]);
//! assert_eq!(chan.recv(2), vec![Effect::Offer { recv: 2, value: "hello" }]);
//! chan.commit(2)?;
//! assert!(chan.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod chan;
mod server;

pub use chan::{
    Chan, ChanConfig, ChanError, Effect, InvariantBroken, OpId, CAPACITY_LIMIT, WAITING_LIMIT,
    WAITING_MAX_DEFAULT,
};
pub use server::{ChannelServer, Item};
