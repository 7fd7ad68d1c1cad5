//! One node calls the Worker on another over the libp2p transport on loopback.

use std::sync::Arc;
use std::time::Duration;

use ww::exec::{ErrorKind, Limits, ModuleHash, ModuleRef, RunSpec, Sandbox, SandboxConfig};
use ww::rpc::{self, RpcConfig, RpcError};
use ww::transport::{Address, Identity, Libp2pConfig, Libp2pTransport, Transport};
use ww_sched::tasks::{hash_puzzle, HASH_PUZZLE_WASM};
use ww_sched::worker::node::{Callers, WorkerNode};
use ww_sched::worker::{ExecMode, RemoteWorker, WorkerConfig, WorkerServer};

const LOOPBACK: &str = "/ip4/127.0.0.1/tcp/0";

type Node = WorkerNode<Libp2pTransport>;

async fn start_worker() -> Node {
    let transport = Libp2pTransport::new(Libp2pConfig::new(Identity::generate())).unwrap();
    let sandbox = Arc::new(Sandbox::new(SandboxConfig::default()));
    let config = WorkerConfig {
        mode: ExecMode::Blocking,
        slots: 2,
        ..WorkerConfig::default()
    };
    WorkerNode::start(
        transport,
        sandbox,
        config,
        &[Address::new(LOOPBACK)],
        Callers::Open,
    )
    .await
    .unwrap()
}

async fn connect(worker: &Node, config: RpcConfig) -> (Libp2pTransport, RemoteWorker) {
    let caller = Libp2pTransport::new(Libp2pConfig::new(Identity::generate())).unwrap();
    let peer = worker.peer_id();
    for address in worker.transport().listen_addresses() {
        caller.add_peer_address(peer, address).unwrap();
    }
    let remote = RemoteWorker::connect(&caller, peer, config).await.unwrap();
    (caller, remote)
}

/// A run that loops until its wall-clock limit (fuel unlimited).
fn spin_for(wall_time_ms: u64) -> RunSpec {
    RunSpec {
        module: ModuleRef::Bytes(wat("(module (func (export \"run\") (loop br 0)))")),
        export: "run".into(),
        args: vec![],
        limits: Limits {
            fuel_max: u64::MAX,
            memory_pages_max: 16,
            wall_time_ms,
        },
    }
}

fn wat(text: &str) -> Vec<u8> {
    wat::parse_str(text).unwrap()
}

#[test]
fn assign_over_libp2p_returns_the_hash_puzzle_answer() {
    rpc::block_on_local(async {
        let worker = start_worker().await;
        let (_caller, remote) = connect(&worker, RpcConfig::default()).await;
        let answer = remote.assign(HASH_PUZZLE_WASM, 7, 3).await.unwrap();
        assert_eq!(answer, hash_puzzle(7, 3).to_string());
        remote.ping().await.unwrap();
    })
    .unwrap();
}

#[test]
fn run_by_hash_after_bytes_and_failures_do_not_stop_the_worker() {
    rpc::block_on_local(async {
        let worker = start_worker().await;
        let (_caller, remote) = connect(&worker, RpcConfig::default()).await;
        let hash = ModuleHash::of(HASH_PUZZLE_WASM);
        let by_hash = RunSpec {
            module: ModuleRef::Hash(hash),
            export: "run".into(),
            args: vec![11, 2],
            limits: Limits::default(),
        };
        // Unknown until the bytes were sent once.
        let report = remote.run(&by_hash).await.unwrap();
        assert_eq!(report.outcome.unwrap_err().kind(), ErrorKind::UnknownModule);
        let by_bytes = RunSpec {
            module: ModuleRef::Bytes(HASH_PUZZLE_WASM.to_vec()),
            ..by_hash.clone()
        };
        let report = remote.run(&by_bytes).await.unwrap();
        assert_eq!(report.outcome.unwrap(), vec![i64::from(hash_puzzle(11, 2))]);
        assert!(report.fuel_used > 0);
        let report = remote.run(&by_hash).await.unwrap();
        assert_eq!(report.outcome.unwrap(), vec![i64::from(hash_puzzle(11, 2))]);

        let failing = [
            (
                wat("(module (func (export \"run\") (loop br 0)))"),
                ErrorKind::FuelExhausted,
            ),
            (
                wat("(module (func (export \"run\") unreachable))"),
                ErrorKind::Trap,
            ),
            (b"definitely not wasm".to_vec(), ErrorKind::NotWasm),
            (wat("(module)"), ErrorKind::MissingExport),
        ];
        for (module, kind) in failing {
            let spec = RunSpec {
                module: ModuleRef::Bytes(module),
                export: "run".into(),
                args: vec![],
                limits: Limits {
                    fuel_max: 1_000_000,
                    ..Limits::default()
                },
            };
            let report = remote.run(&spec).await.unwrap();
            assert_eq!(report.outcome.unwrap_err().kind(), kind);
            // The worker keeps serving after each failure.
            let report = remote.run(&by_hash).await.unwrap();
            assert_eq!(report.outcome.unwrap(), vec![i64::from(hash_puzzle(11, 2))]);
        }
        // `assign` turns a task failure into an RPC error that names the kind.
        let error = remote
            .assign(
                &wat("(module (func (export \"run\") (param i64 i64) (result i32) unreachable))"),
                1,
                1,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&error, RpcError::Remote(m) if m.contains("trap")),
            "{error}"
        );
    })
    .unwrap();
}

