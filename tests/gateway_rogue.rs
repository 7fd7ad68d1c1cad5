//! Rogue workers: key holders are trusted to run tasks faithfully
//! (docs/SECURITY.md), but the gateway refuses reports that cannot be true,
//! retries those runs elsewhere, and records which worker produced every result,
//! so a forgery is attributable. Results for runs a worker was never given
//! cannot be sent at all: a result is the answer to the gateway's own call.

#[path = "gateway_support/mod.rs"]
mod gateway_support;

use std::rc::Rc;
use std::time::Duration;

use gateway_support::Harness;
use serde_json::json;
use ww::exec::RunReport;
use ww::rpc::{self, RpcConfig};
use ww::transport::{Identity, Libp2pConfig, Libp2pTransport, Transport};
use ww_sched::schema::worker_capnp::worker;
use ww_sched::tasks::{hash_puzzle, HASH_PUZZLE_WASM};
use ww_sched::worker::node::register_worker;
use ww_sched::worker::wire;

/// A worker that never runs anything: it answers every run with `results`,
/// claiming `fuel_used`.
struct Rogue {
    results: Vec<i64>,
    fuel_used: u64,
}

impl worker::Server for Rogue {
    async fn run(
        self: Rc<Self>,
        _: worker::RunParams,
        mut results: worker::RunResults,
    ) -> Result<(), capnp::Error> {
        let report = RunReport {
            outcome: Ok(self.results.clone()),
            stdout: Vec::new(),
            stderr: Vec::new(),
            fuel_used: self.fuel_used,
        };
        wire::write_report(&report, results.get().init_report());
        Ok(())
    }

    async fn ping(
        self: Rc<Self>,
        _: worker::PingParams,
        _: worker::PingResults,
    ) -> Result<(), capnp::Error> {
        Ok(())
    }
}

/// Registers `rogue` with the harness's gateway; returns its peer id and the
/// transport and connection that must stay alive.
async fn register_rogue(h: &Harness, rogue: Rogue) -> (String, impl Sized) {
    let transport = Libp2pTransport::new(Libp2pConfig::new(Identity::generate())).unwrap();
    let gateway = h.transport.local_peer_id();
    transport
        .add_peer_address(gateway, h.address.clone())
        .unwrap();
    let client: worker::Client = capnp_rpc::new_client(rogue);
    let connection = register_worker(&transport, gateway, client, 1, RpcConfig::default())
        .await
        .expect("the rogue registers");
    (
        transport.local_peer_id().to_string(),
        (transport, connection),
    )
}

/// Submits one hash-puzzle task with an explicit fuel limit; returns its id.
async fn submit(h: &Harness, id: &str, input: i64) -> String {
    let (_, module) = h.upload(HASH_PUZZLE_WASM).await;
    let body = json!({
        "id": id,
        "module": module["hash"],
        "args": [input, 1],
        "fuel_max": 50_000_000u64,
    });
    let (status, _, task) = h.post_json(&body, &[]).await;
    assert_eq!(status, 201, "{task}");
    id.to_string()
}

#[test]
fn an_impossible_report_is_refused_and_the_run_retried_on_an_honest_worker() {
    rpc::block_on_local(async {
        let h = Harness::start("rogue-impossible", None).await;
        let (rogue, _keep) = register_rogue(
            &h,
            Rogue {
                results: vec![424_242],
                fuel_used: u64::MAX,
            },
        )
        .await;
        let id = submit(&h, "impossible", 9).await;
        // Let the rogue answer at least once before an honest worker exists.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (_, task) = h.get(&format!("/tasks/{id}")).await;
            if task["runs"][0]["attempt"].as_u64() >= Some(2) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never retried: {task}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (honest, _registration) = h.start_worker(1).await;
        let task = h.wait_final(&id).await;
        let run = &task["runs"][0];
        assert_eq!(run["status"], "succeeded", "{task}");
        assert_eq!(
            run["results"],
            json!([i64::from(hash_puzzle(9, 1))]),
            "{task}"
        );
        assert_eq!(run["worker"], honest.as_str(), "{task}");
        assert_ne!(run["worker"], rogue.as_str());
        h.finish();
    })
    .unwrap();
}

#[test]
fn a_plausible_forgery_is_recorded_with_the_worker_that_made_it() {
    rpc::block_on_local(async {
        let h = Harness::start("rogue-plausible", None).await;
        let (rogue, _keep) = register_rogue(
            &h,
            Rogue {
                results: vec![424_242],
                fuel_used: 10,
            },
        )
        .await;
        let id = submit(&h, "forged", 9).await;
        let task = h.wait_final(&id).await;
        let run = &task["runs"][0];
        // Key holders are trusted: the forged value stands, and names its maker.
        assert_eq!(run["results"], json!([424_242]), "{task}");
        assert_eq!(run["worker"], rogue.as_str(), "{task}");
        h.finish();
    })
    .unwrap();
}
