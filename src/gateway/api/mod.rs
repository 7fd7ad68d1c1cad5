//! The REST API (axum). Handlers parse and validate, then either ask the
//! gateway core (submissions, cancels, purges, uploads, the pool, health)
//! through a bounded command queue, or read the store directly (tasks and
//! runs): the store holds only committed state, so a read never shows what a
//! crash could take back, and reads never wait for the core or a commit.

mod events;
pub mod guard;
mod openapi;
pub mod schema;
pub mod serve;
mod submit;
mod tasks;
pub mod token;
mod ui;

use std::sync::Arc;

use axum::extract::{MatchedPath, Request};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{extract::DefaultBodyLimit, extract::State, Json, Router};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::commands::{HealthReport, HealthStatus};
use super::core::{Command, StorageMode};
use super::events::EventBus;
use super::health::Health;
use super::metrics::{GatewayMetrics, METRICS_CONTENT_TYPE};
use super::views::{MemberRow, WorkerRow};
use super::{ApiError, ErrorBody};
use crate::sched::{Store, StoreError};

/// Most tasks (or runs) one page returns.
pub const PAGE_MAX: usize = 1000;
/// Tasks (or runs) a page returns when the request does not say.
pub const PAGE_DEFAULT: usize = 100;
/// Most tasks `GET /tasks` skips with `offset`: skipping costs a read of
/// each task skipped, so deeper pages go by the cursor (`after`, the last id
/// of the previous page), as the dashboard and `ww-sched tasks` do. Ten full
/// pages.
pub const OFFSET_MAX: usize = 10 * PAGE_MAX;
/// Largest `runs_offset`: a task has at most this many runs, so a page from
/// here is already empty (`ww-sched logs` and the dashboard ask from the
/// runs they have seen, at most all of them).
pub const RUNS_OFFSET_MAX: u32 = crate::sched::types::REPEATS_MAX;

/// Reads of the store from handlers: on the blocking pool on real hosts, so
/// a slow disk holds up no other request; inline in simulation.
#[derive(Clone)]
pub struct StoreReader {
    store: Arc<Store>,
    mode: StorageMode,
    health: Arc<Health>,
}

impl StoreReader {
    /// Reads with `read`; a store error trips the gateway (fail-stop) and is 503.
    pub async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        self.health.check()?;
        let result = match self.mode {
            StorageMode::Inline => read(&self.store),
            StorageMode::Thread => {
                let store = self.store.clone();
                tokio::task::spawn_blocking(move || read(&store))
                    .await
                    .map_err(|e| ApiError::Internal(format!("store read: {e}")))?
            }
        };
        match result {
            Ok(value) => {
                // A failure meanwhile may mean the disk lies: do not show it.
                self.health.check()?;
                Ok(value)
            }
            // A database out of reach answers nothing, but lies about
            // nothing either: 503, and the gateway goes on.
            Err(e) if e.is_transient() => Err(ApiError::Busy(format!(
                "the task store cannot be reached: {e}"
            ))),
            Err(e) => {
                self.health.trip(format!("store read failed: {e}"));
                Err(ApiError::Storage(e.to_string()))
            }
        }
    }
}

/// What every handler shares: the way to the core, the store, the health switch.
#[derive(Clone)]
pub struct ApiState {
    commands: mpsc::Sender<Command>,
    reader: StoreReader,
    health: Arc<Health>,
    metrics: Arc<GatewayMetrics>,
    events: Arc<EventBus>,
    /// The OpenAPI document, serialised once.
    openapi: axum::body::Bytes,
}

/// Every route of the API with its part of the OpenAPI document: a route
/// registered here cannot be missing from `GET /openapi.json`.
fn api_routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(submit::submit, tasks::list))
        .routes(routes!(tasks::detail, tasks::delete))
        .routes(routes!(tasks::run))
        .routes(routes!(tasks::run_stdout))
        .routes(routes!(submit::upload_module))
        .routes(routes!(workers))
        .routes(routes!(cluster))
        .routes(routes!(healthz))
        .routes(routes!(scrape))
        .routes(routes!(openapi::document))
        .merge(ui::routes())
}

/// The OpenAPI 3.1 document of the API, as `GET /openapi.json` serves it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    openapi::finish(api_routes().into_openapi())
}

