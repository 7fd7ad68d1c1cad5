//! The OpenAPI document against the real router:
//! - it is OpenAPI 3.1, served at `/openapi.json` and printed by
//!   `ww-sched openapi`, and every `$ref` resolves;
//! - every route the router answers is in it: each path literal in `src/` is
//!   probed with every method, and whatever is not the fallback must be
//!   documented (so a route added beside `api_routes` fails here);
//! - a property test sends requests generated from the document's own shapes
//!   (valid and invalid: parameters, JSON and multipart bodies, tokens,
//!   hosts) through the locked router of a gateway with a worker, and checks
//!   that nothing answers 5xx and every answer's status, content type and
//!   body are the documented ones.

mod gateway_support;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use base64::Engine as _;
use futures::StreamExt as _;
use proptest::prelude::*;
use proptest::test_runner::{RngSeed, TestCaseError, TestRunner};
use rand::SeedableRng as _;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use tower::ServiceExt as _;
use ww::rpc;
use ww_sched::gateway::{lock, ApiAccess, ApiToken, HttpLimits};

use gateway_support::Harness;

const TOKEN: &str = "openapi-test-token-0123456789abcdef";
/// The API "listens" on a wildcard address, so it wants the token; requests
/// name it by this loopback literal (no network is used: the router is
/// called in process).
const LISTEN: &str = "0.0.0.0:8080";
const HOST: &str = "127.0.0.1:8080";

/// A module whose `run(a, b)` returns `a` at once.
const ECHO_WAT: &str = r#"(module (func (export "run") (param i64 i64) (result i64) local.get 0))"#;

fn echo_wasm() -> Vec<u8> {
    wat::parse_str(ECHO_WAT).unwrap()
}

/// The document as the library builds it.
fn document() -> Value {
    serde_json::to_value(ww_sched::gateway::openapi()).unwrap()
}

/// A gateway with one worker on a thread of its own (the core is `!Send`),
/// reachable through its router from any runtime.
struct Served {
    router: Router,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Served {
    fn start(name: &'static str) -> Served {
        let (routers, router) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            rpc::block_on_local(async move {
                let h = Harness::start(name, None).await;
                let (_, registration) = h.start_worker(2).await;
                routers.send(h.router.clone()).unwrap();
                let _ = stopped.await;
                registration.abort();
                h.finish();
            })
            .unwrap();
        });
        let router = router.recv().expect("the gateway started");
        Served {
            router,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            if !std::thread::panicking() {
                thread.join().expect("the gateway thread ended cleanly");
            }
        }
    }
}

/// An answer: status, content type, body bytes.
struct Answer {
    status: StatusCode,
    content_type: String,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

async fn send(router: &Router, request: Request<Body>) -> Answer {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("?").to_string())
        .unwrap_or_default();
    // An event stream never ends: its first frame (`hello`) stands for it.
    let body = if content_type.starts_with("text/event-stream") {
        let mut frames = response.into_body().into_data_stream();
        tokio::time::timeout(std::time::Duration::from_secs(10), frames.next())
            .await
            .expect("an event stream's first frame")
            .map(|frame| frame.expect("a frame").to_vec())
            .unwrap_or_default()
    } else {
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec()
    };
    Answer {
        status,
        content_type,
        body,
    }
}

/// Follows a local `$ref` (`#/a/b`) in `doc`.
fn resolve<'a>(doc: &'a Value, mut value: &'a Value) -> &'a Value {
    for _ in 0..16 {
        let Some(reference) = value.get("$ref").and_then(Value::as_str) else {
            return value;
        };
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("non-local $ref {reference}"));
        value = doc
            .pointer(pointer)
            .unwrap_or_else(|| panic!("$ref {reference} resolves to nothing"));
    }
    panic!("a $ref chain longer than 16")
}

/// Every operation: (method, path template, operation).
fn operations(doc: &Value) -> Vec<(Method, String, Value)> {
    let mut all = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().unwrap() {
            let method = match method.as_str() {
                "get" => Method::GET,
                "post" => Method::POST,
                "put" => Method::PUT,
                "delete" => Method::DELETE,
                "patch" => Method::PATCH,
                "head" => Method::HEAD,
                "options" => Method::OPTIONS,
                _ => continue,
            };
            all.push((method, path.clone(), operation.clone()));
        }
    }
    all
}

/// Every `$ref` anywhere under `value`.
fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r.clone());
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn the_document_is_openapi_3_1_served_as_built_and_every_ref_resolves() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "ww-sched gateway");
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 20, "suspiciously few $refs: {all:?}");
    for reference in &all {
        let pointer = reference.strip_prefix('#').expect("a local $ref");
        assert!(
            doc.pointer(pointer).is_some(),
            "{reference} resolves to nothing"
        );
    }
    // Every schema is a valid JSON Schema (OpenAPI 3.1 uses draft 2020-12).
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        let mut wrapped = schema.clone();
        wrapped["components"] = doc["components"].clone();
        jsonschema::validator_for(&wrapped)
            .unwrap_or_else(|e| panic!("schema {name} is not valid JSON Schema: {e}"));
    }
    for (method, path, operation) in operations(&doc) {
        let responses = operation["responses"].as_object().unwrap();
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{method} {path} documents no success"
        );
        for status in ["400", "401", "403", "503"] {
            assert!(
                responses.contains_key(status),
                "{method} {path} lacks the guard's {status}"
            );
        }
        // Every `{param}` in the path is a documented path parameter.
        let declared: BTreeSet<String> = operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "path")
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect();
        let in_path: BTreeSet<String> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .map(str::to_string)
            .collect();
        assert_eq!(declared, in_path, "{method} {path}: path parameters");
        for parameter in operation["parameters"].as_array().into_iter().flatten() {
            let name = &parameter["name"];
            if parameter["in"] == "path" {
                assert_eq!(parameter["required"], true, "{method} {path}: {name}");
            }
            assert!(
                parameter["description"].is_string(),
                "{method} {path}: {name} undescribed"
            );
            // Authentication is the security scheme, never a parameter.
            assert!(
                !name.as_str().unwrap().eq_ignore_ascii_case("authorization"),
                "{method} {path}"
            );
        }
        // Every id in a path has the id pattern.
        for parameter in operation["parameters"].as_array().into_iter().flatten() {
            if parameter["name"] == "id" {
                let schema = resolve(&doc, &parameter["schema"]);
                assert_eq!(schema["pattern"], ww_sched::sched::TASK_ID_PATTERN);
            }
        }
    }
    // Authentication: an optional bearer token (a loopback gateway needs
    // none); the open routes need nothing at all.
    assert_eq!(doc["security"], json!([{ "bearer": [] }, {}]));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(doc["paths"]["/healthz"]["get"]["security"], json!([{}]));
    // A submission: closed, and exactly one of the two module sources.
    let submission = &doc["components"]["schemas"]["TaskJson"]["allOf"];
    assert_eq!(submission[0]["additionalProperties"], false);
    assert_eq!(submission[1]["oneOf"].as_array().map(Vec::len), Some(2));
    // `ww-sched openapi` prints the same document, without a gateway.
    let printed = std::process::Command::new(env!("CARGO_BIN_EXE_ww-sched"))
        .arg("openapi")
        .output()
        .unwrap();
    assert!(printed.status.success(), "{printed:?}");
    let printed: Value = serde_json::from_slice(&printed.stdout).unwrap();
    assert_eq!(printed, doc, "`ww-sched openapi` printed another document");
    rpc::block_on_local(async {
        let h = Harness::start("openapi-served", None).await;
        let answer = send(
            &h.router,
            Request::get("/openapi.json").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.content_type, "application/json");
        assert_eq!(
            answer.json(),
            doc,
            "the served document is not the built one"
        );
        h.finish();
    })
    .unwrap();
}

