//! The locked REST API: the bearer token off loopback, the Host and Origin
//! checks everywhere, `/healthz` open, the in-flight limit and the request
//! deadline (in-process through the locked router); the server's header
//! timeout and connection limit (`serve` on loopback); then real `ww-sched`
//! processes: a gateway on 0.0.0.0 that wants the token from its data
//! directory (reached on 127.0.0.1 only), the CLI sending it, a loopback
//! gateway taking the README's multipart curl as it is, and a token file
//! others may read stopping the gateway.

mod gateway_support;
mod support;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::routing::get;
use axum::Router;
use serde_json::Value;
use tower::ServiceExt as _;
use ww::rpc;
use ww_sched::gateway::{
    constant_time_eq, lock, serve, ApiAccess, ApiToken, HttpLimits, TokenError, API_TOKEN_FILE,
};
use ww_sched::tasks::HASH_PUZZLE_WASM;

use gateway_support::{form, multipart, Harness, BOUNDARY};

/// A token for the in-process tests.
fn token() -> ApiToken {
    ApiToken::new("0123456789abcdef0123456789abcdef-test").unwrap()
}

const TOKEN: &str = "0123456789abcdef0123456789abcdef-test";

/// `router` locked for an API listening on `listen`.
fn locked(router: Router, listen: &str) -> Router {
    lock(
        router,
        ApiAccess::new(listen.parse().unwrap(), token()),
        HttpLimits::default(),
    )
}

/// Sends `request` through `router`: status, headers, JSON body.
async fn send(router: &Router, request: Request<Body>) -> (StatusCode, header::HeaderMap, Value) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, body)
}

/// `GET uri` with `headers`.
fn get_with(uri: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut request = Request::get(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Body::empty()).unwrap()
}

/// The original multipart form for task `id`, with `headers`.
fn form_post(id: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut request = Request::post("/tasks").header(
        header::CONTENT_TYPE,
        format!("multipart/form-data; boundary={BOUNDARY}"),
    );
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request
        .body(Body::from(multipart(
            &form(id, &[]),
            Some(HASH_PUZZLE_WASM),
        )))
        .unwrap()
}

fn assert_refused(
    what: &str,
    answer: &(StatusCode, header::HeaderMap, Value),
    status: StatusCode,
    kind: &str,
) {
    assert_eq!(answer.0, status, "{what}: {}", answer.2);
    assert_eq!(answer.2["error"], kind, "{what}: {}", answer.2);
    assert!(answer.2["detail"].is_string(), "{what}: {}", answer.2);
}

