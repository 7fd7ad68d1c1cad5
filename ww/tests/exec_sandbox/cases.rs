// Sandbox cases run once per engine: included by tests/exec_sandbox.rs into a
// module that defines `ENGINE` and `FUEL_EXACT_AT_INTERRUPT`.

fn wasm(text: &str) -> Vec<u8> {
    wat::parse_str(text).expect("test WAT must parse")
}

fn spec(bytes: &[u8], export: &str, args: &[i64]) -> RunSpec {
    RunSpec {
        module: ModuleRef::Bytes(bytes.to_vec()),
        export: export.into(),
        args: args.to_vec(),
        limits: Limits::default(),
    }
}

fn seeded(seed: u64, step_ns: u64) -> Arc<SeededHost> {
    let now = Arc::new(AtomicU64::new(1_000_000_000));
    Arc::new(SeededHost::new(
        seed,
        Arc::new(move || now.fetch_add(step_ns, Ordering::SeqCst)),
    ))
}

fn sandbox_with(seed: u64, step_ns: u64) -> Sandbox {
    Sandbox::new(SandboxConfig {
        engine: ENGINE,
        host: seeded(seed, step_ns),
        ..SandboxConfig::default()
    })
}

fn kind(report: &RunReport) -> Option<ErrorKind> {
    report.outcome.as_ref().err().map(|e| e.kind())
}

const ADD: &str = r#"(module (func (export "add") (param i32 i32) (result i32)
    local.get 0 local.get 1 i32.add))"#;

/// The same sandbox must still run a good module correctly after any failure.
fn assert_still_healthy(sandbox: &Sandbox) {
    let report = sandbox.run(&spec(&wasm(ADD), "add", &[40, 2]));
    assert_eq!(report.outcome, Ok(vec![42]));
}

const LOOP: &str = r#"(module (func (export "spin") (loop br 0)))"#;

#[test]
fn infinite_loop_stopped_by_fuel() {
    let sandbox = sandbox_with(1, 0);
    let mut s = spec(&wasm(LOOP), "spin", &[]);
    s.limits.fuel_max = 10_000_000;
    let report = sandbox.run(&s);
    assert_eq!(kind(&report), Some(ErrorKind::FuelExhausted));
    assert!(
        report.fuel_used > 9_000_000 && report.fuel_used <= 10_000_000,
        "{}",
        report.fuel_used
    );
    assert_still_healthy(&sandbox);
}

#[test]
fn infinite_loop_stopped_by_injected_deadline() {
    // Each clock read advances 1 ms, so a 5 ms budget ends after a handful of fuel slices.
    let sandbox = sandbox_with(1, 1_000_000);
    let mut s = spec(&wasm(LOOP), "spin", &[]);
    s.limits.fuel_max = u64::MAX;
    s.limits.wall_time_ms = 5;
    let report = sandbox.run(&s);
    assert_eq!(kind(&report), Some(ErrorKind::Deadline));
    assert!(report.fuel_used < 100_000_000, "{}", report.fuel_used);
    // In the interpreter the fuel is counted to the stop, and deterministic: the
    // same host setup spends exactly the same fuel. (The JIT checks the deadline
    // on a real-time tick, and counts fuel only to the guest's last call.)
    if FUEL_EXACT_AT_INTERRUPT {
        assert!(report.fuel_used > 0);
        let again = sandbox_with(1, 1_000_000).run(&s);
        assert_eq!(again.fuel_used, report.fuel_used);
    }
    assert_still_healthy(&sandbox);
}

#[test]
fn infinite_loop_stopped_by_real_deadline() {
    let sandbox = Sandbox::new(SandboxConfig {
        engine: ENGINE,
        ..SandboxConfig::default()
    });
    let mut s = spec(&wasm(LOOP), "spin", &[]);
    s.limits.fuel_max = u64::MAX;
    s.limits.wall_time_ms = 200;
    let started = std::time::Instant::now();
    let report = sandbox.run(&s);
    let elapsed = started.elapsed();
    assert_eq!(kind(&report), Some(ErrorKind::Deadline));
    assert!(elapsed.as_millis() >= 200, "{elapsed:?}");
    assert!(elapsed.as_millis() < 2_000, "{elapsed:?}");
    assert_still_healthy(&sandbox);
}

