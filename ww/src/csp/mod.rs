//! CSP channels: the state machine behind the `Chan` capability. Sans-IO; the
//! RPC server drives it and carries out its effects.

mod chan;
mod server;

pub use chan::{
    Chan, ChanConfig, ChanError, Effect, InvariantBroken, OpId, CAPACITY_LIMIT, WAITING_LIMIT,
    WAITING_MAX_DEFAULT,
};
pub use server::{ChannelServer, Item};