/// String literals in the Rust sources under `dir` that could be routes:
/// they start with `/` and hold only characters of a path template.
fn path_literals(dir: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            path_literals(&path, out);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (start, _) in text.match_indices("\"/") {
            let rest = &text[start + 1..];
            let Some(end) = rest.find('"') else { continue };
            let literal = &rest[..end];
            let allowed = |c: char| c.is_ascii_alphanumeric() || "/{}*._-".contains(c);
            if literal.chars().all(allowed) && !literal.contains("//") {
                out.insert(literal.to_string());
            }
        }
    }
}

/// A concrete path for a route template: `{name}` and `{*name}` become one
/// segment each.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') && segment.ends_with('}') {
                "probe".to_string()
            } else {
                segment.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Whether the documented template `template` matches the concrete `path`.
fn template_matches(template: &str, path: &str) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| (t.starts_with('{') && t.ends_with('}')) || t == p)
}

/// Whether an answer is the router's fallback (no route has this path).
fn is_fallback(answer: &Answer) -> bool {
    answer.status == StatusCode::NOT_FOUND
        && answer.json()["error"] == "not_found"
        && answer.json()["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("no such endpoint"))
}

#[test]
fn every_route_the_router_answers_is_documented() {
    let doc = document();
    let documented: Vec<(Method, String)> = operations(&doc)
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    let mut literals = BTreeSet::new();
    path_literals(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut literals,
    );
    // The document's own paths are probed too: each must be routed.
    for (_, path) in &documented {
        literals.insert(path.clone());
    }
    assert!(
        literals.contains("/tasks/{id}/runs/{index}/stdout"),
        "{literals:?}"
    );
    let methods = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
    ];
    rpc::block_on_local(async {
        let h = Harness::start("openapi-routes", None).await;
        let mut routed = 0;
        let mut undocumented = Vec::new();
        for literal in &literals {
            let path = concrete(literal);
            for method in &methods {
                let request = Request::builder()
                    .method(method.clone())
                    .uri(&path)
                    .body(Body::empty());
                let Ok(request) = request else { continue };
                let answer = send(&h.router, request).await;
                if is_fallback(&answer) {
                    continue;
                }
                let path_documented = documented.iter().any(|(_, t)| template_matches(t, &path));
                if answer.status == StatusCode::METHOD_NOT_ALLOWED {
                    // Routed for other methods: the path itself must be documented.
                    if !path_documented {
                        undocumented.push(format!("{path} (from {literal:?}, any method)"));
                    }
                    continue;
                }
                routed += 1;
                let operation_documented = documented
                    .iter()
                    .any(|(m, t)| m == method && template_matches(t, &path));
                if !operation_documented {
                    undocumented.push(format!(
                        "{method} {path} (from {literal:?}) answered {}",
                        answer.status
                    ));
                }
            }
        }
        assert!(
            undocumented.is_empty(),
            "routes the OpenAPI document lacks:\n{}",
            undocumented.join("\n")
        );
        // Every documented operation was reached as a route.
        assert!(
            routed >= documented.len(),
            "{routed} < {}",
            documented.len()
        );
        h.finish();
    })
    .unwrap();
}

// ---------------------------------------------------------------------------
// The property test.

/// What the property test shares between cases: the gateway, a runtime to
/// drive requests, the document, and the hash of a module uploaded first.
struct World {
    served: Served,
    runtime: tokio::runtime::Runtime,
    doc: Value,
    module_hash: String,
}

