//! `GET /events` read as a client reads it (SSE frames off the response
//! body), and the dashboard's assets: a task's events arrive once its
//! changes are committed; a worker's joining and leaving arrive; a lagging
//! subscriber gets `resync`; subscribers are capped (503); the stream needs
//! the token off loopback, outlives the per-request deadline, and ends at a
//! fail-stop; the assets' content types, security headers, and 404 for an
//! unknown file.

mod gateway_support;

use std::time::Duration;

use axum::body::{Body, BodyDataStream};
use axum::http::{header, Request, StatusCode};
use futures::StreamExt as _;
use serde_json::{json, Value};
use tower::ServiceExt as _;
use ww::rpc;
use ww_sched::gateway::{lock, ApiAccess, ApiToken, Event, HttpLimits, SUBSCRIBERS_MAX};
use ww_sched::sched::WorkerId;

use gateway_support::*;

const TOKEN: &str = "events-test-token-0123456789abcdef0123";

/// Returns its first argument after writing "out:" and it to stdout.
const ECHO_WAT: &str = r#"(module
    (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 1)
    (data (i32.const 100) "out:?\n")
    (func (export "run") (param i64) (result i64)
        (i32.store8 (i32.const 104) (i32.add (i32.const 48) (i32.wrap_i64 (local.get 0))))
        (i32.store (i32.const 0) (i32.const 100))
        (i32.store (i32.const 4) (i32.const 6))
        (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 20)))
        (local.get 0)))"#;

/// An SSE client over a response body: yields each event's `data` as JSON.
struct Sse {
    body: BodyDataStream,
    buffer: String,
}

impl Sse {
    fn new(body: Body) -> Sse {
        Sse {
            body: body.into_data_stream(),
            buffer: String::new(),
        }
    }

    /// The next event within `timeout`; `None` when the stream ended.
    async fn next_within(&mut self, timeout: Duration) -> Option<Value> {
        tokio::time::timeout(timeout, self.next())
            .await
            .expect("no event in time")
    }

    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let data: Vec<&str> = frame
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect();
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some(serde_json::from_str(&data.join("\n")).expect("JSON event"));
            }
            let chunk = self.body.next().await?.expect("body chunk");
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }
}

/// Opens `/events` on the harness's router: its status and stream.
async fn open(h: &Harness) -> (StatusCode, Sse) {
    let request = Request::get("/events").body(Body::empty()).unwrap();
    let response = h.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    (status, Sse::new(response.into_body()))
}

async fn subscribed(h: &Harness) -> Sse {
    let (status, mut sse) = open(h).await;
    assert_eq!(status, StatusCode::OK);
    let hello = sse.next_within(Duration::from_secs(5)).await;
    assert_eq!(hello, Some(json!({"type": "hello"})));
    sse
}

const STATUS_ORDER: [&str; 7] = [
    "scheduled",
    "retrying",
    "running",
    "succeeded",
    "failed",
    "timed_out",
    "cancelled",
];

#[test]
fn a_tasks_events_follow_its_commits() {
    rpc::block_on_local(async {
        let h = Harness::start("events-commits", None).await;
        let mut sse = subscribed(&h).await;
        let (worker, registration) = h.start_worker(2).await;
        let joined = sse.next_within(Duration::from_secs(10)).await.unwrap();
        assert_eq!(joined["type"], "worker_joined", "{joined}");
        assert_eq!(joined["peer"], worker.as_str());
        let (_, workers) = h.get("/workers").await;
        assert!(workers[0]["joined_ms"].as_u64().is_some(), "{workers}");

        let wasm = wat::parse_str(ECHO_WAT).unwrap();
        let body = json!({
            "id": "ev-1",
            "wasm_base64": base64_of(&wasm),
            "args": [3],
            "repeats": 20,
        });
        let (status, _, task) = h.post_json(&body, &[]).await;
        assert_eq!(status, StatusCode::CREATED, "{task}");
        let mut task_events = Vec::new();
        let mut final_runs = std::collections::BTreeSet::new();
        loop {
            let event = sse.next_within(Duration::from_secs(30)).await.unwrap();
            // What an event announces is committed: the store shows it, or
            // a later state, the moment the event arrives.
            match event["type"].as_str().unwrap() {
                "task" => {
                    assert_eq!(event["id"], "ev-1");
                    let (status, stored) = h.get("/tasks/ev-1").await;
                    assert_eq!(status, StatusCode::OK, "{event}: {stored}");
                    let status = event["status"].as_str().unwrap();
                    if matches!(status, "succeeded" | "failed" | "cancelled") {
                        assert_eq!(stored["status"], status, "{event}: {stored}");
                    }
                    task_events.push(status.to_string());
                    if status == "succeeded" {
                        break;
                    }
                }
                "run" => {
                    assert_eq!(event["task"], "ev-1");
                    let index = event["index"].as_u64().unwrap();
                    let (status, run) = h.get(&format!("/tasks/ev-1/runs/{index}")).await;
                    assert_eq!(status, StatusCode::OK, "{event}: {run}");
                    let rank = |s: &str| STATUS_ORDER.iter().position(|o| *o == s).unwrap();
                    let (announced, stored) = (
                        event["status"].as_str().unwrap(),
                        run["status"].as_str().unwrap(),
                    );
                    assert!(rank(stored) >= rank(announced), "{event}: {run}");
                    if rank(announced) >= rank("succeeded") {
                        assert_eq!(announced, "succeeded", "{event}");
                        assert_eq!(stored, announced, "{event}: {run}");
                        final_runs.insert(index);
                    }
                }
                other => panic!("unexpected event {other}: {event}"),
            }
        }
        assert_eq!(final_runs.len(), 20, "every run's end was announced");
        assert_eq!(task_events.last().map(String::as_str), Some("succeeded"));
        assert!(
            task_events.len() >= 2,
            "the task's submission and its end: {task_events:?}"
        );

        // The worker goes away: its pings fail and the pool announces it.
        registration.abort();
        loop {
            let event = sse.next_within(Duration::from_secs(20)).await.unwrap();
            if event["type"] == "worker_left" {
                assert_eq!(event["peer"], worker.as_str(), "{event}");
                break;
            }
        }
        let (_, workers) = h.get("/workers").await;
        assert_eq!(workers, json!([]));
    })
    .unwrap();
}

