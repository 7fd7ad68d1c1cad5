//! Resource bounds against hostile guests and callers: host calls pay fuel per byte
//! and check the deadline and cancellation; compilation and the module cache are
//! bounded; a worker's slot and its module copies follow the thread that runs the guest.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use ww::exec::{
    EngineKind, ErrorKind, HostEnv, Limits, ModuleHash, ModuleRef, RealHost, RunReport, RunSpec,
    Sandbox, SandboxConfig, HOST_CHUNK_BYTES, HOST_FUEL_PER_BYTE,
};
use ww::rpc;
use ww_sched::worker::{ExecMode, RemoteWorker, WorkerConfig, WorkerServer};

fn wasm(text: &str) -> Vec<u8> {
    wat::parse_str(text).expect("test WAT must parse")
}

fn spec(bytes: &[u8], export: &str, args: &[i64], limits: Limits) -> RunSpec {
    RunSpec {
        module: ModuleRef::Bytes(bytes.to_vec()),
        export: export.into(),
        args: args.to_vec(),
        limits,
    }
}

fn kind(report: &RunReport) -> Option<ErrorKind> {
    report.outcome.as_ref().err().map(|e| e.kind())
}

/// Host calls on the interpreter (the default engine).
mod wasmi {
    use super::*;
    const ENGINE: EngineKind = EngineKind::Wasmi;
    include!("exec_bounds/host_calls.rs");
}

/// The same on the JIT (cargo feature `jit`).
#[cfg(feature = "jit")]
mod wasmtime {
    use super::*;
    const ENGINE: EngineKind = EngineKind::Wasmtime;
    include!("exec_bounds/host_calls.rs");
}

/// A module of `count` functions, each `body` repeated `repeat` times.
fn many_functions(count: usize, params: usize, body: &str, repeat: usize) -> Vec<u8> {
    let params = " i32".repeat(params);
    let body = body.repeat(repeat);
    let funcs: String = (0..count)
        .map(|_| format!("(func (param{params}) {body})\n"))
        .collect();
    wasm(&format!("(module {funcs})"))
}

fn compile_kind(bytes: &[u8]) -> Option<ErrorKind> {
    let sandbox = Sandbox::new(SandboxConfig::default());
    sandbox.insert_module(bytes).err().map(|e| e.kind())
}

#[test]
fn modules_over_the_compilation_limits_are_bad_modules() {
    // Each body is about 45 bytes, above the 40-byte average the limits require.
    let body = "(drop (i32.const 1))";
    assert_eq!(compile_kind(&many_functions(100, 0, body, 15)), None);
    assert_eq!(
        compile_kind(&many_functions(10_001, 0, body, 15)),
        Some(ErrorKind::BadModule),
        "more than 10,000 functions"
    );
    assert_eq!(compile_kind(&many_functions(1, 32, body, 15)), None);
    assert_eq!(
        compile_kind(&many_functions(1, 33, body, 15)),
        Some(ErrorKind::BadModule),
        "more than 32 parameters"
    );
    // Many near-empty functions: cheap to send, costly to compile one by one.
    assert_eq!(
        compile_kind(&many_functions(1_000, 0, "", 0)),
        Some(ErrorKind::BadModule),
        "average function body under 40 bytes"
    );
    let globals: String = (0..1_001)
        .map(|i| format!("(global $g{i} i32 (i32.const 0))"))
        .collect();
    assert_eq!(
        compile_kind(&wasm(&format!("(module {globals})"))),
        Some(ErrorKind::BadModule),
        "more than 1,000 globals"
    );
}

#[test]
fn deeply_nested_blocks_compile_or_fail_without_crashing() {
    let depth = 20_000;
    let text = format!(
        "(module (func (export \"f\") {}{}))",
        "(block ".repeat(depth),
        ")".repeat(depth)
    );
    let kind = compile_kind(&wasm(&text));
    assert!(
        matches!(kind, None | Some(ErrorKind::BadModule)),
        "{kind:?}"
    );
}

#[test]
fn the_module_cache_is_bounded_in_bytes() {
    let sandbox = Sandbox::new(SandboxConfig {
        cache_modules_max: 64,
        cache_bytes_max: 250_000,
        ..SandboxConfig::default()
    });
    // Three distinct modules of about 100 kB each (a passive data segment).
    let modules: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            let data = format!("{i}").repeat(100_000);
            wasm(&format!("(module (memory 2) (data \"{data}\"))"))
        })
        .collect();
    for module in &modules {
        sandbox.insert_module(module).expect("compiles");
        assert!(
            sandbox.cache_stats().bytes <= 250_000,
            "{:?}",
            sandbox.cache_stats()
        );
    }
    let stats = sandbox.cache_stats();
    assert_eq!((stats.entries, stats.misses), (2, 3));
    // The least recently used went; the newest two stay.
    assert!(!sandbox.has_module(&ModuleHash::of(&modules[0])));
    assert!(sandbox.has_module(&ModuleHash::of(&modules[2])));
}

/// A host whose `random_get` blocks until the test opens the gate: a guest stuck
/// in a host call, as a slow or hostile one might be.
#[derive(Default)]
struct GateHost {
    open: Mutex<bool>,
    opened: Condvar,
    entered: AtomicU64,
}

impl GateHost {
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

impl HostEnv for GateHost {
    fn wall_clock_ns(&self) -> u64 {
        RealHost.wall_clock_ns()
    }