#[test]
fn memory_bomb_hits_memory_limit() {
    let bomb = wasm(
        r#"(module (memory 1) (func (export "bomb") (loop (drop (memory.grow (i32.const 1))) br 0)))"#,
    );
    let sandbox = sandbox_with(1, 0);
    let mut s = spec(&bomb, "bomb", &[]);
    s.limits.memory_pages_max = 16;
    let report = sandbox.run(&s);
    assert_eq!(kind(&report), Some(ErrorKind::MemoryLimit), "{report:?}");
    if FUEL_EXACT_AT_INTERRUPT {
        assert!(report.fuel_used > 0);
    }
    assert_still_healthy(&sandbox);
}

#[test]
fn growth_within_limit_succeeds() {
    let grow = wasm(
        r#"(module (memory 1) (func (export "grow") (result i32) (memory.grow (i32.const 3))))"#,
    );
    let sandbox = sandbox_with(1, 0);
    let mut s = spec(&grow, "grow", &[]);
    s.limits.memory_pages_max = 4;
    assert_eq!(sandbox.run(&s).outcome, Ok(vec![1]));
}

#[test]
fn initial_memory_over_limit_is_memory_limit() {
    let big = wasm(r#"(module (memory 100) (func (export "f")))"#);
    let sandbox = sandbox_with(1, 0);
    let mut s = spec(&big, "f", &[]);
    s.limits.memory_pages_max = 10;
    let report = sandbox.run(&s);
    assert_eq!(kind(&report), Some(ErrorKind::MemoryLimit), "{report:?}");
    s.limits.memory_pages_max = 100;
    assert_eq!(sandbox.run(&s).outcome, Ok(vec![]));
}

#[test]
fn unreachable_is_trap() {
    let sandbox = sandbox_with(1, 0);
    let report = sandbox.run(&spec(
        &wasm(r#"(module (func (export "f") unreachable))"#),
        "f",
        &[],
    ));
    assert_eq!(kind(&report), Some(ErrorKind::Trap));
    assert_still_healthy(&sandbox);
}

#[test]
fn non_wasm_bytes_are_rejected_with_short_message() {
    let sandbox = sandbox_with(1, 0);
    let report = sandbox.run(&spec(b"hello world", "f", &[]));
    assert_eq!(kind(&report), Some(ErrorKind::NotWasm));
    // Looks like WAT text: must still be rejected, never parsed.
    let blob = "(module) ".repeat(1024 * 1024 / 9);
    let report = sandbox.run(&spec(blob.as_bytes(), "f", &[]));
    let err = report.outcome.expect_err("text is not wasm");
    assert_eq!(err.kind(), ErrorKind::NotWasm);
    assert!(err.message().len() <= 512, "{}", err.message().len());
    assert_eq!(sandbox.cache_stats().misses, 0);
    assert_still_healthy(&sandbox);
}

#[test]
fn garbage_after_magic_is_bad_module() {
    let sandbox = sandbox_with(1, 0);
    let mut bytes = b"\0asm\x01\0\0\0".to_vec();
    bytes.extend(std::iter::repeat_n(0xffu8, 100_000));
    let err = sandbox.insert_module(&bytes).expect_err("garbage");
    assert_eq!(err.kind(), ErrorKind::BadModule);
    assert!(err.message().len() <= 512);
    assert_still_healthy(&sandbox);
}

#[test]
fn oversized_module_is_rejected() {
    let sandbox = Sandbox::new(SandboxConfig {
        engine: ENGINE,
        module_bytes_max: 16,
        ..SandboxConfig::default()
    });
    let err = sandbox.insert_module(&wasm(ADD)).expect_err("too large");
    assert_eq!(err.kind(), ErrorKind::ModuleTooLarge);
}

#[test]
fn unknown_import_module_is_bad_module() {
    let m = wasm(r#"(module (import "env" "f" (func)) (func (export "g")))"#);
    let sandbox = sandbox_with(1, 0);
    let err = sandbox.insert_module(&m).expect_err("env import");
    assert_eq!(err.kind(), ErrorKind::BadModule);
    assert!(err.message().contains("env"));
}

#[test]
fn missing_export_and_wrong_signature() {
    let sandbox = sandbox_with(1, 0);
    let add = wasm(ADD);
    assert_eq!(
        kind(&sandbox.run(&spec(&add, "nope", &[]))),
        Some(ErrorKind::MissingExport)
    );
    let float = wasm(r#"(module (func (export "f") (param f32)))"#);
    assert_eq!(
        kind(&sandbox.run(&spec(&float, "f", &[0]))),
        Some(ErrorKind::WrongSignature)
    );
    assert_eq!(
        kind(&sandbox.run(&spec(&add, "add", &[1]))),
        Some(ErrorKind::WrongSignature)
    );
    assert_eq!(
        kind(&sandbox.run(&spec(&add, "add", &[1, 1 << 32]))),
        Some(ErrorKind::WrongSignature)
    );
    assert_eq!(
        kind(&sandbox.run(&spec(&add, "add", &[1, -(1 << 31) - 1]))),
        Some(ErrorKind::WrongSignature)
    );
    assert_still_healthy(&sandbox);
}

#[test]
fn i32_values_use_u32_bit_patterns() {
    let sandbox = sandbox_with(1, 0);
    let add = wasm(ADD);
    // u32::MAX is accepted as the bit pattern of -1; results read as u32.
    assert_eq!(
        sandbox
            .run(&spec(&add, "add", &[u32::MAX as i64, 0]))
            .outcome,
        Ok(vec![u32::MAX as i64])
    );
    assert_eq!(
        sandbox.run(&spec(&add, "add", &[-1, -1])).outcome,
        Ok(vec![0xffff_fffe])
    );
    let wide = wasm(
        r#"(module (func (export "neg") (param i64) (result i64) (i64.sub (i64.const 0) (local.get 0))))"#,
    );
    assert_eq!(sandbox.run(&spec(&wide, "neg", &[5])).outcome, Ok(vec![-5]));
}

#[test]
fn start_runs_before_the_call() {
    let m = wasm(
        r#"(module (global $g (mut i32) (i32.const 1))
            (func (export "_start") (global.set $g (i32.add (global.get $g) (i32.const 10))))
            (func (export "get") (result i32) (global.get $g)))"#,
    );
    let sandbox = sandbox_with(1, 0);
    assert_eq!(sandbox.run(&spec(&m, "get", &[])).outcome, Ok(vec![11]));
    // Calling _start itself runs it exactly once.
    assert_eq!(sandbox.run(&spec(&m, "_start", &[])).outcome, Ok(vec![]));
}

const WASI_IO: &str = r#"(module
    (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
    (memory (export "memory") 1)
    (data (i32.const 100) "hello")
    (data (i32.const 200) "oops!")
    ;; iovec at 0 -> "hello", iovec at 8 -> "oops!"
    (func $setup (i32.store (i32.const 0) (i32.const 100)) (i32.store (i32.const 4) (i32.const 5))
                 (i32.store (i32.const 8) (i32.const 200)) (i32.store (i32.const 12) (i32.const 5)))
    (func (export "out") (param $n i32) (result i32)
        (call $setup)
        (block $done (loop $l
            (br_if $done (i32.eqz (local.get $n)))
            (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 20)))
            (drop (call $w (i32.const 2) (i32.const 8) (i32.const 1) (i32.const 20)))
            (local.set $n (i32.sub (local.get $n) (i32.const 1)))
            br $l))
        (i32.load (i32.const 20)))
    (func (export "bad_fd") (result i32) (call $setup) (call $w (i32.const 7) (i32.const 0) (i32.const 1) (i32.const 20)))
    (func (export "bad_ptr") (result i32) (call $w (i32.const 1) (i32.const 65530) (i32.const 1) (i32.const 20)))
    (func (export "exit3") (call $exit (i32.const 3)) unreachable)
    (func (export "_start") (call $setup)))"#;

#[test]
fn fd_write_is_captured_and_bounded() {
    let m = wasm(WASI_IO);
    let sandbox = sandbox_with(1, 0);
    let report = sandbox.run(&spec(&m, "out", &[2]));
    assert_eq!(report.outcome, Ok(vec![5]));
    assert_eq!(report.stdout, b"hellohello");
    assert_eq!(report.stderr, b"oops!oops!");

    let small = Sandbox::new(SandboxConfig {
        engine: ENGINE,
        output_bytes_max: 12,
        host: seeded(1, 0),
        ..SandboxConfig::default()
    });
    let report = small.run(&spec(&m, "out", &[1000]));
    // The guest is told every byte was written, but only 12 are kept.
    assert_eq!(report.outcome, Ok(vec![5]));
    assert_eq!(report.stdout, b"hellohellohe");
    assert_eq!(report.stderr.len(), 12);

    assert_eq!(sandbox.run(&spec(&m, "bad_fd", &[])).outcome, Ok(vec![8]));
    assert_eq!(sandbox.run(&spec(&m, "bad_ptr", &[])).outcome, Ok(vec![21]));
}

#[test]
fn proc_exit_nonzero_is_exit() {
    let sandbox = sandbox_with(1, 0);
    let err = sandbox
        .run(&spec(&wasm(WASI_IO), "exit3", &[]))
        .outcome
        .expect_err("exit");
    assert_eq!(err.kind(), ErrorKind::Exit);
    assert!(err.message().contains('3'), "{}", err.message());
    assert_still_healthy(&sandbox);
}

#[test]
fn proc_exit_zero_in_start_is_normal_end() {
    let m = wasm(
        r#"(module (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
            (global $g (mut i32) (i32.const 0))
            (func (export "_start") (global.set $g (i32.const 7)) (call $exit (i32.const 0)) unreachable)
            (func (export "get") (result i32) (global.get $g)))"#,
    );
    let sandbox = sandbox_with(1, 0);
    assert_eq!(sandbox.run(&spec(&m, "_start", &[])).outcome, Ok(vec![]));
    assert_eq!(sandbox.run(&spec(&m, "get", &[])).outcome, Ok(vec![7]));
}

