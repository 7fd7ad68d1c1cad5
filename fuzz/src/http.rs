//! An arbitrary HTTP/1.1 request (method, path and query, headers, body:
//! the input is the request's bytes) into the gateway's router behind its
//! guard, as the HTTP server hands it over: no panic, and never a 5xx from
//! a healthy gateway.
//!
//! One gateway serves every input of a process: it runs on a thread of its
//! own (its core is `!Send`) on a libp2p transport on loopback, with its
//! store in a temporary directory removed when the process starts again
//! (leftovers of killed runs included).

use std::sync::LazyLock;

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Method, Request};
use axum::Router;
use tower::ServiceExt as _;
use ww::transport::{Address, Identity, Libp2pConfig, Libp2pTransport, Transport as _};
use ww_sched::gateway::clock::host_clock;
use ww_sched::gateway::{lock, ApiAccess, ApiToken, Gateway, GatewayConfig, HttpLimits};

/// Where the gateway of a fuzzing process keeps its store.
const DATA_PREFIX: &str = "ww-sched-fuzz-http-";
/// The address the guard is told the API listens on (nothing listens: the
/// router is called in process).
const LISTEN: &str = "127.0.0.1:8080";

/// Removes this process's gateway store (the gateway thread keeps serving
/// from the open file until the process exits); the regression test calls
/// it last, fuzzing processes leave theirs to the next one.
pub fn remove_http_data() {
    let dir = std::env::temp_dir().join(format!("{DATA_PREFIX}{}", std::process::id()));
    let _ = std::fs::remove_dir_all(dir);
}

/// The locked router and a runtime to drive it.
struct Served {
    router: Router,
    runtime: tokio::runtime::Runtime,
}

static SERVED: LazyLock<Served> = LazyLock::new(start);

fn start() -> Served {
    let temp = std::env::temp_dir();
    // Directories of earlier fuzzing processes that are gone.
    if let Ok(entries) = std::fs::read_dir(&temp) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let Some(pid) = name.strip_prefix(DATA_PREFIX) else {
                continue;
            };
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = temp.join(format!("{DATA_PREFIX}{}", std::process::id()));
    let (routers, router) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        ww::rpc::block_on_local(async move {
            let transport =
                Libp2pTransport::new(Libp2pConfig::new(Identity::generate())).expect("a transport");
            transport
                .listen(Address::new("/ip4/127.0.0.1/tcp/0"))
                .await
                .expect("listening on loopback");
            let gateway = Gateway::start(&transport, None, host_clock(), GatewayConfig::new(dir))
                .await
                .expect("a gateway");
            routers.send(gateway.router()).expect("the fuzzer waits");
            // Serve until the process exits.
            std::future::pending::<()>().await;
        })
        .expect("a runtime");
    });
    let router = router.recv().expect("the gateway started");
    let access = ApiAccess::new(
        LISTEN.parse().expect("an address"),
        ApiToken::new("fuzz-token-0123456789abcdef0123456789").expect("a token"),
    );
    Served {
        router: lock(router, access, HttpLimits::default()),
        runtime: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime"),
    }
}

/// Headers a request may carry here; more and it is not a request.
const HEADERS_MAX: usize = 32;

/// Parses `data` as an HTTP/1.1 request head followed by its body (the
/// rest of the input), as the server would hand it to the router.
fn request(data: &[u8]) -> Option<Request<Body>> {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut head = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(head_len) = head.parse(data).ok()? else {
        return None;
    };
    let method = Method::from_bytes(head.method?.as_bytes()).ok()?;
    let mut request = Request::builder().method(method).uri(head.path?);
    for header in head.headers.iter() {
        let name = HeaderName::from_bytes(header.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(header.value).ok()?;
        request = request.header(name, value);
    }
    request.body(Body::from(data[head_len..].to_vec())).ok()
}

/// One request: never a panic, never a 5xx.
pub fn http_router(data: &[u8]) {
    let Some(request) = request(data) else {
        return;
    };
    let shown = String::from_utf8_lossy(&data[..data.len().min(512)]).to_string();
    let served = &*SERVED;
    let response = served
        .runtime
        .block_on(served.router.clone().oneshot(request))
        .expect("the router is infallible");
    assert!(
        !response.status().is_server_error(),
        "{} for {shown:?}",
        response.status()
    );
}
