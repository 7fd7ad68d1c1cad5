//! The gateway's REST API refusing bad requests: every malformed or out-of-range
//! field is answered with the JSON error shape and changes nothing.

use axum::http::StatusCode;
use base64::Engine as _;
use serde_json::json;
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

        assert_eq!(
            h.all_tasks().await,
            before,
            "a refused request changed the tasks"
        );
        h.finish();
    })
    .unwrap();
}
