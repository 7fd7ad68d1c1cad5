//! The rules of a store that several gateways share, on both of its
//! engines: PostgreSQL, and the in-memory store the simulation runs gateways
//! on (`MemoryStore`). Leases on the store's clock, ownership (writes of
//! another gateway's task or under a dead lease are refused), claims of
//! orphaned tasks, new tasks whose id or key another gateway took, cancel
//! requests. What only PostgreSQL does (its schema, its connections, a
//! corrupt row) is in `store_pg.rs`.

mod pg_support;
mod store_support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pg_support::PgDatabase;
use store_support::{id, module_hash, task_with_runs, MODULE};
use ww_sched::sched::{
    Batch, MemoryStore, Op, PgOptions, Store, StoreClock, StoreError, TakenCause, Task,
};

/// A shared database under test: handles on it, and its clock.
trait SharedDb {
    /// A new gateway's handle on the database.
    fn gateway(&self) -> Store;
    /// Lets `ms` pass on the store's clock.
    fn let_pass(&self, ms: u64);
}

struct Postgres(PgDatabase);

impl SharedDb for Postgres {
    fn gateway(&self) -> Store {
        let options = PgOptions {
            connections: 2,
            ..PgOptions::default()
        };
        Store::postgres(&self.0.url, options).expect("a PostgreSQL handle")
    }

    fn let_pass(&self, ms: u64) {
        std::thread::sleep(Duration::from_millis(ms));
    }
}

/// The in-memory store on a clock the test moves.
struct Memory {
    first: MemoryStore,
    now_ms: Arc<AtomicU64>,
}

impl Memory {
    fn new() -> Memory {
        let now_ms = Arc::new(AtomicU64::new(1_000));
        let clock: StoreClock = {
            let now_ms = now_ms.clone();
            Arc::new(move || now_ms.load(Ordering::SeqCst))
        };
        Memory {
            first: MemoryStore::new(clock).expect("an in-memory store"),
            now_ms,
        }
    }
}

impl SharedDb for Memory {
    fn gateway(&self) -> Store {
        Store::on(self.first.handle())
    }

