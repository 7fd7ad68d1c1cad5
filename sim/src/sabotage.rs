//! The deliberate bugs a run can arm (`ww-sim --sabotage NAME`): each breaks
//! one guarantee, so a check that claims to guard it must be seen to fail.
//!
//! Where a bug can be made from outside the code under test, the simulation
//! makes it itself, through a seam the code offers any user:
//! [`Sabotage::SkipRepublish`] is a republish period longer than any run,
//! [`Sabotage::DropAnchorSet`] a wrapper around a host's anchor server
//! ([`DropOneSet`]), [`Sabotage::RefuseSubmissions`] a layer in front of the
//! gateway's router ([`refuse_submissions`]), and
//! [`Sabotage::AcceptImpossibleReports`] the gateway's report check
//! ([`AcceptEveryReport`]), [`Sabotage::LoseAckedTask`] a decorator around the
//! gateway's task store ([`LoseOneTask`]), and
//! [`Sabotage::ShowUnsyncedResults`] a disk that lies about fsync
//! ([`SHOW_UNSYNCED_SYNCS`]). [`Sabotage::LeaseActPastDeadline`] and
//! [`Sabotage::LeaseStartCancelled`] are made by the lease driver's clocks and
//! store (`workload::leases`), [`Sabotage::SharedClaimHidden`] by the
//! link to the shared store (`workload::tasks::LinkedStore`), and
//! [`Sabotage::LeaseOnGatewayClock`] by the clock the simulation gives a
//! gateway's handle on that store (`MemoryStore::handle_on_clock`). No switch is compiled into the shipped crates.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use axum::response::IntoResponse;
use capnp::capability::Rc as CapRc;
use ww::anchor::AnchorServer;
use ww::exec::{Limits, RunReport};
use ww::schema::anchor_capnp::anchor;
use ww_sched::gateway::{ApiError, ReportCheck};

use crate::disk::SyncPolicy;

mod lose_task;

pub use lose_task::LoseOneTask;

/// A deliberate bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sabotage {
    /// The gateway acknowledges one submission but never persists it.
    LoseAckedTask,
    /// The gateway shows run outcomes before they are durable.
    ShowUnsyncedResults,
    /// The gateway answers every submission with 500.
    RefuseSubmissions,
    /// The gateway records every worker report, even one that cannot be true.
    AcceptImpossibleReports,
    /// Record holders never pass their records on.
    SkipRepublish,
    /// One anchor set is acknowledged but never applied.
    DropAnchorSet,
    /// Lease gateways' clocks leave out the time their host was paused, so a
    /// gateway woken from a pause acts past its lease.
    LeaseActPastDeadline,
    /// The lease store's start transaction lost its cancel check.
    LeaseStartCancelled,
    /// Gateways on a shared store lose what their claims took: the tasks
    /// become theirs in the store, but they do not run them until their
    /// periodic comparison of owned tasks (every minute) finds them.
    SharedClaimHidden,
    /// The shared store judges `gateway-1`'s leases and claims by that
    /// gateway's clock, which runs [`GATEWAY_CLOCK_AHEAD_MS`] ahead: it
    /// claims tasks whose owners' leases are still live.
    LeaseOnGatewayClock,
}

/// How far ahead `gateway-1`'s clock runs under
/// [`Sabotage::LeaseOnGatewayClock`], in ms: more than a lease less its
/// renewal period (10 s - 2.5 s), so a live lease looks expired to it.
pub const GATEWAY_CLOCK_AHEAD_MS: u64 = 9_000;

impl Sabotage {
    /// Every deliberate bug.
    pub const ALL: [Sabotage; 10] = [
        Sabotage::LoseAckedTask,
        Sabotage::ShowUnsyncedResults,
        Sabotage::RefuseSubmissions,
        Sabotage::AcceptImpossibleReports,
        Sabotage::SkipRepublish,
        Sabotage::DropAnchorSet,
        Sabotage::LeaseActPastDeadline,
        Sabotage::LeaseStartCancelled,
        Sabotage::SharedClaimHidden,
        Sabotage::LeaseOnGatewayClock,
    ];

