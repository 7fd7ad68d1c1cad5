//! The gateway's REST API, driven in-process through its router: submissions
//! (the original multipart form, JSON by hash or base64), idempotent retries,
//! validation with the JSON error shape, cancel, listing and pagination, and a
//! run that finishes on a real worker registered over libp2p on loopback.

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use base64::Engine as _;
use serde_json::{json, Value};
use tower::ServiceExt as _;
use ww_sched::exec::{Sandbox, SandboxConfig};
use ww_sched::gateway::{Clock, Gateway, GatewayConfig};
use ww_sched::node::{keep_registered, GatewayLocator, WorkerNode};
use ww_sched::rpc::{self, RpcConfig};
use ww_sched::sched::types::REPEATS_MAX;
use ww_sched::tasks::{hash_puzzle, HASH_PUZZLE_WASM};
use ww_sched::transport::{Address, Identity, Libp2pConfig, Libp2pTransport, Transport};
use ww_sched::worker::WorkerConfig;

const LOOPBACK: &str = "/ip4/127.0.0.1/tcp/0";
const BOUNDARY: &str = "ww-sched-test-boundary-7d3f";
/// The keys of the original's task JSON.
const ORIGINAL_KEYS: [&str; 10] = [
    "id",
    "description",
    "completions",
    "duration",
    "start",
    "delay",
    "repeats",
    "input",
    "difficulty",
    "status",
];

fn wall_clock() -> Clock {
    Rc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    })
}

/// Removes the data directory when the test ends, even on a panic.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        TempDir(std::env::temp_dir().join(format!(
            "ww-sched-gateway-api-{name}-{}-{nanos}",
            std::process::id()
        )))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A gateway on a loopback libp2p transport, with its router.
struct Harness {
    router: Router,
    gateway: Option<Gateway>,
    transport: Libp2pTransport,
    address: Address,
    dir: TempDir,
}

impl Harness {
    async fn start(name: &str, body_bytes_max: Option<usize>) -> Harness {
        let dir = TempDir::new(name);
        let transport = Libp2pTransport::new(Libp2pConfig::new(Identity::generate())).unwrap();
        let address = transport.listen(Address::new(LOOPBACK)).await.unwrap();
        let mut config = GatewayConfig::new(dir.0.clone());
        if let Some(max) = body_bytes_max {
            config.body_bytes_max = max;
        }
        let gateway = Gateway::start(&transport, None, wall_clock(), config)
            .await
            .unwrap();
        Harness {
            router: gateway.router(),
            gateway: Some(gateway),
            transport,
            address,
            dir,
        }
    }

    /// Stops the gateway and removes its data directory.
    fn finish(mut self) {
        drop(self.gateway.take());
        let path = self.dir.0.clone();
        drop(self);
        assert!(!path.exists(), "{} was not removed", path.display());
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, HeaderMap, Value) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, headers, body)
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        let request = Request::get(uri).body(Body::empty()).unwrap();
        let (status, _, body) = self.send(request).await;
        (status, body)
    }

    async fn delete(&self, uri: &str) -> (StatusCode, Value) {
        let request = Request::delete(uri).body(Body::empty()).unwrap();
        let (status, _, body) = self.send(request).await;
        (status, body)
    }

    async fn post(
        &self,
        uri: &str,
        content_type: Option<&str>,
        extra: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut request = Request::builder().method(Method::POST).uri(uri);
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        self.send(request.body(Body::from(body)).unwrap()).await
    }

    async fn post_json(
        &self,
        body: &Value,
        extra: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, Value) {
        self.post(
            "/tasks",
            Some("application/json"),
            extra,
            serde_json::to_vec(body).unwrap(),
        )
        .await
    }

    async fn post_form(
        &self,
        fields: &[(&str, &str)],
        wasm: Option<&[u8]>,
    ) -> (StatusCode, HeaderMap, Value) {
        self.post(
            "/tasks",
            Some(&format!("multipart/form-data; boundary={BOUNDARY}")),
            &[],
            multipart(fields, wasm),
        )
        .await
    }

    async fn upload(&self, bytes: &[u8]) -> (StatusCode, Value) {
        let (status, _, body) = self
            .post("/modules", Some("application/wasm"), &[], bytes.to_vec())
            .await;
        (status, body)
    }

    /// Every task, as `GET /tasks` lists them.
    async fn all_tasks(&self) -> Value {
        let (status, body) = self.get("/tasks?limit=1000").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.is_array(), "{body}");
        body
    }

    async fn wait_final(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, task) = self.get(&format!("/tasks/{id}")).await;
            assert_eq!(status, StatusCode::OK, "{task}");
            let state = task["status"].as_str().unwrap_or("");
            if matches!(state, "succeeded" | "failed" | "cancelled") {
                return task;
            }
            assert!(Instant::now() < deadline, "task {id} not final: {task}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A `multipart/form-data` body with text fields and, if given, the module file.
fn multipart(fields: &[(&str, &str)], wasm: Option<&[u8]>) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    if let Some(bytes) = wasm {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"wasm\"; filename=\"hash.wasm\"\r\nContent-Type: application/wasm\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// The original form's fields for one hash puzzle; each override replaces the
/// field of its name, or is added if there is none.
fn form<'a>(id: &'a str, overrides: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut fields = vec![
        ("id", id),
        ("description", "hash puzzle"),
        ("complete", "0"),
        ("duration", "30"),
        ("start", "0"),
        ("delay", "0"),
        ("repeats", "1"),
        ("input", "7"),
        ("difficulty", "3"),
    ];
    for (name, value) in overrides {
        match fields.iter_mut().find(|(n, _)| n == name) {
            Some(field) => field.1 = value,
            None => fields.push((name, value)),
        }
    }
    fields
}

/// A refused form: what, its fields, its module, and the status, kind and
/// detail fragment expected.
type FormCase<'a> = (
    &'a str,
    Vec<(&'a str, &'a str)>,
    Option<&'a [u8]>,
    StatusCode,
    &'a str,
    &'a str,
);

