//! The web dashboard in headless Chromium (Debian's `chromium`; the test
//! fails, naming the package, when it is missing). A gateway with a worker
//! serves the real HTTP server behind the guard, configured as on a
//! non-loopback address, so every data request needs the token. The test
//! loads the page, enters the token when asked, submits a task from the
//! page's form (module file chosen with `DOM.setFileInputFiles`), sees its
//! runs appear and finish through the live events (the page never polls, and
//! a marker set after load shows it was never reloaded), reads a run's
//! stdout, cancels a task submitted elsewhere, and keeps a screenshot at
//! `target/dashboard.png`.

mod browser;
mod gateway_support;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use browser::Browser;
use gateway_support::{Harness, TempDir};
use serde_json::json;
use ww::rpc;
use ww_sched::gateway::{lock, serve, ApiAccess, ApiToken, HttpLimits};

const TOKEN: &str = "dashboard-test-token-5b1e0c9a7f3d2e8c4a6b";

/// Spins its second argument times, writes "out:" and its first argument as
/// one digit to stdout, and returns its first argument.
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

/// A gateway, a worker and the HTTP server on their own thread; stopped
/// when dropped (also when the test panics).
struct Server {
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Server {
    /// Starts it; with `token_required`, access is configured as for a
    /// wildcard (non-loopback) listener, though it listens on loopback only.
    fn start(token_required: bool) -> Server {
        let (ready, port) = mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            rpc::block_on_local(async move {
                let h = harness_in_a_cluster().await;
                let (_worker, registration) = h.start_worker(2).await;
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let local = listener.local_addr().unwrap();
                let listen = if token_required {
                    SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), local.port())
                } else {
                    local
                };
                let access = ApiAccess::new(listen, ApiToken::new(TOKEN).unwrap());
                assert_eq!(access.token_required(), token_required);
                let limits = HttpLimits::default();
                let serving = tokio::spawn(serve(
                    listener,
                    lock(h.router.clone(), access, limits),
                    limits,
                ));
                ready.send(local.port()).unwrap();
                let _ = stopped.await;
                serving.abort();
                registration.abort();
                drop(h);
            })
            .unwrap();
        });
        let port = port
            .recv_timeout(Duration::from_secs(60))
            .expect("the gateway did not start");
        Server {
            port,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// A gateway with a membership view (it hears its own heartbeats), so the
/// cluster view has a row; answers once the view shows it.
async fn harness_in_a_cluster() -> Harness {
    use std::rc::Rc;
    use ww::boot::StaticPeers;
    use ww::cluster::{Membership, MembershipConfig};
    use ww::pubsub::PubSub;
    use ww::transport::{Address, Identity, Libp2pConfig, Libp2pTransport, Transport};
    use ww_sched::gateway::clock::host_clock;
    use ww_sched::gateway::{Gateway, GatewayConfig};

    let dir = TempDir::new("dashboard");
    let transport = Libp2pTransport::new(Libp2pConfig::new(Identity::generate())).unwrap();
    let address = transport
        .listen(Address::new(gateway_support::LOOPBACK))
        .await
        .unwrap();
    let pubsub = PubSub::new(transport.clone());
    let mut config = MembershipConfig::new("dashboard-gateway", 12);
    config.meta = vec![("role".into(), "gateway".into())];
    let membership = Membership::start(
        transport.clone(),
        &pubsub,
        StaticPeers::new(Vec::new()),
        config,
    )
    .await
    .unwrap();
    let gateway_config = GatewayConfig::new(dir.path());
    let gateway = Gateway::start(
        &transport,
        Some(Rc::new(membership)),
        host_clock(),
        gateway_config.clone(),
    )
    .await
    .unwrap();
    let h = Harness {
        router: gateway.router(),
        gateway: Some(gateway),
        transport,
        address,
        dir,
        config: gateway_config,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while h
        .get("/cluster")
        .await
        .1
        .as_array()
        .is_none_or(Vec::is_empty)
    {
        assert!(Instant::now() < deadline, "the gateway never saw itself");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h
}

/// Where the screenshot is kept: `target/dashboard.png`.
fn screenshot_path() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("dashboard.png")
}

/// The text of the status cell of task `id`'s row, or "" while it has none.
fn task_status(id: &str) -> String {
    format!(
        "(() => {{ const r = [...document.querySelectorAll('#tasks tbody tr')]\
           .find(r => r.dataset.id === {id:?}); \
           return r ? r.querySelector('.status').textContent : ''; }})()"
    )
}

#[test]
fn dashboard_submits_follows_live_and_cancels() {
    let began = Instant::now();
    // Fails at once, naming the package, when there is no browser.
    browser::chromium_path();
    let server = Server::start(true);
    let mut page = Browser::launch(1400, 1300);
    let long = Duration::from_secs(30);

    sign_in(&mut page, &server, long);
    submit_from_the_form(&mut page, long);
    cancel_one_submitted_elsewhere(&mut page, &server, long);
    // Show the finished task for the picture.
    let runs = RUN_STATUSES;
    page.eval(
        "[...document.querySelectorAll('#tasks tbody tr')]\
           .find(r => r.dataset.id === 'dash-echo').click(); true",
    );
    page.wait_for(
        "the detail again",
        &format!("{runs} === 'succeeded,succeeded'"),
        long,
    );
    page.eval("document.querySelector('#runs tbody tr button').click(); true");
    page.wait_for(
        "run 0's stdout again",
        "!document.querySelector('#stdout').hidden",
        long,
    );
    assert_eq!(
        page.eval("document.querySelector('#runs-info').textContent"),
        json!("runs 0-1 of 2")
    );
    let shot = screenshot_path();
    page.screenshot(&shot);
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real screenshot"
    );
    drop(page);
    drop(server);
    eprintln!(
        "dashboard test took {:.1} s; screenshot at {}",
        began.elapsed().as_secs_f64(),
        shot.display()
    );
}

/// The statuses of the runs in the detail, comma-separated (JavaScript).
const RUN_STATUSES: &str = "[...document.querySelectorAll('#runs tbody tr')]\
                            .map(r => r.children[1].textContent).join(',')";

/// Gives the page the token it asks for, then waits for the live stream, the
/// worker and the gateway to show.
fn sign_in(page: &mut Browser, server: &Server, long: Duration) {
    // The shell loads without the token; the first data request asks for it.
    page.navigate(&server.url("/"));
    page.wait_for(
        "the token dialog",
        "document.querySelector('#token-dialog').open",
        long,
    );
    page.eval(&format!(
        "document.querySelector('#token-input').value = {TOKEN:?}; \
         document.querySelector('#token-form').requestSubmit(); true"
    ));
    page.wait_for(
        "the live stream",
        "document.querySelector('#live').textContent === 'live'",
        long,
    );
    page.wait_for(
        "the worker in the pool table",
        "document.querySelectorAll('#workers tbody tr').length === 1",
        long,
    );
    page.wait_for(
        "the gateway in the cluster view",
        "document.querySelector('#cluster tbody').textContent.includes('dashboard-gateway')",
        long,
    );
    assert_eq!(
        page.eval("sessionStorage.getItem('ww-sched-token')"),
        json!(TOKEN)
    );
    // Set after load: a reload would lose it.
    page.eval("window.__marker = 1; true");
}

/// Submits a task of two runs from the form and follows it to the end in the
/// detail, the task list, and run 0's stdout.
fn submit_from_the_form(page: &mut Browser, long: Duration) {
    // Submit from the form: two runs a second apart, the second only
    // appearing (and both finishing) after the submission's answer.
    let dir = TempDir::new("dashboard-module");
    std::fs::create_dir_all(dir.path()).unwrap();
    let module = dir.path().join("echo.wasm");
    std::fs::write(&module, wat::parse_str(ECHO_WAT).unwrap()).unwrap();
    page.set_file_input("#wasm", &module);
    page.eval(
        "document.querySelector('#task-id').value = 'dash-echo'; \
         document.querySelector('#description').value = 'echo from the page'; \
         document.querySelector('#args').value = '4, 20000000'; \
         document.querySelector('#repeats').value = '2'; \
         document.querySelector('#delay').value = '1'; \
         document.querySelector('#submit-form').requestSubmit(); true",
    );
    page.wait_for(
        "the submitted task's detail",
        "document.querySelector('#detail-id').textContent === 'dash-echo'",
        long,
    );
    let runs = RUN_STATUSES;
    page.wait_for(
        "both runs succeeded in the detail",
        &format!("{runs} === 'succeeded,succeeded'"),
        long,
    );
    page.wait_for(
        "the task row succeeded",
        &format!("{} === 'succeeded'", task_status("dash-echo")),
        long,
    );
    let worker = page.eval("document.querySelector('#runs tbody tr').children[3].textContent");
    assert!(
        worker.as_str().is_some_and(|w| w.len() > 20),
        "the run names its worker: {worker}"
    );
    // A run's stdout.
    page.eval("document.querySelector('#runs tbody tr button').click(); true");
    page.wait_for(
        "run 0's stdout",
        "document.querySelector('#stdout').textContent === 'out:4\\n'",
        long,
    );
}

/// A task submitted over HTTP shows up through the events; cancels it from
/// the page, which must not reload.
fn cancel_one_submitted_elsewhere(page: &mut Browser, server: &Server, long: Duration) {
    // A task submitted elsewhere shows up through the events; cancel it here.
    let answer = ureq::post(&server.url("/tasks"))
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .send_json(json!({
            "id": "dash-later",
            "description": "due in an hour",
            "wasm_base64": base64_of(&wat::parse_str(ECHO_WAT).unwrap()),
            "args": [1, 1],
            "start_ms": 3_600_000,
        }))
        .expect("submit over HTTP");
    assert_eq!(answer.status(), 201);
    page.wait_for(
        "the other task, pending",
        &format!("{} === 'pending'", task_status("dash-later")),
        long,
    );
    page.eval(
        "[...document.querySelectorAll('#tasks tbody tr')]\
           .find(r => r.dataset.id === 'dash-later').querySelector('button.cancel').click(); true",
    );
    page.wait_for(
        "the other task, cancelled",
        &format!("{} === 'cancelled'", task_status("dash-later")),
        long,
    );
    assert_eq!(page.eval("window.__marker"), json!(1), "the page reloaded");
    assert!(page.exceptions.is_empty(), "{:?}", page.exceptions);
    assert_eq!(
        page.eval("document.querySelector('#live').textContent"),
        json!("live")
    );
}

#[test]
fn dashboard_on_loopback_needs_no_token() {
    browser::chromium_path();
    let server = Server::start(false);
    let mut page = Browser::launch(1000, 800);
    let long = Duration::from_secs(30);
    page.navigate(&server.url("/"));
    page.wait_for(
        "the live stream",
        "document.querySelector('#live').textContent === 'live'",
        long,
    );
    page.wait_for(
        "the worker in the pool table",
        "document.querySelectorAll('#workers tbody tr').length === 1",
        long,
    );
    assert_eq!(
        page.eval("document.querySelector('#token-dialog').open"),
        json!(false),
        "a loopback gateway needs no token"
    );
    assert!(page.exceptions.is_empty(), "{:?}", page.exceptions);
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
