# The Worker capability: what a gateway may ask a worker node to do.
#
# Wire contract of ww-sched. The generated Rust lives in src/schema/ and is
# checked in; tests/schema_fresh.rs regenerates it and fails on any drift.
@0xa6e12333647d7443;

interface Worker {
  # Run the module's export `run(input, difficulty)` and return the number as
  # decimal text. Kept for compatibility with the original ww-scheduler demo.
  assign @0 (wasm :Data, input :Int64, difficulty :Int64) -> (result :Text);

  # Run one task. Failures of the task itself (traps, exhausted limits) come
  # back inside the report; only transport trouble fails the call.
  run @1 (spec :TaskSpec) -> (report :RunReport);

  # A call that does nothing: liveness checks and round-trip benchmarks.
  ping @2 () -> ();

  # Run several tasks in one call: one message each way instead of one per
  # run. Each spec takes its own slot, as `run` does, and may run beside the
  # others; the reports come back in the order of the specs. At most 64
  # specs. A worker that predates this method answers `unimplemented`, and
  # the caller falls back to `run`.
  runMany @3 (specs :List(TaskSpec)) -> (reports :List(RunReport));
}

# Resource limits of one run. Zero means "the worker's default".
struct Limits {
  fuelMax @0 :UInt64;
  memoryPagesMax @1 :UInt32;
  wallTimeMs @2 :UInt64;
}

struct TaskSpec {
  module :union {
    # The module itself; the worker caches it under its SHA-256.
    bytes @0 :Data;
    # The 32-byte SHA-256 of a module the worker already holds.
    hash @1 :Data;
  }
  export @2 :Text;
  args @3 :List(Int64);
  limits @4 :Limits;
}

enum RunStatus {
  succeeded @0;
  failed @1;
}

# Why a run failed; mirrors ww_sched::exec::ErrorKind.
enum ErrorKind {
  none @0;
  notWasm @1;
  badModule @2;
  moduleTooLarge @3;
  unknownModule @4;
  missingExport @5;
  wrongSignature @6;
  trap @7;
  fuelExhausted @8;
  memoryLimit @9;
  deadline @10;
  exit @11;
  internal @12;
  cancelled @13;
}

struct RunReport {
  status @0 :RunStatus;
  results @1 :List(Int64);
  stdout @2 :Data;
  stderr @3 :Data;
  fuelUsed @4 :UInt64;
  errorKind @5 :ErrorKind;
  errorMessage @6 :Text;
}

# What a worker sends down the gateway's channel to join its pool.
struct Registration {
  worker @0 :Worker;
  # Runs the worker takes at once.
  slots @1 :UInt32;
}
