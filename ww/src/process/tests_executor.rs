//! The executor over a real sandbox, in process: ends, bounds, deadline, output.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::exec::{ErrorKind, Limits, ModuleRef, OutputStream, Sandbox, SandboxConfig};

/// Prints "hello\n" `n` times, then `proc_exit(3)`.
const HELLO_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello\n")
  (func (export "run") (param $n i32)
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 6))
    (block $done (loop $again
      (br_if $done (i32.eqz (local.get $n)))
      (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $again)))
    (call $exit (i32.const 3))))"#;

/// Prints "tick\n" for ever.
const TICK_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "tick\n")
  (func (export "run")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 5))
    (loop $forever
      (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
      (br $forever))))"#;

fn executor(running_max: usize, output_bytes_max: usize) -> Executor {
    let sandbox = Arc::new(Sandbox::new(SandboxConfig::default()));
    Executor::new(
        sandbox,
        ExecutorConfig {
            table: TableLimits {
                running_max,
                finished_max: 4,
            },
            output_bytes_max,
            limits_max: Limits {
                fuel_max: 1_000_000_000_000,
                ..Limits::default()
            },
        },
    )
}

fn spec(wat: &str, args: Vec<i64>, deadline: Option<Duration>) -> ProcessSpec {
    ProcessSpec {
        module: ModuleRef::Bytes(wat::parse_str(wat).unwrap()),
        export: "run".into(),
        args,
        limits: ProcessLimits {
            deadline,
            ..ProcessLimits::default()
        },
    }
}

fn local(test: impl std::future::Future<Output = ()>) {
    crate::rpc::block_on_local(test).unwrap();
}

#[test]
fn a_process_exits_with_its_code_and_its_output_is_read_to_eof() {
    local(async {
        let ex = executor(2, 1024);
        let id = ex.spawn(spec(HELLO_WAT, vec![2], None)).await.unwrap();
        let end = ex.wait(id).await.unwrap();
        assert_eq!((end.state, end.exit_code()), (ProcessState::Exited(3), 3));
        let out = ex.read(id, OutputStream::Stdout, 0, 1024).unwrap();
        assert_eq!(out.data, b"hello\nhello\n");
        assert!(out.eof);
        assert_eq!(ex.list()[0].state, ProcessState::Exited(3));
    });
}

#[test]
fn a_full_host_refuses_until_a_kill_frees_a_place() {
    local(async {
        let ex = executor(1, 16);
        let id = ex.spawn(spec(TICK_WAT, vec![], None)).await.unwrap();
        let refused = ex.spawn(spec(HELLO_WAT, vec![1], None)).await;
        assert_eq!(
            refused.unwrap_err(),
            ExecutorError::Table(ProcessError::Full(1))
        );
        // Output beyond the bound drops the oldest bytes; readers are told.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let out = ex.read(id, OutputStream::Stdout, 0, 1024).unwrap();
        assert!(out.skipped > 0 && out.data.len() <= 16, "{out:?}");
        let end = ex.kill(id).await.unwrap();
        assert_eq!((end.state, end.exit_code()), (ProcessState::Killed, 137));
        assert!(matches!(
            ex.kill(id).await,
            Err(ExecutorError::Table(ProcessError::Ended(_, "killed")))
        ));
        assert!(ex.spawn(spec(HELLO_WAT, vec![1], None)).await.is_ok());
    });
}

#[test]
fn a_deadline_is_kept_only_when_given() {
    local(async {
        let ex = executor(2, 64);
        let timed = ex
            .spawn(spec(TICK_WAT, vec![], Some(Duration::from_millis(50))))
            .await
            .unwrap();
        let untimed = ex.spawn(spec(TICK_WAT, vec![], None)).await.unwrap();
        let end = ex.wait(timed).await.unwrap();
        assert_eq!(end.state, ProcessState::Failed(ErrorKind::Deadline));
        assert_eq!(end.exit_code(), EXIT_CODE_FAILED);
        let running = ex.list().into_iter().find(|p| p.id == untimed).unwrap();
        assert_eq!(running.state, ProcessState::Running);
        ex.kill(untimed).await.unwrap();
    });
}

#[test]
fn unknown_processes_and_modules_are_refused() {
    local(async {
        let ex = executor(2, 64);
        let unknown = ProcessId(42);
        assert!(matches!(
            ex.wait(unknown).await,
            Err(ExecutorError::Table(ProcessError::Unknown(_)))
        ));
        assert!(ex.read(unknown, OutputStream::Stderr, 0, 1).is_err());
        let by_hash = ProcessSpec {
            module: ModuleRef::Hash(crate::exec::ModuleHash([9; 32])),
            ..spec(HELLO_WAT, vec![1], None)
        };
        let Err(ExecutorError::Module(e)) = ex.spawn(by_hash).await else {
            panic!("a module that is not cached must be refused");
        };
        assert_eq!(e.kind(), ErrorKind::UnknownModule);
        assert!(ex.list().is_empty());
    });
}

#[test]
fn dropping_the_executor_stops_its_running_processes() {
    local(async {
        let sandbox = Arc::new(Sandbox::new(SandboxConfig::default()));
        let ex = Executor::new(sandbox.clone(), ExecutorConfig::default());
        ex.spawn(spec(TICK_WAT, vec![], None)).await.unwrap();
        drop(ex);
        // The guest's thread holds the sandbox until its run has stopped.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&sandbox) > 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "the process outlived its executor"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
}
