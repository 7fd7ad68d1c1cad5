//! The axum router served over turmoil TCP and called with `ww_sim::http::request`
//! from another simulated host: statuses, bodies, headers and JSON arrive intact,
//! a partitioned or stalled exchange fails within its timeout instead of hanging,
//! and the same seed gives the same exchanges at the same simulated times.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use ww_sim::http::{request, serve, HttpError, HttpResponse};

const PORT: u16 = 8080;
const TIMEOUT: Duration = Duration::from_secs(2);
/// Longer than [`TIMEOUT`], so `/slow` can never answer in time.
const SLOW: Duration = Duration::from_secs(30);

/// A call to make: method, path, headers and body.
type Call<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a [u8]);
/// One exchange: what was called, what came back, and when (simulated).
type Exchange = (String, Result<HttpResponse, HttpError>, Duration);
/// One outcome and how long (simulated) it took.
type Outcome = Rc<RefCell<Option<(Result<HttpResponse, HttpError>, Duration)>>>;

fn router() -> Router {
    Router::new()
        .route("/hello", get(|| async { "hi" }))
        .route(
            "/echo",
            post(|body: Bytes| async move { (StatusCode::CREATED, body) }),
        )
        .route(
            "/json",
            get(|| async { Json(json!({ "name": "ww", "answer": 42, "ok": true })) }),
        )
        .route(
            "/headers",
            get(|headers: HeaderMap| async move {
                let value = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string()
                };
                Json(json!({ "host": value("host"), "x-test": value("x-test") }))
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(SLOW).await;
                "late"
            }),
        )
}

fn sim(seed: u64) -> turmoil::Sim<'static> {
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(Duration::from_secs(60))
        .build();
    sim.host("server", || async {
        let listener = turmoil::net::TcpListener::bind(("0.0.0.0", PORT)).await?;
        serve(listener, router()).await;
        Ok(())
    });
    sim
}

fn now() -> Duration {
    turmoil::sim_elapsed().expect("inside the simulation")
}

async fn call(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse, HttpError> {
    request(
        "server",
        PORT,
        method,
        path,
        headers,
        body.to_vec(),
        TIMEOUT,
    )
    .await
}

/// Runs the basic exchanges from a client host and returns what it saw, with the
/// simulated time each response arrived.
fn run_basic(seed: u64) -> Vec<Exchange> {
    let exchanges: Rc<RefCell<Vec<Exchange>>> = Rc::default();
    let mut sim = sim(seed);
    let seen = exchanges.clone();
    sim.client("client", async move {
        let calls: [Call; 5] = [
            ("GET", "/hello", &[], b""),
            (
                "POST",
                "/echo",
                &[("content-type", "text/plain")],
                b"ping \x00\xff pong",
            ),
            ("GET", "/json", &[], b""),
            ("GET", "/headers", &[("x-test", "yes")], b""),
            ("GET", "/missing", &[], b""),
        ];
        for (method, path, headers, body) in calls {
            let result = call(method, path, headers, body).await;
            seen.borrow_mut()
                .push((format!("{method} {path}"), result, now()));
        }
        Ok(())
    });
    sim.run().expect("simulation runs to completion");
    exchanges.take()
}

fn ok(exchange: &Exchange) -> &HttpResponse {
    match &exchange.1 {
        Ok(response) => response,
        Err(error) => panic!("{} failed: {error}", exchange.0),
    }
}

#[test]
fn router_answers_over_simulated_tcp() {
    let exchanges = run_basic(7);
    assert_eq!(exchanges.len(), 5);

    let hello = ok(&exchanges[0]);
    assert_eq!(hello.status, 200);
    assert_eq!(hello.body, b"hi");
    assert_eq!(hello.json(), serde_json::Value::Null, "\"hi\" is not JSON");

    let echo = ok(&exchanges[1]);
    assert_eq!(echo.status, 201);
    assert_eq!(echo.body, b"ping \x00\xff pong");

    let json = ok(&exchanges[2]);
    assert_eq!(json.status, 200);
    assert_eq!(
        json.json(),
        json!({ "name": "ww", "answer": 42, "ok": true })
    );

    let headers = ok(&exchanges[3]);
    assert_eq!(headers.status, 200);
    assert_eq!(
        headers.json(),
        json!({ "host": format!("server:{PORT}"), "x-test": "yes" })
    );

    let missing = ok(&exchanges[4]);
    assert_eq!(missing.status, 404);

    // Each exchange crosses the simulated network, so simulated time advances
    // between them; none comes near the timeout.
    for pair in exchanges.windows(2) {
        assert!(
            pair[1].2 > pair[0].2,
            "{} took no simulated time",
            pair[1].0
        );
    }
    assert!(exchanges[4].2 < TIMEOUT);
}

#[test]
fn partitioned_client_fails_within_timeout() {
    let outcome: Outcome = Rc::default();
    let mut sim = sim(7);
    let seen = outcome.clone();
    sim.client("client", async move {
        let start = now();
        let result = call("GET", "/hello", &[], b"").await;
        *seen.borrow_mut() = Some((result, now() - start));
        Ok(())
    });
    sim.partition("client", "server");
    sim.run().expect("simulation runs to completion");

    let (result, elapsed) = outcome.take().expect("the client finished");
    match &result {
        Err(HttpError::Connect(detail)) => {
            assert!(
                detail.starts_with(&format!("server:{PORT}: connection refused")),
                "{detail}"
            );
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
    assert!(
        elapsed <= TIMEOUT + Duration::from_millis(100),
        "failed after {elapsed:?}"
    );
}

#[test]
fn stalled_response_times_out() {
    let outcome: Outcome = Rc::default();
    let mut sim = sim(7);
    let seen = outcome.clone();
    sim.client("client", async move {
        let start = now();
        let result = call("GET", "/slow", &[], b"").await;
        *seen.borrow_mut() = Some((result, now() - start));
        // The server is still fine afterwards: the timed-out exchange did not
        // wedge it.
        let after = call("GET", "/hello", &[], b"").await?;
        assert_eq!((after.status, after.body.as_slice()), (200, &b"hi"[..]));
        Ok(())
    });
    sim.run().expect("simulation runs to completion");

    let (result, elapsed) = outcome.take().expect("the client finished");
    assert_eq!(result, Err(HttpError::Timeout));
    assert!(elapsed >= TIMEOUT, "timed out early, after {elapsed:?}");
    assert!(
        elapsed <= TIMEOUT + Duration::from_millis(100),
        "timed out late, after {elapsed:?}"
    );
}

#[test]
fn same_seed_same_exchanges() {
    let first = run_basic(7);
    let second = run_basic(7);
    assert_eq!(first.len(), 5);
    assert_eq!(first, second);
}