#[test]
fn a_lagging_subscriber_gets_resync() {
    rpc::block_on_local(async {
        let h = Harness::start("events-lag", None).await;
        let mut sse = subscribed(&h).await;
        let bus = h.gateway.as_ref().unwrap().events();
        let total = ww_sched::gateway::EVENTS_CAPACITY + 100;
        // Told apart by their reasons (a worker is named by a peer id only).
        let peer = WorkerId::from(ww::transport::Identity::from_secret([5; 32]).peer_id());
        for n in 0..total {
            bus.publish(Event::WorkerLeft {
                peer: peer.clone(),
                reason: format!("r{n}"),
            });
        }
        let resync = sse.next_within(Duration::from_secs(5)).await.unwrap();
        assert_eq!(resync, json!({"type": "resync", "missed": 100}));
        // Then the events it did not miss, in order.
        let next = sse.next_within(Duration::from_secs(5)).await.unwrap();
        assert_eq!(next["reason"], "r100");
        assert_eq!(next["peer"], peer.as_str());
    })
    .unwrap();
}

#[test]
fn subscribers_are_capped() {
    rpc::block_on_local(async {
        let h = Harness::start("events-cap", None).await;
        let mut open_streams = Vec::new();
        for _ in 0..SUBSCRIBERS_MAX {
            let (status, sse) = open(&h).await;
            assert_eq!(status, StatusCode::OK);
            open_streams.push(sse);
        }
        let request = Request::get("/events").body(Body::empty()).unwrap();
        let response = h.router.clone().oneshot(request).await.unwrap();
        // Checked before the body is read: an accepted stream never ends.
        assert_eq!(
            response.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "stream {} over the cap was accepted",
            SUBSCRIBERS_MAX + 1
        );
        assert!(response.headers().contains_key(header::RETRY_AFTER));
        let bytes = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_error(
            "over the cap",
            (StatusCode::SERVICE_UNAVAILABLE, &body),
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "event streams",
        );
        // A stream that goes away frees its place.
        open_streams.pop();
        let (status, _sse) = open(&h).await;
        assert_eq!(status, StatusCode::OK);
    })
    .unwrap();
}

#[test]
fn the_stream_needs_the_token_and_outlives_the_deadline() {
    rpc::block_on_local(async {
        let h = Harness::start("events-token", None).await;
        let limits = HttpLimits {
            request_timeout: Duration::from_millis(300),
            ..HttpLimits::default()
        };
        let access = ApiAccess::new(
            "10.1.2.3:8080".parse().unwrap(),
            ApiToken::new(TOKEN).unwrap(),
        );
        let api = lock(h.router.clone(), access, limits);
        let get = |token: Option<&str>| {
            let mut request = Request::get("/events").header(header::HOST, "10.1.2.3:8080");
            if let Some(token) = token {
                request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
            }
            request.body(Body::empty()).unwrap()
        };
        let refused = api.clone().oneshot(get(None)).await.unwrap();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        let wrong = api
            .clone()
            .oneshot(get(Some(&"x".repeat(40))))
            .await
            .unwrap();
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        let response = api.clone().oneshot(get(Some(TOKEN))).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/event-stream"
        );
        let mut sse = Sse::new(response.into_body());
        assert_eq!(
            sse.next_within(Duration::from_secs(5)).await,
            Some(json!({"type": "hello"}))
        );
        // Past the 300 ms deadline, the stream still carries events.
        tokio::time::sleep(Duration::from_millis(900)).await;
        let bus = h.gateway.as_ref().unwrap().events();
        let peer = WorkerId::from(ww::transport::Identity::from_secret([6; 32]).peer_id());
        bus.publish(Event::WorkerJoined {
            peer: peer.clone(),
            slots: 1,
        });
        let late = sse.next_within(Duration::from_secs(5)).await.unwrap();
        assert_eq!(late["peer"], peer.as_str());
    })
    .unwrap();
}

