//! The gateway's Prometheus metrics (`GET /metrics`, OpenMetrics text).
//!
//! Counters and histograms are updated where their events happen (the core:
//! submissions acknowledged, runs stored final, retries dispatched, commits;
//! the API: requests) with prometheus-client's atomics, so an update is a
//! few relaxed atomic adds and never influences what the core does. Levels
//! (tasks by status, workers, slots, membership) are not kept incrementally:
//! the core already knows them exactly, so a scrape asks it for a
//! [`MetricsSnapshot`] (one round trip, like `/healthz`) and sets the gauges
//! from it. An incremental gauge would need a hook on every transition in
//! the sans-IO scheduler and would restart from zero after a restart.
//!
//! No label takes an unbounded set of values: statuses, states and outcomes
//! are fixed lists, a route is axum's template (`/tasks/{id}`, never the raw
//! path) and a status an HTTP code.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::core::plan::RunEnded;
use crate::sched::{RunStatus, TaskStatus};
use ww::boot::DiscoveryStats;
use ww::cluster::MembershipStats;

/// The content type of a scrape (OpenMetrics text, which Prometheus reads).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A `status` label (task or run status, a fixed list).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    /// The status, in snake case.
    pub status: &'static str,
}

/// A `state` label (busy or free slots).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// `busy` or `free`.
    pub state: &'static str,
}

/// An `outcome` label (what became of a heartbeat or a discovery datagram).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// A fixed name per counter of the underlying stats.
    pub outcome: &'static str,
}

/// Why the API guard refused a request (a fixed set of names).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// `no_host`, `bad_host`, `foreign_host`, `foreign_origin`, `cross_site`,
    /// `no_token` or `wrong_token`.
    pub reason: &'static str,
}

/// The labels of an HTTP request counted.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The route template (`/tasks/{id}`), or `unmatched`.
    pub route: String,
    /// The answer's status code.
    pub status: u16,
}

/// What the core knows at the moment of a scrape.
#[derive(Clone, Debug, Default)]
pub struct MetricsSnapshot {
    /// Unfinished tasks with no run started.
    pub tasks_pending: u64,
    /// Unfinished tasks with a run started.
    pub tasks_running: u64,
    /// Finished tasks kept (in the store, or final and being stored).
    pub tasks_finished: u64,
    /// Workers in the scheduler's pool.
    pub workers: u64,
    /// Slots of those workers with a run in flight.
    pub slots_busy: u64,
    /// Their other slots.
    pub slots_free: u64,
    /// The membership view's size and heartbeat counts, when the gateway has one.
    pub membership: Option<(u64, MembershipStats)>,
    /// The discovery counts of that membership.
    pub discovery: Option<DiscoveryStats>,
}

/// Every metric of a gateway, and the registry that encodes them.
pub struct GatewayMetrics {
    registry: Registry,
    /// One scrape at a time: gauges and snapshot counters are set, then encoded.
    scrape: Mutex<()>,
    pub(crate) tasks_submitted: Counter,
    pub(crate) tasks_finished: Family<StatusLabel, Counter>,
    pub(crate) runs: Family<StatusLabel, Counter>,
    pub(crate) run_duration: Histogram,
    pub(crate) queue_wait: Histogram,
    pub(crate) commit_seconds: Histogram,
    pub(crate) fsyncs: Counter,
    http: Family<HttpLabels, Counter>,
    refused: Family<ReasonLabel, Counter>,
    tasks: Family<StatusLabel, Gauge>,
    workers: Gauge,
    slots: Family<StateLabel, Gauge>,
    membership_peers: Gauge,
    heartbeats: Family<OutcomeLabel, Counter>,
    discovery: Family<OutcomeLabel, Counter>,
}

impl std::fmt::Debug for GatewayMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayMetrics").finish_non_exhaustive()
    }
}

/// A run status as a label value.
pub fn run_status_label(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Scheduled => "scheduled",
        RunStatus::Running => "running",
        RunStatus::Succeeded => "succeeded",
        RunStatus::Failed => "failed",
        RunStatus::TimedOut => "timed_out",
        RunStatus::Cancelled => "cancelled",
        RunStatus::Retrying => "retrying",
    }
}

fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl GatewayMetrics {
    /// Every metric at zero, registered under the `ww_sched` prefix.
    pub fn new() -> Self {
        let mut metrics = GatewayMetrics {
            registry: Registry::with_prefix("ww_sched"),
            scrape: Mutex::new(()),
            tasks_submitted: Counter::default(),
            tasks_finished: Family::<StatusLabel, Counter>::default(),
            runs: Family::<StatusLabel, Counter>::default(),
            // 1 ms to about 9 min.
            run_duration: Histogram::new(exponential_buckets(0.001, 2.0, 20)),
            queue_wait: Histogram::new(exponential_buckets(0.001, 2.0, 20)),
            // 0.1 ms to about 3 s.
            commit_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            fsyncs: Counter::default(),
            http: Family::<HttpLabels, Counter>::default(),
            tasks: Family::<StatusLabel, Gauge>::default(),
            workers: Gauge::default(),
            slots: Family::<StateLabel, Gauge>::default(),
            membership_peers: Gauge::default(),
            heartbeats: Family::<OutcomeLabel, Counter>::default(),
            discovery: Family::<OutcomeLabel, Counter>::default(),
            refused: Family::<ReasonLabel, Counter>::default(),
        };
        metrics.register();
        // Every fixed label shows from the start, at zero, so a rate() over
        // a series that has not moved yet is 0, not absent.
        for status in ["succeeded", "failed", "timed_out", "cancelled", "retried"] {
            let _ = metrics.runs.get_or_create(&StatusLabel { status });
        }
        for status in ["succeeded", "failed", "cancelled"] {
            let _ = metrics
                .tasks_finished
                .get_or_create(&StatusLabel { status });
        }
        metrics
    }

    /// Registers every metric, in the order the exposition lists them.
    fn register(&mut self) {
        // prometheus-client adds `_total` to a counter's name.
        self.registry.register(
            "tasks_submitted",
            "Tasks acknowledged as created (an idempotent retry is not counted)",
            self.tasks_submitted.clone(),
        );
        self.registry.register(
            "tasks_finished",
            "Tasks stored final since start, by final status",
            self.tasks_finished.clone(),
        );
        self.registry.register(
            "runs",
            "Runs stored final since start, by status; `retried` counts attempts dispatched again",
            self.runs.clone(),
        );
        self.registry.register(
            "run_duration_seconds",
            "From a run's last start to its end, for runs stored final that started",
            self.run_duration.clone(),
        );
        self.registry.register(
            "run_queue_wait_seconds",
            "From a run falling due to its first dispatch to a worker",
            self.queue_wait.clone(),
        );
        self.registry.register(
            "store_commit_seconds",
            "Time one batch takes to commit (durably: with its fsync)",
            self.commit_seconds.clone(),
        );
        self.registry.register(
            "store_fsyncs",
            "Durable commits, each fsynced before readers see it",
            self.fsyncs.clone(),
        );
        self.registry.register(
            "http_requests",
            "API requests answered, by route template and status code",
            self.http.clone(),
        );
        self.registry.register(
            "tasks",
            "Tasks now: pending and running (held), finished (kept)",
            self.tasks.clone(),
        );
        self.registry
            .register("workers", "Workers in the pool", self.workers.clone());
        self.registry.register(
            "worker_slots",
            "Slots of the pool's workers, busy or free",
            self.slots.clone(),
        );
        self.registry.register(
            "membership_peers",
            "Nodes in the membership view (this one included)",
            self.membership_peers.clone(),
        );
        self.registry.register(
            "membership_heartbeats",
            "Heartbeats heard, by outcome (received counts all)",
            self.heartbeats.clone(),
        );
        self.registry.register(
            "discovery_datagrams",
            "Discovery datagrams, by outcome (received and sent count all)",
            self.discovery.clone(),
        );
        self.registry.register(
            "http_refused",
            "API requests the guard refused before they reached a route, by reason",
            self.refused.clone(),
        );
    }

    /// A run was stored final (counted once: the planner writes a final run once).
    pub fn run_ended(&self, run: &RunEnded) {
        let status = run_status_label(run.status);
        self.runs.get_or_create(&StatusLabel { status }).inc();
        if let (Some(started), Some(finished)) = (run.started_ms, run.finished_ms) {
            self.run_duration
                .observe(seconds(finished.saturating_sub(started)));
        }
    }

    /// A task was stored final and forgotten.
    pub fn task_finished(&self, status: TaskStatus) {
        let status = match status {
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
            // Only final tasks are forgotten.
            TaskStatus::Pending | TaskStatus::Running => return,
        };
        self.tasks_finished
            .get_or_create(&StatusLabel { status })
            .inc();
    }

    /// A batch committed in `elapsed`, with its fsync (every commit waits
    /// for the disk).
    pub fn committed(&self, elapsed: std::time::Duration) {
        self.commit_seconds.observe(elapsed.as_secs_f64());
        self.fsyncs.inc();
    }

    /// An attempt was dispatched to a worker: its first waited since the run
    /// fell due; a later one is a retry.
    pub fn run_dispatched(&self, attempt: u32, scheduled_ms: u64, started_ms: u64) {
        if attempt <= 1 {
            self.queue_wait
                .observe(seconds(started_ms.saturating_sub(scheduled_ms)));
        } else {
            self.runs
                .get_or_create(&StatusLabel { status: "retried" })
                .inc();
        }
    }

    /// An API request on `route` (a template, never a raw path) was answered with `status`.
    pub fn request_answered(&self, route: &str, status: u16) {
        self.http
            .get_or_create(&HttpLabels {
                route: route.to_string(),
                status,
            })
            .inc();
    }

    /// The API guard refused a request for `reason` (see [`ReasonLabel`]):
    /// probes from outside show here, not among the routes' answers.
    pub fn request_refused(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Encodes every metric, the levels set from `snapshot` first.
    pub fn scrape(&self, snapshot: &MetricsSnapshot) -> String {
        let _one = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        let level = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        for (status, n) in [
            ("pending", snapshot.tasks_pending),
            ("running", snapshot.tasks_running),
            ("finished", snapshot.tasks_finished),
        ] {
            self.tasks
                .get_or_create(&StatusLabel { status })
                .set(level(n));
        }
        self.workers.set(level(snapshot.workers));
        for (state, n) in [("busy", snapshot.slots_busy), ("free", snapshot.slots_free)] {
            self.slots
                .get_or_create(&StateLabel { state })
                .set(level(n));
        }
        if let Some((peers, stats)) = &snapshot.membership {
            self.membership_peers.set(level(*peers));
            for (outcome, n) in [
                ("received", stats.received),
                ("applied", stats.applied),
                ("malformed", stats.malformed),
                ("unauthenticated", stats.unauthenticated),
                ("not_fresh", stats.not_fresh),
                ("stale", stats.stale),
                ("replayed", stats.replayed),
                ("table_full", stats.table_full),
            ] {
                catch_up(&self.heartbeats.get_or_create(&OutcomeLabel { outcome }), n);
            }
        }
        if let Some(stats) = &snapshot.discovery {
            for (outcome, n) in [
                ("received", stats.received),
                ("sent", stats.sent),
                ("send_failed", stats.send_failed),
                ("dropped_oversized", stats.dropped_oversized),
                ("dropped_malformed", stats.dropped_malformed),
                (
                    "dropped_source_rate_limited",
                    stats.dropped_source_rate_limited,
                ),
                ("dropped_unauthenticated", stats.dropped_unauthenticated),
                ("dropped_unsigned", stats.dropped_unsigned),
                ("dropped_bad_signature", stats.dropped_bad_signature),
                ("dropped_signer_mismatch", stats.dropped_signer_mismatch),
                ("dropped_not_fresh", stats.dropped_not_fresh),
                ("dropped_namespace", stats.dropped_namespace),
                ("dropped_self", stats.dropped_self),
                ("dropped_rate_limited", stats.dropped_rate_limited),
                ("dropped_stream_full", stats.dropped_stream_full),
                ("answers_suppressed", stats.answers_suppressed),
            ] {
                catch_up(&self.discovery.get_or_create(&OutcomeLabel { outcome }), n);
            }
        }
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            // Writing to a String fails only on a bug in an encoder.
            tracing::error!(error = %e, "metrics not encoded");
        }
        text
    }
}

/// Moves a counter mirroring a monotonic count up to `total` (scrapes are
/// serialised, so nothing else moves it meanwhile).
fn catch_up(counter: &Counter, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}
