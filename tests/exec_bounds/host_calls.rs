// Host-call metering cases, run once per engine: included by tests/exec_bounds.rs
// into a module that defines `ENGINE`.

/// A host whose clock moves only when `random_get` runs: each fill jumps it by
/// `jump_ns` (a slow host call) and may raise a cancel flag. Counts fills and bytes.
#[derive(Default)]
struct TestHost {
    now_ns: AtomicU64,
    jump_ns: u64,
    cancel_on_fill: Option<Arc<AtomicBool>>,
    fills: AtomicU64,
    bytes: AtomicU64,
}

impl HostEnv for TestHost {
    fn wall_clock_ns(&self) -> u64 {
        self.now_ns.load(Ordering::SeqCst)
    }

    fn monotonic_ns(&self) -> u64 {
        self.now_ns.load(Ordering::SeqCst)
    }

    fn fill_random(&self, buf: &mut [u8]) {
        self.fills.fetch_add(1, Ordering::SeqCst);
        self.bytes.fetch_add(buf.len() as u64, Ordering::SeqCst);
        self.now_ns.fetch_add(self.jump_ns, Ordering::SeqCst);
        if let Some(flag) = &self.cancel_on_fill {
            flag.store(true, Ordering::SeqCst);
        }
        buf.fill(7);
    }
}

fn sandbox(host: Arc<dyn HostEnv>) -> Sandbox {
    Sandbox::new(SandboxConfig {
        engine: ENGINE,
        host,
        output_bytes_max: 16,
        ..SandboxConfig::default()
    })
}

const HOST_CALLS: &str = r#"(module
    (import "wasi_snapshot_preview1" "random_get" (func $r (param i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 16)
    ;; One random_get of $len bytes.
    (func (export "rand") (param $len i32) (result i32) (call $r (i32.const 0) (local.get $len)))
    ;; One fd_write to stdout of $len bytes from offset 64.
    (func (export "write") (param $len i32) (result i32)
        (i32.store (i32.const 0) (i32.const 64)) (i32.store (i32.const 4) (local.get $len))
        (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    ;; random_get of $len bytes, forever.
    (func (export "rand_loop") (param $len i32)
        (loop (drop (call $r (i32.const 0) (local.get $len))) br 0))
    ;; One random_get of the whole memory, then a loop without host calls.
    (func (export "rand_all") (drop (call $r (i32.const 0) (i32.const 1048576))) (loop br 0)))"#;

fn fuel_of(sandbox: &Sandbox, export: &str, len: i64) -> u64 {
    let report = sandbox.run(&spec(&wasm(HOST_CALLS), export, &[len], Limits::default()));
    assert_eq!(report.outcome, Ok(vec![0]), "{export}({len})");
    report.fuel_used
}

#[test]
fn random_get_costs_fuel_per_byte() {
    let sandbox = sandbox(Arc::new(TestHost::default()));
    let none = fuel_of(&sandbox, "rand", 0);
    // One chunk, and a call spanning sixteen chunks: the same price per byte.
    for len in [65_536u64, 1 << 20] {
        let paid = fuel_of(&sandbox, "rand", len as i64) - none;
        assert_eq!(paid, len * HOST_FUEL_PER_BYTE, "random_get of {len} bytes");
    }
}

#[test]
fn fd_write_costs_fuel_per_byte_even_past_a_full_buffer() {
    let sandbox = sandbox(Arc::new(TestHost::default()));
    let none = fuel_of(&sandbox, "write", 0);
    let report = sandbox.run(&spec(
        &wasm(HOST_CALLS),
        "write",
        &[1000],
        Limits::default(),
    ));
    assert_eq!(report.outcome, Ok(vec![0]));
    // Only 16 bytes are kept, but all 1,000 named are paid for.
    assert_eq!(report.stdout.len(), 16);
    assert_eq!(report.fuel_used - none, 1000 * HOST_FUEL_PER_BYTE);
}

#[test]
fn a_huge_random_get_loop_runs_out_of_fuel_like_an_instruction_loop() {
    let host = Arc::new(TestHost::default());
    let sandbox = sandbox(host.clone());
    let limits = Limits {
        fuel_max: 10_000_000,
        memory_pages_max: 16,
        // A backstop only: without per-byte fuel this loop would end here instead.
        wall_time_ms: 5_000,
    };
    let report = sandbox.run(&spec(&wasm(HOST_CALLS), "rand_loop", &[65_536], limits));
    assert_eq!(kind(&report), Some(ErrorKind::FuelExhausted), "{report:?}");
    assert!(report.fuel_used <= limits.fuel_max, "{}", report.fuel_used);
    let bytes = host.bytes.load(Ordering::SeqCst);
    assert!(
        bytes <= limits.fuel_max / HOST_FUEL_PER_BYTE,
        "{bytes} random bytes for {} fuel",
        limits.fuel_max
    );
    // It ran to the end of its budget: the last call alone did not fit.
    assert!(report.fuel_used + 65_536 * HOST_FUEL_PER_BYTE * 2 > limits.fuel_max);
}

/// Fuel is no limit here: only the deadline or a cancel can stop these guests.
fn unmetered(wall_time_ms: u64) -> Limits {
    Limits {
        fuel_max: u64::MAX,
        memory_pages_max: 16,
        wall_time_ms,
    }
}

#[test]
fn the_deadline_is_checked_in_every_host_call() {
    // Each random_get takes "one second"; the budget is 100 ms.
    let host = Arc::new(TestHost {
        jump_ns: 1_000_000_000,
        ..TestHost::default()
    });
    let sandbox = sandbox(host.clone());
    let report = sandbox.run(&spec(&wasm(HOST_CALLS), "rand_loop", &[16], unmetered(100)));
    assert_eq!(kind(&report), Some(ErrorKind::Deadline), "{report:?}");
    // The call that overran is the last: the next one is refused before it works.
    assert_eq!(host.fills.load(Ordering::SeqCst), 1);
}

#[test]
fn one_huge_host_call_stops_at_the_deadline_between_chunks() {
    let host = Arc::new(TestHost {
        jump_ns: 1_000_000_000,
        ..TestHost::default()
    });
    let sandbox = sandbox(host.clone());
    let report = sandbox.run(&spec(&wasm(HOST_CALLS), "rand_all", &[], unmetered(100)));
    assert_eq!(kind(&report), Some(ErrorKind::Deadline), "{report:?}");
    // One chunk of the 1 MiB buffer was filled, not all sixteen.
    assert_eq!(host.bytes.load(Ordering::SeqCst), HOST_CHUNK_BYTES as u64);
}

#[test]
fn a_cancel_is_seen_in_the_next_host_call() {
    let flag = Arc::new(AtomicBool::new(false));
    let host = Arc::new(TestHost {
        cancel_on_fill: Some(flag.clone()),
        ..TestHost::default()
    });
    let sandbox = sandbox(host.clone());
    let s = spec(&wasm(HOST_CALLS), "rand_loop", &[16], unmetered(600_000));
    let report = sandbox.run_cancellable(&s, Some(flag));
    assert_eq!(kind(&report), Some(ErrorKind::Cancelled), "{report:?}");
    assert_eq!(host.fills.load(Ordering::SeqCst), 1);
}

