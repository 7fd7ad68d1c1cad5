//! Run logs and the CLI that follows: `GET /tasks/{id}/runs/{index}/stdout`
//! in-process through the router (its 404s, behind the API guard), then real
//! processes: `ww-sched logs --follow` (in order, once each, through a
//! gateway restart), `tasks --output json`, `tasks --watch` piped and on a
//! pseudo-terminal, `submit` piped and on a pseudo-terminal, `peers --output
//! json`, and a gateway's `--log-format json` stderr.

mod gateway_support;
mod support;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use tower::ServiceExt as _;
use ww::rpc;
use ww_sched::gateway::{lock, ApiAccess, ApiToken, HttpLimits};

use gateway_support::*;

/// Spins its second argument times (about a second per 10^8), writes "out:"
/// and its first argument as one digit, then a newline, to stdout, and
/// returns its first argument.
const ECHO_WAT: &str = r#"(module
    (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 1)
    (data (i32.const 100) "out:?\n")
    (func (export "run") (param i64 i64) (result i64) (local i64)
        (block $done (loop $spin
            (br_if $done (i64.ge_u (local.get 2) (local.get 1)))
            (local.set 2 (i64.add (local.get 2) (i64.const 1)))
            br $spin))
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
        // Like every route, it sits behind the API guard: off loopback, no
        // token is 401 and the token is 200.
        let token = "0123456789abcdef0123456789abcdef-test";
        let locked = lock(
            h.router.clone(),
            ApiAccess::new(
                "10.0.0.1:8080".parse().unwrap(),
                ApiToken::new(token).unwrap(),
            ),
            HttpLimits::default(),
        );
        for (authorization, expected) in [
            (None, StatusCode::UNAUTHORIZED),
            (Some(format!("Bearer {token}")), StatusCode::OK),
        ] {
            let mut request =
                Request::get("/tasks/echo/runs/0/stdout").header(header::HOST, "10.0.0.1:8080");
            if let Some(value) = &authorization {
                request = request.header(header::AUTHORIZATION, value);
            }
            let response = locked
                .clone()
                .oneshot(request.body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(response.status(), expected, "{authorization:?}");
        }

        registration.abort();
        h.finish();
    })
    .unwrap();
}

/// A gateway process logging JSON at debug level to a file; killed when dropped.
struct JsonGateway {
    child: Child,
    stderr: std::path::PathBuf,
    dial: String,
    http: String,
}

impl Drop for JsonGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The next stdout line of `lines` starting with `prefix`, without it.
fn line_after(lines: &Receiver<String>, prefix: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("the gateway printed no {prefix:?} line"));
        if let Some(rest) = line.strip_prefix(prefix) {
            return rest.to_string();
        }
    }
}

/// Starts `ww-sched --log-format json gateway` on `data`, its API on
/// `http` and libp2p on `listen`, stderr appended to a file.
fn start_json_gateway(data: &support::TempDir, http: &str, listen: &str) -> JsonGateway {
    let stderr = data.0.join("gateway.stderr");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&stderr)
        .expect("stderr file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ww-sched"))
        .args([
            "--log-format",
            "json",
            "gateway",
            "--http",
            http,
            "--data",
            &data.0.join("store").to_string_lossy(),
            "--listen",
            listen,
            "--discover",
            "none",
        ])
        .env("RUST_LOG", "warn,ww_sched=debug")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("start the gateway");
    let stdout = child.stdout.take().expect("piped stdout");
    let (sender, lines) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    let mut gateway = JsonGateway {
        child,
        stderr,
        dial: String::new(),
        http: String::new(),
    };
    gateway.dial = line_after(&lines, "listening on ");
    gateway.http = line_after(&lines, "http on ");
    gateway
}

/// `ww-sched ARGS` run to its end with stdout and stderr piped.
fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ww-sched"))
        .args(args)
        .env_remove("WW_SCHED_TOKEN")
        .output()
        .expect("run ww-sched")
}

/// Text with a control character other than a newline, if any.
fn control_characters(text: &str) -> Vec<char> {
    text.chars()
        .filter(|c| c.is_control() && *c != '\n')
        .collect()
}

