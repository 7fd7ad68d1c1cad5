//! `/healthz` and `/metrics` on the embedded store when the store cannot
//! answer: their count of finished tasks is a store read the core asks its
//! driver for (never made on the core's thread), and a store out of reach
//! (a transient error) answers 503 while the gateway keeps running and
//! acknowledging; only an error that says the store can no longer be trusted
//! fail-stops it, as for any read. A test-side decorator of the embedded
//! engine makes the count fail on demand. PostgreSQL's case is in
//! `gateway_pg.rs` (a stopped server).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use axum::http::StatusCode;
use ww::rpc;
use ww_sched::sched::{
    Batch, BatchReport, ModuleRefs, RedbStore, Run, Store, StoreError, Task, TaskHeader, TaskId,
    TaskStatus, TaskStore,
};
use ww_sched::tasks::HASH_PUZZLE_WASM;

mod gateway_support;

use gateway_support::*;

/// How the decorated store answers `finished_count`.
const WORKS: u8 = 0;
const OUT_OF_REACH: u8 = 1;
const BROKEN: u8 = 2;

/// The embedded engine, whose finished count fails when the test says so.
#[derive(Debug)]
struct Flaky {
    inner: RedbStore,
    count: Arc<AtomicU8>,
}

impl TaskStore for Flaky {
    fn engine(&self) -> &'static str {
        self.inner.engine()
    }
    fn commit(&self, batch: &Batch) -> Result<BatchReport, StoreError> {
        self.inner.commit(batch)
    }
    fn header(&self, id: &TaskId) -> Result<Option<TaskHeader>, StoreError> {
        self.inner.header(id)
    }
    fn runs(&self, id: &TaskId, offset: u32, limit: usize) -> Result<Vec<Run>, StoreError> {
        self.inner.runs(id, offset, limit)
    }
    fn task_page(
        &self,
        id: &TaskId,
        offset: u32,
        limit: usize,
    ) -> Result<Option<(TaskHeader, Vec<Run>)>, StoreError> {
        self.inner.task_page(id, offset, limit)
    }
    fn list(
        &self,
        status: Option<TaskStatus>,
        after: Option<&TaskId>,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<TaskHeader>, StoreError> {
        self.inner.list(status, after, offset, limit)
    }
    fn open_tasks(&self) -> Result<Vec<Task>, StoreError> {
        self.inner.open_tasks()
    }
    fn module(&self, hash: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.module(hash)
    }
    fn module_refs(&self) -> Result<BTreeMap<[u8; 32], ModuleRefs>, StoreError> {
        self.inner.module_refs()
    }
    fn idempotency(&self, key: &str) -> Result<Option<TaskId>, StoreError> {
        self.inner.idempotency(key)
    }
    fn finished_count(&self) -> Result<u64, StoreError> {
        match self.count.load(Ordering::SeqCst) {
            OUT_OF_REACH => Err(StoreError::Unavailable {
                what: "finished count (injected)".into(),
                waited_ms: 0,
            }),
            BROKEN => Err(StoreError::Corrupt {
                what: "finished index (injected)".into(),
                reason: "does not decode".into(),
            }),
            _ => self.inner.finished_count(),
        }
    }
}

/// A gateway on the decorated store, and the switch of its count.
async fn start(name: &str) -> (Harness, Arc<AtomicU8>) {
    let count = Arc::new(AtomicU8::new(WORKS));
    let switch = count.clone();
    let h = Harness::start_on_store(name, move |dir| {
        let inner = RedbStore::open(&dir.join("ww-sched.redb")).unwrap();
        Store::on(Flaky {
            inner,
            count: switch,
        })
    })
    .await;
    (h, count)
}

async fn submit(h: &Harness, id: &str) -> StatusCode {
    let (status, _, body) = h
        .post_form(&form(id, &[("repeats", "1")]), Some(HASH_PUZZLE_WASM))
        .await;
    assert!(
        status.is_success() || status.is_server_error(),
        "{status} {body}"
    );
    status
}

#[test]
fn a_store_out_of_reach_answers_health_and_metrics_503_and_the_gateway_goes_on() {
    rpc::block_on_local(async {
        let (h, count) = start("health-transient").await;
        let (status, body) = h.get("/healthz").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "ok", "{body}");
        assert_eq!(h.get("/metrics").await.0, StatusCode::OK);

        count.store(OUT_OF_REACH, Ordering::SeqCst);
        for _ in 0..3 {
            let (status, body) = h.get("/healthz").await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
            assert_eq!(body["status"], "unavailable", "{body}");
            assert!(
                body["store_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("injected")),
                "{body}"
            );
            let (status, body) = h.get("/metrics").await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
            assert_eq!(body["error"], "busy", "{body}");
        }
        let gateway = h.gateway.as_ref().unwrap();
        assert_eq!(
            gateway.health().fatal(),
            None,
            "a store out of reach is no fail-stop"
        );
        // Everything else goes on meanwhile.
        assert_eq!(submit(&h, "during").await, StatusCode::CREATED);
        assert_eq!(h.get("/workers").await.0, StatusCode::OK);

        count.store(WORKS, Ordering::SeqCst);
        let (status, body) = h.get("/healthz").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["open_tasks"], 1, "{body}");
        assert_eq!(h.get("/metrics").await.0, StatusCode::OK);
        h.finish();
    })
    .unwrap();
}

#[test]
fn a_store_that_cannot_be_trusted_fail_stops_the_gateway_at_its_health_check() {
    rpc::block_on_local(async {
        let (h, count) = start("health-fatal").await;
        assert_eq!(submit(&h, "before").await, StatusCode::CREATED);
        count.store(BROKEN, Ordering::SeqCst);
        let (status, body) = h.get("/healthz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["status"], "failed", "{body}");
        let gateway = h.gateway.as_ref().unwrap();
        let cause = gateway.health().fatal().map(str::to_string);
        assert!(
            cause.as_deref().is_some_and(|c| c.contains("injected")),
            "{cause:?}"
        );
        // Nothing is acknowledged any more, and health stays failed.
        assert_eq!(submit(&h, "after").await, StatusCode::SERVICE_UNAVAILABLE);
        count.store(WORKS, Ordering::SeqCst);
        assert_eq!(h.get("/healthz").await.0, StatusCode::SERVICE_UNAVAILABLE);
        h.finish();
    })
    .unwrap();
}
