//! Several gateway processes on one PostgreSQL database (a throwaway server,
//! see pg_support), with worker processes registered with each: tasks are
//! submitted through both; one gateway is killed with SIGKILL mid-way and
//! every acknowledged task still finishes, and reads the same, from the
//! survivor; a cancel asked at one gateway stops another's task.

// libc calls (SIGINT to a gateway the test started): the crate denies unsafe code, this file allows it.
#![allow(unsafe_code)]

mod pg_support;
mod support;

use std::time::{Duration, Instant};

use base64::Engine;
use pg_support::{PgDatabase, PgServer};
use serde_json::Value;
use support::{agent, free_tcp_port, get, submit_form, wait_final, StartedGateway, TempDir};
use ww_sched::tasks::{hash_puzzle, HASH_PUZZLE_WASM};

fn start_gateway(data: &TempDir, db: &PgDatabase) -> StartedGateway {
    let listen = format!("/ip4/127.0.0.1/tcp/{}", free_tcp_port());
    support::start_gateway(data.path(), &listen, &["--store", &db.url])
}

/// Two gateways on a new database `label`, each with a data directory of its
/// own; dropped in reverse (gateways, directories, database).
fn two_gateways(label: &str) -> (PgDatabase, [TempDir; 2], StartedGateway, StartedGateway) {
    let db = PgDatabase::new(label);
    let data = [
        TempDir::new(&format!("pg-{label}-a")),
        TempDir::new(&format!("pg-{label}-b")),
    ];
    let a = start_gateway(&data[0], &db);
    let b = start_gateway(&data[1], &db);
    (db, data, a, b)
}

/// A worker registered with each of `gateways`, with two slots.
fn start_worker(gateways: &[&StartedGateway]) -> support::StartedWorker {
    let mut extra = vec!["--slots", "2"];
    for gateway in gateways {
        extra.extend_from_slice(&["--dial", &gateway.dial]);
    }
    support::start_worker("none", &extra)
}

/// Waits until each gateway lists `count` workers.
fn wait_for_workers(gateways: &[&StartedGateway], count: usize) {
    for gateway in gateways {
        support::wait_for_workers(&gateway.http, count, Duration::from_secs(30));
    }
}

/// Unfinished tasks the gateway `peer` owns, as the database says.
fn owned_by(db: &PgDatabase, peer: &str) -> i64 {
    db.client()
        .query_one(
            "SELECT count(*) FROM ww_tasks WHERE owner = $1 AND finished_ms IS NULL",
            &[&peer],
        )
        .unwrap()
        .get(0)
}

