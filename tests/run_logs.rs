//! Run logs and the CLI that follows: `GET /tasks/{id}/runs/{index}/stdout`
//! in-process through the router (and its 404s), then real processes:
//! `ww-sched logs --follow`, `tasks --output json`, `submit` piped, and a
//! gateway's `--log-format json` stderr.

mod gateway_support;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use tower::ServiceExt as _;
use ww_sched::rpc;

use gateway_support::*;

/// Writes "out:" and the low byte of its first argument plus '0', then a
/// newline, to stdout, and returns its first argument.
const ECHO_WAT: &str = r#"(module
    (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 1)
    (data (i32.const 100) "out:?\n")
    (func (export "run") (param i64 i64) (result i64)
        (i32.store8 (i32.const 104) (i32.add (i32.const 48) (i32.wrap_i64 (local.get 0))))
        (i32.store (i32.const 0) (i32.const 100))
        (i32.store (i32.const 4) (i32.const 6))
        (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 20)))
        (local.get 0)))"#;

/// The echo module's bytes.
fn echo_wasm() -> Vec<u8> {
    wat::parse_str(ECHO_WAT).expect("valid WAT")
}

/// `GET uri` through the router: status, content type, body text.
async fn get_text(h: &Harness, uri: &str) -> (StatusCode, String, String) {
    let request = Request::get(uri).body(Body::empty()).unwrap();
    let response = h.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        content_type,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

#[test]
fn stdout_route_serves_each_runs_text_and_404s_the_unknown() {
    rpc::block_on_local(async {
        let h = Harness::start("run-stdout", None).await;
        let (_worker, registration) = h.start_worker(2).await;
        let wasm = echo_wasm();
        let (status, _, task) = h
            .post_form(
                &form("echo", &[("repeats", "2"), ("input", "5")]),
                Some(&wasm),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{task}");
        let task = h.wait_final("echo").await;
        assert_eq!(task["status"], "succeeded", "{task}");

        for index in 0..2 {
            let (status, content_type, text) =
                get_text(&h, &format!("/tasks/echo/runs/{index}/stdout")).await;
            assert_eq!(status, StatusCode::OK, "run {index}: {text}");
            assert!(
                content_type.starts_with("text/plain"),
                "run {index}: {content_type}"
            );
            assert_eq!(text, "out:5\n", "run {index}");
        }

        // Unknown task, unknown run, an index that is not one: JSON 404s.
        for (uri, needle) in [
            ("/tasks/nope/runs/0/stdout", "no task"),
            ("/tasks/echo/runs/2/stdout", "no run 2"),
            ("/tasks/echo/runs/x/stdout", "not a run index"),
        ] {
            let (status, body) = h.get(uri).await;
            assert_error(
                uri,
                (status, &body),
                StatusCode::NOT_FOUND,
                "not_found",
                needle,
            );
        }
        registration.abort();
        h.finish();
    })
    .unwrap();
}