const WASI_HOST: &str = r#"(module
    (import "wasi_snapshot_preview1" "random_get" (func $r (param i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "clock_time_get" (func $c (param i32 i64 i32) (result i32)))
    (import "wasi_snapshot_preview1" "sock_accept" (func $s (param i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "path_open" (func $p (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
    (memory (export "memory") 1)
    (func (export "rand") (result i64) (drop (call $r (i32.const 0) (i32.const 8))) (i64.load (i32.const 0)))
    (func (export "clock") (param i32) (result i64)
        (if (call $c (local.get 0) (i64.const 1) (i32.const 0)) (then (return (i64.const -1))))
        (i64.load (i32.const 0)))
    (func (export "unknown") (result i32) (call $s (i32.const 0) (i32.const 0) (i32.const 0)))
    (func (export "path_open") (result i32)
        (call $p (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 0))))"#;

#[test]
fn random_get_is_deterministic_per_seed() {
    let m = wasm(WASI_HOST);
    let draw = |seed| sandbox_with(seed, 0).run(&spec(&m, "rand", &[])).outcome;
    let a = draw(7).expect("rand");
    assert_eq!(draw(7), Ok(a.clone()));
    assert_ne!(draw(8), Ok(a));
    // Consecutive draws from one host differ (the RNG advances).
    let sandbox = sandbox_with(7, 0);
    assert_ne!(
        sandbox.run(&spec(&m, "rand", &[])).outcome,
        sandbox.run(&spec(&m, "rand", &[])).outcome
    );
}

#[test]
fn clock_time_get_returns_the_injected_clock() {
    let m = wasm(WASI_HOST);
    let sandbox = Sandbox::new(SandboxConfig {
        host: Arc::new(SeededHost::new(0, Arc::new(|| 1_234_567_890_123))),
        ..SandboxConfig::default()
    });
    assert_eq!(
        sandbox.run(&spec(&m, "clock", &[0])).outcome,
        Ok(vec![1_234_567_890_123])
    );
    assert_eq!(
        sandbox.run(&spec(&m, "clock", &[1])).outcome,
        Ok(vec![1_234_567_890_123])
    );
    assert_eq!(sandbox.run(&spec(&m, "clock", &[99])).outcome, Ok(vec![-1]));
}

#[test]
fn unknown_wasi_imports_link_and_return_enosys() {
    let m = wasm(WASI_HOST);
    let sandbox = sandbox_with(1, 0);
    assert_eq!(sandbox.run(&spec(&m, "unknown", &[])).outcome, Ok(vec![52]));
    assert_eq!(
        sandbox.run(&spec(&m, "path_open", &[])).outcome,
        Ok(vec![52])
    );
}

#[test]
fn known_wasi_import_with_wrong_type_is_bad_module() {
    let m = wasm(
        r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32))) (func (export "f")))"#,
    );
    let report = sandbox_with(1, 0).run(&spec(&m, "f", &[]));
    assert_eq!(kind(&report), Some(ErrorKind::BadModule));
}

#[test]
fn cache_hits_skip_compilation() {
    let sandbox = sandbox_with(1, 0);
    let add = wasm(ADD);
    let hash = sandbox.insert_module(&add).expect("insert");
    assert_eq!(hash, ModuleHash::of(&add));
    assert!(sandbox.has_module(&hash));
    let before = sandbox.cache_stats();
    assert_eq!((before.misses, before.entries), (1, 1));
    let mut by_hash = spec(&add, "add", &[2, 3]);
    by_hash.module = ModuleRef::Hash(hash);
    assert_eq!(sandbox.run(&by_hash).outcome, Ok(vec![5]));
    let after = sandbox.cache_stats();
    assert_eq!(after.misses, 1);
    assert_eq!(after.hits, before.hits + 1);
    // Bytes of a cached module are a hit too.
    assert_eq!(
        sandbox.run(&spec(&add, "add", &[1, 1])).outcome,
        Ok(vec![2])
    );
    assert_eq!(sandbox.cache_stats().misses, 1);
}

#[test]
fn cache_is_bounded_lru() {
    let sandbox = Sandbox::new(SandboxConfig {
        engine: ENGINE,
        cache_modules_max: 2,
        host: seeded(1, 0),
        ..SandboxConfig::default()
    });
    let module = |n: i32| {
        wasm(&format!(
            r#"(module (func (export "n") (result i32) i32.const {n}))"#
        ))
    };
    let (a, b, c) = (module(1), module(2), module(3));
    let ha = sandbox.insert_module(&a).expect("a");
    let hb = sandbox.insert_module(&b).expect("b");
    let mut run_a = spec(&a, "n", &[]);
    run_a.module = ModuleRef::Hash(ha);
    assert_eq!(sandbox.run(&run_a).outcome, Ok(vec![1])); // a is now most recent
    let hc = sandbox.insert_module(&c).expect("c");
    assert!(sandbox.has_module(&ha) && sandbox.has_module(&hc));
    assert!(!sandbox.has_module(&hb));
    assert_eq!(sandbox.cache_stats().entries, 2);
    let mut run_b = spec(&b, "n", &[]);
    run_b.module = ModuleRef::Hash(hb);
    assert_eq!(kind(&sandbox.run(&run_b)), Some(ErrorKind::UnknownModule));
}

#[test]
fn unknown_hash_is_unknown_module() {
    let sandbox = sandbox_with(1, 0);
    let mut s = spec(&[], "f", &[]);
    s.module = ModuleRef::Hash(ModuleHash([9; 32]));
    assert_eq!(kind(&sandbox.run(&s)), Some(ErrorKind::UnknownModule));
    assert_still_healthy(&sandbox);
}

#[test]
fn fuel_used_is_reported_on_success() {
    let sandbox = sandbox_with(1, 0);
    let report = sandbox.run(&spec(&wasm(ADD), "add", &[1, 2]));
    assert!(
        report.fuel_used > 0 && report.fuel_used < 100,
        "{}",
        report.fuel_used
    );
    let again = sandbox.run(&spec(&wasm(ADD), "add", &[1, 2]));
    assert_eq!(again.fuel_used, report.fuel_used);
}

/// Found by fuzzing (`fuzz/regressions/rpc_worker/`): a code section that
/// declares no function but holds 1,000 bytes or more made wasmi divide by
/// zero (a panic caught as an `internal` error, or an abort under a panic
/// hook that aborts). It is a bad module, refused before wasmi parses it.
#[test]
fn a_code_section_with_no_function_but_many_bytes_is_a_bad_module() {
    let mut bytes = b"\0asm\x01\0\0\0".to_vec();
    let payload_len: u32 = 1 + 1100; // the count 0, then 1,100 bytes
    bytes.push(10); // the code section
                    // The size as LEB128 (1101 = 0x44D).
    bytes.extend_from_slice(&[0x80 | (payload_len & 0x7f) as u8, (payload_len >> 7) as u8]);
    bytes.push(0); // count 0
    bytes.extend(std::iter::repeat_n(0u8, 1100));
    let sandbox = Sandbox::new(SandboxConfig {
        engine: ENGINE,
        ..SandboxConfig::default()
    });
    let err = sandbox.insert_module(&bytes).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadModule, "{err}");
    let report = sandbox.run(&spec(&bytes, "run", &[]));
    assert_eq!(kind(&report), Some(ErrorKind::BadModule));
    // The same section cut short: declared, not present (found by fuzzing too).
    bytes.truncate(bytes.len() - 1000);
    let err = sandbox.insert_module(&bytes).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadModule, "{err}");
    assert_still_healthy(&sandbox);
}