#[test]
fn the_stream_ends_at_a_fail_stop() {
    rpc::block_on_local(async {
        let h = Harness::start("events-failstop", None).await;
        let mut sse = subscribed(&h).await;
        h.gateway
            .as_ref()
            .unwrap()
            .health()
            .trip("test: the disk failed");
        assert_eq!(sse.next_within(Duration::from_secs(5)).await, None);
        let (status, body) = h.get("/events").await;
        assert_error(
            "after the fail-stop",
            (status, &body),
            StatusCode::SERVICE_UNAVAILABLE,
            "storage",
            "disk",
        );
    })
    .unwrap();
}

/// `GET path` through `router`: status, headers, body text.
async fn fetch(
    router: &axum::Router,
    path: &str,
    host: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let mut request = Request::get(path);
    if let Some(host) = host {
        request = request.header(header::HOST, host);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

#[test]
fn the_assets_are_served_with_their_types_and_policy() {
    rpc::block_on_local(async {
        let h = Harness::start("events-assets", None).await;
        let access = ApiAccess::new(
            "10.1.2.3:8080".parse().unwrap(),
            ApiToken::new(TOKEN).unwrap(),
        );
        let api = lock(h.router.clone(), access, HttpLimits::default());
        let host = Some("10.1.2.3:8080");
        for (path, content_type, needle) in [
            (
                "/",
                "text/html; charset=utf-8",
                "<script src=\"/ui/app.js\"",
            ),
            (
                "/ui/",
                "text/html; charset=utf-8",
                "<title>ww-sched</title>",
            ),
            ("/ui/index.html", "text/html; charset=utf-8", "id=\"tasks\""),
            (
                "/ui/app.js",
                "text/javascript; charset=utf-8",
                "text/event-stream",
            ),
            ("/ui/style.css", "text/css; charset=utf-8", "body {"),
        ] {
            // No token: the shell holds no data.
            let (status, headers, body) = fetch(&api, path, host).await;
            assert_eq!(status, StatusCode::OK, "{path}: {body}");
            assert_eq!(headers[header::CONTENT_TYPE], content_type, "{path}");
            let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
            assert!(
                csp.starts_with("default-src 'self'; script-src 'self';"),
                "{csp}"
            );
            assert!(
                !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
                "{csp}"
            );
            assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
            assert!(body.contains(needle), "{path} lacks {needle:?}");
            if content_type.starts_with("text/html") {
                // Every script is a file of this origin: none inline.
                assert_eq!(body.matches("<script").count(), 1, "{path}");
                assert!(!body.contains("<script>"), "{path}");
                assert!(!has_inline_handler(&body), "{path}: an on...= attribute");
                assert!(
                    !body.contains("http://") && !body.contains("https://"),
                    "{path}: no CDN"
                );
            }
        }
        let (status, headers, body) = fetch(&api, "/ui/secret.js", host).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let (status, _, _) = fetch(&api, "/ui/a/b.js", host).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        // Data still needs the token; a foreign Host is refused even for the shell.
        for path in ["/workers", "/tasks", "/events"] {
            // The status only: an accepted event stream would never end.
            let request = Request::get(path).header(header::HOST, "10.1.2.3:8080");
            let response = api
                .clone()
                .oneshot(request.body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
        }
        let (status, _, _) = fetch(&api, "/", Some("evil.example:8080")).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // The fallback names the new endpoints.
        let (status, _, body) = fetch(&h.router, "/nope", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(
            body.contains("/events") && body.contains("dashboard"),
            "{body}"
        );
    })
    .unwrap();
}

/// Whether `html` has an inline event handler attribute (` onclick=`...).
fn has_inline_handler(html: &str) -> bool {
    html.match_indices(" on").any(|(at, _)| {
        let rest = &html[at + 3..];
        let name_end = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        name_end > 0 && rest[name_end..].starts_with('=')
    })
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