#[test]
fn a_vanished_worker_gives_an_error_not_a_hang() {
    rpc::block_on_local(async {
        let worker = start_worker().await;
        let config = RpcConfig {
            connect_timeout: Duration::from_secs(10),
            call_timeout: Duration::from_secs(30),
        };
        let (_caller, remote) = connect(&worker, config).await;
        remote.ping().await.unwrap();
        // A run that would take ~2 s is in flight when the worker goes away.
        let slow = spin_for(2_000);
        let in_flight = remote.run(&slow);
        let vanish = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            drop(worker);
        };
        let (result, ()) = tokio::join!(in_flight, vanish);
        let error = result.unwrap_err();
        assert!(
            matches!(error, RpcError::Disconnected(_)),
            "expected a disconnect, got {error}"
        );
        assert!(remote.is_lost());
        let again = remote.ping().await.unwrap_err();
        assert!(again.is_connection_lost(), "{again}");
    })
    .unwrap();
}

#[test]
fn a_dropped_call_stops_its_run_on_the_worker() {
    rpc::block_on_local(async {
        let transport = Libp2pTransport::new(Libp2pConfig::new(Identity::generate())).unwrap();
        let server = WorkerServer::new(
            Arc::new(Sandbox::new(SandboxConfig::default())),
            WorkerConfig {
                slots: 1,
                ..WorkerConfig::default()
            },
        );
        let cancelled = server.runs_cancelled();
        let _serving = rpc::serve(
            &transport,
            &ww_sched::worker::worker_protocol(),
            server.into_client().client,
        )
        .unwrap();
        let bound = transport.listen(Address::new(LOOPBACK)).await.unwrap();
        let caller = Libp2pTransport::new(Libp2pConfig::new(Identity::generate())).unwrap();
        caller
            .add_peer_address(transport.local_peer_id(), bound)
            .unwrap();
        let remote =
            RemoteWorker::connect(&caller, transport.local_peer_id(), RpcConfig::default())
                .await
                .unwrap();
        let endless = spin_for(600_000);
        // The caller gives up (as the gateway does on cancel or timeout)...
        let gave_up = tokio::time::timeout(Duration::from_millis(300), remote.run(&endless)).await;
        assert!(gave_up.is_err(), "an endless run returned");
        // ...and the worker stops the run instead of burning a core for ten minutes.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while cancelled.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the run was not stopped"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        remote.ping().await.unwrap();
    })
    .unwrap();
}

#[test]
fn only_a_registration_s_own_pings_count_as_its_gateway_s() {
    rpc::block_on_local(async {
        let worker = start_worker().await;
        let (first, first_ping) = worker.registration_facet();
        let (second, second_ping) = worker.registration_facet();
        let (_caller, remote) = connect(&worker, RpcConfig::default()).await;
        remote.ping().await.unwrap();
        assert_eq!(
            first_ping.get(),
            None,
            "a direct caller's ping kept the worker believing in its gateway"
        );
        // The capability sent down a registration channel is that gateway's.
        first.ping_request().send().promise.await.unwrap();
        assert!(first_ping.get().is_some());
        assert_eq!(
            second_ping.get(),
            None,
            "one gateway's ping kept the worker believing in another"
        );
        second.ping_request().send().promise.await.unwrap();
        assert!(second_ping.get().is_some());
    })
    .unwrap();
}

