//! Prometheus metrics: a known workload through a gateway (and a real worker
//! over libp2p on loopback), then the scrape's exact values; no label naming
//! a task or a peer; a worker's own metrics after a few runs.

mod gateway_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::http::{header, StatusCode};
use base64::Engine as _;
use gateway_support::{form, multipart, submit_pending, Harness, BOUNDARY};
use serde_json::json;
use ww::rpc;
use ww::transport::Transport as _;
use ww_sched::tasks::HASH_PUZZLE_WASM;

/// A scrape's samples: `name{labels}` (as written) to value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            (series.to_string(), value.parse().expect("a number"))
        })
        .collect()
}

/// The value of `series`, or 0 when it is absent.
fn value(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or(0.0)
}

async fn scrape(h: &Harness) -> String {
    let (status, headers, body) = h
        .send(
            axum::http::Request::get("/metrics")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{headers:?}"
    );
    body.as_str().expect("text").to_string()
}

/// Scrapes until `series` reaches `want`: a task shows final once its commit
/// is durable, and the core takes that commit's result (and counts) on its
/// next turn.
async fn scrape_until(h: &Harness, series: &str, want: f64) -> BTreeMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = scrape(h).await;
        let samples = samples(&text);
        if value(&samples, series) == want {
            return samples;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never reached {want}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Three tasks of one run each that succeed, one idempotent retry, one
/// pending task cancelled, runs that fail, time out and are cancelled, one
/// unknown path; returns the task ids.
async fn workload(h: &Harness) -> Vec<String> {
    let ids: Vec<String> = ["metric-a", "metric-b", "metric-c"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for id in &ids {
        let (status, _, task) = h
            .post(
                "/tasks",
                Some(&format!("multipart/form-data; boundary={BOUNDARY}")),
                &[("Idempotency-Key", id.as_str())],
                multipart(&form(id, &[]), Some(HASH_PUZZLE_WASM)),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{task}");
    }
    // The same request again: the same task, not a new one.
    let (status, _, task) = h
        .post(
            "/tasks",
            Some(&format!("multipart/form-data; boundary={BOUNDARY}")),
            &[("Idempotency-Key", "metric-a")],
            multipart(&form("metric-a", &[]), Some(HASH_PUZZLE_WASM)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{task}");
    submit_pending(h, "metric-pending").await;
    let (status, task) = h.delete("/tasks/metric-pending").await;
    assert_eq!(status, StatusCode::OK, "{task}");
    for id in &ids {
        let task = h.wait_final(id).await;
        assert_eq!(task["status"], "succeeded", "{task}");
    }
    // One run out of fuel (failed, not retried), one past its time limit, one
    // cancelled while it runs: difficulty 8 takes far longer than the test.
    let wasm = base64::engine::general_purpose::STANDARD.encode(HASH_PUZZLE_WASM);
    for (id, extra) in [
        ("metric-fuel", json!({ "fuel_max": 1000 })),
        ("metric-slow", json!({ "duration_ms": 300 })),
        ("metric-stopped", json!({})),
    ] {
        let mut body = json!({ "id": id, "wasm_base64": wasm, "args": [7, 8] });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (status, _, task) = h.post_json(&body, &[]).await;
        assert_eq!(status, StatusCode::CREATED, "{task}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, task) = h.get("/tasks/metric-stopped").await;
        if task["status"] == "running" {
            break;
        }
        assert!(Instant::now() < deadline, "never ran: {task}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, task) = h.delete("/tasks/metric-stopped").await;
    assert_eq!(status, StatusCode::OK, "{task}");
    for (id, want) in [
        ("metric-fuel", "failed"),
        ("metric-slow", "failed"),
        ("metric-stopped", "cancelled"),
    ] {
        let task = h.wait_final(id).await;
        assert_eq!(task["status"], want, "{task}");
    }
    let (status, _) = h.get("/no/such/thing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let mut all = ids;
    for id in [
        "metric-pending",
        "metric-fuel",
        "metric-slow",
        "metric-stopped",
    ] {
        all.push(id.into());
    }
    all
}

#[test]
fn a_known_workload_shows_exact_values() {
    rpc::block_on_local(async {
        let h = Harness::start("metrics-values", None).await;
        let (_worker, registration) = h.start_worker(2).await;
        workload(&h).await;
        let s = scrape_until(
            &h,
            "ww_sched_tasks_finished_total{status=\"cancelled\"}",
            2.0,
        )
        .await;

        assert_eq!(value(&s, "ww_sched_tasks_submitted_total"), 7.0, "{s:?}");
        assert_eq!(value(&s, "ww_sched_runs_total{status=\"succeeded\"}"), 3.0);
        assert_eq!(value(&s, "ww_sched_runs_total{status=\"failed\"}"), 1.0);
        assert_eq!(value(&s, "ww_sched_runs_total{status=\"timed_out\"}"), 1.0);
        // The pending task never had a run fall due; the other was stopped.
        assert_eq!(value(&s, "ww_sched_runs_total{status=\"cancelled\"}"), 1.0);
        assert_eq!(value(&s, "ww_sched_runs_total{status=\"retried\"}"), 0.0);
        let finished = |status: &str| {
            value(
                &s,
                &format!("ww_sched_tasks_finished_total{{status=\"{status}\"}}"),
            )
        };
        assert_eq!(finished("succeeded"), 3.0);
        assert_eq!(finished("failed"), 2.0);
        assert_eq!(finished("cancelled"), 2.0);
        assert_eq!(value(&s, "ww_sched_tasks{status=\"pending\"}"), 0.0);
        assert_eq!(value(&s, "ww_sched_tasks{status=\"running\"}"), 0.0);
        assert_eq!(value(&s, "ww_sched_tasks{status=\"finished\"}"), 7.0);
        // Six runs started and ended; the timed-out one took at least its 0.3 s.
        assert_eq!(value(&s, "ww_sched_run_duration_seconds_count"), 6.0);
        assert_eq!(value(&s, "ww_sched_run_queue_wait_seconds_count"), 6.0);
        assert_eq!(
            value(&s, "ww_sched_run_duration_seconds_bucket{le=\"+Inf\"}"),
            6.0
        );
        assert!(value(&s, "ww_sched_run_duration_seconds_bucket{le=\"0.256\"}") <= 5.0);
        assert!(value(&s, "ww_sched_run_duration_seconds_sum") >= 0.3);
        assert_eq!(value(&s, "ww_sched_workers"), 1.0);
        assert_eq!(value(&s, "ww_sched_worker_slots{state=\"busy\"}"), 0.0);
        assert_eq!(value(&s, "ww_sched_worker_slots{state=\"free\"}"), 2.0);
        // Every commit here is durable: one fsync each.
        let commits = value(&s, "ww_sched_store_commit_seconds_count");
        assert!(commits >= 4.0, "{commits} commits");
        assert_eq!(value(&s, "ww_sched_store_fsyncs_total"), commits);
        let http = |route: &str, status: u16| {
            value(
                &s,
                &format!("ww_sched_http_requests_total{{route=\"{route}\",status=\"{status}\"}}"),
            )
        };
        assert_eq!(http("/tasks", 201), 7.0);
        assert_eq!(http("/tasks", 200), 1.0);
        assert!(http("/tasks/{id}", 200) >= 7.0, "{s:?}");
        assert_eq!(http("unmatched", 404), 1.0);
        // A request is counted once answered: the next scrape shows this one.
        let again = samples(&scrape(&h).await);
        let scrapes = |s: &BTreeMap<String, f64>| {
            value(
                s,
                "ww_sched_http_requests_total{route=\"/metrics\",status=\"200\"}",
            )
        };
        assert_eq!(scrapes(&again), scrapes(&s) + 1.0);
        registration.abort();
        h.finish();
    })
    .unwrap();
}

#[test]
fn no_label_names_a_task_or_a_peer() {
    rpc::block_on_local(async {
        let h = Harness::start("metrics-labels", None).await;
        let (worker, registration) = h.start_worker(1).await;
        let ids = workload(&h).await;
        // Raw paths that name tasks and runs, and ones that match nothing.
        for id in &ids {
            let _ = h.get(&format!("/tasks/{id}/runs/0")).await;
            let _ = h.get(&format!("/{id}")).await;
        }
        let text = scrape(&h).await;
        let gateway = h.transport.local_peer_id().to_string();
        for name in ids.iter().chain([&worker, &gateway]) {
            assert!(!text.contains(name.as_str()), "{name} in\n{text}");
        }
        // Every label is one of a few names, each with a bounded set of values.
        let routes = [
            "/tasks",
            "/tasks/{id}",
            "/tasks/{id}/runs/{index}",
            "/tasks/{id}/runs/{index}/stdout",
            "/modules",
            "/workers",
            "/cluster",
            "/healthz",
            "/metrics",
            "/events",
            "/",
            "/ui",
            "/ui/",
            "/ui/{file}",
            "unmatched",
        ];
        for series in samples(&text).keys() {
            let Some((_, labels)) = series.split_once('{') else {
                continue;
            };
            for label in labels.trim_end_matches('}').split(',') {
                let (name, value) = label.split_once('=').expect("name=value");
                let value = value.trim_matches('"');
                let bounded = match name {
                    "route" => routes.contains(&value),
                    "status" => {
                        value.parse::<u16>().is_ok()
                            || value.chars().all(|c| c == '_' || c.is_ascii_lowercase())
                    }
                    "le" => value == "+Inf" || value.parse::<f64>().is_ok(),
                    "state" => ["busy", "free"].contains(&value),
                    "outcome" => value.chars().all(|c| c == '_' || c.is_ascii_lowercase()),
                    _ => false,
                };
                assert!(bounded, "label {name}={value} in {series}");
            }
        }
        registration.abort();
        h.finish();
    })
    .unwrap();
}

/// A module whose `ok` export returns 7 and whose `trap` export traps.
const OK_AND_TRAP: &str = r#"(module
  (func (export "ok") (result i32) i32.const 7)
  (func (export "trap") unreachable))"#;

#[test]
fn a_worker_serves_its_own_runs_fuel_errors_and_cache() {
    use std::sync::Arc;
    use ww::exec::{ErrorKind, Limits, ModuleRef, RunSpec, Sandbox, SandboxConfig};
    use ww::transport::{Address, Identity, Libp2pConfig, Libp2pTransport};
    use ww_sched::worker::node::{Callers, WorkerNode};
    use ww_sched::worker::{RemoteWorker, WorkerConfig};

    rpc::block_on_local(async {
        let transport = Libp2pTransport::new(Libp2pConfig::new(Identity::generate())).unwrap();
        let sandbox = Arc::new(Sandbox::new(SandboxConfig::default()));
        let node = WorkerNode::start(
            transport,
            sandbox.clone(),
            WorkerConfig {
                slots: 2,
                ..WorkerConfig::default()
            },
            &[Address::new(gateway_support::LOOPBACK)],
            Callers::Open,
        )
        .await
        .unwrap();
        let (bound, server) = ww_sched::worker::metrics::serve(
            "127.0.0.1:0".parse().unwrap(),
            node.gauges(),
            sandbox,
            2,
        )
        .await
        .unwrap();
        let worker = RemoteWorker::from_capability(
            node.registration_facet().0,
            None,
            Duration::from_secs(30),
        );
        let module = wat::parse_str(OK_AND_TRAP).unwrap();
        let spec = |export: &str| RunSpec {
            module: ModuleRef::Bytes(module.clone()),
            export: export.into(),
            args: vec![],
            limits: Limits::default(),
        };
        let mut fuel = 0;
        for export in ["ok", "ok", "ok", "trap"] {
            let report = worker.run(&spec(export)).await.unwrap();
            assert_eq!(report.outcome.is_ok(), export == "ok", "{report:?}");
            fuel += report.fuel_used;
        }
        assert!(fuel > 0);
        // Over real HTTP, as Prometheus would scrape it.
        let text = tokio::task::spawn_blocking(move || {
            ureq::get(&format!("http://{bound}/metrics"))
                .call()
                .unwrap()
                .body_mut()
                .read_to_string()
                .unwrap()
        })
        .await
        .unwrap();
        let s = samples(&text);
        assert_eq!(
            value(&s, "ww_sched_worker_runs_started_total"),
            4.0,
            "{text}"
        );
        assert_eq!(
            value(&s, "ww_sched_worker_runs_total{status=\"succeeded\"}"),
            3.0
        );
        assert_eq!(
            value(&s, "ww_sched_worker_runs_total{status=\"failed\"}"),
            1.0
        );
        assert_eq!(value(&s, "ww_sched_worker_fuel_burnt_total"), fuel as f64);
        assert_eq!(
            value(&s, "ww_sched_worker_sandbox_errors_total{kind=\"trap\"}"),
            1.0
        );
        let errors: f64 = ErrorKind::ALL
            .iter()
            .map(|k| {
                value(
                    &s,
                    &format!(
                        "ww_sched_worker_sandbox_errors_total{{kind=\"{}\"}}",
                        k.as_str()
                    ),
                )
            })
            .sum();
        assert_eq!(errors, 1.0);
        // One compilation, then three runs found it compiled.
        assert_eq!(value(&s, "ww_sched_worker_module_cache_misses_total"), 1.0);
        assert_eq!(value(&s, "ww_sched_worker_module_cache_hits_total"), 3.0);
        assert_eq!(value(&s, "ww_sched_worker_module_cache_entries"), 1.0);
        assert_eq!(value(&s, "ww_sched_worker_slots"), 2.0);
        assert!(!text.contains(&node.peer_id().to_string()));
        server.abort();
    })
    .unwrap();
}

#[test]
fn metrics_go_through_the_api_guard() {
    use tower::ServiceExt as _;
    use ww_sched::gateway::{lock, ApiAccess, ApiToken, HttpLimits};

    const TOKEN: &str = "0123456789abcdef0123456789abcdef-metrics";
    rpc::block_on_local(async {
        let h = Harness::start("metrics-guard", None).await;
        let metrics = h.gateway.as_ref().expect("running").metrics();
        // An API off loopback: every request but /healthz needs the token.
        let api = lock(
            h.router.clone(),
            ApiAccess::new(
                "10.1.2.3:8080".parse().unwrap(),
                ApiToken::new(TOKEN).unwrap(),
            )
            .with_metrics(metrics),
            HttpLimits::default(),
        );
        let ask = |headers: &[(&str, &str)]| {
            let mut request = axum::http::Request::get("/metrics").header("host", "10.1.2.3:8080");
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            api.clone()
                .oneshot(request.body(axum::body::Body::empty()).unwrap())
        };
        let bearer = format!("Bearer {TOKEN}");
        let refused = ask(&[]).await.unwrap();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        let foreign = ask(&[
            ("authorization", &bearer),
            ("origin", "http://evil.example"),
        ])
        .await
        .unwrap();
        assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
        let wrong = ask(&[("authorization", "Bearer nope")]).await.unwrap();
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        let allowed = ask(&[("authorization", &bearer)]).await.unwrap();
        assert_eq!(allowed.status(), StatusCode::OK);
        // The guard's refusals are counted by reason, and only they.
        let body = axum::body::to_bytes(allowed.into_body(), usize::MAX)
            .await
            .unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        for (reason, count) in [
            ("no_token", 1),
            ("wrong_token", 1),
            ("foreign_origin", 1),
            ("foreign_host", 0),
        ] {
            let line = format!("ww_sched_http_refused_total{{reason=\"{reason}\"}} {count}");
            let present = text.lines().any(|l| l == line);
            assert_eq!(present, count > 0, "{line} in:\n{text}");
        }
        h.finish();
    })
    .unwrap();
}

#[test]
fn a_gateway_in_a_cluster_shows_its_membership_and_discovery() {
    use std::rc::Rc;
    use ww::boot::StaticPeers;
    use ww::cluster::{Membership, MembershipConfig};
    use ww::pubsub::PubSub;
    use ww::transport::{Address, Identity, Libp2pConfig, Libp2pTransport, Transport};
    use ww_sched::gateway::clock::host_clock;
    use ww_sched::gateway::{Gateway, GatewayConfig};

    rpc::block_on_local(async {
        let dir = gateway_support::TempDir::new("metrics-cluster");
        let transport = Libp2pTransport::new(Libp2pConfig::new(Identity::generate())).unwrap();
        transport
            .listen(Address::new(gateway_support::LOOPBACK))
            .await
            .unwrap();
        let pubsub = PubSub::new(transport.clone());
        let membership = Membership::start(
            transport.clone(),
            &pubsub,
            StaticPeers::new(Vec::new()),
            MembershipConfig::new("metrics-gateway", 7),
        )
        .await
        .unwrap();
        let gateway = Gateway::start(
            &transport,
            Some(Rc::new(membership)),
            host_clock(),
            GatewayConfig::new(dir.path()),
        )
        .await
        .unwrap();
        let h = Harness {
            router: gateway.router(),
            gateway: Some(gateway),
            transport,
            address: Address::new(gateway_support::LOOPBACK),
            config: GatewayConfig::new(dir.path()),
            dir,
        };
        // The gateway hears its own heartbeat: a view of one.
        let s = scrape_until(&h, "ww_sched_membership_peers", 1.0).await;
        assert!(
            value(
                &s,
                "ww_sched_membership_heartbeats_total{outcome=\"applied\"}"
            ) >= 1.0,
            "{s:?}"
        );
        assert!(
            value(
                &s,
                "ww_sched_membership_heartbeats_total{outcome=\"received\"}"
            ) >= value(
                &s,
                "ww_sched_membership_heartbeats_total{outcome=\"applied\"}"
            )
        );
        // A static list sends and receives nothing, but the series are there.
        for outcome in ["received", "sent", "dropped_bad_signature"] {
            let series = format!("ww_sched_discovery_datagrams_total{{outcome=\"{outcome}\"}}");
            assert_eq!(s.get(&series), Some(&0.0), "{series} in {s:?}");
        }
        h.finish();
    })
    .unwrap();
}

/// Waits until run 0 of `metric-lost` is running its attempt `want`.
async fn attempt_running(h: &Harness, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, run) = h.get("/tasks/metric-lost/runs/0").await;
        if run["attempt"] == want && run["status"] == "running" {
            return;
        }
        assert!(Instant::now() < deadline, "attempt {want} never ran: {run}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn a_run_lost_with_its_worker_counts_as_retried() {
    rpc::block_on_local(async {
        let h = Harness::start("metrics-retried", None).await;
        let (_, first) = h.start_worker(1).await;
        let wasm = base64::engine::general_purpose::STANDARD.encode(HASH_PUZZLE_WASM);
        // Difficulty 8 runs far longer than the test: it is in flight when
        // its worker goes away.
        let body = json!({ "id": "metric-lost", "wasm_base64": wasm, "args": [7, 8] });
        let (status, _, task) = h.post_json(&body, &[]).await;
        assert_eq!(status, StatusCode::CREATED, "{task}");
        attempt_running(&h, 1).await;
        // The worker leaves: its registration (and the node it holds) dropped.
        first.abort();
        let _ = first.await;
        let (_, second) = h.start_worker(1).await;
        attempt_running(&h, 2).await;
        let (status, task) = h.delete("/tasks/metric-lost").await;
        assert_eq!(status, StatusCode::OK, "{task}");
        let s = scrape_until(&h, "ww_sched_runs_total{status=\"cancelled\"}", 1.0).await;
        assert_eq!(
            value(&s, "ww_sched_runs_total{status=\"retried\"}"),
            1.0,
            "{s:?}"
        );
        // Its queue wait is counted once, at its first dispatch.
        assert_eq!(value(&s, "ww_sched_run_queue_wait_seconds_count"), 1.0);
        assert_eq!(value(&s, "ww_sched_run_duration_seconds_count"), 1.0);
        second.abort();
        h.finish();
    })
    .unwrap();
}
