//! What every host (worker, gateway) serves besides its role: anchors, its
//! share of the DHT, and (a worker) its processes under its anchors and a
//! module source backed by the records.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

use anyhow::Result;
use futures::future::LocalBoxFuture;
use ww::boot::WallClock;
use ww::cluster::Membership;
use ww::exec::ModuleHash;
use ww::records::{self, Record, RecordKey, REPLICAS};
use ww::transport::{Identity, Transport};
use ww_sched::worker::{ModuleSource, ModuleSourceSlot};

/// What every host (worker, gateway) serves besides its role: its anchors and
/// its share of the DHT. Dropping it stops them.
pub struct HostServices {
    _anchors: ww::rpc::ServeHandle,
    anchors: ww::anchor::AnchorServer,
    mirror: Option<tokio::task::JoinHandle<()>>,
    _records: ww::rpc::ServeHandle,
    records: ww::records::RecordService,
    dht: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for HostServices {
    fn drop(&mut self) {
        for task in [&self.dht, &self.mirror].into_iter().flatten() {
            task.abort();
        }
    }
}

impl HostServices {
    /// Serves them on `transport`; call before it listens, so no caller finds
    /// a protocol missing. Must be called inside a `LocalSet`.
    pub fn serve<T: Transport>(transport: &T) -> Result<Self> {
        use ww::anchor::{AnchorLimits, AnchorServer};
        use ww::records::{RecordService, RecordsConfig};
        let anchors = AnchorServer::new(AnchorLimits::default());
        let anchors_serving = anchors.serve(transport)?;
        let records = RecordService::new(RecordsConfig::default());
        let serving = records.serve(transport)?;
        Ok(HostServices {
            _anchors: anchors_serving,
            anchors,
            mirror: None,
            _records: serving,
            records,
            dht: None,
        })
    }

    /// Starts taking part in the DHT once the host is in the cluster: its
    /// peer record published, held records passed on as the view changes.
    pub fn join_dht<T: Transport>(
        &mut self,
        transport: &T,
        identity: Identity,
        membership: Rc<Membership>,
    ) {
        let hosts = move || membership.view_peers();
        self.dht = Some(tokio::task::spawn_local(ww::records::take_part(
            self.records.clone(),
            transport.clone(),
            identity,
            hosts,
        )));
    }
}

/// How often a worker's anchors are brought up to date with its processes.
const PROCESS_MIRROR_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

impl HostServices {
    /// Lists `executor`'s processes under this host's anchors, at
    /// `proc/<id>` holding `<state> <exit code or -> <module hash>
    /// <started ms>`, brought up to date every half second; ended processes
    /// leave with the executor's own table.
    pub fn mirror_processes(&mut self, executor: ww::process::Executor) {
        let anchors = self.anchors.clone();
        self.mirror = Some(tokio::task::spawn_local(async move {
            let root = vec!["proc".to_string()];
            loop {
                let listed = executor.list();
                let live: std::collections::BTreeSet<String> =
                    listed.iter().map(|p| p.id.to_string()).collect();
                for gone in anchors.children_local(&root) {
                    if !live.contains(&gone) {
                        let _ = anchors.remove_local(&[root[0].clone(), gone]);
                    }
                }
                for process in &listed {
                    let code = process
                        .state
                        .exit_code()
                        .map_or("-".to_string(), |c| c.to_string());
                    let line = format!(
                        "{} {code} {} {}",
                        process.state.name(),
                        process.module,
                        process.started_ms
                    );
                    let path = [root[0].clone(), process.id.to_string()];
                    if let Err(e) =
                        anchors.set_local(&path, ww::anchor::Held::Value(line.into_bytes()))
                    {
                        tracing::debug!(error = %e, "process not listed under the anchors");
                    }
                }
                tokio::time::sleep(PROCESS_MIRROR_EVERY).await;
            }
        }));
    }
}

/// Hosts asked for a module before the worker asks its caller instead.
const MODULE_ASK_MAX: usize = REPLICAS + 2;
/// Module hashes a worker remembers having offered (then it forgets them all).
const OFFERED_MAX: usize = 1_024;

/// Modules found in, and left in, the cluster's records: a module is the
/// content record under its SHA-256, which is its hash.
struct RecordsModules<T: Transport> {
    transport: T,
    identity: Identity,
    membership: Rc<Membership>,
    wall_clock: WallClock,
    offered: RefCell<BTreeSet<ModuleHash>>,
}

impl<T: Transport> ModuleSource for RecordsModules<T> {
    fn fetch(&self, hash: ModuleHash) -> LocalBoxFuture<'static, Option<Vec<u8>>> {
        let transport = self.transport.clone();
        let hosts = self.membership.view_peers();
        Box::pin(async move {
            records::get_within(&transport, &hosts, &RecordKey(hash.0), MODULE_ASK_MAX)
                .await
                .ok()
                .map(|record| record.payload)
        })
    }

    fn offer(&self, bytes: Vec<u8>) {
        let hash = ModuleHash::of(&bytes);
        {
            let mut offered = self.offered.borrow_mut();
            if offered.len() >= OFFERED_MAX {
                offered.clear();
            }
            if !offered.insert(hash) {
                return;
            }
        }
        let record = match Record::content(&self.identity, self.wall_clock.now_ms(), bytes) {
            Ok(record) => record,
            Err(e) => {
                tracing::debug!(%hash, error = %e, "module not offered to the records");
                return;
            }
        };
        let transport = self.transport.clone();
        let hosts = self.membership.view_peers();
        tokio::task::spawn_local(async move {
            match records::put(&transport, &hosts, &record, REPLICAS).await {
                Ok(stored) => {
                    tracing::debug!(%hash, hosts = stored.len(), "module offered to the records")
                }
                Err(e) => tracing::debug!(%hash, error = %e, "module not offered to the records"),
            }
        });
    }
}

impl HostServices {
    /// Lets a worker find modules it lacks in the records, and leave there
    /// the modules it is sent, before its caller has to send them again.
    pub fn share_modules<T: Transport>(
        &self,
        slot: &ModuleSourceSlot,
        transport: &T,
        identity: Identity,
        membership: Rc<Membership>,
    ) {
        slot.set(Rc::new(RecordsModules {
            transport: transport.clone(),
            identity,
            membership,
            wall_clock: WallClock::host(),
            offered: RefCell::new(BTreeSet::new()),
        }));
    }
}