#[test]
fn a_caller_s_calls_beyond_its_slots_and_waiting_room_are_refused_at_once() {
    use ww_sched::worker::CALLS_WAITING_MAX;
    rpc::block_on_local(async {
        let sandbox = Arc::new(Sandbox::new(SandboxConfig::default()));
        let config = WorkerConfig {
            mode: ExecMode::Blocking,
            slots: 1,
            ..WorkerConfig::default()
        };
        let worker = RemoteWorker::from_capability(
            WorkerServer::new(sandbox, config).into_client(),
            None,
            Duration::from_secs(30),
        );
        let worker = std::rc::Rc::new(worker);
        let extra = 5;
        let calls: Vec<_> = (0..1 + CALLS_WAITING_MAX + extra)
            .map(|_| {
                let worker = worker.clone();
                tokio::task::spawn_local(async move { worker.run(&spin_for(100)).await })
            })
            .collect();
        let mut refused = 0;
        let mut served = 0;
        for call in calls {
            match call.await.unwrap() {
                Ok(_) => served += 1,
                Err(e) => {
                    assert!(e.to_string().contains("overloaded"), "{e}");
                    refused += 1;
                }
            }
        }
        assert_eq!(
            refused, extra,
            "calls beyond 1 slot + {CALLS_WAITING_MAX} waiting"
        );
        assert_eq!(served, 1 + CALLS_WAITING_MAX);
    })
    .unwrap();
}

#[test]
fn run_many_answers_each_spec_in_order_and_refuses_a_batch_too_large() {
    rpc::block_on_local(async {
        let worker = start_worker().await;
        let (_caller, remote) = connect(&worker, RpcConfig::default()).await;
        let puzzle = |input: i64| RunSpec {
            module: ModuleRef::Bytes(HASH_PUZZLE_WASM.to_vec()),
            export: "run".into(),
            args: vec![input, 2],
            limits: Limits::default(),
        };
        let trap = RunSpec {
            module: ModuleRef::Bytes(wat("(module (func (export \"run\") unreachable))")),
            export: "run".into(),
            args: vec![],
            limits: Limits::default(),
        };
        let unknown = RunSpec {
            module: ModuleRef::Hash(ModuleHash([7; 32])),
            ..puzzle(0)
        };
        // More runs than the worker's 2 slots, failures among them.
        let specs = vec![
            puzzle(1),
            trap.clone(),
            puzzle(2),
            unknown,
            puzzle(3),
            trap,
            puzzle(4),
        ];
        let reports = remote.run_many(&specs).await.unwrap().unwrap();
        assert_eq!(reports.len(), specs.len());
        for (index, input) in [(0, 1), (2, 2), (4, 3), (6, 4)] {
            assert_eq!(
                reports[index].outcome.clone().unwrap(),
                vec![i64::from(hash_puzzle(input, 2))],
                "report {index}"
            );
        }
        for (index, kind) in [
            (1, ErrorKind::Trap),
            (3, ErrorKind::UnknownModule),
            (5, ErrorKind::Trap),
        ] {
            assert_eq!(
                reports[index].outcome.clone().unwrap_err().kind(),
                kind,
                "report {index}"
            );
        }
        // Both slots free again, guests counted within them.
        assert_eq!(worker.gauges().guests_running(), 0);
        assert!(worker.gauges().guests_running_peak() <= 2);
        // Empty and oversized batches are refused, and nothing runs.
        let started = worker.gauges().runs_started();
        assert!(remote.run_many(&[]).await.is_err());
        let too_many = vec![puzzle(1); 65];
        assert!(remote.run_many(&too_many).await.is_err());
        assert_eq!(worker.gauges().runs_started(), started);
        remote.ping().await.unwrap();
    })
    .unwrap();
}

#[test]
fn a_dropped_run_many_stops_every_run_of_its_batch() {
    rpc::block_on_local(async {
        let worker = start_worker().await;
        let (_caller, remote) = connect(&worker, RpcConfig::default()).await;
        let endless = [spin_for(600_000), spin_for(600_000)];
        let batch = remote.run_many(&endless);
        // Long runs of one batch go side by side, each in its own slot: both
        // guests run at once (the deadline only guards against a hang).
        let both_running = async {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while worker.gauges().guests_running() < 2 {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the batch's second run never started beside the first"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::select! {
            _ = batch => panic!("endless runs returned"),
            () = both_running => {}
        }
        // The call is dropped (as the gateway drops it on cancel or timeout).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while worker.gauges().guests_running() > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the batch's runs were not stopped"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        remote.ping().await.unwrap();
    })
    .unwrap();
}