    /// The bug's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Sabotage::LoseAckedTask => "lose-acked-task",
            Sabotage::ShowUnsyncedResults => "show-unsynced-results",
            Sabotage::RefuseSubmissions => "refuse-submissions",
            Sabotage::AcceptImpossibleReports => "accept-impossible-reports",
            Sabotage::SkipRepublish => "skip-republish",
            Sabotage::DropAnchorSet => "drop-anchor-set",
            Sabotage::LeaseActPastDeadline => "lease-act-past-deadline",
            Sabotage::LeaseStartCancelled => "lease-start-cancelled",
            Sabotage::SharedClaimHidden => "shared-claim-hidden",
            Sabotage::LeaseOnGatewayClock => "lease-on-gateway-clock",
        }
    }

    /// Parses [`Sabotage::name`].
    pub fn parse(name: &str) -> Option<Sabotage> {
        Sabotage::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// The gateway disk's sync policy under [`Sabotage::ShowUnsyncedResults`]: it
/// flushes one sync in 64 and reports every other one done without making
/// it durable, so the gateway shows results (and acknowledges tasks) that a
/// crash then takes back.
pub const SHOW_UNSYNCED_SYNCS: SyncPolicy = SyncPolicy::FlushEvery(64);

/// The republish period of [`Sabotage::SkipRepublish`]: longer than any run,
/// so holders never pass their records on.
pub const REPUBLISH_NEVER: Duration = Duration::from_secs(365 * 24 * 3600);

/// A host's anchor server that acknowledges the first `set` that reaches any
/// of the hosts sharing `struck` without applying it, and forwards everything
/// else: [`Sabotage::DropAnchorSet`].
pub struct DropOneSet {
    inner: CapRc<AnchorServer>,
    struck: Rc<Cell<bool>>,
}

impl DropOneSet {
    /// Wraps `inner`; the bug strikes once among all wrappers sharing `struck`.
    pub fn new(inner: AnchorServer, struck: Rc<Cell<bool>>) -> DropOneSet {
        DropOneSet {
            inner: CapRc::new(inner),
            struck,
        }
    }
}

impl anchor::Server for DropOneSet {
    async fn list(
        self: CapRc<Self>,
        params: anchor::ListParams,
        results: anchor::ListResults,
    ) -> Result<(), capnp::Error> {
        anchor::Server::list(self.inner.clone(), params, results).await
    }

    async fn get(
        self: CapRc<Self>,
        params: anchor::GetParams,
        results: anchor::GetResults,
    ) -> Result<(), capnp::Error> {
        anchor::Server::get(self.inner.clone(), params, results).await
    }

    async fn set(
        self: CapRc<Self>,
        params: anchor::SetParams,
        results: anchor::SetResults,
    ) -> Result<(), capnp::Error> {
        if !self.struck.replace(true) {
            return Ok(());
        }
        anchor::Server::set(self.inner.clone(), params, results).await
    }

    async fn set_capability(
        self: CapRc<Self>,
        params: anchor::SetCapabilityParams,
        results: anchor::SetCapabilityResults,
    ) -> Result<(), capnp::Error> {
        anchor::Server::set_capability(self.inner.clone(), params, results).await
    }

    async fn remove(
        self: CapRc<Self>,
        params: anchor::RemoveParams,
        results: anchor::RemoveResults,
    ) -> Result<(), capnp::Error> {
        anchor::Server::remove(self.inner.clone(), params, results).await
    }
}

/// [`Sabotage::RefuseSubmissions`]: `router` behind a layer that answers every
/// submission (`POST /tasks`) with 500, a refusal no fault explains.
pub fn refuse_submissions(router: axum::Router) -> axum::Router {
    router.layer(axum::middleware::from_fn(
        |request: axum::extract::Request, next: axum::middleware::Next| async move {
            if request.method() == axum::http::Method::POST && request.uri().path() == "/tasks" {
                return ApiError::Internal("sabotage: submissions refused".into()).into_response();
            }
            next.run(request).await
        },
    ))
}

/// [`Sabotage::AcceptImpossibleReports`]: a gateway report check that records
/// every worker report, even one no honest worker can make.
#[derive(Clone, Copy, Debug, Default)]
pub struct AcceptEveryReport;

impl ReportCheck for AcceptEveryReport {
    fn refusal(&self, _report: &RunReport, _limits: &Limits) -> Option<String> {
        None
    }
}
