//! The hash puzzle in the sandbox (each engine of the build) against the bare
//! engine on the same module and against the same source compiled natively, with
//! and without hardware SHA.
//!
//! Every configuration runs inputs 1..=8 with 3 leading zeros per iteration, so the
//! ratios between rows give: the cost of the sandbox over its engine (limits, WASI
//! linking, cache, a fresh instance per call), and the cost of each engine over
//! native code. Native with hardware SHA (sha2 0.10 picks SHA-NI at run time when
//! the CPU has it) is not what a guest can ever use: wasm has no SHA instructions,
//! so the fair native baseline is the software SHA-256 (sha2 0.9 with
//! `force-soft`, a separate crate from the 0.10 the task uses, so the two do not
//! unify). `cargo bench -p ww --bench exec` measures wasmi; with `--features jit` it
//! adds wasmtime.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use ww::exec::{EngineKind, Limits, ModuleRef, RunSpec, Sandbox, SandboxConfig};

/// The hash-puzzle task of the workspace (`tasks/hash-puzzle`), built to WASM.
const WASM: &[u8] = include_bytes!("../../tasks/hash-puzzle/hash-puzzle.wasm");
const INPUTS: std::ops::RangeInclusive<u32> = 1..=8;
const ZEROS: u32 = 3;

/// The task's own source, compiled natively into this bench: the same function.
#[path = "../../tasks/hash-puzzle/src/lib.rs"]
#[allow(dead_code, unsafe_code)] // the task exports `run` with #[no_mangle]
mod task;

fn native(input: u32, zeros: u32) -> u32 {
    task::run(input, zeros)
}

/// The task's algorithm on sha2 0.9 with `force-soft`: SHA-256 in plain Rust, as
/// the guest computes it. (0.9's API lacks `new_with_prefix`, so the task's source
/// cannot be included twice; the answers are checked equal below.)
fn native_soft(input: u32, zeros: u32) -> u32 {
    use sha2_soft::{Digest, Sha256};
    let mut prefix = Sha256::new();
    prefix.update(input.to_string().as_bytes());
    let mut counter: u32 = 1;
    loop {
        let mut digits = [0u8; 10];
        let text = decimal(counter, &mut digits);
        let digest = prefix.clone().chain(text).finalize();
        let mut leading = 0;
        for byte in digest.iter() {
            if *byte == 0 {
                leading += 2;
                continue;
            }
            if *byte < 0x10 {
                leading += 1;
            }
            break;
        }
        if leading >= zeros {
            return counter;
        }
        counter += 1;
    }
}

/// `value` in decimal, without allocating (as the task does it).
fn decimal(mut value: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut pos = buf.len();
    loop {
        pos -= 1;
        buf[pos] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            return &buf[pos..];
        }
    }
}

/// wasmi without the sandbox: default config (no fuel), module compiled once, a
/// fresh store and instance per call, as the sandbox does.
struct BareWasmi {
    engine: wasmi::Engine,
    module: wasmi::Module,
}

impl BareWasmi {
    fn new() -> Self {
        let engine = wasmi::Engine::default();
        let module = wasmi::Module::new(&engine, WASM).expect("compiles");
        Self { engine, module }
    }

    fn run(&self, input: u32) -> u32 {
        let mut store = wasmi::Store::new(&self.engine, ());
        let linker = wasmi::Linker::<()>::new(&self.engine);
        let instance = linker
            .instantiate_and_start(&mut store, &self.module)
            .expect("instantiates");
        let run = instance
            .get_typed_func::<(i32, i32), i32>(&store, "run")
            .expect("run");
        run.call(&mut store, (input as i32, ZEROS as i32))
            .expect("runs") as u32
    }
}

/// wasmtime without the sandbox: default config (no fuel, no epochs), module
/// compiled once, a fresh store and instance per call.
#[cfg(feature = "jit")]
struct BareWasmtime {
    engine: wasmtime::Engine,
    module: wasmtime::Module,
}

#[cfg(feature = "jit")]
impl BareWasmtime {
    fn new() -> Self {
        let engine = wasmtime::Engine::default();
        let module = wasmtime::Module::new(&engine, WASM).expect("compiles");
        Self { engine, module }
    }

    fn run(&self, input: u32) -> u32 {
        let mut store = wasmtime::Store::new(&self.engine, ());
        let instance =
            wasmtime::Instance::new(&mut store, &self.module, &[]).expect("instantiates");
        let run = instance
            .get_typed_func::<(i32, i32), i32>(&mut store, "run")
            .expect("run");
        run.call(&mut store, (input as i32, ZEROS as i32))
            .expect("runs") as u32
    }
}

/// A sandbox on `engine` with the module cached, and the eight runs to make.
fn sandbox(engine: EngineKind) -> (Sandbox, Vec<RunSpec>) {
    let sandbox = Sandbox::new(SandboxConfig {
        engine,
        ..SandboxConfig::default()
    });
    let hash = sandbox
        .insert_module(WASM)
        .expect("hash-puzzle.wasm compiles");
    let specs: Vec<RunSpec> = INPUTS
        .map(|input| RunSpec {
            module: ModuleRef::Hash(hash),
            export: "run".into(),
            args: vec![i64::from(input), i64::from(ZEROS)],
            limits: Limits::default(),
        })
        .collect();
    for (spec, input) in specs.iter().zip(INPUTS) {
        let got = sandbox.run(spec).outcome.expect("runs");
        assert_eq!(got, vec![i64::from(native(input, ZEROS))], "{engine}");
    }
    (sandbox, specs)
}

fn bench(c: &mut Criterion) {
    let bare_wasmi = BareWasmi::new();
    #[cfg(feature = "jit")]
    let bare_wasmtime = BareWasmtime::new();
    for input in INPUTS {
        let want = native(input, ZEROS);
        assert_eq!(native_soft(input, ZEROS), want);
        assert_eq!(bare_wasmi.run(input), want);
        #[cfg(feature = "jit")]
        assert_eq!(bare_wasmtime.run(input), want);
    }
    let engines = [
        EngineKind::Wasmi,
        #[cfg(feature = "jit")]
        EngineKind::Wasmtime,
    ];

    let mut group = c.benchmark_group("hash_puzzle_zeros3_inputs1to8");
    group.bench_function("native", |b| {
        b.iter(|| {
            for input in INPUTS {
                black_box(native(black_box(input), ZEROS));
            }
        })
    });
    group.bench_function("native_soft_sha", |b| {
        b.iter(|| {
            for input in INPUTS {
                black_box(native_soft(black_box(input), ZEROS));
            }
        })
    });
    group.bench_function("bare_wasmi", |b| {
        b.iter(|| {
            for input in INPUTS {
                black_box(bare_wasmi.run(black_box(input)));
            }
        })
    });
    #[cfg(feature = "jit")]
    group.bench_function("bare_wasmtime", |b| {
        b.iter(|| {
            for input in INPUTS {
                black_box(bare_wasmtime.run(black_box(input)));
            }
        })
    });
    for engine in engines {
        let (sandbox, specs) = sandbox(engine);
        group.bench_function(format!("sandbox_{engine}"), |b| {
            b.iter(|| {
                for s in &specs {
                    black_box(sandbox.run(black_box(s)).outcome.ok());
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
