//! Writes the seed corpora under `fuzz/corpus/<target>/`: valid encodings
//! of each input kind, recorded from the real encoders and from real RPC
//! clients, so that fuzzing starts from inputs that get past the first
//! check. `cargo run -p ww-sched-fuzz --example make_corpus` (the files are
//! checked in; run it again when a format changes).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_rpc::{twoparty, RpcSystem};
use futures::AsyncReadExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::compat::TokioAsyncReadCompatExt as _;
use ww::boot::packet::{Body, Envelope, Packet};
use ww::cluster::Heartbeat;
use ww::csp::{ChanConfig, ChannelServer};
use ww::exec::{
    ErrorKind, ExecError, Limits, ModuleRef, RunReport, RunSpec, Sandbox, SandboxConfig,
};
use ww::schema::channel_capnp::chan;
use ww::transport::{Address, Identity};
use ww_sched::schema::worker_capnp::worker;
use ww_sched::worker::{wire, WorkerConfig, WorkerServer};

/// `(func (export "run") (param i64 i64) (result i64) local.get 0)`.
const ECHO_WASM: &[u8] = &[
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x07, 0x01, 0x60, 0x02, 0x7e, 0x7e, 0x01,
    0x7e, 0x03, 0x02, 0x01, 0x00, 0x07, 0x07, 0x01, 0x03, 0x72, 0x75, 0x6e, 0x00, 0x00, 0x0a, 0x06,
    0x01, 0x04, 0x00, 0x20, 0x00, 0x0b,
];

fn write(root: &Path, target: &str, name: &str, bytes: &[u8]) {
    let dir = root.join(target);
    std::fs::create_dir_all(&dir).expect("the corpus directory");
    std::fs::write(dir.join(name), bytes).expect("a corpus file");
}

fn spec() -> RunSpec {
    RunSpec {
        module: ModuleRef::Bytes(ECHO_WASM.to_vec()),
        export: "run".into(),
        args: vec![7, 1],
        limits: Limits {
            fuel_max: 1000,
            memory_pages_max: 1,
            wall_time_ms: 50,
        },
    }
}

fn flat<F: FnOnce(capnp::message::Builder<capnp::message::HeapAllocator>) -> Vec<u8>>(
    build: F,
) -> Vec<u8> {
    build(capnp::message::Builder::new_default())
}

fn codecs(root: &Path) {
    let identity = Identity::generate();
    let peer = identity.peer_id();
    let bodies = [
        Body::Request { from: peer },
        Body::Survey {
            from: peer,
            distance: 4,
        },
        Body::Response {
            peer,
            addresses: vec![Address::new("/ip4/127.0.0.1/tcp/4001")],
        },
    ];
    for (i, body) in bodies.into_iter().enumerate() {
        let packet = Packet {
            namespace: "ww".into(),
            sent_ms: 1_764_900_000_000,
            body,
        };
        let payload = packet.encode().expect("a packet");
        write(root, "discovery_packet", &format!("packet-{i}"), &payload);
        let sealed = Envelope::seal(&identity, None, payload).expect("an envelope");
        write(
            root,
            "discovery_packet",
            &format!("envelope-{i}"),
            &sealed.encode().expect("an envelope"),
        );
    }
    let beat = Heartbeat::new(
        5_000,
        42,
        7,
        "host-a",
        vec![("role".into(), "gateway".into())],
    )
    .expect("a heartbeat");
    write(root, "heartbeat", "gateway", &beat.encode());
    write(root, "heartbeat", "sealed", &beat.seal(None, &peer));

    let spec_bytes = flat(|mut message| {
        wire::write_spec(&spec(), message.init_root());
        capnp::serialize::write_message_to_words(&message)
    });
    write(root, "task_spec", "echo", &spec_bytes);
    for (name, outcome) in [
        ("succeeded", Ok(vec![7])),
        (
            "trapped",
            Err(ExecError::new(ErrorKind::Trap, "unreachable")),
        ),
    ] {
        let report = RunReport {
            outcome,
            stdout: b"out".to_vec(),
            stderr: Vec::new(),
            fuel_used: 12,
        };
        let bytes = flat(|mut message| {
            wire::write_report(&report, message.init_root());
            capnp::serialize::write_message_to_words(&message)
        });
        write(root, "run_report", name, &bytes);
    }
}

