//! Deliberate bugs for the simulation testbed to catch (feature `sabotage`).
//!
//! A harness that claims to check the guarantees must be seen to fail when one
//! is broken. Each switch breaks one guarantee (once, or for the whole run, as
//! each says) on the thread that armed it: a simulation runs every host on one thread, so parallel tests do not
//! see each other's switches. Release builds without the feature have no switch.

use std::cell::Cell;

/// A deliberate bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sabotage {
    /// The gateway acknowledges one submission but never persists it: the task
    /// is lost when the gateway restarts.
    LoseAckedTask,
    /// The gateway shows run outcomes before they are durable (stays armed for
    /// the whole run): a crash then takes back a result a client has seen.
    ShowUnsyncedResults,
}

impl Sabotage {
    /// The switch's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Sabotage::LoseAckedTask => "lose-acked-task",
            Sabotage::ShowUnsyncedResults => "show-unsynced-results",
        }
    }

    /// Parses [`Sabotage::name`].
    pub fn parse(name: &str) -> Option<Sabotage> {
        [Sabotage::LoseAckedTask, Sabotage::ShowUnsyncedResults]
            .into_iter()
            .find(|s| s.name() == name)
    }
}

thread_local! {
    static ARMED: Cell<Option<Sabotage>> = const { Cell::new(None) };
}

/// Arms `sabotage` (or disarms with `None`) on this thread.
pub fn arm(sabotage: Option<Sabotage>) {
    ARMED.with(|armed| armed.set(sabotage));
}

/// Whether `sabotage` is armed on this thread, leaving it armed: the bug
/// strikes every time.
pub fn armed(sabotage: Sabotage) -> bool {
    ARMED.with(|armed| armed.get() == Some(sabotage))
}

/// Whether `sabotage` is armed on this thread; it disarms itself, so the bug
/// strikes once.
pub fn strike(sabotage: Sabotage) -> bool {
    ARMED.with(|armed| {
        let hit = armed.get() == Some(sabotage);
        if hit {
            armed.set(None);
        }
        hit
    })
}