    fn monotonic_ns(&self) -> u64 {
        RealHost.monotonic_ns()
    }

    fn fill_random(&self, buf: &mut [u8]) {
        self.entered.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
        buf.fill(1);
    }
}

/// `run` calls random_get once (blocking at the gate), then loops until stopped
/// when `spin` is 1 or returns 7 when it is 0.
const GATED: &str = r#"(module
    (import "wasi_snapshot_preview1" "random_get" (func $r (param i32 i32) (result i32)))
    (memory (export "memory") 1)
    (func (export "run") (param $spin i32) (result i32)
        (drop (call $r (i32.const 0) (i32.const 8)))
        (if (local.get $spin) (then (loop br 0)))
        (i32.const 7)))"#;

const ADD: &str = r#"(module (func (export "run") (result i32) (i32.const 42)))"#;

fn worker(gate: &Arc<GateHost>, slots: usize) -> WorkerServer {
    let sandbox = Sandbox::new(SandboxConfig {
        host: gate.clone(),
        ..SandboxConfig::default()
    });
    WorkerServer::new(
        Arc::new(sandbox),
        WorkerConfig {
            mode: ExecMode::Blocking,
            slots,
            ..WorkerConfig::default()
        },
    )
}

fn gated(spin: i64) -> RunSpec {
    spec(&wasm(GATED), "run", &[spin], Limits::default())
}

/// Polls `done` every few ms for up to `patience`, driving nothing else.
async fn wait_for(patience: Duration, done: impl Fn() -> bool) -> bool {
    let until = tokio::time::Instant::now() + patience;
    while !done() {
        if tokio::time::Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

#[test]
fn a_cancelled_run_keeps_its_slot_until_its_thread_ends() {
    rpc::block_on_local(async {
        let gate = Arc::new(GateHost::default());
        let server = worker(&gate, 1);
        let gauges = server.gauges();
        let cancelled = server.runs_cancelled();
        let remote =
            RemoteWorker::from_capability(server.into_client(), None, Duration::from_secs(60));
        // The first run gets stuck inside random_get...
        let first = gated(1);
        let mut call = Box::pin(remote.run(&first));
        let stuck = wait_for(Duration::from_secs(10), || {
            gate.entered.load(Ordering::SeqCst) == 1
        });
        tokio::select! {
            _ = &mut call => panic!("the stuck run returned"),
            stuck = stuck => assert!(stuck, "the first run never reached the host call"),
        }
        // ...and its caller gives up, as the gateway does on cancel or timeout.
        drop(call);
        let second_spec = spec(&wasm(ADD), "run", &[], Limits::default());
        let mut second = Box::pin(remote.run(&second_spec));
        // Give the second run every chance to start while the first thread lives.
        let started = wait_for(Duration::from_millis(300), || gauges.runs_started() > 1);
        tokio::select! {
            _ = &mut second => {}
            _ = started => {}
        }
        let started_while_stuck = gauges.runs_started();
        let peak_while_stuck = gauges.guests_running_peak();
        gate.open();
        let report = second.await.expect("the second run is answered");
        assert_eq!(report.outcome, Ok(vec![42]));
        assert_eq!(
            started_while_stuck, 1,
            "a run started while the cancelled one ran"
        );
        assert_eq!(peak_while_stuck, 1);
        assert_eq!(gauges.guests_running_peak(), 1);
        assert_eq!(gauges.guests_running(), 0);
        // The first run was stopped by its cancel once out of the host call.
        assert_eq!(cancelled.load(Ordering::Relaxed), 1);
    })
    .unwrap();
}

#[test]
fn calls_waiting_for_a_slot_hold_no_module_copy() {
    rpc::block_on_local(async {
        let slots = 2;
        let gate = Arc::new(GateHost::default());
        let server = worker(&gate, slots);
        let gauges = server.gauges();
        let remote =
            RemoteWorker::from_capability(server.into_client(), None, Duration::from_secs(60));
        // Ten calls carrying module bytes at once, against two slots held at the gate.
        let specs: Vec<RunSpec> = (0..10).map(|_| gated(0)).collect();
        let mut calls = Box::pin(futures::future::join_all(
            specs.iter().map(|s| remote.run(s)),
        ));
        let crowded = wait_for(Duration::from_secs(10), || {
            gate.entered.load(Ordering::SeqCst) == slots as u64 && gauges.modules_held() > slots
        });
        let both_stuck = wait_for(Duration::from_secs(10), || {
            gate.entered.load(Ordering::SeqCst) == slots as u64
        });
        tokio::select! {
            _ = &mut calls => panic!("calls returned while the gate was shut"),
            stuck = both_stuck => assert!(stuck, "the slots never filled"),
        }
        // Give the other eight every chance to copy their modules while they wait.
        tokio::select! {
            _ = &mut calls => panic!("calls returned while the gate was shut"),
            _ = tokio::time::timeout(Duration::from_millis(300), crowded) => {}
        }
        let held_while_waiting = gauges.modules_held_peak();
        gate.open();
        for report in calls.await {
            assert_eq!(report.expect("answered").outcome, Ok(vec![7]));
        }
        assert_eq!(gauges.runs_started(), 10);
        assert!(
            held_while_waiting <= slots,
            "{held_while_waiting} module copies held with {slots} slots"
        );
        assert!(gauges.modules_held_peak() <= slots);
        assert_eq!(gauges.modules_held(), 0);
    })
    .unwrap();
}
