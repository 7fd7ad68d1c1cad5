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
    let mut path = template.clone();
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
                    _ => percent_encode(&text(&mut rng)),
                };
                path = path.replace(&format!("{{{name}}}"), &value);
            }
            "query" if rng.random_bool(0.6) => {
                let value = generate(doc, &parameter["schema"], &mut rng, wild, 0);
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
            let mut value = generate(doc, schema, &mut rng, wild, 0);
            if let Value::Object(map) = &mut value {
                // Mostly exactly one module source, as the schema says in words.
                map.remove("wasm_base64");
                map.remove("module");
                match rng.random_range(0..5) {
                    0 | 1 => {
                        map.insert("module".into(), json!(world.module_hash));
                    }
                    2 => {
                        let wasm = module_bytes(&mut rng);
                        map.insert(
                            "wasm_base64".into(),
                            json!(base64::engine::general_purpose::STANDARD.encode(wasm)),
                        );
                    }
                    3 => {
                        map.insert("module".into(), json!(text(&mut rng)));
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
                mutate(&mut value, &mut rng);
            }
            body = if rng.random_bool(0.05) {
                b"{\"id\": ".to_vec()
            } else {
                value.to_string().into_bytes()
            };
            headers.push(("content-type".into(), sent_kind));
        } else if kind == "multipart/form-data" {
            let value = generate(doc, schema, &mut rng, wild, 0);
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
            let wasm = rng.random_bool(0.9).then(|| module_bytes(&mut rng));
            body = multipart(&fields, wasm.as_deref());
            let content_type = if sent_kind == "text/plain" {
                sent_kind
            } else if rng.random_bool(0.05) {
                "multipart/form-data".to_string() // no boundary
            } else {
                "multipart/form-data; boundary=openapi-test-boundary".to_string()
            };
            headers.push(("content-type".into(), content_type));
            if rng.random_bool(0.05) {
                body.truncate(body.len() / 2);
            }
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