/// Runs `client_calls` as a real RPC client against `bootstrap`, recording
/// every byte the client sends: the input of one connection.
fn record<F, Fut>(bootstrap: capnp::capability::Client, client_calls: F) -> Vec<u8>
where
    F: FnOnce(capnp::capability::Client) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let (client_end, proxy_client) = tokio::io::duplex(1 << 20);
        let (proxy_server, server_end) = tokio::io::duplex(1 << 20);
        let recorded = Arc::new(Mutex::new(Vec::new()));
        // Client to server, recorded.
        let (mut from_client, mut to_client) = tokio::io::split(proxy_client);
        let (mut from_server, mut to_server) = tokio::io::split(proxy_server);
        let tape = recorded.clone();
        tokio::task::spawn_local(async move {
            let mut buffer = vec![0u8; 64 * 1024];
            while let Ok(n) = from_client.read(&mut buffer).await {
                if n == 0 {
                    break;
                }
                tape.lock()
                    .expect("the tape")
                    .extend_from_slice(&buffer[..n]);
                if to_server.write_all(&buffer[..n]).await.is_err() {
                    break;
                }
            }
            let _ = to_server.shutdown().await;
        });
        tokio::task::spawn_local(async move {
            let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
        });
        let (reader, writer) = server_end.compat().split();
        let network =
            twoparty::VatNetwork::new(reader, writer, Side::Server, ww::rpc::reader_options());
        tokio::task::spawn_local(RpcSystem::new(Box::new(network), Some(bootstrap)));
        let (reader, writer) = client_end.compat().split();
        let network =
            twoparty::VatNetwork::new(reader, writer, Side::Client, ww::rpc::reader_options());
        let mut system = RpcSystem::new(Box::new(network), None);
        let client: capnp::capability::Client = system.bootstrap(Side::Server);
        tokio::task::spawn_local(system);
        client_calls(client).await;
        tokio::task::yield_now().await;
        let bytes = recorded.lock().expect("the tape").clone();
        bytes
    })
}

fn rpc(root: &Path) {
    let sandbox = Arc::new(Sandbox::new(SandboxConfig::default()));
    let worker_bootstrap = || {
        WorkerServer::new(sandbox.clone(), WorkerConfig::default())
            .into_client()
            .client
    };
    let bytes = record(worker_bootstrap(), |client| async move {
        let worker: worker::Client = capnp::capability::FromClientHook::new(client.hook);
        worker.ping_request().send().promise.await.expect("a ping");
    });
    write(root, "rpc_worker", "ping", &bytes);
    let bytes = record(worker_bootstrap(), |client| async move {
        let worker: worker::Client = capnp::capability::FromClientHook::new(client.hook);
        let mut request = worker.run_request();
        wire::write_spec(&spec(), request.get().init_spec());
        let answer = request.send().promise.await.expect("a run");
        let report = wire::read_report(answer.get().unwrap().get_report().unwrap()).unwrap();
        assert_eq!(report.outcome.expect("the echo runs"), vec![7]);
    });
    write(root, "rpc_worker", "run", &bytes);
    let bytes = record(worker_bootstrap(), |client| async move {
        let worker: worker::Client = capnp::capability::FromClientHook::new(client.hook);
        let mut request = worker.assign_request();
        request.get().set_wasm(ECHO_WASM);
        request.get().set_input(3);
        request.get().set_difficulty(1);
        let _ = request.send().promise.await;
    });
    write(root, "rpc_worker", "assign", &bytes);

    let channel = || {
        ChannelServer::new(ChanConfig {
            capacity: 4,
            ..ChanConfig::default()
        })
        .expect("a channel")
        .client()
        .client
    };
    let bytes = record(channel(), |client| async move {
        let chan: chan::Client = capnp::capability::FromClientHook::new(client.hook);
        let sender = chan
            .sender_request()
            .send()
            .promise
            .await
            .unwrap()
            .get()
            .unwrap()
            .get_sender()
            .unwrap();
        let mut send = sender.send_request();
        send.get().init_value().set_as("a value").unwrap();
        send.send().promise.await.expect("a send");
        let recver = chan
            .recver_request()
            .send()
            .promise
            .await
            .unwrap()
            .get()
            .unwrap()
            .get_recver()
            .unwrap();
        let answer = recver.recv_request().send().promise.await.expect("a recv");
        let value: capnp::text::Reader<'_> = answer.get().unwrap().get_value().get_as().unwrap();
        assert_eq!(value.to_str().unwrap(), "a value");
        let closer = chan
            .closer_request()
            .send()
            .promise
            .await
            .unwrap()
            .get()
            .unwrap()
            .get_closer()
            .unwrap();
        closer
            .close_request()
            .send()
            .promise
            .await
            .expect("a close");
    });
    write(root, "rpc_channel", "send-recv-close", &bytes);
}

