# The Executor capability: WASM modules run as long-running processes on a
# worker host, each with its own fuel and memory limits and no deadline unless
# one is given. Served on /ww-sched/0.1/executor to the same callers as the
# Worker capability.
#
# Wire contract of ww-sched. The generated Rust lives in src/schema/ and is
# checked in; tests/schema_fresh.rs regenerates it and fails on any drift.
@0xc22c68b0bb52ee3b;

interface Executor {
  # Start a process; its id is unique on this host for the host's lifetime.
  # Refused (overloaded) when the host already runs its maximum of processes.
  spawn @0 (spec :ProcessSpec) -> (id :UInt64);

  # Every process the host still holds: running ones and the most recently
  # finished ones, by id.
  list @1 () -> (processes :List(ProcessInfo));

  # Waits until the process ends and says how. Fails for an unknown id
  # (never started, or finished and dropped from the host's table).
  wait @2 (id :UInt64) -> (end :ProcessEnd);

  # Stops a running process and waits until it has stopped. Fails for an
  # unknown id or a process that has already ended.
  kill @3 (id :UInt64) -> (end :ProcessEnd);

  # Output written to `stream` from byte `offset` on, at most `maxBytes`
  # (capped by the host): `nextOffset` is where to read next; `skipped` counts
  # bytes the host had already dropped (it keeps only the newest of each
  # stream); `eof` says the process has ended and everything was read.
  # Returns at once, possibly with no bytes.
  read @4 (id :UInt64, stream :Stream, offset :UInt64, maxBytes :UInt32)
      -> (chunk :Chunk);
}

enum Stream {
  stdout @0;
  stderr @1;
}

# Limits of one process. Zero fuel or memory means the host's maximum; zero
# wall time means no deadline.
struct ProcessLimits {
  fuelMax @0 :UInt64;
  memoryPagesMax @1 :UInt32;
  wallTimeMs @2 :UInt64;
}

struct ProcessSpec {
  module :union {
    # The module itself; the host caches it under its SHA-256.
    bytes @0 :Data;
    # The 32-byte SHA-256 of a module the host already holds.
    hash @1 :Data;
  }
  export @2 :Text;
  args @3 :List(Int64);
  limits @4 :ProcessLimits;
}

enum ProcessState {
  running @0;
  # Returned normally (code 0) or called proc_exit (its code).
  exited @1;
  # Stopped by `kill` (code 137).
  killed @2;
  # Trapped or ran out of a limit (code 134); see errorKind.
  failed @3;
}

struct ProcessInfo {
  id @0 :UInt64;
  moduleHash @1 :Data;
  state @2 :ProcessState;
  # Unix milliseconds when it was spawned.
  startedMs @3 :UInt64;
  # The exit code once ended; 0 while running.
  exitCode @4 :Int32;
  # For a failed process, ww::exec::ErrorKind's name; empty otherwise.
  errorKind @5 :Text;
}

struct ProcessEnd {
  state @0 :ProcessState;
  exitCode @1 :Int32;
  # ww::exec::ErrorKind's name (e.g. "fuel_exhausted") for a failed or
  # killed process; empty otherwise.
  errorKind @2 :Text;
  errorMessage @3 :Text;
  fuelUsed @4 :UInt64;
}

struct Chunk {
  data @0 :Data;
  nextOffset @1 :UInt64;
  skipped @2 :UInt64;
  eof @3 :Bool;
}
