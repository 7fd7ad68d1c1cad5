//! The gateway's REST API, driven in-process through its router: submissions
//! (the original multipart form, JSON by hash or base64), idempotent retries,
//! oversized bodies, cancel, listing and pagination, and a run that finishes on
//! a real worker registered over libp2p on loopback. Refusals of bad fields are
//! in `gateway_refusals.rs`.

use axum::http::{header, StatusCode};
use base64::Engine as _;
use serde_json::json;
use ww::rpc;
use ww_sched::tasks::{hash_puzzle, HASH_PUZZLE_WASM};

mod gateway_support;

use gateway_support::*;

#[test]
fn health_workers_and_cluster_without_workers() {
    rpc::block_on_local(async {
        let h = Harness::start("health", None).await;
        let (status, body) = h.get("/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "ok", "{body}");
        assert_eq!(body["store_error"], json!(null), "{body}");
        assert_eq!(body["open_tasks"], 0, "{body}");
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

        // One worker registers through the gateway's channel.
        let (worker_peer, registration) = h.start_worker(2).await;
        let (_, workers) = h.get("/workers").await;
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
        let (status, body) = h.get("/tasks?limit=0").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let (_, page) = h.get("/tasks?after=a-puzzle").await;
        assert_eq!(
            ids(&page),
            ["b-later"],
            "a cursor: ids after the last one seen"
        );

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