fn http(root: &Path) {
    let hash = ww::exec::ModuleHash::of(ECHO_WASM).to_string();
    let json = format!("{{\"id\":\"seed\",\"module\":\"{hash}\",\"args\":[1,2]}}");
    let requests = [
        ("get-tasks", "GET /tasks?status=pending&limit=5 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n".to_string()),
        ("get-task", "GET /tasks/seed?runs_limit=2 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n".to_string()),
        ("get-run", "GET /tasks/seed/runs/0/stdout HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n".to_string()),
        ("delete", "DELETE /tasks/seed?purge=true HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n".to_string()),
        ("post-json", format!("POST /tasks HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: application/json\r\nIdempotency-Key: k1\r\n\r\n{json}")),
        ("post-form", "POST /tasks HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\nContent-Disposition: form-data; name=\"input\"\r\n\r\n3\r\n--b\r\nContent-Disposition: form-data; name=\"difficulty\"\r\n\r\n1\r\n--b--\r\n".to_string()),
        ("foreign-origin", "POST /modules HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nOrigin: http://evil.example\r\n\r\n\0asm".to_string()),
        ("openapi", "GET /openapi.json HTTP/1.1\r\nHost: localhost:8080\r\n\r\n".to_string()),
    ];
    for (name, text) in requests {
        write(root, "http_router", name, text.as_bytes());
    }
    let mut upload = b"POST /modules HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n".to_vec();
    upload.extend_from_slice(ECHO_WASM);
    write(root, "http_router", "upload", &upload);
}

fn sandbox(root: &Path) {
    // wasm-smith builds a module from any bytes; these give it room to
    // make a few functions and instructions.
    for (name, len) in [("small", 64usize), ("medium", 512), ("large", 4096)] {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 131 % 251) as u8).collect();
        write(root, "sandbox", name, &bytes);
    }
}

/// A content record, a peer record, and anchor paths as text.
fn records(root: &Path) {
    let identity = Identity::from_secret([7; 32]);
    let content = ww::records::Record::content(&identity, 1_764_900_000_000, b"bytes".to_vec())
        .expect("a content record");
    write(root, "dht_record", "content", &content.bytes);
    let addresses = [Address::new("/ip4/127.0.0.1/tcp/4001")];
    let peer =
        ww::records::Record::peer(&identity, 1_764_900_000_000, &addresses).expect("a peer record");
    write(root, "dht_record", "peer", &peer.bytes);
    let path = format!("/{}/jobs/a", identity.peer_id());
    write(root, "dht_record", "anchor-path", path.as_bytes());
}

/// Writes every target's seed corpus, or only the groups named as arguments
/// (`codecs`, `rpc`, `http`, `sandbox`, `records`): identities are fresh on
/// every run, so rewriting a group changes its files.
fn main() {
    let root: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let only: Vec<String> = std::env::args().skip(1).collect();
    let wanted = |group: &str| only.is_empty() || only.iter().any(|g| g == group);
    if wanted("codecs") {
        codecs(&root);
    }
    if wanted("rpc") {
        rpc(&root);
    }
    if wanted("http") {
        http(&root);
    }
    if wanted("sandbox") {
        sandbox(&root);
    }
    if wanted("records") {
        records(&root);
    }
    eprintln!("seed corpora written under {}", root.display());
}