#[test]
fn cli_follows_logs_lists_json_and_the_gateway_logs_json() {
    let dir = support::TempDir::new("run-logs");
    let gateway = start_json_gateway(&dir, "127.0.0.1:0", "/ip4/127.0.0.1/tcp/0");
    let worker = support::start_worker("none", &["--dial", &gateway.dial]);
    let wasm_path = dir.0.join("echo.wasm");
    std::fs::write(&wasm_path, echo_wasm()).unwrap();
    let wasm = wasm_path.to_str().unwrap();
    let data = dir.0.join("store");
    let data = data.to_str().unwrap();
    let http = gateway.http.as_str();

    submit_piped(wasm, http, data);

    follow_spaced(wasm, http, data, &worker.peer);

    // `logs` of an unknown task fails naming it.
    let out = cli(&["logs", "nope", "--gateway", http, "--data", data]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no task"));

    // `tasks --output json`: one JSON array with both tasks.
    let out = cli(&[
        "tasks",
        "--output",
        "json",
        "--gateway",
        http,
        "--data",
        data,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(ids(&list), ["piped", "spaced"], "{list}");

    check_gateway_log(&gateway.stderr, &worker.peer);
}

/// `submit` piped: the id on stdout, then plain progress lines, no bar.
fn submit_piped(wasm: &str, http: &str, data: &str) {
    let out = cli(&[
        "submit",
        wasm,
        "--input",
        "2",
        "--difficulty",
        "0",
        "--repeats",
        "2",
        "--id",
        "piped",
        "--gateway",
        http,
        "--data",
        data,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "submit failed: {stdout} {stderr}");
    assert_eq!(
        control_characters(&stdout),
        Vec::<char>::new(),
        "{stdout:?}"
    );
    assert_eq!(
        control_characters(&stderr),
        Vec::<char>::new(),
        "{stderr:?}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l == "piped: succeeded, 2/2 runs done, 0 failed"),
        "no final progress line: {stderr}"
    );
}

/// `logs --follow` on a task whose runs fall due a second apart and take a
/// while each (so the follower sees them running): each run's header and
/// stdout once, in index order, then exit 0.
fn follow_spaced(wasm: &str, http: &str, data: &str, worker: &str) {
    let out = cli(&[
        "submit",
        wasm,
        "--input",
        "7",
        "--difficulty",
        "40000000",
        "--repeats",
        "3",
        "--delay",
        "1",
        "--id",
        "spaced",
        "--no-follow",
        "--gateway",
        http,
        "--data",
        data,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&[
        "logs",
        "spaced",
        "--follow",
        "--poll-ms",
        "100",
        "--gateway",
        http,
        "--data",
        data,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "logs failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{stdout}");
    for (index, pair) in lines.chunks(2).enumerate() {
        let header = format!("==> run {index} succeeded (attempt 1, worker {worker}");
        assert!(pair[0].starts_with(&header), "{index}: {stdout}");
        assert_eq!(pair[1], "out:7", "{index}: {stdout}");
    }
}

/// The gateway's stderr: every line a JSON object, and run events carry the
/// task and run index as fields of their own.
fn check_gateway_log(stderr: &std::path::Path, worker: &str) {
    let log = std::fs::read_to_string(stderr).unwrap();
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
        })
        .collect();
    assert!(events.iter().all(|e| e.is_object()), "{log}");
    let finished: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["message"] == "run succeeded")
        .collect();
    assert_eq!(finished.len(), 5, "{log}");
    for event in finished {
        assert!(
            event["task"] == "piped" || event["task"] == "spaced",
            "{event}"
        );
        assert!(event["index"].is_u64(), "{event}");
        assert_eq!(event["worker"], worker, "{event}");
    }
    // A task's end carries its id as a field too.
    let ended: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["message"] == "task finished")
        .collect();
    assert_eq!(ended.len(), 2, "{log}");
    assert!(ended.iter().all(|e| e["task"].is_string()), "{log}");
}

/// Submits the echo module from `dir` as task `id` without following it.
fn submit_echo(dir: &support::TempDir, http: &str, id: &str, extra: &[&str]) {
    let wasm_path = dir.0.join("echo.wasm");
    std::fs::write(&wasm_path, echo_wasm()).unwrap();
    let mut args = vec![
        "submit",
        wasm_path.to_str().unwrap(),
        "--input",
        "7",
        "--id",
        id,
        "--no-follow",
        "--gateway",
        http,
    ];
    args.extend_from_slice(extra);
    let out = cli(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn logs_follow_outlives_a_gateway_restart() {
    let dir = support::TempDir::new("run-logs-restart");
    // Fixed ports, so the restarted gateway is where the follower and the worker look.
    let http = format!("127.0.0.1:{}", support::free_tcp_port());
    let listen = format!("/ip4/127.0.0.1/tcp/{}", support::free_tcp_port());
    let mut gateway = start_json_gateway(&dir, &http, &listen);
    let _worker = support::start_worker("none", &["--dial", &gateway.dial]);
    let url = gateway.http.clone();
    submit_echo(
        &dir,
        &url,
        "restart",
        &["--difficulty", "20000000", "--repeats", "4", "--delay", "1"],
    );
    let mut logs = support::Proc::start(&[
        "logs",
        "restart",
        "--follow",
        "--poll-ms",
        "100",
        "--gateway",
        &url,
    ]);
    logs.wait_for("==> run 0 ", Duration::from_secs(30));
    // The gateway dies and is back about a second later, on the same store.
    drop(gateway);
    std::thread::sleep(Duration::from_secs(1));
    gateway = start_json_gateway(&dir, &http, &listen);
    assert_eq!(gateway.http, url);
    let status = logs
        .wait_exit(Duration::from_secs(90))
        .expect("logs --follow did not end");
    while logs
        .next_line(Instant::now() + Duration::from_secs(1))
        .is_some()
    {}
    assert!(status.success(), "logs failed: {:?}", logs.seen);
    let headers: Vec<&String> = logs.seen.iter().filter(|l| l.starts_with("==> ")).collect();
    assert_eq!(headers.len(), 4, "{:?}", logs.seen);
    for (index, header) in headers.iter().enumerate() {
        assert!(
            header.starts_with(&format!("==> run {index} succeeded")),
            "{:?}",
            logs.seen
        );
    }
    let outputs = logs.seen.iter().filter(|l| *l == "out:7").count();
    assert_eq!(outputs, 4, "{:?}", logs.seen);
}

#[test]
fn tasks_watch_piped_prints_a_table_only_when_it_changes() {
    let dir = support::TempDir::new("run-logs-watch");
    let gateway = start_json_gateway(&dir, "127.0.0.1:0", "/ip4/127.0.0.1/tcp/0");
    let mut watch = support::Proc::start(&["tasks", "--watch", "--gateway", &gateway.http]);
    watch.wait_for("ID ", Duration::from_secs(30));
    // Nothing changes: nothing more is printed across three redraws.
    assert_eq!(
        watch.next_line(Instant::now() + Duration::from_secs(3)),
        None,
        "{:?}",
        watch.seen
    );
    // A new task (pending for a day: no worker needed) brings a new table.
    submit_echo(
        &dir,
        &gateway.http,
        "watched",
        &["--difficulty", "0", "--start", "86400"],
    );
    watch.wait_for("ID ", Duration::from_secs(10));
    let row = watch.wait_for("watched ", Duration::from_secs(5));
    assert!(row.contains("pending"), "{:?}", watch.seen);
    assert!(
        watch
            .seen
            .iter()
            .all(|line| control_characters(line).is_empty()),
        "{:?}",
        watch.seen
    );
}

#[test]
fn on_a_terminal_submit_draws_a_bar_and_watch_redraws() {
    let dir = support::TempDir::new("run-logs-bar");
    let gateway = start_json_gateway(&dir, "127.0.0.1:0", "/ip4/127.0.0.1/tcp/0");
    let _worker = support::start_worker("none", &["--dial", &gateway.dial]);
    let wasm_path = dir.0.join("echo.wasm");
    std::fs::write(&wasm_path, echo_wasm()).unwrap();
    // util-linux `script` runs the command on a pseudo-terminal and copies
    // what it wrote to its own stdout.
    let command = format!(
        "{} submit {} --input 1 --difficulty 0 --repeats 2 --id bar --gateway {}",
        env!("CARGO_BIN_EXE_ww-sched"),
        wasm_path.display(),
        gateway.http
    );
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_remove("WW_SCHED_TOKEN")
        .output()
        .expect("run script (util-linux)");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    // The bar is redrawn in place (carriage return, clear to end of line)
    // and ends full; no plain progress line is printed.
    assert!(
        screen.contains(&format!(
            "\rbar [{}] 2/2 runs, 0 failed, succeeded\x1b[K",
            "#".repeat(30)
        )),
        "{screen:?}"
    );
    assert!(!screen.contains("runs done"), "{screen:?}");

    // `tasks --watch` on a terminal clears and redraws every second, changed or not.
    let command = format!(
        "timeout 2.5 {} tasks --watch --gateway {}",
        env!("CARGO_BIN_EXE_ww-sched"),
        gateway.http
    );
    let out = Command::new("script")
        .args(["-qc", &command, "/dev/null"])
        .output()
        .expect("run script (util-linux)");
    let screen = String::from_utf8_lossy(&out.stdout);
    let redraws = screen.matches("\x1b[H\x1b[2JID ").count();
    assert!(redraws >= 2, "{redraws} redraws: {screen:?}");
}

#[test]
fn peers_output_json_is_a_json_array() {
    let out = cli(&[
        "peers",
        "--discover",
        "none",
        "--wait-ms",
        "100",
        "--output",
        "json",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let view: serde_json::Value = serde_json::from_str(&stdout).expect("JSON on stdout");
    assert_eq!(view, serde_json::json!([]), "alone, nobody is in view");
}
