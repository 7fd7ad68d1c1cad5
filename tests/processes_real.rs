//! Processes on a real worker over loopback (issue 15, part 4): `ww-sched
//! spawn` a module that prints and exits, read its stdout over RPC, wait for
//! its exit code; spawn one that loops, see it running in `ps`, read its output
//! while it runs, `kill` it, and see it killed.

mod support;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::{start_worker, Proc, TempDir};

/// Prints "hello\n" `n` times (its argument), then `proc_exit(3)`.
const HELLO_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello\n")
  (func (export "run") (param $n i32)
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 6))
    (block $done
      (loop $again
        (br_if $done (i32.eqz (local.get $n)))
        (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $again)))
    (call $proc_exit (i32.const 3))))"#;

/// Loops for ever, printing "tick\n" every `every` iterations (its argument).
const TICK_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "tick\n")
  (func (export "run") (param $every i32) (local $i i32)
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 5))
    (loop $forever
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (if (i32.eqz (i32.rem_u (local.get $i) (local.get $every)))
        (then (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
      (br $forever))))"#;

fn ww(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ww-sched"))
        .args(args)
        .output()
        .expect("run ww-sched")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `ww-sched <args>`, asserts it succeeded, returns its stdout.
fn ww_ok(args: &[&str]) -> String {
    let out = ww(args);
    assert!(
        out.status.success(),
        "ww-sched {args:?} failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The `ps` line of process `id`, if listed.
fn ps_line(address: &str, id: &str) -> Option<String> {
    let listing = ww_ok(&["ps", "--peer", address]);
    listing
        .lines()
        .find(|line| line.ends_with(&format!(" {id}")))
        .map(str::to_string)
}

#[test]
fn processes_are_spawned_read_waited_for_listed_and_killed() {
    // Fuel for minutes of looping, so only `kill` can end the looping process
    // in this test (the default of 10^10 lasts a few seconds of this loop).
    let worker = start_worker("none", &["--fuel-max", "1000000000000"]);
    let address = worker.address.clone();
    let dir = TempDir::new("processes");
    let hello = format!("{}/hello.wasm", dir.path());
    let tick = format!("{}/tick.wasm", dir.path());
    std::fs::write(&hello, wat::parse_str(HELLO_WAT).unwrap()).unwrap();
    std::fs::write(&tick, wat::parse_str(TICK_WAT).unwrap()).unwrap();

    let first = spawn_and_follow(&address, &hello);

    // A process that runs until killed.
    let looping = ww_ok(&[
        "spawn", "--peer", &address, "--wasm", &tick, "--arg", "100000",
    ])
    .trim()
    .to_string();
    assert!(looping.ends_with("/proc/2"), "{looping}");
    // Its output is read while it runs, by a second client.
    let mut follower = Proc::start(&["wait", &looping, "--follow"]);
    follower.wait_for("tick", Duration::from_secs(30));
    let line = ps_line(&address, &looping).expect("ps lists the running process");
    assert!(line.starts_with("running"), "{line}");
    let line = ps_line(&address, &first).expect("ps lists the ended process");
    assert!(line.starts_with("exited") && line.contains(" 3 "), "{line}");
    // Still running a second later: no deadline was given.
    std::thread::sleep(Duration::from_secs(1));
    assert!(ps_line(&address, &looping).unwrap().starts_with("running"));
    assert_listed_under_anchors(&worker.peer, &address);

    let killed_at = Instant::now();
    assert_eq!(
        ww_ok(&["kill", &looping, "--timeout-ms", "20000"]).trim(),
        "killed 137"
    );
    eprintln!("kill, CLI start to answer: {:?}", killed_at.elapsed());
    // The follower's wait ends too, with the same answer.
    follower.wait_for("killed 137", Duration::from_secs(30));
    let line = ps_line(&address, &looping).unwrap();
    assert!(
        line.starts_with("killed") && line.contains(" 137 "),
        "{line}"
    );
    assert_eq!(ww_ok(&["wait", &looping]).trim(), "killed 137");

    out_of_fuel(&address, &tick);

    // Killing it again, or a process that never was, is a clear error.
    let again = ww(&["kill", &looping]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("already ended"),
        "{}",
        text(&again.stderr)
    );
    let unknown = format!("{address}/proc/99");
    let none = ww(&["kill", &unknown]);
    assert!(!none.status.success());
    assert!(
        text(&none.stderr).contains("no process 99"),
        "{}",
        text(&none.stderr)
    );
}

/// Spawns `hello` printing 3 lines and follows it; its process id.
fn spawn_and_follow(address: &str, hello: &str) -> String {
    // A process that prints and exits: its stdout is read over RPC (--follow
    // reads the stream by offset), then `wait` gives its exit code.
    let started = Instant::now();
    let out = ww(&[
        "spawn", "--peer", address, "--wasm", hello, "--arg", "3", "--follow",
    ]);
    let spawn_follow = started.elapsed();
    assert!(
        out.status.success(),
        "spawn --follow: {}",
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    let mut lines = stdout.lines();
    let first = lines.next().expect("a process id").to_string();
    assert!(
        first.starts_with(address) && first.ends_with("/proc/1"),
        "{first}"
    );
    assert_eq!(lines.collect::<Vec<_>>(), ["hello"; 3]);
    assert!(
        text(&out.stderr).contains("exited 3"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(ww_ok(&["wait", &first]).trim(), "exited 3");
    eprintln!("spawn --follow of a 3-line process, CLI start to end: {spawn_follow:?}");
    first
}

/// The host lists its processes under its anchors too: both, the second running.
fn assert_listed_under_anchors(peer: &str, address: &str) {
    let listed = ww_ok(&["ls", &format!("/{}/proc", peer), "--discover", address]);
    let proc_anchors: Vec<&str> = listed
        .lines()
        .filter_map(|line| line.split('\t').next())
        .collect();
    assert_eq!(
        proc_anchors,
        [format!("/{}/proc/1", peer), format!("/{}/proc/2", peer)],
        "{listed}"
    );
    let state = ww_ok(&[
        "anchor",
        "get",
        &format!("/{}/proc/2", peer),
        "--discover",
        address,
    ]);
    assert!(state.starts_with("running - "), "{state}");
}

/// A process that runs out of its own fuel fails, and says why.
fn out_of_fuel(address: &str, tick: &str) {
    let out = ww(&[
        "spawn",
        "--peer",
        address,
        "--wasm",
        tick,
        "--arg",
        "1000",
        "--fuel-max",
        "1000000",
        "--follow",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("failed 134 fuel_exhausted"),
        "{}",
        text(&out.stderr)
    );
    let starved = text(&out.stdout).lines().next().unwrap().to_string();
    let line = ps_line(address, &starved).unwrap();
    assert!(
        line.starts_with("failed") && line.contains(" 134 "),
        "{line}"
    );
}

#[test]
fn processes_admit_only_the_workers_allowed_callers() {
    let dir = TempDir::new("processes-auth");
    let key = format!("{}/caller.key", dir.path());
    let allowed = ww_ok(&["id", "--key", &key]).trim().to_string();
    let worker = start_worker("none", &["--allow", &allowed]);
    let hello = format!("{}/hello.wasm", dir.path());
    std::fs::write(&hello, wat::parse_str(HELLO_WAT).unwrap()).unwrap();
    let spawn = |extra: &[&str]| {
        let mut args = vec![
            "spawn",
            "--peer",
            &worker.address,
            "--wasm",
            &hello,
            "--arg",
            "1",
            "--timeout-ms",
            "5000",
        ];
        args.extend_from_slice(extra);
        ww(&args)
    };
    // A caller the Worker capability would refuse is refused here too.
    let stranger = spawn(&[]);
    assert!(!stranger.status.success(), "{}", text(&stranger.stdout));
    assert!(
        text(&stranger.stderr).contains("admits only its --allow peer ids"),
        "{}",
        text(&stranger.stderr)
    );
    // The allowed key may spawn, wait and list.
    let id = text(&spawn(&["--key", &key]).stdout).trim().to_string();
    assert!(id.ends_with("/proc/1"), "{id}");
    assert_eq!(ww_ok(&["wait", &id, "--key", &key]).trim(), "exited 3");
    let denied = ww(&["ps", "--peer", &worker.address, "--timeout-ms", "5000"]);
    assert!(!denied.status.success());
}

#[test]
fn a_host_named_by_its_peer_id_is_found_in_the_cluster_and_ps_lists_every_worker() {
    let fuel = ["--fuel-max", "1000000000000"];
    let (a, b) = (start_worker("none", &fuel), start_worker("none", &fuel));
    let discover = format!("{},{}", a.address, b.address);
    let dir = TempDir::new("processes-by-id");
    let tick = format!("{}/tick.wasm", dir.path());
    std::fs::write(&tick, wat::parse_str(TICK_WAT).unwrap()).unwrap();
    // A looping process on each worker, the host named by its peer id only.
    let ids: Vec<String> = [&a, &b]
        .iter()
        .map(|w| {
            let id = ww_ok(&[
                "spawn",
                "--peer",
                &w.peer,
                "--wasm",
                &tick,
                "--arg",
                "100000",
                "--discover",
                &discover,
            ])
            .trim()
            .to_string();
            assert_eq!(id, format!("/p2p/{}/proc/1", w.peer));
            id
        })
        .collect();
    // `ps` without --peer lists both workers' processes.
    let listing = ww_ok(&["ps", "--discover", &discover]);
    for id in &ids {
        let line = listing
            .lines()
            .find(|line| line.ends_with(&format!(" {id}")))
            .unwrap_or_else(|| panic!("{id} not listed:\n{listing}"));
        assert!(line.starts_with("running"), "{line}");
    }
    assert_eq!(
        listing.lines().count(),
        3,
        "a header and two processes:\n{listing}"
    );
    // The id `spawn` printed is enough to kill it (found the same way).
    assert_eq!(
        ww_ok(&["kill", &ids[0], "--discover", &discover]).trim(),
        "killed 137"
    );
    // Named by its address, the same host lists it ended.
    let line = ps_line(&a.address, &format!("{}/proc/1", a.address)).expect("listed");
    assert!(line.starts_with("killed"), "{line}");
    // A peer id no one in the cluster has is a clear error, after --wait-ms.
    let stranger = ww_ok(&["id", "--key", &format!("{}/stranger.key", dir.path())]);
    let missing = ww(&[
        "spawn",
        "--peer",
        stranger.trim(),
        "--wasm",
        &tick,
        "--discover",
        &discover,
        "--wait-ms",
        "1500",
    ]);
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr).contains("not in the cluster view"),
        "{}",
        text(&missing.stderr)
    );
}
