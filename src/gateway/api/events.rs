//! `GET /events`: the gateway's live events as `text/event-stream`, one JSON
//! object per event (`data: {"type":"task",...}`), starting with
//! `{"type":"hello"}` once the stream is subscribed (a page reloads its lists
//! then, so it misses nothing between its first reads and the stream).
//!
//! The stream is bounded like everything else: at most
//! [`SUBSCRIBERS_MAX`](crate::gateway::SUBSCRIBERS_MAX) at once (the next is
//! 503 `busy`), and it holds one of the server's connections for as long as
//! it lasts. The guard's per-request deadline covers only the answer's head,
//! so a stream may outlast it; a keep-alive comment goes out every
//! [`KEEP_ALIVE`] so proxies and clients see a live connection. It ends when
//! the gateway fail-stops.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;

use super::ApiState;
use crate::gateway::events::{Event, SUBSCRIBERS_MAX};
use crate::gateway::{ApiError, ErrorBody};

/// How often an idle stream sends a keep-alive comment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One event as an SSE frame.
fn frame(value: &impl serde::Serialize) -> SseEvent {
    match serde_json::to_string(value) {
        Ok(text) => SseEvent::default().data(text),
        // Events are plain data; a failure would be a bug, shown as a resync.
        Err(_) => SseEvent::default().data(r#"{"type":"resync","missed":0}"#),
    }
}

/// `GET /events`: subscribes and streams until the client goes away or the
/// gateway fail-stops.
#[utoipa::path(get, path = "/events", tag = "dashboard",
    responses(
        (status = 200, description = "Server-sent events: `data:` lines, each one `Event` as JSON, \
          first `{\"type\":\"hello\"}`; keep-alive comments every 15 s",
         content_type = "text/event-stream", body = String),
        (status = 503, description = "64 streams are open already (`busy`), or the gateway stopped",
         body = ErrorBody),
    ))]
pub(super) async fn stream(State(state): State<ApiState>) -> Result<Response, ApiError> {
    state.health.check()?;
    let subscription = state.events.subscribe().ok_or_else(|| {
        ApiError::Busy(format!(
            "at most {SUBSCRIBERS_MAX} event streams at once; retry shortly"
        ))
    })?;
    let hello = futures::stream::once(async { Ok::<_, Infallible>(frame(&Event::Hello)) });
    let health = state.health.clone();
    let changes = futures::stream::unfold(
        (subscription, health),
        |(mut subscription, health)| async move {
            let event: Option<Event> = tokio::select! {
                biased;
                _ = health.tripped() => None,
                event = subscription.next() => event,
            };
            let event = event?;
            Some((Ok(frame(&event)), (subscription, health)))
        },
    );
    let mut response = Sse::new(hello.chain(changes))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Proxies that buffer answers (nginx) would hold events back.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}
