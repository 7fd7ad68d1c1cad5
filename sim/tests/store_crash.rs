//! The gateway's store on the simulated disk: what a crash keeps is exactly what
//! was made durable, the store reopens cleanly after any crash, and a write the
//! disk refuses (an injected fault) is an error, never a panic.

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use ww_sched::sched::{
    RunOutcome, RunStatus, SchedConfig, Schedule, Scheduler, Store, Task, TaskId, TaskSpec,
    WorkerId,
};
use ww_sim::disk::{DiskFault, SimDisk, SyncPolicy};

/// The worker the tests call `name`: a peer id derived from the name.
fn worker(name: &str) -> WorkerId {
    let mut secret = [0u8; 32];
    for (i, byte) in name.bytes().enumerate() {
        secret[i % 32] ^= byte.wrapping_add(i as u8);
    }
    WorkerId::from(ww::transport::Identity::from_secret(secret).peer_id())
}

/// The module the tasks refer to; the store keeps no task without its module.
const MODULE: &[u8] = b"\0asm\x01\0\0\0";

/// A store on `disk` with the module stored (durably), as the gateway would.
fn open(disk: &SimDisk) -> Store {
    let store = Store::open_on(disk.backend(), "disk").expect("open");
    store.put_module(MODULE, 0).expect("module");
    store
}

fn spec(name: &str) -> TaskSpec {
    TaskSpec {
        id: TaskId::parse(name).expect("valid id"),
        description: "crash test".into(),
        module_hash: ww::exec::ModuleHash::of(MODULE).0,
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
    }
}

/// A task submitted to a scheduler with one worker: its run is Running.
fn running_task(sched: &mut Scheduler, name: &str) -> Task {
    sched.submit(0, spec(name)).expect("submit");
    sched.task(&spec(name).id).expect("task").clone()
}

fn statuses(store: &Store) -> Vec<(String, RunStatus)> {
    store
        .tasks()
        .expect("tasks")
        .iter()
        .map(|t| (t.spec.id.as_str().to_string(), t.runs[0].status))
        .collect()
}

#[test]
fn a_crash_keeps_durable_writes_and_loses_the_rest() {
    let disk = SimDisk::new();
    let mut sched = Scheduler::new(SchedConfig::default());
    sched.worker_joined(0, &worker("w"), 4);
    let durable = running_task(&mut sched, "durable");
    let unsynced = running_task(&mut sched, "unsynced");
    {
        let store = open(&disk);
        store.put_task(&durable).expect("durable put");
        disk.set_sync_policy(SyncPolicy::Lying);
        store.put_task(&unsynced).expect("unsynced put");
        // Both are readable before the crash: reads see unsynced writes.
        assert_eq!(store.tasks().expect("tasks").len(), 2);
        let lost = disk.crash();
        assert!(lost > 0, "the commit whose sync was a lie wrote nothing");
        // The crashed store is dropped here; its last writes must go nowhere.
    }
    let store = Store::open_on(disk.backend(), "disk").expect("reopen after crash");
    assert_eq!(
        statuses(&store),
        vec![("durable".to_string(), RunStatus::Running)]
    );
}

#[test]
fn a_real_sync_makes_earlier_unsynced_writes_survive() {
    let disk = SimDisk::new();
    let mut sched = Scheduler::new(SchedConfig::default());
    sched.worker_joined(0, &worker("w"), 4);
    let task = running_task(&mut sched, "t");
    let id = task.spec.id.clone();
    {
        let store = open(&disk);
        store.put_task(&task).expect("put");
        sched.run_finished(
            5,
            &id,
            0,
            1,
            RunOutcome::Succeeded {
                results: vec![3],
                stdout: String::new(),
                fuel_used: 10,
            },
        );
        let finished = sched.task(&id).expect("task").clone();
        disk.set_sync_policy(SyncPolicy::Lying);
        store.put_task(&finished).expect("unsynced put");
        disk.set_sync_policy(SyncPolicy::Honest);
        let other = running_task(&mut sched, "other");
        store.put_task(&other).expect("synced put");
        disk.crash();
    }
    let store = Store::open_on(disk.backend(), "disk").expect("reopen");
    assert_eq!(
        statuses(&store),
        vec![
            ("other".to_string(), RunStatus::Running),
            ("t".to_string(), RunStatus::Succeeded)
        ]
    );
}

