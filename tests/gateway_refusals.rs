//! The gateway's REST API refusing bad requests: every malformed or out-of-range
//! field is answered with the JSON error shape and changes nothing.

use axum::http::StatusCode;
use base64::Engine as _;
use serde_json::{json, Value};
use ww::rpc;
use ww_sched::sched::types::REPEATS_MAX;
use ww_sched::tasks::HASH_PUZZLE_WASM;

mod gateway_support;

use gateway_support::*;

#[test]
fn bad_requests_are_refused_with_the_error_shape_and_change_nothing() {
    rpc::block_on_local(async {
        let h = Harness::start("bad", None).await;
        submit_pending(&h, "existing").await;
        let before = h.all_tasks().await;
        let (_, module) = h.upload(HASH_PUZZLE_WASM).await;
        let hash = module["hash"].as_str().unwrap().to_string();
        form_refusals(&h, &before).await;
        multipart_refusals(&h, &before).await;
        json_refusals(&h, &before, &hash).await;
        header_refusals(&h, &before, &hash).await;
        module_refusals(&h).await;
        lookup_refusals(&h).await;
        assert_eq!(
            h.all_tasks().await,
            before,
            "a refused request changed the tasks"
        );
        h.finish();
    })
    .unwrap();
}

/// The original form: every malformed or out-of-range field is refused.
async fn form_refusals(h: &Harness, before: &Value) {
    let repeats_over = (u64::from(REPEATS_MAX) + 1).to_string();
    let repeats_u32_over = (u64::from(u32::MAX) + 1).to_string();
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
        bad(
            "input not numeric",
            form("f4", &[("input", "seven")]),
            "input",
        ),
        bad("input missing", form("f5", &[("input", "")]), "input"),
        bad(
            "difficulty not numeric",
            form("f6", &[("difficulty", "3.5")]),
            "difficulty",
        ),
        bad(
            "repeats negative",
            form("f7", &[("repeats", "-1")]),
            "repeats",
        ),
        bad("repeats zero", form("f8", &[("repeats", "0")]), "repeats"),
        bad(
            "repeats over the limit",
            form("f9", &[("repeats", &repeats_over)]),
            "repeats",
        ),
        bad(
            "repeats over u32",
            form("f10", &[("repeats", &repeats_u32_over)]),
            "repeats",
        ),
        bad("delay negative", form("f11", &[("delay", "-5")]), "delay"),
        bad("start negative", form("f12", &[("start", "-5")]), "start"),
        bad(
            "duration not numeric",
            form("f13", &[("duration", "soon")]),
            "duration",
        ),
        bad(
            "duration zero",
            form("f14", &[("duration", "0")]),
            "duration",
        ),
        bad(
            "duration over a day",
            form("f15", &[("duration", "86401")]),
            "duration",
        ),
        bad(
            "start over a year",
            form("f16", &[("start", "31536001")]),
            "start",
        ),
        bad(
            "start overflows ms",
            form("f17", &[("start", "18446744073709551615")]),
            "start",
        ),
        bad(
            "complete negative",
            form("f18", &[("complete", "-1")]),
            "complete",
        ),
        bad("bad id", form("bad id!", &[]), "id"),
    ];
    for (what, fields, module, status, kind, needle) in form_cases {
        let (got, _, body) = h.post_form(&fields, module).await;
        assert_error(what, (got, &body), status, kind, needle);
        assert_eq!(h.all_tasks().await, *before, "{what} changed the tasks");
    }
}

/// A multipart body without a boundary, and a truncated one.
async fn multipart_refusals(h: &Harness, before: &Value) {
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
    let mut truncated = multipart(&form("f19", &[]), Some(HASH_PUZZLE_WASM));
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
    assert_eq!(h.all_tasks().await, *before);
}