    fn let_pass(&self, ms: u64) {
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

/// Gateways a and b on `db`, a with a lease of `a_lease_ms`, b of a minute.
fn shared_pair(db: &dyn SharedDb, a_lease_ms: u64) -> (Store, Store) {
    let a = db.gateway();
    let b = db.gateway();
    a.shared()
        .expect("shared")
        .register("gw-a", a_lease_ms)
        .unwrap();
    b.shared()
        .expect("shared")
        .register("gw-b", 60_000)
        .unwrap();
    a.put_module(MODULE, 0).unwrap();
    (a, b)
}

fn ids(tasks: &[Task]) -> Vec<&str> {
    tasks.iter().map(|t| t.spec.id.as_str()).collect()
}

fn only_the_owner_writes_and_a_dead_owners_tasks_are_claimed_once(db: &dyn SharedDb) {
    let (a, b) = shared_pair(db, 1_500);
    let (sa, sb) = (a.shared().unwrap(), b.shared().unwrap());
    let t1 = task_with_runs("t1", 3, 1, 5);
    let t2 = task_with_runs("t2", 2, 0, 5);
    a.put_tasks(&[&t1, &t2]).expect("a writes its new tasks");
    assert!(sb.claim(10).unwrap().is_empty(), "a's lease is live");
    let refused = b
        .put_task(&task_with_runs("t1", 3, 2, 6))
        .expect_err("not b's");
    assert!(
        matches!(&refused, StoreError::NotOwner { owner, .. } if owner == "gw-a/1"),
        "{refused}"
    );
    // a stops renewing; its lease runs out on the server's clock.
    db.let_pass(1_700);
    assert!(sb.renew().unwrap(), "b kept renewing");
    let claimed = sb.claim(10).unwrap();
    assert_eq!(ids(&claimed), ["t1", "t2"]);
    assert_eq!(claimed[0].runs, t1.runs, "claimed whole, as stored");
    assert!(sb.claim(10).unwrap().is_empty(), "claimed once");
    let lost = a
        .put_task(&task_with_runs("t1", 3, 2, 6))
        .expect_err("a's lease is dead");
    assert!(matches!(lost, StoreError::LeaseLost { .. }), "{lost}");
    assert!(!sa.renew().unwrap(), "a dead lease is not renewed");
    b.put_task(&task_with_runs("t1", 3, 3, 7))
        .expect("b owns t1 now");
    // a comes back: a new epoch, and nothing of what b took.
    let again = sa.register("gw-a", 1_500).unwrap();
    assert_eq!(again.epoch, 2);
    assert!(sa.claim(10).unwrap().is_empty());
}

fn a_resigned_lease_hands_tasks_over_at_once_and_a_new_epoch_reclaims_its_own(db: &dyn SharedDb) {
    let (a, b) = shared_pair(db, 60_000);
    let (sa, sb) = (a.shared().unwrap(), b.shared().unwrap());
    a.put_tasks(&[&task_with_runs("r1", 1, 0, 5)]).unwrap();
    sa.resign().unwrap();
    assert_eq!(ids(&sb.claim(10).unwrap()), ["r1"]);
    // A gateway that restarts (a new epoch) may take back its old epoch's tasks at once.
    b.put_tasks(&[&task_with_runs("r2", 1, 0, 5)]).unwrap();
    sb.register("gw-b", 60_000).unwrap();
    assert_eq!(ids(&sb.claim(10).unwrap()), ["r1", "r2"]);
    // Final tasks are never claimed.
    b.put_task(&task_with_runs("r1", 1, 1, 9)).unwrap();
    sb.register("gw-b", 60_000).unwrap();
    assert_eq!(ids(&sb.claim(10).unwrap()), ["r2"]);
}

fn a_new_task_whose_id_or_key_another_gateway_took_is_dropped_and_nothing_of_it_stays(
    db: &dyn SharedDb,
) {
    let (a, b) = shared_pair(db, 60_000);
    a.put_tasks(&[&task_with_runs("dup", 2, 0, 5)]).unwrap();
    let mut same_id = task_with_runs("dup", 3, 0, 9);
    same_id.spec.idempotency_key = Some("key-b".into());
    let mut same_key = task_with_runs("mine", 1, 0, 9);
    same_key.spec.idempotency_key = Some("key-dup".into());
    let keeper = task_with_runs("kept", 1, 0, 9);
    for hint in [true, false] {
        let ops = [&same_id, &same_key, &keeper]
            .iter()
            .map(|task| Op::PutTask {
                header: Box::new(task.header()),
                runs: task.runs.clone(),
                new: hint,
            })
            .collect();
        let report = b.commit(&Batch { ops }).expect("the batch stands");
        let causes: Vec<(&str, &TakenCause)> = report
            .taken
            .iter()
            .map(|t| (t.id.as_str(), &t.cause))
            .collect();
        assert_eq!(
            causes,
            [
                ("dup", &TakenCause::Id),
                ("mine", &TakenCause::Key(id("dup")))
            ],
            "new: {hint}"
        );
        let dup = b.header(&id("dup")).unwrap().expect("a's");
        assert_eq!(dup.runs_created, 2, "a's task, untouched");
        assert!(b.header(&id("mine")).unwrap().is_none());
        assert!(b.header(&id("kept")).unwrap().is_some());
        // Module references count the tasks stored: dup and kept.
        assert_eq!(
            b.module_refs().unwrap()[&module_hash()].tasks,
            2,
            "new: {hint}"
        );
    }
}

fn a_gateway_lists_what_it_owns_and_reads_only_its_own_open_tasks(db: &dyn SharedDb) {
    let (a, b) = shared_pair(db, 60_000);
    let (sa, sb) = (a.shared().unwrap(), b.shared().unwrap());
    a.put_tasks(&[
        &task_with_runs("o1", 2, 0, 5),
        &task_with_runs("o2", 1, 1, 5),
    ])
    .unwrap();
    b.put_tasks(&[&task_with_runs("o3", 1, 0, 5)]).unwrap();
    assert_eq!(sa.owned_open(None, 10).unwrap(), [id("o1")], "o2 is final");
    assert_eq!(sb.owned_open(None, 10).unwrap(), [id("o3")]);
    assert!(sa.owned_open(None, 0).unwrap().is_empty(), "bounded");
    let o1 = sa.owned_task(&id("o1")).unwrap().expect("a's, open");
    assert_eq!(o1.runs, task_with_runs("o1", 2, 0, 5).runs);
    assert!(sa.owned_task(&id("o2")).unwrap().is_none(), "final");
    assert!(sa.owned_task(&id("o3")).unwrap().is_none(), "b's");
    assert!(sb.owned_task(&id("o1")).unwrap().is_none(), "a's");
    // A claim b makes is b's: listed, though the claim's answer were lost.
    sa.resign().unwrap();
    let _lost = sb.claim(10).unwrap();
    assert_eq!(sb.owned_open(None, 10).unwrap(), [id("o1"), id("o3")]);
    // Paged by id.
    assert_eq!(sb.owned_open(None, 1).unwrap(), [id("o1")]);
    assert_eq!(sb.owned_open(Some(&id("o1")), 1).unwrap(), [id("o3")]);
    assert!(sb.owned_open(Some(&id("o3")), 1).unwrap().is_empty());
    assert!(sb.owned_task(&id("o1")).unwrap().is_some());
}

fn a_cancel_asked_of_another_gateways_task_waits_for_its_owner(db: &dyn SharedDb) {
    let (a, b) = shared_pair(db, 60_000);
    let (sa, sb) = (a.shared().unwrap(), b.shared().unwrap());
    a.put_tasks(&[&task_with_runs("c1", 2, 0, 5)]).unwrap();
    assert!(sa.cancel_requests(10).unwrap().is_empty());
    assert!(sb.request_cancel(&id("c1"), 50).unwrap(), "asked");
    assert!(
        sb.request_cancel(&id("c1"), 51).unwrap(),
        "asked twice: still asked"
    );
    assert!(sb.cancel_requests(10).unwrap().is_empty(), "b owns nothing");
    assert_eq!(sa.cancel_requests(10).unwrap(), [id("c1")]);
    // The owner writes the task final: the request is gone with it.
    a.put_task(&task_with_runs("c1", 2, 2, 60)).unwrap();
    assert!(sa.cancel_requests(10).unwrap().is_empty());
    assert!(
        !sb.request_cancel(&id("c1"), 70).unwrap(),
        "final: nothing to ask"
    );
    assert!(!sb.request_cancel(&id("nope"), 70).unwrap(), "unknown");
}

/// Runs a test on a fresh database of each engine.
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn memory() {
                super::$name(&super::Memory::new());
            }

            #[test]
            fn postgres() {
                let db = super::PgDatabase::new(stringify!($name));
                super::$name(&super::Postgres(db));
            }
        }
    )*};
}

on_both_engines!(
    only_the_owner_writes_and_a_dead_owners_tasks_are_claimed_once,
    a_resigned_lease_hands_tasks_over_at_once_and_a_new_epoch_reclaims_its_own,
    a_new_task_whose_id_or_key_another_gateway_took_is_dropped_and_nothing_of_it_stays,
    a_gateway_lists_what_it_owns_and_reads_only_its_own_open_tasks,
    a_cancel_asked_of_another_gateways_task_waits_for_its_owner,
);
