//! A gateway that runs for months: only unfinished tasks count against a
//! limit (503 busy beyond it), finished tasks leave memory and are served from
//! the store until retention deletes them (by age or count), a finished task
//! can be purged now, unused modules are collected after their grace, runs
//! come in pages (one run with its stdout), and a restart loads unfinished
//! tasks only.

use std::time::{Duration, Instant};

use axum::http::{header, StatusCode};
use serde_json::{json, Value};
use ww::rpc;
use ww_sched::gateway::{Retention, RETRY_AFTER_S};
use ww_sched::tasks::HASH_PUZZLE_WASM;

mod gateway_support;

use gateway_support::*;

/// A JSON submission of one hash puzzle by module hash.
fn puzzle(id: &str, module: &str, start_ms: u64, repeats: u32) -> Value {
    json!({
        "id": id, "module": module, "args": [7, 1],
        "start_ms": start_ms, "repeats": repeats,
    })
}

async fn upload_puzzle(h: &Harness) -> String {
    let (status, body) = h.upload(HASH_PUZZLE_WASM).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["hash"].as_str().unwrap().to_string()
}

/// Polls `uri` until `done` holds for its answer, or fails after 30 s.
async fn wait_for(h: &Harness, uri: &str, done: impl Fn(StatusCode, &Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = h.get(uri).await;
        if done(status, &body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{uri}: still {status} {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn only_unfinished_tasks_count_and_a_full_gateway_says_busy() {
    rpc::block_on_local(async {
        let h = Harness::start_with("busy", |c| c.sched.open_tasks_max = 2).await;
        let module = upload_puzzle(&h).await;
        for id in ["a", "b"] {
            let (status, _, body) = h.post_json(&puzzle(id, &module, 86_400_000, 1), &[]).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
        let (status, headers, body) = h.post_json(&puzzle("c", &module, 0, 1), &[]).await;
        assert_error(
            "at the limit",
            (status, &body),
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "unfinished",
        );
        assert_eq!(headers[header::RETRY_AFTER], RETRY_AFTER_S.to_string());
        assert_eq!(
            h.get("/tasks/c").await.0,
            StatusCode::NOT_FOUND,
            "nothing was created"
        );
        // A finished task leaves the count (and memory) once stored final.
        let (status, cancelled) = h.delete("/tasks/a").await;
        assert_eq!(
            (status, &cancelled["status"]),
            (StatusCode::OK, &json!("cancelled"))
        );
        let (status, _, body) = h.post_json(&puzzle("c", &module, 86_400_000, 1), &[]).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (_, health) = h.get("/healthz").await;
        assert_eq!(health["open_tasks"], 2, "{health}");
        // The finished one is still there, from the store.
        let (status, a) = h.get("/tasks/a").await;
        assert_eq!(
            (status, &a["status"]),
            (StatusCode::OK, &json!("cancelled"))
        );
        h.finish();
    })
    .unwrap();
}

#[test]
fn purge_deletes_a_finished_task_now_and_frees_its_key() {
    rpc::block_on_local(async {
        let h = Harness::start("purge", None).await;
        let module = upload_puzzle(&h).await;
        let key = [("idempotency-key", "job-1")];
        let (status, _, _) = h
            .post_json(&puzzle("p", &module, 86_400_000, 1), &key)
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let refused = h.delete("/tasks/p?purge=true").await;
        assert_error(
            "unfinished",
            (refused.0, &refused.1),
            StatusCode::CONFLICT,
            "conflict",
            "not finished",
        );
        assert_eq!(h.get("/tasks/p").await.0, StatusCode::OK, "kept");
        assert_eq!(h.delete("/tasks/p").await.0, StatusCode::OK, "cancelled");
        let (status, body) = h.delete("/tasks/p?purge=true").await;
        assert_eq!(
            (status, body),
            (StatusCode::OK, json!({ "id": "p", "purged": true }))
        );
        assert_eq!(h.get("/tasks/p").await.0, StatusCode::NOT_FOUND);
        assert_eq!(h.get("/tasks/p/runs/0").await.0, StatusCode::NOT_FOUND);
        let again = h.delete("/tasks/p?purge=true").await;
        assert_error(
            "purged twice",
            (again.0, &again.1),
            StatusCode::NOT_FOUND,
            "not_found",
            "no task",
        );
        // The key went with its task: the same request creates a new task.
        let (status, _, body) = h
            .post_json(&puzzle("p", &module, 86_400_000, 1), &key)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let bad = h.delete("/tasks/p?purge=maybe").await;
        assert_eq!(bad.0, StatusCode::BAD_REQUEST, "{}", bad.1);
        h.finish();
    })
    .unwrap();
}

#[test]
fn finished_tasks_expire_by_age_and_beyond_the_most_kept() {
    rpc::block_on_local(async {
        let h = Harness::start_with("expire-age", |c| {
            c.retention = Retention {
                retain_ms: Some(300),
                interval_ms: 50,
                ..Retention::default()
            }
        })
        .await;
        let module = upload_puzzle(&h).await;
        for id in ["old-1", "old-2"] {
            h.post_json(&puzzle(id, &module, 86_400_000, 1), &[]).await;
            assert_eq!(h.delete(&format!("/tasks/{id}")).await.0, StatusCode::OK);
        }
        h.post_json(&puzzle("open", &module, 86_400_000, 1), &[])
            .await;
        wait_for(&h, "/tasks/old-2", |status, _| {
            status == StatusCode::NOT_FOUND
        })
        .await;
        assert_eq!(h.get("/tasks/old-1").await.0, StatusCode::NOT_FOUND);
        assert_eq!(
            ids(&h.all_tasks().await),
            ["open"],
            "unfinished tasks never expire"
        );
        h.finish();

        let h = Harness::start_with("expire-count", |c| {
            c.retention = Retention {
                retain_ms: None,
                finished_max: 2,
                interval_ms: 50,
                ..Retention::default()
            }
        })
        .await;
        let module = upload_puzzle(&h).await;
        for id in ["t1", "t2", "t3", "t4"] {
            h.post_json(&puzzle(id, &module, 86_400_000, 1), &[]).await;
            assert_eq!(h.delete(&format!("/tasks/{id}")).await.0, StatusCode::OK);
            // Finish times must differ for "oldest first" to mean something.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        wait_for(&h, "/tasks?limit=10", |_, list| {
            list.as_array().is_some_and(|l| l.len() == 2)
        })
        .await;
        assert_eq!(
            ids(&h.all_tasks().await),
            ["t3", "t4"],
            "the oldest went first"
        );
        h.finish();
    })
    .unwrap();
}

#[test]
fn unused_modules_are_collected_after_their_grace() {
    rpc::block_on_local(async {
        let h = Harness::start_with("modules", |c| {
            c.retention = Retention {
                module_grace_ms: 200,
                interval_ms: 50,
                ..Retention::default()
            }
        })
        .await;
        let module = upload_puzzle(&h).await;
        let (_, health) = h.get("/healthz").await;
        assert_eq!(health["modules"], 1, "{health}");
        // A task refers to it: kept however long.
        h.post_json(&puzzle("user", &module, 86_400_000, 1), &[])
            .await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        let (status, _, body) = h
            .post_json(&puzzle("second", &module, 86_400_000, 1), &[])
            .await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "kept while referred to: {body}"
        );
        // Both tasks purged: the module is unused from then, and goes after its grace.
        for id in ["user", "second"] {
            h.delete(&format!("/tasks/{id}")).await;
            assert_eq!(
                h.delete(&format!("/tasks/{id}?purge=true")).await.0,
                StatusCode::OK
            );
        }
        wait_for(&h, "/healthz", |_, health| health["modules"] == 0).await;
        let (status, _, body) = h
            .post_json(&puzzle("late", &module, 86_400_000, 1), &[])
            .await;
        assert_error(
            "collected",
            (status, &body),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable",
            "unknown module",
        );
        // Uploaded again, it is usable again.
        assert_eq!(upload_puzzle(&h).await, module);
        let (status, _, body) = h
            .post_json(&puzzle("back", &module, 86_400_000, 1), &[])
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        h.finish();
    })
    .unwrap();
}

#[test]
fn runs_come_in_pages_and_one_run_has_its_stdout() {
    rpc::block_on_local(async {
        let h = Harness::start("pages", None).await;
        let (_, registration) = h.start_worker(4).await;
        let module = upload_puzzle(&h).await;
        let (status, _, body) = h.post_json(&puzzle("many", &module, 0, 5), &[]).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let task = h.wait_final("many").await;
        assert_eq!(
            (task["status"].as_str(), task["runs_total"].as_u64()),
            (Some("succeeded"), Some(5))
        );
        let (status, page) = h.get("/tasks/many?runs_offset=2&runs_limit=2").await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let runs = page["runs"].as_array().unwrap();
        let indexes: Vec<u64> = runs.iter().map(|r| r["index"].as_u64().unwrap()).collect();
        assert_eq!(indexes, [2, 3]);
        assert_eq!(page["runs_offset"], 2);
        assert!(
            runs.iter()
                .all(|r| r.get("stdout").is_none() && r["stdout_bytes"].is_u64()),
            "{page}"
        );
        let (status, run) = h.get("/tasks/many/runs/4").await;
        assert_eq!(status, StatusCode::OK, "{run}");
        assert_eq!(
            (run["index"].as_u64(), run["status"].as_str()),
            (Some(4), Some("succeeded"))
        );
        assert!(run["stdout"].is_string(), "{run}");
        let (status, _) = h.get("/tasks/many?runs_offset=5").await;
        assert_eq!(status, StatusCode::OK);
        let missing = h.get("/tasks/many/runs/5").await;
        assert_error(
            "no run 5",
            (missing.0, &missing.1),
            StatusCode::NOT_FOUND,
            "not_found",
            "no run 5",
        );
        assert_eq!(h.get("/tasks/many/runs/x").await.0, StatusCode::NOT_FOUND);
        let over = h.get("/tasks/many?runs_limit=1001").await;
        assert_error(
            "page too big",
            (over.0, &over.1),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "page maximum",
        );
        registration.abort();
        h.finish();
    })
    .unwrap();
}

#[test]
fn a_restart_loads_unfinished_tasks_only() {
    rpc::block_on_local(async {
        let mut h = Harness::start("restart", None).await;
        let module = upload_puzzle(&h).await;
        for id in ["done-1", "done-2", "waiting"] {
            h.post_json(&puzzle(id, &module, 86_400_000, 1), &[]).await;
        }
        h.delete("/tasks/done-1").await;
        h.delete("/tasks/done-2").await;
        h.restart().await;
        let (_, health) = h.get("/healthz").await;
        assert_eq!(health["open_tasks"], 1, "{health}");
        assert_eq!(ids(&h.all_tasks().await), ["done-1", "done-2", "waiting"]);
        let (status, done) = h.get("/tasks/done-2").await;
        assert_eq!(
            (status, &done["status"]),
            (StatusCode::OK, &json!("cancelled"))
        );
        h.finish();
    })
    .unwrap();
}