/// Asserts the JSON error shape with a status, a kind and a detail mentioning `needle`.
fn assert_error(
    what: &str,
    (status, body): (StatusCode, &Value),
    expected: StatusCode,
    kind: &str,
    needle: &str,
) {
    assert_eq!(status, expected, "{what}: {body}");
    let object = body
        .as_object()
        .unwrap_or_else(|| panic!("{what}: error body is not a JSON object: {body}"));
    assert_eq!(object.len(), 2, "{what}: error body has other keys: {body}");
    assert_eq!(body["error"], kind, "{what}: {body}");
    let detail = body["detail"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: detail is not text: {body}"));
    assert!(
        detail.to_lowercase().contains(&needle.to_lowercase()),
        "{what}: detail {detail:?} does not mention {needle:?}"
    );
}

fn assert_original_keys(what: &str, task: &Value) {
    for key in ORIGINAL_KEYS {
        assert!(task.get(key).is_some(), "{what}: no key {key}: {task}");
    }
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect()
}

/// Submits a task due far in the future (it stays pending); answers it.
async fn submit_pending(h: &Harness, id: &str) -> Value {
    let (status, headers, task) = h
        .post_form(&form(id, &[("start", "86400")]), Some(HASH_PUZZLE_WASM))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{task}");
    assert_eq!(headers[header::LOCATION], format!("/tasks/{id}"));
    assert_eq!(task["status"], "pending", "{task}");
    task
}

#[test]
fn health_workers_and_cluster_without_workers() {
    rpc::block_on_local(async {
        let h = Harness::start("health", None).await;
        let (status, body) = h.get("/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({ "status": "ok" }));
        assert_eq!(h.get("/workers").await, (StatusCode::OK, json!([])));
        assert_eq!(h.get("/cluster").await, (StatusCode::OK, json!([])));
        assert_eq!(h.get("/tasks").await, (StatusCode::OK, json!([])));
        h.finish();
    })
    .unwrap();
}

#[test]
fn multipart_task_runs_on_a_worker_and_is_listed() {
    rpc::block_on_local(async {
        let h = Harness::start("happy", None).await;
        let gateway_peer = h.transport.local_peer_id();

        // One worker registers through the gateway's channel.
        let transport = Libp2pTransport::new(Libp2pConfig::new(Identity::generate())).unwrap();
        transport
            .add_peer_address(gateway_peer, h.address.clone())
            .unwrap();
        let config = WorkerConfig {
            slots: 2,
            ..WorkerConfig::default()
        };
        let sandbox = Arc::new(Sandbox::new(SandboxConfig::default()));
        let node = WorkerNode::start(transport, sandbox, config, &[Address::new(LOOPBACK)])
            .await
            .unwrap();
        let worker_peer = node.peer_id().to_string();
        let registration = tokio::task::spawn_local(keep_registered(
            Rc::new(node),
            GatewayLocator::Peer(gateway_peer),
            None,
            RpcConfig::default(),
        ));
        let deadline = Instant::now() + Duration::from_secs(30);
        let workers = loop {
            let (status, workers) = h.get("/workers").await;
            assert_eq!(status, StatusCode::OK, "{workers}");
            if workers.as_array().is_some_and(|w| !w.is_empty()) {
                break workers;
            }
            assert!(Instant::now() < deadline, "the worker did not register");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let workers = workers.as_array().unwrap();
        assert_eq!(workers.len(), 1, "{workers:?}");
        assert_eq!(workers[0]["worker"], worker_peer.as_str());
        assert_eq!(workers[0]["slots"], 2);
        assert_eq!(workers[0]["in_flight"], 0);

        // The original form, the original keys back.
        let (status, headers, task) = h
            .post_form(&form("a-puzzle", &[]), Some(HASH_PUZZLE_WASM))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{task}");
        assert_eq!(headers[header::LOCATION], "/tasks/a-puzzle");
        assert_original_keys("created", &task);
        assert_eq!(task["id"], "a-puzzle");
        assert_eq!(task["description"], "hash puzzle");
        assert_eq!(task["completions"], 0);
        assert_eq!(task["duration"], 30);
        assert_eq!(task["start"], 0);
        assert_eq!(task["delay"], 0);
        assert_eq!(task["repeats"], 1);
        assert_eq!(task["input"], 7);
        assert_eq!(task["difficulty"], 3);

        let task = h.wait_final("a-puzzle").await;
        assert_eq!(task["status"], "succeeded", "{task}");
        assert_eq!(task["completions"], 1, "{task}");
        let run = &task["runs"][0];
        assert_eq!(run["status"], "succeeded", "{task}");
        assert_eq!(run["worker"], worker_peer.as_str(), "{task}");
        assert_eq!(
            run["results"][0].as_i64(),
            Some(i64::from(hash_puzzle(7, 3))),
            "{task}"
        );

        // A second task, far in the future: it stays pending.
        submit_pending(&h, "b-later").await;

        let all = h.all_tasks().await;
        assert_eq!(ids(&all), ["a-puzzle", "b-later"]);
        for row in all.as_array().unwrap() {
            assert_original_keys("listed", row);
            let keys: Vec<&String> = row.as_object().unwrap().keys().collect();
            assert_eq!(keys.len(), ORIGINAL_KEYS.len(), "listed: {row}");
        }
        let (status, succeeded) = h.get("/tasks?status=succeeded").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(ids(&succeeded), ["a-puzzle"]);
        assert_eq!(succeeded[0]["completions"], 1);
        let (_, pending) = h.get("/tasks?status=pending").await;
        assert_eq!(ids(&pending), ["b-later"]);
        assert_eq!(
            h.get("/tasks?status=failed").await,
            (StatusCode::OK, json!([]))
        );

        // Pagination.
        let (_, page) = h.get("/tasks?limit=1").await;
        assert_eq!(ids(&page), ["a-puzzle"]);
        let (_, page) = h.get("/tasks?offset=1&limit=1").await;
        assert_eq!(ids(&page), ["b-later"]);
        let (_, page) = h.get("/tasks?offset=1").await;
        assert_eq!(ids(&page), ["b-later"]);
        assert_eq!(h.get("/tasks?offset=2").await, (StatusCode::OK, json!([])));
        assert_eq!(h.get("/tasks?limit=0").await, (StatusCode::OK, json!([])));

        registration.abort();
        h.finish();
    })
    .unwrap();
}

#[test]
fn json_submissions_idempotency_and_conflicts() {
    rpc::block_on_local(async {
        let h = Harness::start("json", None).await;

        let (status, module) = h.upload(HASH_PUZZLE_WASM).await;
        assert_eq!(status, StatusCode::CREATED, "{module}");
        let hash = module["hash"].as_str().unwrap().to_string();
        assert_eq!(hash.len(), 64, "{module}");
        assert_eq!(module["bytes"], HASH_PUZZLE_WASM.len());

        // By hash.
        let body = json!({
            "id": "by-hash",
            "description": "json by hash",
            "module": hash,
            "args": [5, 2],
            "start_ms": 86_400_000u64,
        });
        let (status, headers, task) = h.post_json(&body, &[]).await;
        assert_eq!(status, StatusCode::CREATED, "{task}");
        assert_eq!(headers[header::LOCATION], "/tasks/by-hash");
        assert_original_keys("by hash", &task);
        assert_eq!(task["module"], hash.as_str());
        assert_eq!(task["input"], 5);
        assert_eq!(task["difficulty"], 2);
        assert_eq!(task["start"], 86_400);
        assert_eq!(task["status"], "pending");

        // By base64: the same module, so the same hash.
        let b64 = base64::engine::general_purpose::STANDARD.encode(HASH_PUZZLE_WASM);
        let body = json!({
            "id": "by-base64",
            "wasm_base64": b64,
            "args": [6, 1],
            "start_ms": 86_400_000u64,
        });
        let (status, _, task) = h.post_json(&body, &[]).await;
        assert_eq!(status, StatusCode::CREATED, "{task}");
        assert_eq!(task["module"], hash.as_str());
        assert_eq!(task["description"], "");

        // A retried submission with the same Idempotency-Key: the same task, 200.
        let body = json!({ "module": hash, "args": [9, 1], "start_ms": 86_400_000u64 });
        let key = [("Idempotency-Key", "retry-me-1")];
        let (status, first_headers, first) = h.post_json(&body, &key).await;
        assert_eq!(status, StatusCode::CREATED, "{first}");
        let generated = first["id"].as_str().unwrap().to_string();
        assert!(!generated.is_empty());
        let (status, second_headers, second) = h.post_json(&body, &key).await;
        assert_eq!(status, StatusCode::OK, "{second}");
        assert_eq!(second["id"], generated.as_str());
        assert_eq!(
            first_headers[header::LOCATION],
            second_headers[header::LOCATION]
        );
        // The same key with another body is refused, and nothing is created.
        let other = json!({ "module": hash, "args": [9, 2], "start_ms": 86_400_000u64 });
        let (status, _, error) = h.post_json(&other, &key).await;
        assert_error(
            "idempotency key reused with other args",
            (status, &error),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable",
            "another args",
        );
        let all = h.all_tasks().await;
        assert_eq!(all.as_array().unwrap().len(), 3, "{all}");
        assert_eq!(
            ids(&all).iter().filter(|id| **id == generated).count(),
            1,
            "{all}"
        );

        // Duplicate id.
        let body = json!({ "id": "by-hash", "module": hash, "args": [1, 1] });
        let (status, _, error) = h.post_json(&body, &[]).await;
        assert_error(
            "duplicate id (json)",
            (status, &error),
            StatusCode::CONFLICT,
            "conflict",
            "by-hash",
        );
        let (status, _, error) = h
            .post_form(&form("by-hash", &[]), Some(HASH_PUZZLE_WASM))
            .await;
        assert_error(
            "duplicate id (form)",
            (status, &error),
            StatusCode::CONFLICT,
            "conflict",
            "by-hash",
        );

        // Unknown module hash.
        let unknown = "ab".repeat(32);
        let body = json!({ "id": "unknown-module", "module": unknown, "args": [1, 1] });
        let (status, _, error) = h.post_json(&body, &[]).await;
        assert_error(
            "unknown module",
            (status, &error),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable",
            &unknown,
        );

        assert_eq!(
            h.all_tasks().await,
            all,
            "a refused request changed the tasks"
        );
        h.finish();
    })
    .unwrap();
}

#[test]
fn bad_requests_are_refused_with_the_error_shape_and_change_nothing() {
    rpc::block_on_local(async {
        let h = Harness::start("bad", None).await;
        submit_pending(&h, "existing").await;
        let before = h.all_tasks().await;
        let (_, module) = h.upload(HASH_PUZZLE_WASM).await;
        let hash = module["hash"].as_str().unwrap().to_string();
        let wasm = Some(HASH_PUZZLE_WASM);
        let repeats_over = (u64::from(REPEATS_MAX) + 1).to_string();
        let repeats_u32_over = (u64::from(u32::MAX) + 1).to_string();

        // The original form.
        let form_cases: Vec<FormCase> = vec![
            (
                "missing wasm",
                form("f1", &[]),
                None,
                StatusCode::BAD_REQUEST,
                "bad_request",
                "wasm",
            ),
            (
                "not wasm",
                form("f2", &[]),
                Some(b"#!/bin/sh\necho hi\n".as_slice()),
                StatusCode::UNPROCESSABLE_ENTITY,
                "unprocessable",
                "webassembly",
            ),
            (
                "empty wasm",
                form("f3", &[]),
                Some(b"".as_slice()),
                StatusCode::UNPROCESSABLE_ENTITY,
                "unprocessable",
                "webassembly",
            ),
            (
                "input not numeric",
                form("f4", &[("input", "seven")]),
                wasm,
                StatusCode::BAD_REQUEST,
                "bad_request",
                "input",
            ),
            (
                "input missing",
                form("f5", &[("input", "")]),
                wasm,
                StatusCode::BAD_REQUEST,
                "bad_request",
                "input",
            ),
            (
                "difficulty not numeric",
                form("f6", &[("difficulty", "3.5")]),
                wasm,
                StatusCode::BAD_REQUEST,
                "bad_request",
                "difficulty",
            ),
            (
                "repeats negative",
                form("f7", &[("repeats", "-1")]),
                wasm,
                StatusCode::BAD_REQUEST,
                "bad_request",
                "repeats",
            ),
            (
                "repeats zero",
                form("f8", &[("repeats", "0")]),
                wasm,
                StatusCode::BAD_REQUEST,
                "bad_request",
                "repeats",
            ),
            (
                "repeats over the limit",
                form("f9", &[("repeats", &repeats_over)]),
                wasm,
                StatusCode::BAD_REQUEST,
                "bad_request",
                "repeats",
            ),
            (
                "repeats over u32",
                form("f10", &[("repeats", &repeats_u32_over)]),
                wasm,
                StatusCode::BAD_REQUEST,
                "bad_request",
                "repeats",
            ),
            (
                "delay negative",
                form("f11", &[("delay", "-5")]),
                wasm,
                StatusCode::BAD_REQUEST,
                "bad_request",
                "delay",
            ),
            (
                "start negative",
                form("f12", &[("start", "-5")]),
                wasm,
                StatusCode::BAD_REQUEST,
                "bad_request",
                "start",
            ),
            (
                "duration not numeric",
                form("f13", &[("duration", "soon")]),
                wasm,
                StatusCode::BAD_REQUEST,
                "bad_request",
                "duration",
            ),
            (
                "duration zero",
                form("f14", &[("duration", "0")]),
                wasm,
                StatusCode::BAD_REQUEST,
                "bad_request",
                "duration",
            ),
            (
                "duration over a day",
                form("f15", &[("duration", "86401")]),
                wasm,
                StatusCode::BAD_REQUEST,
                "bad_request",
                "duration",
            ),
            (
                "start over a year",
                form("f16", &[("start", "31536001")]),
                wasm,
                StatusCode::BAD_REQUEST,
                "bad_request",
                "start",
            ),
            (
                "start overflows ms",
                form("f17", &[("start", "18446744073709551615")]),
                wasm,
                StatusCode::BAD_REQUEST,
                "bad_request",
                "start",
            ),
            (
                "complete negative",
                form("f18", &[("complete", "-1")]),
                wasm,
                StatusCode::BAD_REQUEST,
                "bad_request",
                "complete",
            ),
            (
                "bad id",
                form("bad id!", &[]),
                wasm,
                StatusCode::BAD_REQUEST,
                "bad_request",
                "id",
            ),
        ];
        for (what, fields, module, status, kind, needle) in form_cases {
            let (got, _, body) = h.post_form(&fields, module).await;
            assert_error(what, (got, &body), status, kind, needle);
            assert_eq!(h.all_tasks().await, before, "{what} changed the tasks");
        }

        // A multipart body without a boundary, and a truncated one.
        let (status, _, body) = h
            .post("/tasks", Some("multipart/form-data"), &[], b"x".to_vec())
            .await;
        assert_error(
            "no boundary",
            (status, &body),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "multipart",
        );
        let mut truncated = multipart(&form("f19", &[]), wasm);
        truncated.truncate(truncated.len() - 40);
        let (status, _, body) = h
            .post(
                "/tasks",
                Some(&format!("multipart/form-data; boundary={BOUNDARY}")),
                &[],
                truncated,
            )
            .await;
        assert_error(
            "truncated multipart",
            (status, &body),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "incomplete",
        );
        assert_eq!(h.all_tasks().await, before);

        // JSON.
        let b64 = base64::engine::general_purpose::STANDARD.encode(HASH_PUZZLE_WASM);
        let json_cases: Vec<(&str, Vec<u8>, StatusCode, &str, &str)> = vec![
            (
                "malformed json",
                b"{\"module\": ".to_vec(),
                StatusCode::BAD_REQUEST,
                "bad_request",
                "json",
            ),
            (
                "not an object",
                b"[1, 2]".to_vec(),
                StatusCode::BAD_REQUEST,
                "bad_request",
                "json",
            ),
            (
                "unknown field",
                json!({ "module": hash, "args": [1, 1], "colour": "red" })
                    .to_string()
                    .into_bytes(),
                StatusCode::BAD_REQUEST,
                "bad_request",
                "colour",
            ),
            (
                "wrong type",
                json!({ "module": hash, "args": "1, 1" })
                    .to_string()
                    .into_bytes(),
                StatusCode::BAD_REQUEST,
                "bad_request",
                "args",
            ),
            (
                "negative repeats",
                json!({ "module": hash, "repeats": -1 })
                    .to_string()
                    .into_bytes(),
                StatusCode::BAD_REQUEST,
                "bad_request",
                "repeats",
            ),
            (
                "repeats over the limit",
                json!({ "module": hash, "repeats": REPEATS_MAX + 1 })
                    .to_string()
                    .into_bytes(),
                StatusCode::BAD_REQUEST,
                "bad_request",
                "repeats",
            ),
            (
                "negative delay",
                json!({ "module": hash, "delay_ms": -1 })
                    .to_string()
                    .into_bytes(),
                StatusCode::BAD_REQUEST,
                "bad_request",
                "delay_ms",
            ),
            (
                "duration not numeric",
                json!({ "module": hash, "duration_ms": "30s" })
                    .to_string()
                    .into_bytes(),
                StatusCode::BAD_REQUEST,
                "bad_request",
                "duration_ms",
            ),
            (
                "neither module nor bytes",
                json!({ "args": [1, 1] }).to_string().into_bytes(),
                StatusCode::BAD_REQUEST,
                "bad_request",
                "wasm_base64",
            ),
            (
                "both module and bytes",
                json!({ "module": hash, "wasm_base64": b64 })
                    .to_string()
                    .into_bytes(),
                StatusCode::BAD_REQUEST,
                "bad_request",
                "wasm_base64",
            ),
            (
                "bad hash",
                json!({ "module": "xyz" }).to_string().into_bytes(),
                StatusCode::BAD_REQUEST,
                "bad_request",
                "xyz",
            ),
            (
                "bad base64",
                json!({ "wasm_base64": "!!!" }).to_string().into_bytes(),
                StatusCode::BAD_REQUEST,
                "bad_request",
                "wasm_base64",
            ),
            (
                "base64 of non-wasm",
                json!({ "wasm_base64": "aGVsbG8=" })
                    .to_string()
                    .into_bytes(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "unprocessable",
                "webassembly",
            ),
            (
                "bad id",
                json!({ "id": "a/b", "module": hash })
                    .to_string()
                    .into_bytes(),
                StatusCode::BAD_REQUEST,
                "bad_request",
                "id",
            ),
            (
                "empty export",
                json!({ "module": hash, "export": "" })
                    .to_string()
                    .into_bytes(),
                StatusCode::BAD_REQUEST,
                "bad_request",
                "export",
            ),
        ];
        for (what, body, status, kind, needle) in json_cases {
            let (got, _, answer) = h.post("/tasks", Some("application/json"), &[], body).await;
            assert_error(what, (got, &answer), status, kind, needle);
            assert_eq!(h.all_tasks().await, before, "{what} changed the tasks");
        }

        // Content types.
        let body = json!({ "module": hash }).to_string().into_bytes();
        for content_type in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
        ] {
            let (status, _, answer) = h.post("/tasks", content_type, &[], body.clone()).await;
            assert_error(
                &format!("content type {content_type:?}"),
                (status, &answer),
                StatusCode::BAD_REQUEST,
                "bad_request",
                "application/json",
            );
        }
        let (status, _, answer) = h
            .post(
                "/tasks",
                Some("application/json"),
                &[("Idempotency-Key", "")],
                body.clone(),
            )
            .await;
        assert_error(
            "empty idempotency key",
            (status, &answer),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "idempotency-key",
        );
        assert_eq!(h.all_tasks().await, before);

        // Modules.
        let (status, answer) = h.upload(b"definitely not wasm").await;
        assert_error(
            "module not wasm",
            (status, &answer),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable",
            "webassembly",
        );
        let (status, answer) = h.upload(b"").await;
        assert_error(
            "empty module",
            (status, &answer),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable",
            "webassembly",
        );

        // Unknown tasks.
        for uri in ["/tasks/nope", "/tasks/bad%20id"] {
            let (status, answer) = h.get(uri).await;
            assert_error(
                &format!("GET {uri}"),
                (status, &answer),
                StatusCode::NOT_FOUND,
                "not_found",
                "task",
            );
            let (status, answer) = h.delete(uri).await;
            assert_error(
                &format!("DELETE {uri}"),
                (status, &answer),
                StatusCode::NOT_FOUND,
                "not_found",
                "task",
            );
        }

        // List queries.
        for (uri, needle) in [
            ("/tasks?status=done", "status"),
            ("/tasks?status=PENDING", "status"),
            ("/tasks?limit=many", "limit"),
            ("/tasks?offset=-1", "offset"),
        ] {
            let (status, answer) = h.get(uri).await;
            assert_error(
                uri,
                (status, &answer),
                StatusCode::BAD_REQUEST,
                "bad_request",
                needle,
            );
        }

        assert_eq!(
            h.all_tasks().await,
            before,
            "a refused request changed the tasks"
        );
        h.finish();
    })
    .unwrap();
}

#[test]
fn oversized_bodies_are_refused_with_413() {
    const LIMIT: usize = 64 * 1024;
    rpc::block_on_local(async {
        let h = Harness::start("large", Some(LIMIT)).await;
        let mut big = b"\0asm\x01\0\0\0".to_vec();
        big.resize(2 * LIMIT, 0);

        let (status, _, body) = h.post_form(&form("big", &[]), Some(&big)).await;
        assert_error(
            "oversized form",
            (status, &body),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "limit",
        );

        // The oversized part is a text field, not the module.
        let long = "x".repeat(2 * LIMIT);
        let (status, _, body) = h
            .post_form(
                &form("big2", &[("description", &long)]),
                Some(HASH_PUZZLE_WASM),
            )
            .await;
        assert_error(
            "oversized form field",
            (status, &body),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "limit",
        );

        let b64 = base64::engine::general_purpose::STANDARD.encode(&big);
        let (status, _, body) = h
            .post_json(&json!({ "id": "big3", "wasm_base64": b64 }), &[])
            .await;
        assert_error(
            "oversized json",
            (status, &body),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "limit",
        );

        let (status, body) = h.upload(&big).await;
        assert_error(
            "oversized module",
            (status, &body),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "limit",
        );

        assert_eq!(h.all_tasks().await, json!([]));
        // Under the limit still works.
        submit_pending(&h, "small").await;
        h.finish();
    })
    .unwrap();
}

#[test]
fn cancelling_a_pending_task() {
    rpc::block_on_local(async {
        let h = Harness::start("cancel", None).await;
        submit_pending(&h, "to-cancel").await;
        submit_pending(&h, "to-keep").await;

        let (status, task) = h.delete("/tasks/to-cancel").await;
        assert_eq!(status, StatusCode::OK, "{task}");
        assert_original_keys("cancelled", &task);
        assert_eq!(task["status"], "cancelled");

        let (status, task) = h.get("/tasks/to-cancel").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(task["status"], "cancelled");

        let (status, task) = h.delete("/tasks/to-cancel").await;
        assert_eq!(status, StatusCode::OK, "{task}");
        assert_eq!(task["status"], "cancelled");

        let (_, task) = h.get("/tasks/to-keep").await;
        assert_eq!(task["status"], "pending");
        let (_, cancelled) = h.get("/tasks?status=cancelled").await;
        assert_eq!(ids(&cancelled), ["to-cancel"]);
        h.finish();
    })
    .unwrap();
}