/// Crashes after each of a series of commits, every third of them on a disk
/// that lies about its sync, keeping a seeded subset of the unsynced writes
/// when `torn_seed` is given; every reopen must succeed and hold exactly the
/// tasks written up to the last commit really synced.
fn crash_at_every_step(torn_seed: Option<u64>) {
    let mut sched = Scheduler::new(SchedConfig::default());
    sched.worker_joined(0, &worker("w"), 64);
    let tasks: Vec<Task> = (0..12)
        .map(|i| running_task(&mut sched, &format!("t{i:02}")))
        .collect();
    for crash_after in 0..tasks.len() {
        let disk = SimDisk::new();
        let mut expected = Vec::new();
        {
            let store = open(&disk);
            for (i, task) in tasks.iter().enumerate().take(crash_after + 1) {
                let durable = i % 3 != 2;
                disk.set_sync_policy(if durable {
                    SyncPolicy::Honest
                } else {
                    SyncPolicy::Lying
                });
                store.put_task(task).expect("put");
                if durable {
                    // A durable commit also makes every earlier write durable.
                    expected = tasks[..=i].iter().map(|t| t.spec.id.clone()).collect();
                }
            }
            match torn_seed {
                Some(seed) => disk.crash_torn(&mut ChaCha8Rng::seed_from_u64(seed)),
                None => disk.crash(),
            };
        }
        let store = Store::open_on(disk.backend(), "disk").unwrap_or_else(|e| {
            panic!("reopen after crash {crash_after} (torn seed {torn_seed:?}): {e}")
        });
        let found: Vec<TaskId> = store
            .tasks()
            .expect("tasks")
            .into_iter()
            .map(|t| t.spec.id)
            .collect();
        assert_eq!(
            found, expected,
            "crash after write {crash_after} (torn seed {torn_seed:?})"
        );
    }
}

#[test]
fn the_store_reopens_after_a_crash_at_every_step() {
    crash_at_every_step(None);
}

#[test]
fn the_store_reopens_after_a_torn_crash_at_every_step() {
    // Any subset of the unsynced writes may have reached the disk: redb must
    // still come back at its last durable commit.
    for seed in 0..16 {
        crash_at_every_step(Some(seed));
    }
}

#[test]
fn a_refused_write_is_an_error_and_a_reopen_keeps_the_durable_commits() {
    let mut sched = Scheduler::new(SchedConfig::default());
    sched.worker_joined(0, &worker("w"), 4);
    let (kept, refused, later) = (
        running_task(&mut sched, "kept"),
        running_task(&mut sched, "refused"),
        running_task(&mut sched, "later"),
    );
    let names = |store: &Store| -> Vec<String> {
        statuses(store).into_iter().map(|(name, _)| name).collect()
    };
    for fault in [DiskFault::Eio, DiskFault::Full, DiskFault::FsyncFail] {
        let disk = SimDisk::new();
        {
            let store = open(&disk);
            store.put_task(&kept).expect("durable put");
            disk.inject(fault);
            assert!(
                store.put_task(&refused).is_err(),
                "{fault:?}: the write was not refused"
            );
            assert!(disk.failures() > 0, "{fault:?}: no call was refused");
            disk.crash();
        }
        // Still faulty: opening (which must repair after the crash) fails cleanly.
        assert!(
            Store::open_on(disk.backend(), "disk").is_err(),
            "{fault:?}: opened on a faulty disk"
        );
        disk.crash();
        disk.heal();
        let store = Store::open_on(disk.backend(), "disk").expect("reopen after heal");
        assert_eq!(names(&store), ["kept"], "{fault:?}");
        store.put_task(&later).expect("put after heal");
        assert_eq!(names(&store), ["kept", "later"], "{fault:?}");
    }
}