/// JSON submissions: malformed, of the wrong shape, or out of range.
async fn json_refusals(h: &Harness, before: &Value, hash: &str) {
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
        bad_json(
            "unknown field",
            json!({ "module": hash, "args": [1, 1], "colour": "red" }),
            "colour",
        ),
        bad_json(
            "wrong type",
            json!({ "module": hash, "args": "1, 1" }),
            "args",
        ),
        bad_json(
            "negative repeats",
            json!({ "module": hash, "repeats": -1 }),
            "repeats",
        ),
        bad_json(
            "repeats over the limit",
            json!({ "module": hash, "repeats": REPEATS_MAX + 1 }),
            "repeats",
        ),
        bad_json(
            "negative delay",
            json!({ "module": hash, "delay_ms": -1 }),
            "delay_ms",
        ),
        bad_json(
            "duration not numeric",
            json!({ "module": hash, "duration_ms": "30s" }),
            "duration_ms",
        ),
        bad_json(
            "neither module nor bytes",
            json!({ "args": [1, 1] }),
            "wasm_base64",
        ),
        bad_json(
            "both module and bytes",
            json!({ "module": hash, "wasm_base64": b64 }),
            "wasm_base64",
        ),
        bad_json("bad hash", json!({ "module": "xyz" }), "xyz"),
        bad_json("bad base64", json!({ "wasm_base64": "!!!" }), "wasm_base64"),
        (
            "base64 of non-wasm",
            json!({ "wasm_base64": "aGVsbG8=" })
                .to_string()
                .into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable",
            "webassembly",
        ),
        bad_json("bad id", json!({ "id": "a/b", "module": hash }), "id"),
        bad_json(
            "empty export",
            json!({ "module": hash, "export": "" }),
            "export",
        ),
    ];
    for (what, body, status, kind, needle) in json_cases {
        let (got, _, answer) = h.post("/tasks", Some("application/json"), &[], body).await;
        assert_error(what, (got, &answer), status, kind, needle);
        assert_eq!(h.all_tasks().await, *before, "{what} changed the tasks");
    }
}

/// Content types other than JSON and multipart, and an empty idempotency key.
async fn header_refusals(h: &Harness, before: &Value, hash: &str) {
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
    assert_eq!(h.all_tasks().await, *before);
}

/// Modules that are not WebAssembly.
async fn module_refusals(h: &Harness) {
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
}

/// Unknown tasks and bad list queries are refused; queries at the bounds are answered.
async fn lookup_refusals(h: &Harness) {
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
        // Past the bound: page with the cursor.
        ("/tasks?offset=10001", "after"),
        ("/tasks?limit=0", "limit"),
        ("/tasks?limit=1001", "limit"),
        ("/tasks?after=a%20b", "after"),
        ("/tasks?after=%C3%BC", "after"),
        ("/tasks/nope?runs_offset=10001", "runs_offset"),
        ("/tasks/nope?runs_limit=1001", "runs_limit"),
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

    // At the bounds, answered.
    for uri in ["/tasks?offset=10000&limit=1000", "/tasks?after="] {
        let (status, _) = h.get(uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
    }
    let (status, _) = h.get("/tasks/nope?runs_offset=10000").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "in bounds: the task is looked for"
    );
}

/// A form with the module refused as a bad request, its detail mentioning `needle`.
fn bad<'a>(what: &'a str, fields: Vec<(&'a str, &'a str)>, needle: &'a str) -> FormCase<'a> {
    let wasm = Some(HASH_PUZZLE_WASM);
    (
        what,
        fields,
        wasm,
        StatusCode::BAD_REQUEST,
        "bad_request",
        needle,
    )
}

/// A JSON body refused as a bad request, its detail mentioning `needle`.
fn bad_json<'a>(
    what: &'a str,
    body: Value,
    needle: &'a str,
) -> (&'a str, Vec<u8>, StatusCode, &'a str, &'a str) {
    let body = body.to_string().into_bytes();
    (what, body, StatusCode::BAD_REQUEST, "bad_request", needle)
}