/// Builds the router; `body_bytes_max` bounds every request body.
pub fn router(
    commands: mpsc::Sender<Command>,
    store: Arc<Store>,
    mode: StorageMode,
    health: Arc<Health>,
    metrics: Arc<GatewayMetrics>,
    events: Arc<EventBus>,
    body_bytes_max: usize,
) -> Router {
    let reader = StoreReader {
        store,
        mode,
        health: health.clone(),
    };
    let (routes, api) = api_routes().split_for_parts();
    let openapi = serde_json::to_vec(&openapi::finish(api))
        .expect("an OpenAPI document always serialises to JSON");
    routes
        .fallback(|| async {
            ApiError::NotFound(
                "no such endpoint: see /openapi.json for the routes (/tasks, /tasks/{id}, \
                 /tasks/{id}/runs/{index}, /tasks/{id}/runs/{index}/stdout, /modules, \
                 /workers, /cluster, /healthz, /metrics, /events; the dashboard at /)"
                    .into(),
            )
        })
        .layer(DefaultBodyLimit::max(body_bytes_max))
        // Inside `guard::lock`'s layers: a request the guard refuses is not
        // counted (it never reached the API).
        .layer(middleware::from_fn_with_state(
            metrics.clone(),
            count_requests,
        ))
        .with_state(ApiState {
            commands,
            reader,
            health,
            metrics,
            events,
            openapi: openapi.into(),
        })
}

impl ApiState {
    /// Asks the core and waits for its answer; refused at once after a fail-stop.
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, ApiError> {
        self.health.check()?;
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| self.stopped())?;
        answer.await.map_err(|_| self.stopped())
    }

    /// The error for a core that stopped answering.
    fn stopped(&self) -> ApiError {
        match self.health.check() {
            Err(storage) => storage,
            Ok(()) => ApiError::Internal("the gateway core stopped; it is shutting down".into()),
        }
    }
}

fn bad(detail: impl Into<String>) -> ApiError {
    ApiError::BadRequest(detail.into())
}

/// `GET /workers`: the pool, each worker with its slots and load.
#[utoipa::path(get, path = "/workers", tag = "cluster",
    responses((status = 200, description = "The workers of the pool", body = Vec<WorkerRow>)))]
async fn workers(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let rows = state.ask(|reply| Command::Workers { reply }).await?;
    Ok(Json(rows).into_response())
}

/// `GET /cluster`: the gateway's membership view.
#[utoipa::path(get, path = "/cluster", tag = "cluster",
    responses((status = 200, description = "The members the gateway sees", body = Vec<MemberRow>)))]
async fn cluster(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let rows = state.ask(|reply| Command::Cluster { reply }).await?;
    Ok(Json(rows).into_response())
}

/// What `/healthz` answers 503 with: the core's report when it answered,
/// the error otherwise.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
enum Unhealthy {
    /// The core answered, with a failed store.
    Report(HealthReport),
    /// The core did not answer, or the store had failed already.
    Error(ErrorBody),
}

/// `GET /healthz`: 200 with the core's report when the core answers and the
/// store works; 503 naming the cause otherwise. Needs no token.
#[utoipa::path(get, path = "/healthz", tag = "meta", security(()),
    responses(
        (status = 200, description = "The gateway works", body = HealthReport),
        (status = 503, description = "The gateway failed or is stopping", body = Unhealthy),
    ))]
async fn healthz(State(state): State<ApiState>) -> Response {
    // Whatever the cause, an unhealthy gateway is 503: probes key on it.
    let unhealthy = |body| (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    let failed = |e: ApiError| {
        unhealthy(Unhealthy::Error(ErrorBody {
            error: e.kind(),
            detail: e.to_string(),
        }))
    };
    if let Err(e) = state.health.check() {
        return failed(e);
    }
    match state.ask(|reply| Command::Health { reply }).await {
        Ok(report) if report.status == HealthStatus::Ok => Json(report).into_response(),
        Ok(report) => unhealthy(Unhealthy::Report(report)),
        Err(e) => failed(e),
    }
}

/// Counts each answered request by route template (never the raw path, so
/// task ids do not become label values) and status code.
async fn count_requests(
    State(metrics): State<Arc<GatewayMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_string();
    let response = next.run(request).await;
    metrics.request_answered(&route, response.status().as_u16());
    response
}

/// `GET /metrics`: every metric in OpenMetrics text; the levels come from
/// the core (a round trip, like `/healthz`), so a gateway that failed answers 503.
#[utoipa::path(get, path = "/metrics", tag = "meta",
    responses((status = 200, description = "Prometheus/OpenMetrics text",
               content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8",
               body = String)))]
async fn scrape(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let snapshot = state.ask(|reply| Command::Metrics { reply }).await??;
    let text = state.metrics.scrape(&snapshot);
    Ok(([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response())
}
