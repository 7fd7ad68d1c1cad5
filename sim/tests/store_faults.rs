//! The gateway's store on a simulated disk with injected faults: a write the
//! disk refuses is an error (never a panic), and after a crash and a heal the
//! store reopens with exactly its durable commits.

use ww_sched::sched::{SchedConfig, Schedule, Scheduler, Store, Task, TaskId, TaskSpec};
use ww_sim::disk::{DiskFault, SimDisk};

/// The module the tasks refer to; the store keeps no task without its module.
const MODULE: &[u8] = b"\0asm\x01\0\0\0";

fn task(name: &str) -> Task {
    let spec = TaskSpec {
        id: TaskId::parse(name).expect("valid id"),
        description: "fault test".into(),
        module_hash: ww_sched::exec::ModuleHash::of(MODULE).0,
        export: "run".into(),
        args: vec![1],
        fuel_max: 1 << 20,
        memory_pages_max: 16,
        duration_ms: 10_000,
        schedule: Schedule {
            start_ms: 0,
            delay_ms: 0,
            repeats: 1,
        },
        completions_initial: 0,
        idempotency_key: None,
    };
    let mut sched = Scheduler::new(SchedConfig::default());
    sched.submit(0, spec.clone()).expect("submit");
    sched.task(&spec.id).expect("task").clone()
}

fn ids(store: &Store) -> Vec<String> {
    let tasks = store.tasks().expect("tasks");
    tasks
        .iter()
        .map(|t| t.spec.id.as_str().to_string())
        .collect()
}

#[test]
fn a_refused_write_is_an_error_and_a_reopen_keeps_the_durable_commits() {
    for fault in [DiskFault::Eio, DiskFault::Full, DiskFault::FsyncFail] {
        let disk = SimDisk::new();
        {
            let store = Store::open_on(disk.backend(), "disk").expect("open");
            store.put_module(MODULE, 0).expect("module");
            store.put_task(&task("kept")).expect("durable put");
            disk.inject(fault);
            let refused = store.put_task(&task("refused"));
            assert!(refused.is_err(), "{fault:?}: the write was not refused");
            assert!(disk.failures() > 0, "{fault:?}: no call was refused");
            disk.crash();
        }
        // Still faulty: opening (which must repair after the crash) fails cleanly.
        {
            assert!(
                Store::open_on(disk.backend(), "disk").is_err(),
                "{fault:?}: opened on a faulty disk"
            );
            disk.crash();
        }
        disk.heal();
        let store = Store::open_on(disk.backend(), "disk").expect("reopen after heal");
        assert_eq!(ids(&store), ["kept"], "{fault:?}");
        store.put_task(&task("later")).expect("put after heal");
        assert_eq!(ids(&store), ["kept", "later"], "{fault:?}");
    }
}
