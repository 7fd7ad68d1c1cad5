//! Shared by the REST API tests: a gateway on a temporary store, served
//! in-process through its router, optionally with a real worker over libp2p on
//! loopback; request builders and assertions on the JSON error shape.

#![allow(dead_code)]

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use serde_json::Value;
use tower::ServiceExt as _;
use ww::exec::{Sandbox, SandboxConfig};
use ww::rpc::RpcConfig;
use ww::transport::{Address, Identity, Libp2pConfig, Libp2pTransport, Transport};
use ww_sched::gateway::clock::host_clock;
use ww_sched::gateway::{Gateway, GatewayConfig};
use ww_sched::tasks::HASH_PUZZLE_WASM;
use ww_sched::worker::node::{keep_registered, Callers, GatewayLocator, WorkerNode};
use ww_sched::worker::WorkerConfig;

pub const LOOPBACK: &str = "/ip4/127.0.0.1/tcp/0";
pub const BOUNDARY: &str = "ww-sched-test-boundary-7d3f";
/// The keys of the original's task JSON.
pub const ORIGINAL_KEYS: [&str; 10] = [
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

/// Removes the data directory when the test ends, even on a panic.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        TempDir(std::env::temp_dir().join(format!(
            "ww-sched-gateway-api-{name}-{}-{nanos}",
            std::process::id()
        )))
    }

    /// The directory's path.
    pub fn path(&self) -> PathBuf {
        self.0.clone()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A gateway on a loopback libp2p transport, with its router.
pub struct Harness {
    pub router: Router,
    pub gateway: Option<Gateway>,
    pub transport: Libp2pTransport,
    pub address: Address,
    pub dir: TempDir,
    pub config: GatewayConfig,
}

impl Harness {
    pub async fn start(name: &str, body_bytes_max: Option<usize>) -> Harness {
        Harness::start_with(name, |config| {
            if let Some(max) = body_bytes_max {
                config.body_bytes_max = max;
            }
        })
        .await
    }

    /// A gateway with its configuration changed by `configure`.
    pub async fn start_with(name: &str, configure: impl FnOnce(&mut GatewayConfig)) -> Harness {
        let dir = TempDir::new(name);
        let transport = Libp2pTransport::new(Libp2pConfig::new(Identity::generate())).unwrap();
        let address = transport.listen(Address::new(LOOPBACK)).await.unwrap();
        let mut config = GatewayConfig::new(dir.0.clone());
        configure(&mut config);
        let gateway = Gateway::start(&transport, None, host_clock(), config.clone())
            .await
            .unwrap();
        Harness {
            router: gateway.router(),
            gateway: Some(gateway),
            transport,
            address,
            dir,
            config,
        }
    }

    /// A gateway on the store `open` opens in the data directory (a test's
    /// own engine or decorator).
    pub async fn start_on_store(
        name: &str,
        open: impl FnOnce(&std::path::Path) -> ww_sched::sched::Store,
    ) -> Harness {
        let dir = TempDir::new(name);
        std::fs::create_dir_all(&dir.0).unwrap();
        let store = open(&dir.0);
        let transport = Libp2pTransport::new(Libp2pConfig::new(Identity::generate())).unwrap();
        let address = transport.listen(Address::new(LOOPBACK)).await.unwrap();
        let config = GatewayConfig::new(dir.0.clone());
        let gateway =
            Gateway::start_with_store(&transport, None, host_clock(), config.clone(), store)
                .await
                .unwrap();
        Harness {
            router: gateway.router(),
            gateway: Some(gateway),
            transport,
            address,
            dir,
            config,
        }
    }

    /// Stops the gateway and starts it again on the same directory.
    pub async fn restart(&mut self) {
        // The old router holds the store open too.
        self.router = axum::Router::new();
        if let Some(gateway) = self.gateway.take() {
            gateway.shutdown().await;
        }
        let gateway = Gateway::start(&self.transport, None, host_clock(), self.config.clone())
            .await
            .unwrap();
        self.router = gateway.router();
        self.gateway = Some(gateway);
    }

    /// Starts a worker with `slots` that registers with this gateway, and
    /// waits until the gateway lists it; returns its peer id and registration.
    pub async fn start_worker(&self, slots: usize) -> (String, tokio::task::JoinHandle<()>) {
        let gateway_peer = self.transport.local_peer_id();
        let transport = Libp2pTransport::new(Libp2pConfig::new(Identity::generate())).unwrap();
        transport
            .add_peer_address(gateway_peer, self.address.clone())
            .unwrap();
        let config = WorkerConfig {
            slots,
            ..WorkerConfig::default()
        };
        let sandbox = Arc::new(Sandbox::new(SandboxConfig::default()));
        let node = WorkerNode::start(
            transport,
            sandbox,
            config,
            &[Address::new(LOOPBACK)],
            Callers::Open,
        )
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
        loop {
            let (status, workers) = self.get("/workers").await;
            assert_eq!(status, StatusCode::OK, "{workers}");
            if workers.as_array().is_some_and(|w| !w.is_empty()) {
                return (worker_peer, registration);
            }
            assert!(Instant::now() < deadline, "the worker did not register");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the gateway and removes its data directory.
    pub fn finish(mut self) {
        drop(self.gateway.take());
        let path = self.dir.0.clone();
        drop(self);
        assert!(!path.exists(), "{} was not removed", path.display());
    }

    pub async fn send(&self, request: Request<Body>) -> (StatusCode, HeaderMap, Value) {
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

    pub async fn get(&self, uri: &str) -> (StatusCode, Value) {
        let request = Request::get(uri).body(Body::empty()).unwrap();
        let (status, _, body) = self.send(request).await;
        (status, body)
    }

    pub async fn delete(&self, uri: &str) -> (StatusCode, Value) {
        let request = Request::delete(uri).body(Body::empty()).unwrap();
        let (status, _, body) = self.send(request).await;
        (status, body)
    }

    pub async fn post(
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

    pub async fn post_json(
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

    pub async fn post_form(
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

    pub async fn upload(&self, bytes: &[u8]) -> (StatusCode, Value) {
        let (status, _, body) = self
            .post("/modules", Some("application/wasm"), &[], bytes.to_vec())
            .await;
        (status, body)
    }

    /// Every task, as `GET /tasks` lists them.
    pub async fn all_tasks(&self) -> Value {
        let (status, body) = self.get("/tasks?limit=1000").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.is_array(), "{body}");
        body
    }

    pub async fn wait_final(&self, id: &str) -> Value {
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
pub fn multipart(fields: &[(&str, &str)], wasm: Option<&[u8]>) -> Vec<u8> {
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
pub fn form<'a>(id: &'a str, overrides: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
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
pub type FormCase<'a> = (
    &'a str,
    Vec<(&'a str, &'a str)>,
    Option<&'a [u8]>,
    StatusCode,
    &'a str,
    &'a str,
);

/// Asserts the JSON error shape with a status, a kind and a detail mentioning `needle`.
pub fn assert_error(
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

pub fn assert_original_keys(what: &str, task: &Value) {
    for key in ORIGINAL_KEYS {
        assert!(task.get(key).is_some(), "{what}: no key {key}: {task}");
    }
}

pub fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect()
}

/// Submits a task due far in the future (it stays pending); answers it.
pub async fn submit_pending(h: &Harness, id: &str) -> Value {
    let (status, headers, task) = h
        .post_form(&form(id, &[("start", "86400")]), Some(HASH_PUZZLE_WASM))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{task}");
    assert_eq!(headers[header::LOCATION], format!("/tasks/{id}"));
    assert_eq!(task["status"], "pending", "{task}");
    task
}