#[test]
fn off_loopback_every_request_but_healthz_needs_the_token() {
    rpc::block_on_local(async {
        let h = Harness::start("auth-token", None).await;
        let api = locked(h.router.clone(), "0.0.0.0:8080");
        let host = ("Host", "127.0.0.1:8080");
        let bearer = format!("Bearer {TOKEN}");

        let answer = send(&api, get_with("/tasks", &[host])).await;
        assert_refused(
            "no token",
            &answer,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        );
        let challenge = answer.1[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert!(challenge.starts_with("Bearer"), "{challenge}");

        let wrong = format!("Bearer {}x", &TOKEN[..TOKEN.len() - 1]);
        let answer = send(&api, get_with("/tasks", &[host, ("Authorization", &wrong)])).await;
        assert_refused(
            "wrong token",
            &answer,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        );
        assert!(answer.1.contains_key(header::WWW_AUTHENTICATE));
        let basic = send(&api, get_with("/tasks", &[host, ("Authorization", TOKEN)])).await;
        assert_refused(
            "no Bearer scheme",
            &basic,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        );
        let unknown_path = send(&api, get_with("/nothing", &[host])).await;
        assert_refused(
            "404s are locked too",
            &unknown_path,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        );

        let (status, _, body) = send(&api, get_with("/healthz", &[host])).await;
        assert_eq!(status, StatusCode::OK, "healthz stays open: {body}");
        assert_eq!(body["status"], "ok", "{body}");

        let (status, headers, task) = send(
            &api,
            form_post("locked-1", &[host, ("Authorization", &bearer)]),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{task}");
        assert_eq!(headers[header::LOCATION], "/tasks/locked-1");
        let lower = format!("bearer {TOKEN}");
        let (status, _, list) =
            send(&api, get_with("/tasks", &[host, ("Authorization", &lower)])).await;
        assert_eq!(status, StatusCode::OK, "{list}");
        assert_eq!(list[0]["id"], "locked-1", "{list}");
        h.finish();
    })
    .unwrap();
}

#[test]
fn on_loopback_the_original_form_needs_no_token() {
    rpc::block_on_local(async {
        let h = Harness::start("auth-loopback", None).await;
        let api = locked(h.router.clone(), "127.0.0.1:8080");
        for (id, host) in [
            ("lo-1", "127.0.0.1:8080"),
            ("lo-2", "localhost:8080"),
            ("lo-3", "[::1]:8080"),
        ] {
            let (status, _, task) = send(&api, form_post(id, &[("Host", host)])).await;
            assert_eq!(status, StatusCode::CREATED, "Host {host}: {task}");
        }
        h.finish();
    })
    .unwrap();
}

#[test]
fn foreign_hosts_are_forbidden_on_every_address() {
    rpc::block_on_local(async {
        let h = Harness::start("auth-host", None).await;
        let bearer = format!("Bearer {TOKEN}");
        for listen in ["127.0.0.1:8080", "0.0.0.0:8080", "10.1.2.3:8080"] {
            let api = locked(h.router.clone(), listen);
            for host in [
                "evil.example:8080",
                "evil.example",
                "127.0.0.1:9999",
                "localhost",
            ] {
                for path in ["/tasks", "/healthz"] {
                    let answer = send(
                        &api,
                        get_with(path, &[("Host", host), ("Authorization", &bearer)]),
                    )
                    .await;
                    let what = format!("{listen}: Host {host} on {path}");
                    assert_refused(&what, &answer, StatusCode::FORBIDDEN, "forbidden");
                }
            }
            // A URI naming another host (HTTP/2 :authority, absolute form).
            let answer = send(
                &api,
                get_with(
                    "http://evil.example:8080/tasks",
                    &[("Authorization", &bearer)],
                ),
            )
            .await;
            assert_refused(
                &format!("{listen}: authority"),
                &answer,
                StatusCode::FORBIDDEN,
                "forbidden",
            );
            let answer = send(&api, get_with("/tasks", &[("Authorization", &bearer)])).await;
            assert_refused(
                &format!("{listen}: no Host"),
                &answer,
                StatusCode::BAD_REQUEST,
                "bad_request",
            );
        }
        // The exact listen address passes, and so does a configured name.
        let api = lock(
            h.router.clone(),
            ApiAccess::new("10.1.2.3:8080".parse().unwrap(), token())
                .allow_host("sched.example")
                .unwrap(),
            HttpLimits::default(),
        );
        for host in ["10.1.2.3:8080", "sched.example", "sched.example:443"] {
            let (status, _, body) = send(
                &api,
                get_with("/tasks", &[("Host", host), ("Authorization", &bearer)]),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "Host {host}: {body}");
        }
        let answer = send(
            &api,
            get_with(
                "/tasks",
                &[("Host", "10.9.9.9:8080"), ("Authorization", &bearer)],
            ),
        )
        .await;
        assert_refused(
            "another IP than the listen one",
            &answer,
            StatusCode::FORBIDDEN,
            "forbidden",
        );
        h.finish();
    })
    .unwrap();
}

#[test]
fn cross_origin_requests_are_forbidden() {
    rpc::block_on_local(async {
        let h = Harness::start("auth-origin", None).await;
        let api = locked(h.router.clone(), "127.0.0.1:8080");
        let host = ("Host", "127.0.0.1:8080");
        for (name, value) in [
            ("Origin", "http://evil.example"),
            ("Origin", "http://evil.example:8080"),
            ("Origin", "null"),
            ("Origin", "https://127.0.0.1:8080"),
            ("Origin", "http://127.0.0.1:3000"),
            ("Sec-Fetch-Site", "cross-site"),
            ("Sec-Fetch-Site", "same-site"),
        ] {
            let answer = send(&api, form_post("never", &[host, (name, value)])).await;
            assert_refused(
                &format!("{name}: {value}"),
                &answer,
                StatusCode::FORBIDDEN,
                "forbidden",
            );
        }
        let (status, list) = h.get("/tasks").await;
        assert_eq!(
            (status, list),
            (StatusCode::OK, serde_json::json!([])),
            "nothing got in"
        );
        // The API's own origin, and a request typed into the address bar.
        let (status, _, task) = send(
            &api,
            form_post(
                "same-origin",
                &[
                    host,
                    ("Origin", "http://localhost:8080"),
                    ("Sec-Fetch-Site", "same-origin"),
                ],
            ),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{task}");
        let (status, _, body) = send(
            &api,
            get_with("/tasks", &[host, ("Sec-Fetch-Site", "none")]),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        h.finish();
    })
    .unwrap();
}

/// A router whose `GET /slow` and `POST /modules` wait for `release` (or
/// for ever).
fn slow_router(release: Arc<tokio::sync::Notify>) -> Router {
    let wait = move || {
        let release = release.clone();
        async move {
            release.notified().await;
            "done"
        }
    };
    Router::new()
        .route("/slow", get(wait.clone()))
        .route("/modules", axum::routing::post(wait))
        .route("/fast", get(|| async { "fast" }))
}

#[tokio::test]
async fn requests_beyond_the_in_flight_limit_are_refused_not_queued() {
    let release = Arc::new(tokio::sync::Notify::new());
    let limits = HttpLimits {
        in_flight_max: 2,
        ..HttpLimits::default()
    };
    let access = ApiAccess::new("127.0.0.1:8080".parse().unwrap(), token());
    let api = lock(slow_router(release.clone()), access, limits);
    let host = [("Host", "127.0.0.1:8080")];
    let first = tokio::spawn(api.clone().oneshot(get_with("/slow", &host)));
    let second = tokio::spawn(api.clone().oneshot(get_with("/slow", &host)));
    // Both hold their slots once the handlers wait.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let answer = send(&api, get_with("/fast", &host)).await;
    assert_refused(
        "third in flight",
        &answer,
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
    );
    assert_eq!(answer.1[header::RETRY_AFTER], "1");
    release.notify_waiters();
    assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(second.await.unwrap().unwrap().status(), StatusCode::OK);
    let (status, _, _) = send(&api, get_with("/fast", &host)).await;
    assert_eq!(status, StatusCode::OK, "slots come back");
}

#[tokio::test]
async fn a_request_past_its_deadline_is_answered_503() {
    let limits = HttpLimits {
        request_timeout: Duration::from_millis(100),
        ..HttpLimits::default()
    };
    let access = ApiAccess::new("127.0.0.1:8080".parse().unwrap(), token());
    let never = Arc::new(tokio::sync::Notify::new());
    let api = lock(slow_router(never), access, limits);
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        send(&api, get_with("/slow", &[("Host", "127.0.0.1:8080")])),
    )
    .await
    .expect("the deadline ends the request");
    assert_refused(
        "slow handler",
        &answer,
        StatusCode::SERVICE_UNAVAILABLE,
        "timeout",
    );
    assert_eq!(answer.1[header::RETRY_AFTER], "1");
}

#[tokio::test]
async fn uploads_have_their_own_deadline() {
    let limits = HttpLimits {
        request_timeout: Duration::from_secs(3600),
        upload_timeout: Duration::from_millis(100),
        ..HttpLimits::default()
    };
    let access = ApiAccess::new("127.0.0.1:8080".parse().unwrap(), token());
    let api = lock(
        slow_router(Arc::new(tokio::sync::Notify::new())),
        access,
        limits,
    );
    let upload = Request::post("/modules")
        .header("Host", "127.0.0.1:8080")
        .body(Body::from(HASH_PUZZLE_WASM))
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), send(&api, upload))
        .await
        .expect("the upload deadline ends the request");
    assert_refused(
        "slow upload",
        &answer,
        StatusCode::SERVICE_UNAVAILABLE,
        "timeout",
    );
    // A read goes by the other, longer deadline.
    let read = tokio::time::timeout(
        Duration::from_millis(500),
        send(&api, get_with("/slow", &[("Host", "127.0.0.1:8080")])),
    )
    .await;
    assert!(
        read.is_err(),
        "a read was cut off by the upload deadline: {read:?}"
    );
}

/// `router` locked for loopback and served by [`serve`] on 127.0.0.1:0 with
/// `limits`; its port.
async fn serve_on_loopback(router: Router, limits: HttpLimits) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listen = listener.local_addr().unwrap();
    let api = lock(router, ApiAccess::new(listen, token()), limits);
    tokio::spawn(serve(listener, api, limits));
    listen.port()
}