#[test]
fn a_killed_gateways_tasks_finish_on_the_other_and_read_the_same() {
    let (db, _data, mut a, b) = two_gateways("two_gateways");
    let _workers = [start_worker(&[&a, &b]), start_worker(&[&a, &b])];
    wait_for_workers(&[&a, &b], 2);

    // Ten tasks through each gateway, each three runs two seconds apart: the
    // kill below lands while most of them have runs to come.
    let mut acked: Vec<(String, i64)> = Vec::new();
    for n in 0..20i64 {
        let via = if n % 2 == 0 { &a } else { &b };
        let id = format!("t{n:02}");
        let task = submit_form(
            &via.http,
            &[
                ("id", &id),
                ("input", &n.to_string()),
                ("difficulty", "2"),
                ("repeats", "3"),
                ("delay", "2"),
            ],
            HASH_PUZZLE_WASM,
        );
        assert_eq!(task["id"], id.as_str());
        acked.push((id, n));
    }
    // Every task is visible from both gateways at once.
    for gateway in [&a, &b] {
        let listed = get(&format!("{}/tasks?limit=100", gateway.http));
        assert_eq!(listed.as_array().map(Vec::len), Some(20), "{listed}");
    }
    std::thread::sleep(Duration::from_millis(1_000));
    let a_owned = owned_by(&db, &a.peer);
    assert!(a_owned > 0, "a owns unfinished tasks when it is killed");
    a.proc.kill();
    let killed_at = Instant::now();

    // b claims a's tasks once a's lease (10 s) runs out, within one claim (1 s).
    let claimed_in = loop {
        if owned_by(&db, &a.peer) == 0 {
            break killed_at.elapsed();
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(20),
            "a's {a_owned} tasks still unclaimed after 20 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!(
        "takeover: {a_owned} tasks of the killed gateway claimed {claimed_in:?} after SIGKILL"
    );
    assert!(
        claimed_in >= Duration::from_secs(7),
        "claimed before the lease could expire: {claimed_in:?}"
    );

    for (id, input) in &acked {
        let task = wait_final(&b.http, id, Duration::from_secs(90));
        assert_eq!(task["status"], "succeeded", "{task}");
        let runs = task["runs"].as_array().expect("runs");
        assert_eq!(runs.len(), 3, "{task}");
        for run in runs {
            assert_eq!(
                run["results"][0].as_i64(),
                Some(i64::from(hash_puzzle(*input as u32, 2))),
                "{task}"
            );
        }
    }
    let stored: i64 = db
        .client()
        .query_one(
            "SELECT count(*) FROM ww_tasks WHERE status = (SELECT status FROM ww_tasks WHERE id = 't00')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(stored, 20, "every task final, once, in one status");
}

#[test]
fn a_cancel_at_one_gateway_stops_a_task_another_runs() {
    let (_db, _data, a, b) = two_gateways("cancel_across");
    let _worker = start_worker(&[&a, &b]);
    wait_for_workers(&[&a, &b], 1);
    // A run every 100 ms, a thousand of them: far longer than the test.
    let wasm = base64::engine::general_purpose::STANDARD.encode(HASH_PUZZLE_WASM);
    let body = serde_json::json!({
        "id": "long", "wasm_base64": wasm, "args": [1, 2],
        "delay_ms": 100, "repeats": 1000,
    });
    let response = agent()
        .post(&format!("{}/tasks", a.http))
        .send_json(&body)
        .unwrap();
    assert_eq!(response.status(), 201);
    std::thread::sleep(Duration::from_millis(800));
    let asked_at = Instant::now();
    let mut response = agent()
        .delete(&format!("{}/tasks/long", b.http))
        .call()
        .unwrap();
    let answered_in = asked_at.elapsed();
    assert_eq!(response.status(), 200);
    let task: Value = response.body_mut().read_json().unwrap();
    assert_eq!(task["status"], "cancelled", "{task}");
    eprintln!("cancel at the other gateway answered in {answered_in:?}");
    let runs_at_ack = task["runs_total"].as_u64().expect("runs_total");
    assert!(
        (1..1000).contains(&runs_at_ack),
        "ran, and stopped before its end: {runs_at_ack}"
    );
    std::thread::sleep(Duration::from_millis(1_000));
    for gateway in [&a, &b] {
        let task = get(&format!("{}/tasks/long", gateway.http));
        assert_eq!(task["status"], "cancelled");
        assert_eq!(
            task["runs_total"].as_u64(),
            Some(runs_at_ack),
            "no run started after the cancel was acknowledged"
        );
        let open = task["runs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| !matches!(r["status"].as_str(), Some("succeeded" | "cancelled")))
            .count();
        assert_eq!(open, 0, "{task}");
    }
}

#[test]
fn a_database_outage_refuses_acknowledgements_and_records_runs_when_it_returns() {
    let server = PgServer::private();
    let db = PgDatabase::on(&server, "outage");
    let data = TempDir::new("pg-outage");
    let mut gateway = start_gateway(&data, &db);
    let _worker = start_worker(&[&gateway]);
    wait_for_workers(&[&gateway], 1);
    submit_form(
        &gateway.http,
        &[
            ("id", "steady"),
            ("input", "4"),
            ("difficulty", "2"),
            ("repeats", "8"),
            ("delay", "1"),
        ],
        HASH_PUZZLE_WASM,
    );
    std::thread::sleep(Duration::from_millis(1_500));

    // Down for 3 s, inside the gateway's 7 s window: it refuses what it
    // cannot acknowledge, keeps its runs going and stays up.
    server.pause();
    let down_at = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    let wasm = base64::engine::general_purpose::STANDARD.encode(HASH_PUZZLE_WASM);
    let refused = agent()
        .post(&format!("{}/tasks", gateway.http))
        .send_json(serde_json::json!({ "id": "during", "wasm_base64": wasm, "args": [1, 1] }))
        .unwrap();
    assert_eq!(refused.status(), 503, "not acknowledged while down");
    let read = agent()
        .get(&format!("{}/tasks/steady", gateway.http))
        .call()
        .unwrap();
    assert_eq!(
        read.status(),
        503,
        "nothing shown that the store cannot vouch for"
    );
    std::thread::sleep(Duration::from_secs(3).saturating_sub(down_at.elapsed()));
    server.resume();
    assert!(
        gateway.proc.wait_exit(Duration::from_millis(10)).is_none(),
        "the gateway rode out a 3 s outage"
    );
    let task = wait_final(&gateway.http, "steady", Duration::from_secs(60));
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(task["runs_total"], 8, "{task}");
    let during = agent()
        .get(&format!("{}/tasks/during", gateway.http))
        .call()
        .unwrap();
    assert_eq!(during.status(), 404, "the refused submission left nothing");

    // Down past the window: the gateway stops, non-zero, for a supervisor.
    server.pause();
    let status = gateway
        .proc
        .wait_exit(Duration::from_secs(20))
        .expect("the gateway exits when its lease can no longer be renewed");
    assert!(!status.success(), "{status}");
    server.resume();
}

/// `GET http/path`: the status and the body as JSON (`Null` if it is not).
fn get_status(http: &str, path: &str) -> (u16, Value) {
    let mut response = agent().get(&format!("{http}{path}")).call().unwrap();
    let status = response.status().as_u16();
    (
        status,
        response.body_mut().read_json().unwrap_or(Value::Null),
    )
}

#[test]
fn a_database_outage_answers_health_and_metrics_503_and_the_gateway_keeps_running() {
    let server = PgServer::private();
    let db = PgDatabase::on(&server, "health");
    let data = TempDir::new("pg-health");
    let mut gateway = start_gateway(&data, &db);
    let (status, body) = get_status(&gateway.http, "/healthz");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(get_status(&gateway.http, "/metrics").0, 200);

    // Down for 2 s, inside the lease window: the count of finished tasks
    // cannot be read, which says nothing wrong of the store.
    server.pause();
    let down_at = Instant::now();
    let (status, body) = get_status(&gateway.http, "/healthz");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unavailable", "{body}");
    let (status, body) = get_status(&gateway.http, "/metrics");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "busy", "{body}");
    std::thread::sleep(Duration::from_secs(2).saturating_sub(down_at.elapsed()));
    server.resume();
    assert!(
        gateway.proc.wait_exit(Duration::from_millis(10)).is_none(),
        "the gateway kept running through the outage"
    );
    // Healthy again once the pool has a connection back.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = get_status(&gateway.http, "/healthz");
        if status == 200 {
            assert_eq!(body["status"], "ok", "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not healthy again: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(get_status(&gateway.http, "/metrics").0, 200);
    assert!(gateway.proc.wait_exit(Duration::from_millis(10)).is_none());
}

#[test]
fn a_gateway_stopped_with_ctrl_c_hands_its_tasks_over_at_once() {
    let (db, _data, mut a, b) = two_gateways("handover");
    let _worker = start_worker(&[&a, &b]);
    wait_for_workers(&[&a, &b], 1);
    for n in 0..4 {
        submit_form(
            &a.http,
            &[
                ("id", &format!("h{n}")),
                ("input", &n.to_string()),
                ("difficulty", "2"),
                ("repeats", "3"),
                ("delay", "2"),
            ],
            HASH_PUZZLE_WASM,
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(owned_by(&db, &a.peer), 4);
    // SAFETY: signals a child process this test started and still holds.
    let sent = unsafe { libc::kill(a.proc.pid() as libc::pid_t, libc::SIGINT) };
    assert_eq!(sent, 0);
    let stopped_at = Instant::now();
    let status = a
        .proc
        .wait_exit(Duration::from_secs(10))
        .expect("exits on Ctrl-C");
    assert!(status.success(), "{status}");
    let handed_over = loop {
        if owned_by(&db, &a.peer) == 0 {
            break stopped_at.elapsed();
        }
        assert!(
            stopped_at.elapsed() < Duration::from_secs(5),
            "not handed over within 5 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!("handover after Ctrl-C: {handed_over:?}");
    for n in 0..4 {
        let task = wait_final(&b.http, &format!("h{n}"), Duration::from_secs(60));
        assert_eq!(task["status"], "succeeded", "{task}");
    }
}

#[test]
fn generated_ids_are_unique_across_gateways() {
    let (db, _data, a, b) = two_gateways("generated_ids");
    // Both gateways number their tasks from 1 in the same milliseconds:
    // eight clients on each, all starting at once.
    let start = std::sync::Barrier::new(16);
    let ids: Vec<String> = std::thread::scope(|s| {
        let each: Vec<_> = (0..16)
            .map(|client| {
                let http = if client % 2 == 0 {
                    a.http.clone()
                } else {
                    b.http.clone()
                };
                let start = &start;
                s.spawn(move || {
                    start.wait();
                    (0..5)
                        .map(|_| {
                            let task = submit_form(
                                &http,
                                &[("input", "1"), ("difficulty", "1"), ("start", "3600")],
                                HASH_PUZZLE_WASM,
                            );
                            task["id"].as_str().expect("id").to_string()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        each.into_iter()
            .flat_map(|h| h.join().expect("client"))
            .collect()
    });
    let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), 80, "{ids:?}");
    let stored = count(db.client(), "SELECT count(*) FROM ww_tasks");
    assert_eq!(stored, 80);
}

/// POSTs `body` as JSON to `http`/tasks with `key` as its Idempotency-Key;
/// the status and the answer.
fn post_task(http: &str, body: &Value, key: Option<&str>) -> (u16, Value) {
    let mut request = agent().post(&format!("{http}/tasks"));
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let mut response = request.send_json(body).unwrap();
    let status = response.status().as_u16();
    (
        status,
        response.body_mut().read_json().unwrap_or(Value::Null),
    )
}

#[test]
fn the_same_id_or_key_at_two_gateways_at_once_makes_one_task() {
    let (db, _data, a, b) = two_gateways("same_id");
    let wasm = base64::engine::general_purpose::STANDARD.encode(HASH_PUZZLE_WASM);
    let start = std::sync::Barrier::new(2);
    for n in 0..20i64 {
        // One id, two different tasks, one through each gateway at once.
        let bodies = [100, 200].map(|base| {
            serde_json::json!({
                "id": format!("same-{n}"), "wasm_base64": wasm,
                "args": [base + n, 1], "start_ms": 3_600_000,
            })
        });
        let answers: Vec<(u16, Value)> = std::thread::scope(|s| {
            let each: Vec<_> = [(&a.http, &bodies[0]), (&b.http, &bodies[1])]
                .into_iter()
                .map(|(http, body)| {
                    let start = &start;
                    s.spawn(move || {
                        start.wait();
                        post_task(http, body, None)
                    })
                })
                .collect();
            each.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
        statuses.sort();
        assert_eq!(statuses, [201, 409], "{answers:?}");
        let (_, created) = answers.iter().find(|(s, _)| *s == 201).unwrap();
        let stored = get(&format!("{}/tasks/same-{n}", b.http));
        assert_eq!(
            stored["args"], created["args"],
            "the acknowledged one is stored"
        );

        // One idempotency key, the same request through each gateway at once.
        let body = serde_json::json!({
            "wasm_base64": wasm, "args": [n, 2], "start_ms": 3_600_000,
        });
        let key = format!("key-{n}");
        let answers: Vec<(u16, Value)> = std::thread::scope(|s| {
            let each: Vec<_> = [&a.http, &b.http]
                .into_iter()
                .map(|http| {
                    let (start, body, key) = (&start, &body, &key);
                    s.spawn(move || {
                        start.wait();
                        post_task(http, body, Some(key))
                    })
                })
                .collect();
            each.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
        statuses.sort();
        assert_eq!(statuses, [200, 201], "{answers:?}");
        assert_eq!(
            answers[0].1["id"], answers[1].1["id"],
            "one task: {answers:?}"
        );
    }
    for gateway in [&a, &b] {
        let health = agent()
            .get(&format!("{}/healthz", gateway.http))
            .call()
            .unwrap();
        assert_eq!(health.status(), 200, "both gateways still serve");
    }
    let stored = count(db.client(), "SELECT count(*) FROM ww_tasks");
    assert_eq!(stored, 40);
}

#[test]
fn a_database_that_hangs_stops_the_gateway_within_its_lease_window() {
    let server = PgServer::private();
    let db = PgDatabase::on(&server, "hangs");
    let data = TempDir::new("pg-hangs");
    let mut gateway = start_gateway(&data, &db);
    let _worker = start_worker(&[&gateway]);
    wait_for_workers(&[&gateway], 1);
    submit_form(
        &gateway.http,
        &[
            ("id", "steady"),
            ("input", "4"),
            ("difficulty", "2"),
            ("repeats", "30"),
            ("delay", "1"),
        ],
        HASH_PUZZLE_WASM,
    );
    std::thread::sleep(Duration::from_millis(1_500));
    // Nothing answers, nothing refuses: calls hang instead of failing.
    server.freeze();
    let frozen_at = Instant::now();
    let status = gateway.proc.wait_exit(Duration::from_secs(20));
    let stopped_in = frozen_at.elapsed();
    server.thaw();
    let status = status.expect("the gateway stops while the database hangs");
    assert!(!status.success(), "{status}");
    eprintln!("hung database: the gateway exited {stopped_in:?} after the freeze");
    // Its lease ran at most 10 s past its last renewal (at most 2.5 s before
    // the freeze); it stopped acting 3 s before that and exited 1 s later.
    assert!(
        stopped_in <= Duration::from_millis(9_000),
        "exited {stopped_in:?} after the freeze: past the lease"
    );
}

#[test]
fn a_gateway_takes_over_no_more_tasks_than_its_open_tasks_max() {
    let db = PgDatabase::new("claim_room");
    let (data_a, data_b) = (TempDir::new("pg-room-a"), TempDir::new("pg-room-b"));
    let mut a = start_gateway(&data_a, &db);
    let listen = format!("/ip4/127.0.0.1/tcp/{}", free_tcp_port());
    let b = support::start_gateway(
        data_b.path(),
        &listen,
        &["--store", &db.url, "--open-tasks-max", "4"],
    );
    // Ten tasks due in an hour: they stay open for the whole test.
    for n in 0..10 {
        submit_form(
            &a.http,
            &[
                ("id", &format!("r{n}")),
                ("input", "1"),
                ("difficulty", "1"),
                ("start", "3600"),
            ],
            HASH_PUZZLE_WASM,
        );
    }
    a.proc.kill();
    // a's lease (10 s), a claim (1 s), and room to spare.
    std::thread::sleep(Duration::from_secs(14));
    assert_eq!(owned_by(&db, &b.peer), 4, "b holds its open_tasks_max");
    assert_eq!(owned_by(&db, &a.peer), 6, "the rest wait for room");
}

/// A request to `http`/`path` with method `method` and a JSON-less body: the
/// status and the answer.
fn send(method: &str, url: &str, body: Option<&[u8]>) -> (u16, Value) {
    let mut response = match (method, body) {
        ("POST", Some(bytes)) => agent().post(url).send(bytes).unwrap(),
        ("DELETE", None) => agent().delete(url).call().unwrap(),
        other => panic!("no such request in this test: {other:?}"),
    };
    let status = response.status().as_u16();
    (
        status,
        response.body_mut().read_json().unwrap_or(Value::Null),
    )
}

/// The one number `sql` (a count) answers.
fn count(mut client: postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).unwrap().get(0)
}

/// Modules stored in the shared database.
fn modules_stored(db: &PgDatabase) -> i64 {
    count(db.client(), "SELECT count(*) FROM ww_modules")
}

#[test]
fn a_module_another_gateway_deleted_is_refused_without_stopping_this_one() {
    let db = PgDatabase::new("module_gone");
    let (data_a, data_b) = (TempDir::new("pg-gone-a"), TempDir::new("pg-gone-b"));
    let listen = format!("/ip4/127.0.0.1/tcp/{}", free_tcp_port());
    // a collects unused modules after 1 s; b, by default, after an hour.
    let a = support::start_gateway(
        data_a.path(),
        &listen,
        &["--store", &db.url, "--module-grace", "1s"],
    );
    let b = start_gateway(&data_b, &db);
    let (status, stored) = send(
        "POST",
        &format!("{}/modules", a.http),
        Some(HASH_PUZZLE_WASM),
    );
    assert_eq!(status, 201, "{stored}");
    let hash = stored["hash"].as_str().expect("hash").to_string();
    let task = |id: &str| serde_json::json!({"id": id, "module": hash, "args": [1, 1], "start_ms": 3_600_000});
    // b learns the module through a task of its own, which then goes.
    let (status, answer) = post_task(&b.http, &task("first"), None);
    assert_eq!(status, 201, "{answer}");
    assert_eq!(
        send("DELETE", &format!("{}/tasks/first", b.http), None).0,
        200
    );
    let (status, answer) = send(
        "DELETE",
        &format!("{}/tasks/first?purge=true", b.http),
        None,
    );
    assert_eq!(status, 200, "{answer}");
    // a's collection (every 10 s) deletes it from the store; b still knows it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while modules_stored(&db) > 0 {
        assert!(
            Instant::now() < deadline,
            "a never deleted the unused module"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, answer) = post_task(&b.http, &task("second"), None);
    assert_eq!(status, 422, "{answer}");
    let message = answer["detail"].as_str().unwrap_or_default();
    assert!(message.contains("it was deleted, unused"), "{answer}");
    let health = agent().get(&format!("{}/healthz", b.http)).call().unwrap();
    assert_eq!(health.status(), 200, "b still serves");
    let stored = count(db.client(), "SELECT count(*) FROM ww_tasks");
    assert_eq!(stored, 0, "nothing of the refused task was written");
    // b has forgotten it: refused at once; uploaded again, usable again.
    let (status, answer) = post_task(&b.http, &task("third"), None);
    assert_eq!(status, 422, "{answer}");
    assert!(answer.to_string().contains("unknown module"), "{answer}");
    let (status, _) = send(
        "POST",
        &format!("{}/modules", b.http),
        Some(HASH_PUZZLE_WASM),
    );
    assert_eq!(status, 201);
    let (status, answer) = post_task(&b.http, &task("fourth"), None);
    assert_eq!(status, 201, "{answer}");
}

#[test]
fn tasks_a_lost_claim_left_owned_but_unheld_are_taken_up() {
    let server = PgServer::private();
    let db = PgDatabase::on(&server, "lost_claim");
    let (data_a, data_b) = (TempDir::new("pg-lost-a"), TempDir::new("pg-lost-b"));
    let mut a = start_gateway(&data_a, &db);
    let b = start_gateway(&data_b, &db);
    let _worker = start_worker(&[&b]);
    wait_for_workers(&[&b], 1);
    let ids: Vec<String> = (0..5).map(|n| format!("lost-{n}")).collect();
    for (n, id) in ids.iter().enumerate() {
        submit_form(
            &a.http,
            &[
                ("id", id),
                ("input", &n.to_string()),
                ("difficulty", "1"),
                ("start", "6"),
            ],
            HASH_PUZZLE_WASM,
        );
    }
    // What a claim by b leaves when its answer never reaches b: the store
    // says b owns a's tasks, and b does not know them.
    let mut client = db.client();
    let epoch: i64 = client
        .query_one("SELECT epoch FROM ww_gateways WHERE id = $1", &[&b.peer])
        .unwrap()
        .get(0);
    let moved = client
        .execute(
            "UPDATE ww_tasks SET owner = $1, owner_epoch = $2 WHERE owner = $3",
            &[&b.peer, &epoch, &a.peer],
        )
        .unwrap();
    assert_eq!(moved, 5);
    drop(client);
    a.proc.kill();
    // A short outage: b's claims fail, so b compares what it owns with what
    // it holds soon after (at the latest, a minute on).
    server.pause();
    std::thread::sleep(Duration::from_secs(2));
    server.resume();
    for id in &ids {
        let task = wait_final(&b.http, id, Duration::from_secs(40));
        assert_eq!(task["status"], "succeeded", "{task}");
    }
    assert_eq!(owned_by(&db, &b.peer), 0, "all finished");
}
