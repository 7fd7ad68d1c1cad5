//! A worker's own Prometheus metrics (`worker --metrics ADDR`): runs, fuel
//! burnt, sandbox errors by kind, the module cache. Everything is already
//! counted in atomics ([`WorkerGauges`], the sandbox's [`CacheStats`]), so a
//! scrape builds a registry from their values and nothing is updated twice.
//! No label names a peer or a task: the only labels are a fixed status and
//! an error kind.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::WorkerGauges;
use crate::gateway::METRICS_CONTENT_TYPE;
use ww::exec::{ErrorKind, Sandbox};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

fn counter(total: u64) -> Counter {
    let counter = Counter::default();
    counter.inc_by(total);
    counter
}

fn gauge(level: usize) -> Gauge {
    let gauge = Gauge::default();
    gauge.set(i64::try_from(level).unwrap_or(i64::MAX));
    gauge
}

/// Every metric of a worker, in OpenMetrics text.
pub fn encode(gauges: &WorkerGauges, sandbox: &Sandbox, slots: usize) -> String {
    let mut registry = Registry::with_prefix("ww_sched_worker");
    // prometheus-client adds `_total` to a counter's name.
    registry.register(
        "runs_started",
        "Runs started since the worker began",
        counter(gauges.runs_started()),
    );
    let runs = Family::<StatusLabel, Counter>::default();
    runs.get_or_create(&StatusLabel {
        status: "succeeded",
    })
    .inc_by(gauges.runs_succeeded());
    runs.get_or_create(&StatusLabel { status: "failed" })
        .inc_by(gauges.runs_failed());
    registry.register("runs", "Runs ended, by outcome", runs);
    registry.register(
        "modules_fetched",
        "Modules found in the cluster's records instead of being sent by the caller",
        counter(gauges.modules_fetched()),
    );
    registry.register(
        "modules_received",
        "Modules the caller sent as bytes",
        counter(gauges.modules_received()),
    );
    registry.register(
        "fuel_burnt",
        "Fuel the sandbox burnt in every run",
        counter(gauges.fuel_burnt()),
    );
    let errors = Family::<KindLabel, Counter>::default();
    for kind in ErrorKind::ALL {
        errors
            .get_or_create(&KindLabel {
                kind: kind.as_str(),
            })
            .inc_by(gauges.sandbox_errors(kind));
    }
    registry.register(
        "sandbox_errors",
        "Runs that ended in a sandbox error, by kind",
        errors,
    );
    let cache = sandbox.cache_stats();
    registry.register(
        "module_cache_hits",
        "Module lookups that found a compiled module",
        counter(cache.hits),
    );
    registry.register(
        "module_cache_misses",
        "Module lookups that compiled",
        counter(cache.misses),
    );
    registry.register(
        "module_cache_entries",
        "Compiled modules cached",
        gauge(cache.entries),
    );
    registry.register(
        "module_cache_bytes",
        "Module bytes of the cached modules",
        gauge(cache.bytes),
    );
    registry.register(
        "guests_running",
        "Guests running now",
        gauge(gauges.guests_running()),
    );
    registry.register("slots", "Runs this worker takes at once", gauge(slots));
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &registry) {
        // Writing to a String fails only on a bug in an encoder.
        tracing::error!(error = %e, "worker metrics not encoded");
    }
    text
}

/// A router answering `GET /metrics` with [`encode`] (and 404 elsewhere).
pub fn router(gauges: Arc<WorkerGauges>, sandbox: Arc<Sandbox>, slots: usize) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let text = encode(&gauges, &sandbox, slots);
            async move { ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response() }
        }),
    )
}

/// Serves [`router`] on `address` until the task is dropped; returns the
/// address bound (port 0 resolved) and the server task.
pub async fn serve(
    address: SocketAddr,
    gauges: Arc<WorkerGauges>,
    sandbox: Arc<Sandbox>,
    slots: usize,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    let app = router(gauges, sandbox, slots);
    let task = tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((bound, task))
}