impl World {
    /// A gateway with a worker, an uploaded module and three tasks: one
    /// finished with a result, one pending, one to cancel.
    fn start() -> World {
        let served = Served::start("openapi-property");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let router = served.router.clone();
        let module_hash = runtime.block_on(async {
            let stored = send(
                &router,
                Request::post("/modules")
                    .body(Body::from(echo_wasm()))
                    .unwrap(),
            )
            .await;
            assert_eq!(stored.status, StatusCode::CREATED);
            let hash = stored.json()["hash"].as_str().unwrap().to_string();
            for body in [
                json!({"id": "seed-done", "module": hash, "args": [7, 1]}),
                json!({"id": "seed-pending", "module": hash, "start_ms": 3_600_000, "repeats": 3}),
                json!({"id": "seed-cancel", "module": hash, "start_ms": 3_600_000}),
            ] {
                let answer = send(
                    &router,
                    Request::post("/tasks")
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(Body::from(body.to_string()))
                        .unwrap(),
                )
                .await;
                assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.json());
            }
            for _ in 0..600 {
                let task = send(
                    &router,
                    Request::get("/tasks/seed-done")
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .json();
                if task["status"] == "succeeded" {
                    return hash;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            panic!("seed-done never succeeded");
        });
        World {
            served,
            runtime,
            doc: document(),
            module_hash,
        }
    }

    /// Sends `case` through the router locked as a non-loopback API is.
    fn answer(&self, case: &Case) -> Answer {
        let mut request = Request::builder()
            .method(case.method.clone())
            .uri(&case.uri);
        for (name, value) in &case.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request.body(Body::from(case.body.clone())).unwrap();
        let router = lock(
            self.served.router.clone(),
            ApiAccess::new(LISTEN.parse().unwrap(), ApiToken::new(TOKEN).unwrap()),
            HttpLimits::default(),
        );
        self.runtime.block_on(send(&router, request))
    }
}

/// A generated request, and what it was meant to be (for the failure message).
#[derive(Debug)]
struct Case {
    method: Method,
    uri: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    operation: String,
}

/// An integer: small ones for a well-formed case; for a wild one also
/// boundaries and values out of every range.
fn integer(rng: &mut ChaCha8Rng, wild: bool) -> Value {
    if !wild {
        return json!(rng.random_range(1..4));
    }
    match rng.random_range(0..12) {
        0..=5 => json!(rng.random_range(0..4)),
        6 => json!(-1),
        7 => json!(1000),
        8 => json!(u32::MAX),
        9 => json!(u64::MAX),
        10 => json!(i64::MIN),
        _ => json!(1.5),
    }
}

fn text(rng: &mut ChaCha8Rng) -> String {
    match rng.random_range(0..8) {
        0 => String::new(),
        1 => "seed-done".into(),
        2 => "x".repeat(rng.random_range(1..400)),
        3 => "é/\\..%00".into(),
        4 => "run".into(),
        _ => (0..rng.random_range(1..12))
            .map(|_| rng.random_range(b'a'..=b'z') as char)
            .collect(),
    }
}

/// A value for `schema`, mostly of the right shape.
fn generate(doc: &Value, schema: &Value, rng: &mut ChaCha8Rng, wild: bool, depth: u32) -> Value {
    let schema = resolve(doc, schema);
    if let Some(choices) = schema
        .get("oneOf")
        .or_else(|| schema.get("anyOf"))
        .and_then(Value::as_array)
    {
        let pick = &choices[rng.random_range(0..choices.len())];
        return generate(doc, pick, rng, wild, depth + 1);
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        return generate(doc, &all[0], rng, wild, depth + 1);
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        return options[rng.random_range(0..options.len())].clone();
    }
    let kind = match &schema["type"] {
        Value::String(kind) => kind.clone(),
        Value::Array(kinds) => kinds[rng.random_range(0..kinds.len())]
            .as_str()
            .unwrap()
            .to_string(),
        _ => "string".to_string(),
    };
    match kind.as_str() {
        "object" if depth < 4 => {
            let required: BTreeSet<&str> = schema["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let mut object = serde_json::Map::new();
            for (name, property) in schema["properties"].as_object().into_iter().flatten() {
                if required.contains(name.as_str()) || rng.random_bool(0.5) {
                    object.insert(name.clone(), generate(doc, property, rng, wild, depth + 1));
                }
            }
            Value::Object(object)
        }
        "array" if depth < 4 => Value::Array(
            (0..rng.random_range(0..3))
                .map(|_| generate(doc, &schema["items"], rng, wild, depth + 1))
                .collect(),
        ),
        "integer" | "number" => integer(rng, wild),
        "boolean" => json!(rng.random_bool(0.5)),
        "null" => Value::Null,
        _ => json!(text(rng)),
    }
}

/// Breaks `value` the way a careless or hostile client would.
fn mutate(value: &mut Value, rng: &mut ChaCha8Rng) {
    if let Value::Object(map) = value {
        match rng.random_range(0..3) {
            0 => {
                map.insert("bogus".into(), json!(1));
            }
            1 => {
                if let Some(key) = map.keys().next().cloned() {
                    map.insert(key, json!({"nested": [true]}));
                }
            }
            _ => {
                if let Some(key) = map.keys().next().cloned() {
                    map.remove(&key);
                }
            }
        }
    } else {
        *value = json!("not what was asked");
    }
}

fn form_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A multipart body with `fields`; `wasm` goes in a file part.
fn multipart(fields: &BTreeMap<String, Value>, wasm: Option<&[u8]>) -> Vec<u8> {
    const BOUNDARY: &str = "openapi-test-boundary";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{}\r\n",
                form_text(value)
            )
            .as_bytes(),
        );
    }
    if let Some(wasm) = wasm {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"wasm\"; \
                 filename=\"m.wasm\"\r\nContent-Type: application/wasm\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(wasm);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// Module bytes: the echo module, or junk.
fn module_bytes(rng: &mut ChaCha8Rng) -> Vec<u8> {
    if rng.random_bool(0.6) {
        echo_wasm()
    } else {
        let mut junk = vec![0u8; rng.random_range(0..64)];
        rng.fill_bytes(&mut junk);
        junk
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A request for operation `which` of the document, from `seed`.
fn case(world: &World, which: usize, seed: u64) -> Case {
    let doc = &world.doc;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // A third of the cases go wild in every field; the others are
    // well-formed in their numbers, so that they reach past validation.
    let wild = rng.random_bool(0.3);
    let all = operations(doc);
    let (method, template, operation) = &all[which % all.len()];
    let (path, mut query, mut headers) = draw_parameters(doc, template, operation, &mut rng, wild);
    if rng.random_bool(0.1) {
        query.push("bogus=1".into());
    }
    if rng.random_bool(0.05) {
        query.push("%ZZ=%".into());
    }
    match rng.random_range(0..20) {
        0 => {}
        1 => headers.push((
            "authorization".into(),
            "Bearer wrong-token-of-enough-length".into(),
        )),
        _ => headers.push(("authorization".into(), format!("Bearer {TOKEN}"))),
    }
    let host = if rng.random_bool(0.05) {
        "evil.example:8080"
    } else {
        HOST
    };
    headers.push(("host".into(), host.into()));
    let mut body = Vec::new();
    if let Some(content) = operation["requestBody"]["content"].as_object() {
        let kinds: Vec<&String> = content.keys().collect();
        let kind = kinds[rng.random_range(0..kinds.len())].clone();
        let schema = &content[&kind]["schema"];
        let sent_kind = if rng.random_bool(0.05) {
            "text/plain".to_string()
        } else {
            kind.clone()
        };
        if kind == "application/json" {
            body = json_body(world, schema, &mut rng, wild, seed);
            headers.push(("content-type".into(), sent_kind));
        } else if kind == "multipart/form-data" {
            let (form, content_type) = form_body(doc, schema, &mut rng, wild, seed, sent_kind);
            body = form;
            headers.push(("content-type".into(), content_type));
        } else {
            body = module_bytes(&mut rng);
            headers.push(("content-type".into(), sent_kind));
        }
    }
    let uri = if query.is_empty() {
        path
    } else {
        format!("{path}?{}", query.join("&"))
    };
    Case {
        method: method.clone(),
        uri,
        headers,
        body,
        operation: format!("{method} {template}"),
    }
}

/// Operation `operation`'s parameters, drawn: the path with its
/// placeholders filled, the query's fields and the headers.
fn draw_parameters(
    doc: &Value,
    template: &str,
    operation: &Value,
    rng: &mut ChaCha8Rng,
    wild: bool,
) -> (String, Vec<String>, Vec<(String, String)>) {
    let mut path = template.to_string();
    let mut query = Vec::new();
    let mut headers = Vec::new();
    for parameter in operation["parameters"].as_array().into_iter().flatten() {
        let parameter = resolve(doc, parameter);
        let name = parameter["name"].as_str().unwrap();
        match parameter["in"].as_str().unwrap() {
            "path" => {
                let value = match (name, rng.random_range(0..8)) {
                    ("id", 0..=4) => ["seed-done", "seed-pending", "seed-cancel"]
                        [rng.random_range(0..3)]
                    .to_string(),
                    ("index", 0..=4) => rng.random_range(0..2).to_string(),
                    (_, 5) => "%FF%FE".to_string(),
                    (_, 6) => percent_encode("a/b c"),
                    _ => percent_encode(&text(rng)),
                };
                path = path.replace(&format!("{{{name}}}"), &value);
            }
            "query" if rng.random_bool(0.6) => {
                let value = generate(doc, &parameter["schema"], rng, wild, 0);
                query.push(format!("{name}={}", percent_encode(&form_text(&value))));
            }
            "header" if rng.random_bool(0.4) => {
                let value = if rng.random_bool(0.8) {
                    format!("key-{}", rng.random_range(0..4))
                } else {
                    "k".repeat(300)
                };
                headers.push((name.to_string(), value));
            }
            _ => {}
        }
    }
    (path, query, headers)
}

/// A JSON body after `schema`: mostly exactly one module source and a fresh
/// or colliding id; sometimes mutated or cut short.
fn json_body(
    world: &World,
    schema: &Value,
    rng: &mut ChaCha8Rng,
    wild: bool,
    seed: u64,
) -> Vec<u8> {
    let doc = &world.doc;
    let mut value = generate(doc, schema, rng, wild, 0);
    if let Value::Object(map) = &mut value {
        // Mostly exactly one module source, as the schema says in words.
        map.remove("wasm_base64");
        map.remove("module");
        match rng.random_range(0..5) {
            0 | 1 => {
                map.insert("module".into(), json!(world.module_hash));
            }
            2 => {
                let wasm = module_bytes(rng);
                map.insert(
                    "wasm_base64".into(),
                    json!(base64::engine::general_purpose::STANDARD.encode(wasm)),
                );
            }
            3 => {
                map.insert("module".into(), json!(text(rng)));
            }
            _ => {}
        }
        // Generated ids are fresh, or collide (409).
        match rng.random_range(0..5) {
            0 | 1 => drop(map.insert("id".into(), json!(format!("gen-{seed}")))),
            2 | 3 => drop(map.insert("id".into(), json!("seed-pending"))),
            _ => {}
        }
    }
    if rng.random_bool(0.2) {
        mutate(&mut value, rng);
    }
    if rng.random_bool(0.05) {
        b"{\"id\": ".to_vec()
    } else {
        value.to_string().into_bytes()
    }
}

/// A multipart body after `schema`, mostly with a module, and its content
/// type (`sent_kind` if that is not multipart; sometimes without boundary).
fn form_body(
    doc: &Value,
    schema: &Value,
    rng: &mut ChaCha8Rng,
    wild: bool,
    seed: u64,
    sent_kind: String,
) -> (Vec<u8>, String) {
    let value = generate(doc, schema, rng, wild, 0);
    let mut fields: BTreeMap<String, Value> = value
        .as_object()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .collect();
    fields.remove("wasm");
    if fields.contains_key("id") && rng.random_bool(0.5) {
        fields.insert("id".into(), json!(format!("form-{seed}")));
    }
    let wasm = rng.random_bool(0.9).then(|| module_bytes(rng));
    let mut body = multipart(&fields, wasm.as_deref());
    let content_type = if sent_kind == "text/plain" {
        sent_kind
    } else if rng.random_bool(0.05) {
        "multipart/form-data".to_string() // no boundary
    } else {
        "multipart/form-data; boundary=openapi-test-boundary".to_string()
    };
    if rng.random_bool(0.05) {
        body.truncate(body.len() / 2);
    }
    (body, content_type)
}

/// The media type of a `Content-Type` value, without parameters.
fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The document's components with every object schema closed
/// (`unevaluatedProperties: false`), so that an answer carrying a field the
/// document does not name fails. The published document stays open, as
/// clients expect fields to be added; schemas composed with `allOf` are
/// closed at the composition, their members taken from the open copy
/// (`#/components/open/...`).
fn strict_components(doc: &Value) -> Value {
    fn close(schema: &mut Value) {
        let Value::Object(map) = schema else { return };
        if let Some(Value::Array(members)) = map.get_mut("allOf") {
            for member in members.iter_mut() {
                if let Some(Value::String(r)) = member.get_mut("$ref") {
                    *r = r.replace("#/components/schemas/", "#/components/open/");
                }
            }
            map.insert("unevaluatedProperties".into(), Value::Bool(false));
            return;
        }
        if let Some(Value::Object(properties)) = map.get_mut("properties") {
            properties.values_mut().for_each(close);
            map.insert("unevaluatedProperties".into(), Value::Bool(false));
        }
        for key in ["items", "additionalProperties"] {
            if let Some(inner) = map.get_mut(key) {
                close(inner);
            }
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(Value::Array(members)) = map.get_mut(key) {
                members.iter_mut().for_each(close);
            }
        }
    }
    let open = doc["components"]["schemas"].clone();
    let mut closed = open.clone();
    if let Value::Object(schemas) = &mut closed {
        schemas.values_mut().for_each(close);
    }
    json!({ "schemas": closed, "open": open, "responses": doc["components"]["responses"] })
}

/// Checks `answer` against what the document says `operation` answers.
fn check(doc: &Value, case: &Case, answer: &Answer) -> Result<(), String> {
    let shown = || {
        format!(
            "{case:?}\nanswered {} {} {}",
            answer.status,
            answer.content_type,
            String::from_utf8_lossy(&answer.body)
        )
    };
    if answer.status.is_server_error() {
        return Err(format!("a 5xx answer:\n{}", shown()));
    }
    let (method, template) = case.operation.split_once(' ').unwrap();
    let operation = &doc["paths"][template][method.to_ascii_lowercase()];
    let status = answer.status.as_u16().to_string();
    let Some(response) = operation["responses"].get(&status) else {
        return Err(format!("status {status} is not documented:\n{}", shown()));
    };
    let response = resolve(doc, response);
    let Some(content) = response["content"].as_object() else {
        return if answer.body.is_empty() {
            Ok(())
        } else {
            Err(format!("a body where none is documented:\n{}", shown()))
        };
    };
    let got = media_type(&answer.content_type);
    let Some((_, documented)) = content.iter().find(|(kind, _)| media_type(kind) == got) else {
        return Err(format!(
            "content type {got:?} is not among {:?}:\n{}",
            content.keys().collect::<Vec<_>>(),
            shown()
        ));
    };
    if got == "application/json" {
        let body: Value = serde_json::from_slice(&answer.body)
            .map_err(|e| format!("not JSON ({e}):\n{}", shown()))?;
        let mut schema = json!({ "allOf": [documented["schema"].clone()] });
        schema["components"] = strict_components(doc);
        let validator = jsonschema::validator_for(&schema)
            .map_err(|e| format!("the documented schema does not compile: {e}"))?;
        let errors: Vec<String> = validator
            .iter_errors(&body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        if !errors.is_empty() {
            return Err(format!(
                "the body does not match its schema: {errors:?}\n{}",
                shown()
            ));
        }
    } else if std::str::from_utf8(&answer.body).is_err() {
        return Err(format!("a text body that is not UTF-8:\n{}", shown()));
    } else if got == "text/event-stream" {
        // Each frame as the document's `x-item-schema` says: `data:` lines,
        // each one `Event`.
        let frame_schema = &documented["x-item-schema"];
        if !frame_schema.is_object() {
            return Err(format!(
                "an event stream without x-item-schema:\n{}",
                shown()
            ));
        }
        let text = String::from_utf8_lossy(&answer.body);
        let data: Vec<&str> = text
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .map(str::trim_start)
            .collect();
        if data.is_empty() {
            return Err(format!("an event frame without data:\n{}", shown()));
        }
        let mut schema =
            json!({ "allOf": [frame_schema["properties"]["data"]["contentSchema"].clone()] });
        schema["components"] = strict_components(doc);
        let validator = jsonschema::validator_for(&schema)
            .map_err(|e| format!("the event schema does not compile: {e}"))?;
        for line in data {
            let event: Value = serde_json::from_str(line)
                .map_err(|e| format!("event data not JSON ({e}):\n{}", shown()))?;
            let first = validator.iter_errors(&event).next().map(|e| e.to_string());
            if let Some(e) = first {
                return Err(format!("an event off its schema: {e}\n{}", shown()));
            }
        }
    }
    Ok(())
}

#[test]
fn generated_requests_get_documented_answers_and_never_5xx() {
    let world = World::start();
    let operations_total = operations(&world.doc).len();
    let seen: RefCell<BTreeMap<String, BTreeSet<u16>>> = RefCell::default();
    // The same cases on every run unless PROPTEST_RNG_SEED asks for others
    // (and PROPTEST_CASES for more): a long sweep is
    // `PROPTEST_CASES=100000 PROPTEST_RNG_SEED=$RANDOM cargo test --test openapi`.
    let mut config = ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 1500;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(20_261_205);
    }
    let mut runner = TestRunner::new(config);
    let result = runner.run(&(0..operations_total, any::<u64>()), |(which, seed)| {
        let case = case(&world, which, seed);
        let answer = world.answer(&case);
        seen.borrow_mut()
            .entry(case.operation.clone())
            .or_default()
            .insert(answer.status.as_u16());
        check(&world.doc, &case, &answer).map_err(TestCaseError::fail)
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    // The cases reached every operation, successes and many kinds of refusal.
    let seen = seen.into_inner();
    assert_eq!(seen.len(), operations_total, "{seen:?}");
    let all: BTreeSet<u16> = seen.values().flatten().copied().collect();
    for status in [200, 201, 400, 401, 403, 404, 409, 422] {
        assert!(all.contains(&status), "no case answered {status}: {seen:?}");
    }
    drop(world);
}

// ---------------------------------------------------------------------------
// The request side: what the document calls valid is accepted (a success,
// or a refusal the document names for a reason of state or content: 404,
// 409, 422), and what it calls invalid is refused with a 4xx. Values come
// from the document's own schemas (types, bounds, patterns through
// proptest's regex strategies) and each request is held to the document with
// `jsonschema` before it is sent, so the test checks the document and the
// server against each other.

/// Answers a valid request may get besides the operation's successes: refusals
/// of state (no such task: 404; an id or purge in conflict: 409) or of
/// content the schema cannot judge (a module that is not WebAssembly, or not
/// uploaded; a key reused with another body: 422).
const STATE_REFUSALS: [u16; 3] = [404, 409, 422];

/// Values drawn from the document's schemas, one case's worth.
struct Maker<'a> {
    doc: &'a Value,
    rng: ChaCha8Rng,
    runner: TestRunner,
}

/// Compiled validators of the document's schemas, by schema text.
type Validators = RefCell<BTreeMap<String, std::rc::Rc<jsonschema::Validator>>>;

thread_local! {
    static VALIDATORS: Validators = const { RefCell::new(BTreeMap::new()) };
}

/// Whether `value` is valid under `schema`, a schema of `doc` (whose
/// components its `$ref`s name).
fn conforms(doc: &Value, schema: &Value, value: &Value) -> bool {
    let key = schema.to_string();
    let validator = VALIDATORS.with(|cache| {
        cache
            .borrow_mut()
            .entry(key)
            .or_insert_with(|| {
                let mut root = json!({ "allOf": [schema.clone()] });
                root["components"] = doc["components"].clone();
                std::rc::Rc::new(
                    jsonschema::validator_for(&root)
                        .unwrap_or_else(|e| panic!("{schema} does not compile: {e}")),
                )
            })
            .clone()
    });
    validator.is_valid(value)
}

/// Characters a free string is made of: ASCII, and one of each UTF-8 width
/// (lengths are counted in characters, not bytes), and some JSON escapes.
const CHARS: [char; 10] = ['a', 'Z', '7', ' ', 'é', '€', '𝄞', '"', '\\', '\n'];

impl<'a> Maker<'a> {
    fn new(doc: &'a Value, seed: u64) -> Maker<'a> {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
        let rng = proptest::test_runner::TestRng::from_seed(
            proptest::test_runner::RngAlgorithm::ChaCha,
            &bytes,
        );
        Maker {
            doc,
            rng: ChaCha8Rng::seed_from_u64(seed),
            runner: TestRunner::new_with_rng(ProptestConfig::default(), rng),
        }
    }

    fn coin(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    /// A string matching `pattern` (anchored at both ends, as every pattern
    /// of the document is), drawn by proptest's regex strategy.
    fn matching(&mut self, pattern: &str) -> String {
        let inner = pattern
            .strip_prefix('^')
            .and_then(|p| p.strip_suffix('$'))
            .unwrap_or_else(|| panic!("pattern {pattern} is not anchored"));
        let strategy = proptest::string::string_regex(inner)
            .unwrap_or_else(|e| panic!("pattern {pattern}: {e}"));
        proptest::strategy::ValueTree::current(&strategy.new_tree(&mut self.runner).unwrap())
    }

    /// A whole number in `min..=max`, often at or next to a bound.
    fn whole(&mut self, min: i128, max: i128) -> i128 {
        let span = max - min;
        match self.rng.random_range(0..7) {
            0 => min,
            1 => max,
            2 => min + self.rng.random_range(0..=span.min(3) as u64) as i128,
            3 => max - self.rng.random_range(0..=span.min(3) as u64) as i128,
            4 => {
                // Log-uniform: every order of magnitude of the range.
                let span = u64::try_from(span).unwrap_or(u64::MAX);
                let bits = self.rng.random_range(0..=64 - span.leading_zeros());
                let top = if bits >= 64 {
                    span
                } else {
                    ((1u64 << bits) - 1).min(span)
                };
                min + i128::from(self.rng.random_range(0..=top))
            }
            _ => min + self.rng.random_range(0..=span.min(100) as u64) as i128,
        }
    }

    /// A valid value of `schema`.
    fn valid(&mut self, schema: &Value) -> Value {
        let schema = resolve(self.doc, schema).clone();
        if let Some(members) = schema.get("allOf").and_then(Value::as_array) {
            // Drawn from the member with the properties, and kept only if it
            // also satisfies the others (the one-of of a submission).
            let base = members
                .iter()
                .find(|m| resolve(self.doc, m).get("properties").is_some())
                .unwrap_or(&members[0])
                .clone();
            for _ in 0..256 {
                let value = self.valid(&base);
                if conforms(self.doc, &schema, &value) {
                    return value;
                }
            }
            panic!("no valid value of {schema} in 256 draws");
        }
        if let Some(choices) = schema
            .get("oneOf")
            .or_else(|| schema.get("anyOf"))
            .and_then(Value::as_array)
        {
            let pick = choices[self.rng.random_range(0..choices.len())].clone();
            return self.valid(&pick);
        }
        if let Some(options) = schema.get("enum").and_then(Value::as_array) {
            return options[self.rng.random_range(0..options.len())].clone();
        }
        let kind = match &schema["type"] {
            Value::String(kind) => kind.clone(),
            Value::Array(kinds) => kinds[self.rng.random_range(0..kinds.len())]
                .as_str()
                .unwrap()
                .to_string(),
            other => panic!("a schema without a type: {schema} ({other})"),
        };
        let bound = |key: &str, default: i128| {
            schema[key]
                .as_i64()
                .map(i128::from)
                .or_else(|| schema[key].as_u64().map(i128::from))
                .unwrap_or(default)
        };
        match kind.as_str() {
            "null" => Value::Null,
            "boolean" => json!(self.coin(0.5)),
            "integer" => {
                let n = self.whole(
                    bound("minimum", i128::from(i64::MIN)),
                    bound("maximum", i128::from(u64::MAX)),
                );
                match i64::try_from(n) {
                    Ok(n) => json!(n),
                    Err(_) => json!(u64::try_from(n).unwrap()),
                }
            }
            "string" => {
                let lengths = (bound("minLength", 0), bound("maxLength", 64));
                self.valid_string(&schema, lengths)
            }
            "array" => {
                let max = bound("maxItems", 8);
                let len = if self.coin(0.2) {
                    max
                } else {
                    self.whole(bound("minItems", 0), max.min(4))
                };
                Value::Array((0..len).map(|_| self.valid(&schema["items"])).collect())
            }
            "object" => self.valid_object(&schema),
            other => panic!("a type the generator does not know: {other}"),
        }
    }

    /// A valid string of `schema`, its length in `(min, max)`: matching its
    /// pattern if it has one.
    fn valid_string(&mut self, schema: &Value, (min, max): (i128, i128)) -> Value {
        if let Some(pattern) = schema["pattern"].as_str() {
            for _ in 0..64 {
                let text = self.matching(pattern);
                let chars = text.chars().count() as i128;
                if (min..=max).contains(&chars) {
                    return json!(text);
                }
            }
            panic!("no string of {schema} in 64 draws");
        }
        let len = match self.rng.random_range(0..4) {
            0 => min,
            1 => max,
            _ => self.whole(min, max.min(min + 16)),
        };
        let text: String = (0..len)
            .map(|_| CHARS[self.rng.random_range(0..CHARS.len())])
            .collect();
        json!(text)
    }

    /// A valid object of `schema`: its required properties, and each other one
    /// by a coin.
    fn valid_object(&mut self, schema: &Value) -> Value {
        let required: BTreeSet<String> = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        let mut object = serde_json::Map::new();
        for (name, property) in schema["properties"].as_object().into_iter().flatten() {
            if required.contains(name) || self.coin(0.5) {
                object.insert(name.clone(), self.valid(property));
            }
        }
        Value::Object(object)
    }

    /// Ways to break `value` that the document forbids (each checked: the
    /// document calls the result invalid), named, in a random order.
    fn invalid(&mut self, schema: &Value, value: &Value) -> Vec<(String, Value)> {
        let schema = resolve(self.doc, schema).clone();
        let mut ways: Vec<(String, Value)> = Vec::new();
        if let Some(below) = schema["minimum"].as_i64().and_then(|m| m.checked_sub(1)) {
            ways.push(("below minimum".into(), json!(below)));
        }
        if let Some(max) = schema["maximum"].as_u64().filter(|m| *m < u64::MAX) {
            ways.push(("above maximum".into(), json!(max + 1)));
        }
        if schema["type"] == "integer" {
            ways.push(("not an integer".into(), json!(1.5)));
            ways.push(("a string for an integer".into(), json!("7")));
        }
        if let Some(max) = schema["maxLength"].as_u64() {
            ways.push(("too long".into(), json!("x".repeat(max as usize + 1))));
        }
        if schema["minLength"].as_u64() == Some(1) {
            ways.push(("empty".into(), json!("")));
        }
        if let (Some(pattern), Some(text)) = (schema["pattern"].as_str(), value.as_str()) {
            for bad in [" ", "!", "é", "/"] {
                let mut broken = text.to_string();
                let mut at = self.rng.random_range(0..=text.len());
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                broken.insert_str(at, bad);
                ways.push((format!("off pattern {pattern}"), json!(broken)));
            }
        }
        if let (Some(max), Some(items)) = (schema["maxItems"].as_u64(), value.as_array()) {
            let item = items.first().cloned().unwrap_or(json!(1));
            ways.push(("too many items".into(), json!(vec![item; max as usize + 1])));
        }
        if let Some(options) = schema.get("enum").and_then(Value::as_array) {
            if options.iter().all(Value::is_string) {
                ways.push(("not in the enum".into(), json!("bogus")));
            }
        }
        if schema.get("anyOf").is_some() {
            ways.push(("none of anyOf".into(), json!("bogus")));
        }
        if schema["type"] == "string" {
            ways.push(("null for a string".into(), Value::Null));
        }
        let mut ways: Vec<(String, Value)> = ways
            .into_iter()
            .filter(|(_, broken)| !conforms(self.doc, &schema, broken))
            .collect();
        // Shuffled, so each way gets its turn.
        for i in (1..ways.len()).rev() {
            let j = self.rng.random_range(0..=i);
            ways.swap(i, j);
        }
        ways
    }
}

/// A parameter's or form field's text as the document judges it: the
/// number or boolean it spells where the schema wants one, else the text.
fn as_sent(doc: &Value, schema: &Value, text: &str) -> Value {
    let schema = resolve(doc, schema);
    if matches!(schema["type"].as_str(), Some("integer" | "boolean")) {
        if let Ok(value @ (Value::Number(_) | Value::Bool(_))) = serde_json::from_str(text) {
            return value;
        }
    }
    json!(text)
}

/// What one request is meant to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Intent {
    /// Valid by the document: answered with a success or a state refusal.
    Valid,
    /// Invalid in its path: refused, 404 (no task or run is named by it).
    BadPath,
    /// Invalid in its query, a header or its body: refused, 400.
    BadShape,
}

/// A request made from the document for operation `which`, valid, or with
/// one part broken (the document calls the result invalid).
fn documented_case(
    world: &World,
    which: usize,
    seed: u64,
    break_it: bool,
) -> (Case, Intent, String) {
    let doc = &world.doc;
    let all = operations(doc);
    let (method, template, operation) = &all[which % all.len()];
    let mut maker = Maker::new(doc, seed);
    // Where a break goes: one of the parameters, or the body.
    let parameters: Vec<Value> = operation["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| resolve(doc, p).clone())
        .collect();
    let has_body = operation["requestBody"]["content"].is_object();
    let targets = parameters.len() + usize::from(has_body);
    let broken_at = (break_it && targets > 0).then(|| maker.rng.random_range(0..targets));
    let mut intent = Intent::Valid;
    let mut how = String::new();
    let mut path = template.clone();
    let mut query = Vec::new();
    let mut headers = vec![
        ("authorization".to_string(), format!("Bearer {TOKEN}")),
        ("host".to_string(), HOST.to_string()),
    ];
    for (i, parameter) in parameters.iter().enumerate() {
        let name = parameter["name"].as_str().unwrap();
        let place = parameter["in"].as_str().unwrap();
        let broken = broken_at == Some(i);
        let Some(value) =
            documented_parameter(&mut maker, parameter, broken, &mut intent, &mut how)
        else {
            continue;
        };
        let text = percent_encode(&form_text(&value));
        match place {
            "path" => path = path.replace(&format!("{{{name}}}"), &text),
            "query" => query.push(format!("{name}={text}")),
            "header" => headers.push((name.to_string(), form_text(&value))),
            other => panic!("parameter in {other}"),
        }
    }
    let mut body = Vec::new();
    if let Some(content) = operation["requestBody"]["content"].as_object() {
        let kinds: Vec<&String> = content.keys().collect();
        let kind = kinds[maker.rng.random_range(0..kinds.len())].clone();
        let schema = resolve(doc, &content[&kind]["schema"]).clone();
        let break_body = broken_at == Some(parameters.len());
        if kind == "application/json" {
            body = documented_json(
                world,
                &mut maker,
                &schema,
                break_body,
                &mut intent,
                &mut how,
            );
            headers.push(("content-type".into(), kind.clone()));
        } else if kind == "multipart/form-data" {
            body = documented_form(&mut maker, &schema, break_body, &mut intent, &mut how);
            headers.push((
                "content-type".into(),
                "multipart/form-data; boundary=openapi-test-boundary".into(),
            ));
        } else {
            body = if maker.coin(0.7) {
                echo_wasm()
            } else {
                b"not a module".to_vec()
            };
            headers.push(("content-type".into(), kind.clone()));
        }
    }
    let uri = if query.is_empty() {
        path
    } else {
        format!("{path}?{}", query.join("&"))
    };
    let case = Case {
        method: method.clone(),
        uri,
        headers,
        body,
        operation: format!("{method} {template}"),
    };
    (case, intent, how)
}

/// A value of `parameter` as the document allows it (often naming a stored
/// task or run), or broken when `broken`, which sets `intent` and `how`;
/// `None` when the optional parameter is left out.
fn documented_parameter(
    maker: &mut Maker,
    parameter: &Value,
    broken: bool,
    intent: &mut Intent,
    how: &mut String,
) -> Option<Value> {
    let doc = maker.doc;
    let name = parameter["name"].as_str().unwrap();
    let schema = &parameter["schema"];
    let place = parameter["in"].as_str().unwrap();
    let required = parameter["required"] == true || place == "path";
    let mut value = maker.valid(schema);
    // Reach stored tasks and runs too, not only ids nobody made.
    if name == "id" && maker.coin(0.6) {
        value = json!(["seed-done", "seed-pending", "seed-cancel"][maker.rng.random_range(0..3)]);
    }
    if name == "index" && maker.coin(0.6) {
        value = json!(maker.rng.random_range(0..3));
    }
    if broken {
        // As text, which is what a parameter is: a break must still be
        // one once written down ("7" is the integer 7).
        let breaks = maker
            .invalid(schema, &value)
            .into_iter()
            .find(|(_, broken)| !conforms(doc, schema, &as_sent(doc, schema, &form_text(broken))));
        match breaks {
            Some((way, bad)) => {
                *how = format!("{place} {name}: {way} ({bad})");
                value = bad;
                *intent = if place == "path" {
                    Intent::BadPath
                } else {
                    Intent::BadShape
                };
            }
            None => *how = format!("{place} {name}: nothing to break"),
        }
    } else if !required && maker.coin(0.4) {
        return None;
    }
    let sent = as_sent(doc, schema, &form_text(&value));
    assert_eq!(
        conforms(doc, schema, &sent),
        *intent == Intent::Valid || !broken,
        "{name} = {sent}: the document's judgement is not the one meant"
    );
    Some(value)
}

/// A JSON submission valid by `schema` that reaches past the module checks,
/// or broken when `break_body` (which sets `intent` and `how`).
fn documented_json(
    world: &World,
    maker: &mut Maker,
    schema: &Value,
    break_body: bool,
    intent: &mut Intent,
    how: &mut String,
) -> Vec<u8> {
    let doc = &world.doc;
    let mut value = maker.valid(schema);
    let object = value.as_object_mut().unwrap();
    // Reach past the module checks: the uploaded module, the echo
    // module's bytes (both still match their patterns); a few runs.
    if object.get("module").is_some_and(Value::is_string) && maker.coin(0.7) {
        object.insert("module".into(), json!(world.module_hash));
    }
    if object.get("wasm_base64").is_some_and(Value::is_string) && maker.coin(0.7) {
        let wasm = base64::engine::general_purpose::STANDARD.encode(echo_wasm());
        object.insert("wasm_base64".into(), json!(wasm));
    }
    if maker.coin(0.2) {
        object.insert("id".into(), json!("seed-pending"));
    }
    if object.get("repeats").and_then(Value::as_u64).unwrap_or(1) > 4 {
        let start = object.get("start_ms").and_then(Value::as_u64).unwrap_or(0);
        object.insert("start_ms".into(), json!(start.max(3_600_000)));
    }
    assert!(
        conforms(doc, schema, &value),
        "body off its schema: {value}"
    );
    if break_body {
        *how = break_submission(maker, schema, &mut value);
        assert!(!conforms(doc, schema, &value), "{how}: {value} still valid");
        *intent = Intent::BadShape;
    }
    value.to_string().into_bytes()
}

/// A form valid by `schema` with the echo module (or bytes that are not a
/// module), or broken when `break_body` (which sets `intent` and `how`).
fn documented_form(
    maker: &mut Maker,
    schema: &Value,
    break_body: bool,
    intent: &mut Intent,
    how: &mut String,
) -> Vec<u8> {
    let doc = maker.doc;
    let mut value = maker.valid(schema);
    let object = value.as_object_mut().unwrap();
    if maker.coin(0.2) {
        object.insert("id".into(), json!("seed-pending"));
    }
    if object.get("repeats").and_then(Value::as_u64).unwrap_or(1) > 4 {
        let start = object.get("start").and_then(Value::as_u64).unwrap_or(0);
        object.insert("start".into(), json!(start.max(3_600)));
    }
    let wasm = if maker.coin(0.8) {
        echo_wasm()
    } else {
        b"not a module".to_vec()
    };
    object.insert("wasm".into(), json!("(the file)"));
    assert!(
        conforms(doc, schema, &value),
        "form off its schema: {value}"
    );
    if break_body {
        *how = break_form(maker, schema, &mut value);
        *intent = Intent::BadShape;
    }
    let mut fields: BTreeMap<String, Value> = value
        .as_object()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .collect();
    fields.remove("wasm");
    multipart(&fields, Some(&wasm))
}

/// Breaks one field of a valid form `value` (text, as every field is), or
/// leaves out its required `input`; returns how.
fn break_form(maker: &mut Maker, schema: &Value, value: &mut Value) -> String {
    let doc = maker.doc;
    let how;
    let fields: Vec<String> = schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| *k != "wasm")
        .cloned()
        .collect();
    let field = fields[maker.rng.random_range(0..fields.len())].clone();
    let field_schema = schema["properties"][&field].clone();
    let current = value.get(&field).cloned().unwrap_or(Value::Null);
    // Fields are text too.
    let broken = maker
        .invalid(&field_schema, &current)
        .into_iter()
        .filter(|(_, b)| !b.is_null())
        .find(|(_, b)| {
            !conforms(
                doc,
                &field_schema,
                &as_sent(doc, &field_schema, &form_text(b)),
            )
        });
    match broken {
        Some((way, broken)) => {
            how = format!("form field {field}: {way} ({broken})");
            value[&field] = as_sent(doc, &field_schema, &form_text(&broken));
        }
        None => {
            how = "form without its required field input".into();
            value.as_object_mut().unwrap().remove("input");
        }
    }
    assert!(!conforms(doc, schema, value), "{how}: still valid");
    how
}

/// Breaks a valid JSON submission one way its schema forbids: a field out of
/// its bounds or pattern, an unknown field, both or neither of `module` and
/// `wasm_base64`. Returns how.
fn break_submission(maker: &mut Maker, schema: &Value, value: &mut Value) -> String {
    let doc = maker.doc;
    let schema = resolve(doc, schema).clone();
    let object_schema = schema["allOf"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m.get("properties").is_some()))
        .cloned()
        .unwrap_or(schema.clone());
    let object = value.as_object_mut().unwrap();
    match maker.rng.random_range(0..6) {
        0 => {
            object.insert("bogus".into(), json!(1));
            "an unknown field".into()
        }
        1 => {
            object.insert("module".into(), json!("00".repeat(32)));
            object.insert(
                "wasm_base64".into(),
                json!(base64::engine::general_purpose::STANDARD.encode(echo_wasm())),
            );
            "both module and wasm_base64".into()
        }
        2 => {
            object.remove("module");
            if maker.coin(0.5) {
                object.insert("wasm_base64".into(), Value::Null);
            } else {
                object.remove("wasm_base64");
            }
            "neither module nor wasm_base64".into()
        }
        _ => {
            let properties = object_schema["properties"].as_object().unwrap();
            let names: Vec<&String> = properties.keys().collect();
            for _ in 0..32 {
                let name = names[maker.rng.random_range(0..names.len())].clone();
                let current = object.get(&name).cloned().unwrap_or_else(|| {
                    // A field left out: break a valid value of it instead.
                    maker.valid(&properties[&name])
                });
                if let Some((way, broken)) = maker.invalid(&properties[&name], &current).pop() {
                    // `null` is the absence of `module` or `wasm_base64`.
                    if broken.is_null() && (name == "module" || name == "wasm_base64") {
                        continue;
                    }
                    object.insert(name.clone(), broken.clone());
                    return format!("field {name}: {way} ({broken})");
                }
            }
            object.insert("repeats".into(), json!(0));
            "field repeats: below minimum (0)".into()
        }
    }
}

#[test]
fn requests_the_document_calls_valid_are_accepted_and_invalid_ones_refused() {
    let world = World::start();
    // Operations with more to get right come up more often: a submission
    // most, then those with parameters or a body.
    let weighted = weighted_operations(&world.doc);
    let seen: RefCell<BTreeMap<(Intent, u16), usize>> = RefCell::default();
    let breaks: RefCell<BTreeSet<String>> = RefCell::default();
    let mut config = ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 1500;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(20_261_206);
    }
    let mut runner = TestRunner::new(config);
    let result = runner.run(
        &(0..weighted.len(), any::<u64>(), any::<bool>()),
        |(pick, seed, break_it)| {
            let (case, intent, how) = documented_case(&world, weighted[pick], seed, break_it);
            let answer = world.answer(&case);
            let status = answer.status.as_u16();
            seen.borrow_mut()
                .entry((intent, status))
                .and_modify(|n| *n += 1)
                .or_insert(1);
            if intent != Intent::Valid {
                // "where: way (value)" without the value.
                let named = how.split(" (").next().unwrap_or(&how).to_string();
                breaks.borrow_mut().insert(named);
            }
            judge(&world, &case, intent, &how, &answer)
        },
    );
    if let Err(failure) = result {
        panic!("{failure}");
    }
    let seen = seen.into_inner();
    let breaks = breaks.into_inner();
    eprintln!("answers by intent: {seen:?}\nbreaks tried: {breaks:#?}");
    assert_coverage(&seen, &breaks);
    drop(world);
}

/// Each operation's index, repeated by its weight: operations with more to
/// get right come up more often (a submission most, then those with
/// parameters or a body).
fn weighted_operations(doc: &Value) -> Vec<usize> {
    operations(doc)
        .iter()
        .enumerate()
        .flat_map(|(i, (method, path, operation))| {
            let weight = if method == Method::POST && path == "/tasks" {
                12
            } else if operation["requestBody"].is_object() || path == "/tasks" {
                4
            } else if operation["parameters"]
                .as_array()
                .is_some_and(|p| !p.is_empty())
            {
                3
            } else {
                1
            };
            std::iter::repeat_n(i, weight)
        })
        .collect()
}

/// Judges `answer` to `case`, meant as `intent` (broken `how`): a valid request
/// succeeds or meets a documented state refusal, a bad path is 404, a bad
/// shape 400; the answer matches its documented shape.
fn judge(
    world: &World,
    case: &Case,
    intent: Intent,
    how: &str,
    answer: &Answer,
) -> Result<(), TestCaseError> {
    let status = answer.status.as_u16();
    let shown = || {
        format!(
            "{intent:?} {how}\n{} {} {:?}\n{}\nanswered {status} {}",
            case.method,
            case.uri,
            case.headers,
            String::from_utf8_lossy(&case.body),
            String::from_utf8_lossy(&answer.body)
        )
    };
    let (method, template) = case.operation.split_once(' ').unwrap();
    let responses = &world.doc["paths"][template][method.to_ascii_lowercase()]["responses"];
    match intent {
        Intent::Valid => {
            let success = (200..300).contains(&status);
            let state =
                STATE_REFUSALS.contains(&status) && responses.get(status.to_string()).is_some();
            prop_assert!(
                success || state,
                "a request the document calls valid was refused:\n{}",
                shown()
            );
        }
        Intent::BadPath => prop_assert!(
            status == 404,
            "a path the document calls invalid was not refused with 404:\n{}",
            shown()
        ),
        Intent::BadShape => prop_assert!(
            status == 400,
            "a request the document calls invalid was not refused with 400:\n{}",
            shown()
        ),
    }
    check(&world.doc, case, answer).map_err(TestCaseError::fail)
}

/// Valid requests reached successes and state refusals; broken ones of every
/// kind were refused.
fn assert_coverage(seen: &BTreeMap<(Intent, u16), usize>, breaks: &BTreeSet<String>) {
    for wanted in [
        (Intent::Valid, 200),
        (Intent::Valid, 201),
        (Intent::Valid, 404),
        (Intent::Valid, 409),
        (Intent::Valid, 422),
        (Intent::BadPath, 404),
        (Intent::BadShape, 400),
    ] {
        assert!(seen.contains_key(&wanted), "no {wanted:?}: {seen:?}");
    }
    let tried = |what: &str| breaks.iter().any(|b| b.contains(what));
    for wanted in [
        "query offset: above maximum",
        "query limit: ",
        "query runs_offset: above maximum",
        "query after: ",
        "query status: ",
        "path id: ",
        "path index: ",
        "header Idempotency-Key: ",
        "both module and wasm_base64",
        "neither module nor wasm_base64",
        "an unknown field",
        ": above maximum",
        ": below minimum",
        ": off pattern",
        "form field ",
    ] {
        assert!(tried(wanted), "no break {wanted:?} was tried: {breaks:#?}");
    }
}