/// Reads from `stream` until it closes or `within` passes: what came, and
/// whether it closed.
async fn read_until_closed(stream: &mut tokio::net::TcpStream, within: Duration) -> (String, bool) {
    use tokio::io::AsyncReadExt as _;
    let mut got = Vec::new();
    let closed = tokio::time::timeout(within, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await
    .is_ok();
    (String::from_utf8_lossy(&got).into_owned(), closed)
}

#[tokio::test]
async fn a_client_slow_to_send_its_headers_is_cut_off() {
    use tokio::io::AsyncWriteExt as _;
    let limits = HttpLimits {
        header_read_timeout: Duration::from_millis(300),
        ..HttpLimits::default()
    };
    let port = serve_on_loopback(slow_router(Arc::new(tokio::sync::Notify::new())), limits).await;
    let mut trickle = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    trickle
        .write_all(b"GET /fast HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let (_, closed) = read_until_closed(&mut trickle, Duration::from_secs(10)).await;
    assert!(closed, "a half-sent head is cut off");
    // A kept-alive connection left idle after its answer is closed too.
    let mut idle = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let head = format!("GET /fast HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    idle.write_all(head.as_bytes()).await.unwrap();
    let (answer, closed) = read_until_closed(&mut idle, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed, "an idle kept-alive connection is closed");
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_for_one_to_close() {
    use tokio::io::AsyncWriteExt as _;
    let limits = HttpLimits {
        connections_max: 1,
        ..HttpLimits::default()
    };
    let port = serve_on_loopback(slow_router(Arc::new(tokio::sync::Notify::new())), limits).await;
    let holder = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    // Accepted (and so counted) before the next connects.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut waiting = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let head = format!("GET /fast HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    waiting.write_all(head.as_bytes()).await.unwrap();
    let (answer, closed) = read_until_closed(&mut waiting, Duration::from_millis(500)).await;
    assert!(
        answer.is_empty() && !closed,
        "served past the limit: {answer:?}"
    );
    drop(holder);
    let (answer, closed) = read_until_closed(&mut waiting, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(closed);
}

#[test]
fn constant_time_eq_agrees_with_eq() {
    let cases: [(&[u8], &[u8]); 6] = [
        (b"", b""),
        (b"token", b"token"),
        (b"token", b"tokem"),
        (b"token", b"Token"),
        (b"token", b"token!"),
        (b"a", b""),
    ];
    for (a, b) in cases {
        assert_eq!(constant_time_eq(a, b), a == b, "{a:?} vs {b:?}");
    }
    assert!(token().matches(TOKEN.as_bytes()));
    assert!(!token().matches(b"0123456789abcdef0123456789abcdef-tesT"));
}

#[cfg(unix)]
#[test]
fn the_token_file_is_private_made_once_and_refused_when_others_may_read_it() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = support::TempDir::new("auth-token-file");
    let made = ApiToken::load_or_create(&dir.0).unwrap();
    let path = dir.0.join(API_TOKEN_FILE);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "mode {mode:o}");
    assert_eq!(made.as_str().len(), 64, "32 bytes as hex");
    assert!(made.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), made.as_str());
    let again = ApiToken::load_or_create(&dir.0).unwrap();
    assert_eq!(again.as_str(), made.as_str(), "the second start reads it");
    let leftovers: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from(API_TOKEN_FILE)]);

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let error = ApiToken::load_or_create(&dir.0).unwrap_err();
    assert!(
        matches!(error, TokenError::Permissions { mode: 0o644, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("chmod 600"), "{error}");

    let short = dir.0.join("short");
    std::fs::write(&short, "abc\n").unwrap();
    std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).unwrap();
    let error = ApiToken::read(&short).unwrap_err();
    assert!(matches!(error, TokenError::Malformed { .. }), "{error}");
}

// ---- real processes, reached on 127.0.0.1 only ----

/// The port of a printed `http://ip:port`.
fn port_of(http: &str) -> u16 {
    http.rsplit(':').next().unwrap().parse().unwrap()
}

/// One raw HTTP/1.1 exchange on 127.0.0.1:`port`: the status and body.
fn raw_exchange(port: u16, head: &str, body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"));
    (status, answer)
}

/// What the README's `curl -s -F ... http://127.0.0.1:PORT/tasks` sends.
fn readme_curl(port: u16, id: &str, token: Option<&str>) -> (u16, String) {
    let boundary = "------------------------aBcDeF0123456789";
    let fields = [
        ("id", id),
        ("description", "demo"),
        ("input", "7"),
        ("difficulty", "4"),
        ("repeats", "3"),
        ("delay", "2"),
        ("duration", "30"),
        ("start", "0"),
        ("complete", "0"),
    ];
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"wasm\"; filename=\"hash-puzzle.wasm\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
    );
    body.extend_from_slice(HASH_PUZZLE_WASM);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "POST /tasks HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n{auth}\
         Content-Length: {}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    raw_exchange(port, &head, &body)
}

