//! What the lease keeping and the core share on a shared store: until when
//! the gateway may act, and how many more tasks it may take over. A file of
//! its own so that neither side imports the other.

use tokio::time::Instant;

/// Until when the gateway may start runs, as the lease keeper last learned;
/// the core checks it right before it dispatches, so even a keeper held up
/// (its thread busy) cannot let a run start past the window.
pub type ActUntil = std::rc::Rc<std::cell::Cell<Instant>>;

/// How many more tasks the gateway may take over (its `open_tasks_max` less
/// the tasks it holds), as the core last counted: claims never exceed it.
pub type ClaimRoom = std::rc::Rc<std::cell::Cell<usize>>;