#[test]
fn a_loopback_gateway_takes_the_readme_curl_without_a_token() {
    let data = support::TempDir::new("auth-curl");
    let gateway = support::start_gateway(data.path(), "/ip4/127.0.0.1/tcp/0", &[]);
    let port = port_of(&gateway.http);
    let (status, answer) = readme_curl(port, "puzzle", None);
    assert_eq!(status, 201, "{answer}");
    assert!(
        answer.contains("location: /tasks/puzzle") || answer.contains("Location: /tasks/puzzle"),
        "{answer}"
    );
    // Even on loopback a browser page elsewhere is turned away.
    let head = format!(
        "GET /tasks HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://evil.example\r\nConnection: close\r\n\r\n"
    );
    let (status, answer) = raw_exchange(port, &head, b"");
    assert_eq!(status, 403, "{answer}");
    let head =
        format!("GET /tasks HTTP/1.1\r\nHost: rebound.example:{port}\r\nConnection: close\r\n\r\n");
    let (status, answer) = raw_exchange(port, &head, b"");
    assert_eq!(status, 403, "{answer}");
}

#[test]
fn a_gateway_on_all_interfaces_wants_the_token_from_its_data_directory() {
    let data = support::TempDir::new("auth-wildcard");
    let mut proc = support::Proc::start(&[
        "gateway",
        "--http",
        "0.0.0.0:0",
        "--data",
        data.path(),
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--discover",
        "none",
    ]);
    let http = proc.wait_for("http on ", Duration::from_secs(30));
    let note = proc.wait_for("api token in ", Duration::from_secs(10));
    assert!(note.contains("required"), "{note}");
    assert!(!note.contains("not required"), "{note}");
    let port = port_of(&http);
    let base = format!("http://127.0.0.1:{port}");
    let path = data.0.join(API_TOKEN_FILE);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "mode {mode:o}");
    }
    let token = std::fs::read_to_string(&path).unwrap();

    let (status, answer) = readme_curl(port, "no-token", None);
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{answer}"
    );
    let (status, answer) = readme_curl(port, "with-token", Some(&token));
    assert_eq!(status, 201, "{answer}");

    let agent = support::http_agent(Duration::from_secs(30));
    let healthz = agent.get(&format!("{base}/healthz")).call().unwrap();
    assert_eq!(healthz.status(), 200, "healthz needs no token");
    let foreign = agent
        .get(&format!("{base}/tasks"))
        .header("Authorization", format!("Bearer {token}"))
        .header("Origin", "http://evil.example")
        .call()
        .unwrap();
    assert_eq!(
        foreign.status(),
        403,
        "a foreign Origin, even with the token"
    );

    // The CLI finds the token in the data directory, or in WW_SCHED_TOKEN.
    let cli = |envs: &[(&str, &str)], data_dir: &str| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ww-sched"));
        command.args(["tasks", "--gateway", &base, "--data", data_dir]);
        command.env_remove("WW_SCHED_TOKEN");
        for (name, value) in envs {
            command.env(name, value);
        }
        command.output().unwrap()
    };
    let listed = cli(&[], data.path());
    let stdout = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert!(stdout.contains("with-token"), "{stdout}");
    let elsewhere = support::TempDir::new("auth-no-data");
    let by_env = cli(&[("WW_SCHED_TOKEN", &token)], elsewhere.path());
    assert!(
        by_env.status.success(),
        "{}",
        String::from_utf8_lossy(&by_env.stderr)
    );
    let none = cli(&[], elsewhere.path());
    let stderr = String::from_utf8_lossy(&none.stderr);
    assert!(!none.status.success());
    assert!(
        stderr.contains("401") && stderr.contains("WW_SCHED_TOKEN"),
        "{stderr}"
    );
    let wrong = cli(
        &[(
            "WW_SCHED_TOKEN",
            "wrong-wrong-wrong-wrong-wrong-wrong-wrong",
        )],
        data.path(),
    );
    assert!(
        !wrong.status.success(),
        "the env wins over the data directory"
    );
    proc.kill();
}

#[cfg(unix)]
#[test]
fn a_token_file_others_may_read_stops_the_gateway() {
    use std::os::unix::fs::PermissionsExt as _;
    let data = support::TempDir::new("auth-loose");
    let path = data.0.join(API_TOKEN_FILE);
    std::fs::write(&path, "0123456789abcdef0123456789abcdef0123456789abcdef").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ww-sched"))
        .args(["gateway", "--http", "127.0.0.1:0", "--data", data.path()])
        .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--discover", "none"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A gateway that starts anyway would serve for ever: wait a bounded time.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{stderr}");
    assert!(stderr.contains("chmod 600"), "{stderr}");
}
