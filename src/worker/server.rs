//! The worker's side of the `Worker` interface.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capnp::capability::Rc;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::modules::ModuleSourceSlot;
use super::wire;
use crate::schema::worker_capnp::{task_spec, worker};
use ww::exec::{ErrorKind, Limits, ModuleRef, RunReport, RunSpec, Sandbox};

/// Where WASM runs relative to the RPC thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecMode {
    /// On tokio's blocking pool, so a long run never stalls RPC (real hosts).
    Blocking,
    /// On the RPC thread itself, so simulations stay single-threaded and deterministic.
    Inline,
    /// Inline, then the answer is held for `fuel_used / fuel_per_ms` ms of the
    /// runtime's clock: in a simulation a run then takes simulated time, so
    /// faults can strike while runs are in flight.
    Simulated {
        /// Fuel that stands for one millisecond of work (at least 1).
        fuel_per_ms: u64,
    },
}

/// How a worker runs tasks.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Where WASM runs.
    pub mode: ExecMode,
    /// Runs at once; further calls wait for a slot.
    pub slots: usize,
    /// The most a task may ask for; a zero limit in a request means this value.
    pub limits_max: Limits,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            mode: ExecMode::Blocking,
            slots: std::thread::available_parallelism().map_or(1, |n| n.get()),
            limits_max: Limits::default(),
        }
    }
}

/// Calls one capability (one caller's facet) may have waiting for a slot
/// beyond the worker's slots; more are refused at once as overloaded, so a
/// caller cannot make the worker hold an unbounded number of requests.
pub const CALLS_WAITING_MAX: usize = 16;

/// One call counted in its facet's calls in flight, until dropped.
struct CallGuard(Arc<AtomicUsize>);

impl CallGuard {
    /// Counts a call, or refuses it when `max` are already in flight.
    fn enter(in_flight: &Arc<AtomicUsize>, max: usize) -> Result<CallGuard, capnp::Error> {
        let before = in_flight.fetch_add(1, Ordering::AcqRel);
        let guard = CallGuard(in_flight.clone());
        if before >= max {
            return Err(capnp::Error::overloaded(format!(
                "overloaded: {max} calls already in flight from this caller"
            )));
        }
        Ok(guard)
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        let before = self.0.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(before > 0, "a call left that was never counted");
    }
}

/// Serves the `Worker` interface over a shared [`Sandbox`].
pub struct WorkerServer {
    sandbox: Arc<Sandbox>,
    config: WorkerConfig,
    slots: Arc<Semaphore>,
    gauges: Arc<WorkerGauges>,
    runs_cancelled: Arc<AtomicU64>,
    last_ping: LastPing,
    /// Calls in flight through this facet (each facet counts its own).
    calls_in_flight: Arc<AtomicUsize>,
    /// Where modules asked for by hash may be found (shared by every facet).
    modules: ModuleSourceSlot,
}

/// When a caller last pinged this worker (tokio's clock: virtual in simulations).
/// A registered worker is pinged by its gateway every few seconds; silence means
/// the gateway has dropped it.
#[derive(Clone, Default)]
pub struct LastPing(Arc<std::sync::Mutex<Option<tokio::time::Instant>>>);

impl LastPing {
    /// The last ping, if any.
    pub fn get(&self) -> Option<tokio::time::Instant> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn touch(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(tokio::time::Instant::now());
    }
}

impl WorkerServer {
    /// A worker over `sandbox`.
    pub fn new(sandbox: Arc<Sandbox>, config: WorkerConfig) -> Self {
        let slots = Arc::new(Semaphore::new(config.slots.max(1)));
        WorkerServer {
            sandbox,
            config,
            slots,
            gauges: Arc::default(),
            runs_cancelled: Arc::new(AtomicU64::new(0)),
            last_ping: LastPing::default(),
            calls_in_flight: Arc::default(),
            modules: ModuleSourceSlot::default(),
        }
    }

    /// Where this worker looks for modules it lacks; empty until set.
    pub fn module_source(&self) -> ModuleSourceSlot {
        self.modules.clone()
    }

    /// Runs started since the worker began (including failed ones).
    pub fn runs_started(&self) -> u64 {
        self.gauges.runs_started()
    }

    /// Live counts of this worker's runs (shared; see [`WorkerGauges`]).
    pub fn gauges(&self) -> Arc<WorkerGauges> {
        self.gauges.clone()
    }

    /// When this worker was last pinged (shared; see [`LastPing`]).
    pub fn last_ping(&self) -> LastPing {
        self.last_ping.clone()
    }

    /// A shared count of runs stopped because their caller went away.
    pub fn runs_cancelled(&self) -> Arc<AtomicU64> {
        self.runs_cancelled.clone()
    }

    /// The same worker (sandbox, slots, counters) for direct callers: a ping
    /// from one of them proves nothing about the gateway, so it does not count
    /// in [`WorkerServer::last_ping`].
    pub fn for_direct_callers(&self) -> Self {
        self.facet()
    }

    /// The same worker (sandbox, slots, counters, modules) with a liveness and
    /// a bound on calls in flight of its own: one per caller, so a ping from
    /// one says nothing of another and one cannot fill another's waiting room.
    pub fn facet(&self) -> Self {
        WorkerServer {
            sandbox: self.sandbox.clone(),
            config: self.config.clone(),
            slots: self.slots.clone(),
            gauges: self.gauges.clone(),
            runs_cancelled: self.runs_cancelled.clone(),
            last_ping: LastPing::default(),
            calls_in_flight: Arc::default(),
            modules: self.modules.clone(),
        }
    }

    /// A module its caller sent as bytes, which the sandbox took, is
    /// offered to the module source for other workers (counted).
    fn offer_sent_module(&self, spec: task_spec::Reader<'_>, report: &RunReport) {
        let refused = matches!(&report.outcome, Err(e) if matches!(
            e.kind(),
            ErrorKind::BadModule | ErrorKind::ModuleTooLarge
        ));
        if matches!(spec.get_module().which(), Ok(task_spec::module::Bytes(_))) && !refused {
            self.gauges.modules_received.fetch_add(1, Ordering::Relaxed);
            self.modules.offer_sent(spec);
        }
    }

    /// Calls this facet may have in flight: its slots, plus [`CALLS_WAITING_MAX`].
    fn calls_in_flight_max(&self) -> usize {
        self.config.slots.max(1) + CALLS_WAITING_MAX
    }

    /// Wraps the server as a capability client that can be served or passed around.
    pub fn into_client(self) -> worker::Client {
        capnp_rpc::new_client(self)
    }

    /// Clamps requested limits to the worker's maximums; zero asks for the maximum.
    fn clamp(&self, requested: Limits) -> Limits {
        let max = self.config.limits_max;
        let pick = |asked: u64, most: u64| if asked == 0 { most } else { asked.min(most) };
        Limits {
            fuel_max: pick(requested.fuel_max, max.fuel_max),
            memory_pages_max: pick(
                u64::from(requested.memory_pages_max),
                u64::from(max.memory_pages_max),
            ) as u32,
            wall_time_ms: pick(requested.wall_time_ms, max.wall_time_ms),
        }
    }

    /// Waits for a free slot. Callers take it before reading a request's module,
    /// so calls queued for a slot hold no copy of their module bytes.
    async fn acquire_slot(&self) -> Result<OwnedSemaphorePermit, capnp::Error> {
        self.slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| capnp::Error::failed("worker is shutting down".into()))
    }

    /// Runs one spec in its slot, on or off the RPC thread as configured.
    ///
    /// The lease (the slot, and the count of module copies) goes with the guest and is
    /// released only when the code running the guest has finished, even if the caller
    /// went away first: a cancelled run's thread keeps its slot until it has stopped.
    async fn execute(&self, mut lease: Lease, spec: RunSpec) -> Result<RunReport, capnp::Error> {
        self.gauges.runs_started.fetch_add(1, Ordering::Relaxed);
        match self.config.mode {
            ExecMode::Inline => {
                lease.guest = Some(Held::new(&self.gauges, Gauge::Guests));
                let report = self.sandbox.run(&spec);
                self.gauges.record(&report);
                drop(spec);
                drop(lease);
                Ok(report)
            }
            ExecMode::Simulated { fuel_per_ms } => {
                lease.guest = Some(Held::new(&self.gauges, Gauge::Guests));
                let report = self.sandbox.run(&spec);
                self.gauges.record(&report);
                drop(spec);
                let busy_ms = report.fuel_used / fuel_per_ms.max(1);
                tokio::time::sleep(std::time::Duration::from_millis(busy_ms)).await;
                Ok(report)
            }
            ExecMode::Blocking => {
                // If the caller drops the call (its task was cancelled or timed
                // out), this future is dropped and the guard stops the run.
                let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
                let cancel = stop.0.clone();
                let sandbox = self.sandbox.clone();
                let cancelled = self.runs_cancelled.clone();
                let gauges = self.gauges.clone();
                tokio::task::spawn_blocking(move || {
                    lease.guest = Some(Held::new(&gauges, Gauge::Guests));
                    let report = sandbox.run_cancellable(&spec, Some(cancel));
                    gauges.record(&report);
                    if matches!(&report.outcome, Err(e) if e.kind() == ww::exec::ErrorKind::Cancelled) {
                        cancelled.fetch_add(1, Ordering::Relaxed);
                    }
                    // The module copy goes first, then the lease; the slot is freed last.
                    drop(spec);
                    drop(lease);
                    report
                })
                .await
                    .map_err(|e| capnp::Error::failed(format!("sandbox thread failed: {e}")))
            }
        }
    }
}

/// How long a run of a `runMany` batch may wait in the batch's queue before it
/// gets a blocking thread of its own. One thread takes a batch's runs one
/// after another, so a batch of short runs costs one hand-off to the blocking
/// pool instead of one per run; a long run delays the rest of its batch by at
/// most about this much before they go side by side, each in its own slot.
pub const BATCH_HELP_AFTER: Duration = Duration::from_millis(1);

/// A `runMany` batch on the blocking pool: runs waiting for a thread, the
/// threads taking them, and the reports so far.
struct Batch {
    state: Mutex<BatchState>,
    /// Told when the last thread leaves (all runs done, or a thread panicked).
    idle: Notify,
}

struct BatchState {
    queue: VecDeque<(usize, Lease, RunSpec)>,
    threads: usize,
    reports: Vec<Option<RunReport>>,
    panicked: bool,
}

impl Batch {
    fn lock(&self) -> std::sync::MutexGuard<'_, BatchState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a batch thread shares with the worker.
#[derive(Clone)]
struct BatchThread {
    batch: Arc<Batch>,
    sandbox: Arc<Sandbox>,
    gauges: Arc<WorkerGauges>,
    cancelled: Arc<AtomicU64>,
    cancel: Arc<AtomicBool>,
}

impl BatchThread {
    /// Takes queued runs until none is left (on a blocking-pool thread).
    fn work(self) {
        // Leaves the count if a guest's run panics, so the waiter wakes.
        struct Panicked<'a>(&'a Batch);
        impl Drop for Panicked<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    let mut state = self.0.lock();
                    state.threads -= 1;
                    state.panicked = true;
                    self.0.idle.notify_one();
                }
            }
        }
        let _panicked = Panicked(&self.batch);
        loop {
            let next = {
                let mut state = self.batch.lock();
                let next = state.queue.pop_front();
                if next.is_none() {
                    // Under the same lock as the empty queue was seen: a run
                    // queued after this finds no thread and starts one.
                    state.threads -= 1;
                    if state.threads == 0 {
                        self.batch.idle.notify_one();
                    }
                }
                next
            };
            let Some((index, mut lease, spec)) = next else {
                return;
            };
            lease.guest = Some(Held::new(&self.gauges, Gauge::Guests));
            let report = self
                .sandbox
                .run_cancellable(&spec, Some(self.cancel.clone()));
            self.gauges.record(&report);
            if matches!(&report.outcome, Err(e) if e.kind() == ErrorKind::Cancelled) {
                self.cancelled.fetch_add(1, Ordering::Relaxed);
            }
            // As for one run: the module copy goes first, the slot last.
            drop(spec);
            drop(lease);
            self.batch.lock().reports[index] = Some(report);
        }
    }

    /// Starts one more thread on the blocking pool.
    fn spawn(&self) {
        self.batch.lock().threads += 1;
        let thread = self.clone();
        // Its result comes back through the batch, not the handle.
        drop(tokio::task::spawn_blocking(move || thread.work()));
    }
}

impl WorkerServer {
    /// Runs one spec of a request: waits for a slot, then copies it and runs it.
    async fn run_one(&self, spec: task_spec::Reader<'_>) -> Result<RunReport, capnp::Error> {
        let slot = self.acquire_slot().await?;
        let mut spec = wire::read_spec(spec)?;
        let lease = Lease::new(slot, &self.gauges, &spec);
        spec.limits = self.clamp(spec.limits);
        self.execute(lease, spec).await
    }

    /// Runs a `runMany` batch on the blocking pool (see [`BATCH_HELP_AFTER`]).
    /// Each run takes its own slot before its spec is copied, as in `run`.
    async fn execute_batch(
        &self,
        specs: capnp::struct_list::Reader<'_, task_spec::Owned>,
    ) -> Result<Vec<RunReport>, capnp::Error> {
        let count = specs.len() as usize;
        let batch = Arc::new(Batch {
            state: Mutex::new(BatchState {
                queue: VecDeque::with_capacity(count),
                threads: 0,
                reports: vec![None; count],
                panicked: false,
            }),
            idle: Notify::new(),
        });
        // If the caller drops the call, this future is dropped and every run
        // of the batch, running or queued, stops.
        let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
        let thread = BatchThread {
            batch: batch.clone(),
            sandbox: self.sandbox.clone(),
            gauges: self.gauges.clone(),
            cancelled: self.runs_cancelled.clone(),
            cancel: stop.0.clone(),
        };
        for (index, spec) in specs.iter().enumerate() {
            let slot = self.acquire_slot().await?;
            let mut spec = wire::read_spec(spec)?;
            let lease = Lease::new(slot, &self.gauges, &spec);
            spec.limits = self.clamp(spec.limits);
            self.gauges.runs_started.fetch_add(1, Ordering::Relaxed);
            let idle = {
                let mut state = batch.lock();
                state.queue.push_back((index, lease, spec));
                state.threads == 0
            };
            if idle {
                thread.spawn();
            }
        }
        loop {
            let idle = batch.idle.notified();
            {
                let mut state = batch.lock();
                if state.panicked {
                    return Err(capnp::Error::failed("sandbox thread failed".into()));
                }
                if state.threads == 0 && state.queue.is_empty() {
                    let reports: Option<Vec<RunReport>> =
                        state.reports.iter_mut().map(Option::take).collect();
                    return reports
                        .ok_or_else(|| capnp::Error::failed("a run of the batch was lost".into()));
                }
            }
            tokio::select! {
                _ = idle => {}
                _ = tokio::time::sleep(BATCH_HELP_AFTER) => {
                    // Runs still queued: a thread is busy with a long one.
                    // Each gets a thread of its own (at most one per run).
                    let (waiting, threads) = {
                        let state = batch.lock();
                        (state.queue.len(), state.threads)
                    };
                    for _ in 0..waiting.min(count.saturating_sub(threads)) {
                        thread.spawn();
                    }
                }
            }
        }
    }
}

/// Live counts of a worker's runs, shared with the threads that update them.
#[derive(Debug, Default)]
pub struct WorkerGauges {
    runs_started: AtomicU64,
    runs_succeeded: AtomicU64,
    runs_failed: AtomicU64,
    fuel_burnt: AtomicU64,
    /// Failed runs by [`ErrorKind`], in the order of [`ErrorKind::ALL`].
    errors: [AtomicU64; ErrorKind::ALL.len()],
    guests: AtomicUsize,
    guests_peak: AtomicUsize,
    modules: AtomicUsize,
    modules_peak: AtomicUsize,
    modules_fetched: AtomicU64,
    modules_received: AtomicU64,
}

impl WorkerGauges {
    /// Runs started since the worker began (including failed ones).
    pub fn runs_started(&self) -> u64 {
        self.runs_started.load(Ordering::Relaxed)
    }

    /// Guests running now; each counts until the thread running it has finished.
    pub fn guests_running(&self) -> usize {
        self.guests.load(Ordering::SeqCst)
    }

    /// The most guests ever running at once; never more than the worker's slots.
    pub fn guests_running_peak(&self) -> usize {
        self.guests_peak.load(Ordering::SeqCst)
    }

    /// Copies of module bytes taken from requests and not yet freed.
    pub fn modules_held(&self) -> usize {
        self.modules.load(Ordering::SeqCst)
    }

    /// The most module copies ever held at once; never more than the worker's slots.
    pub fn modules_held_peak(&self) -> usize {
        self.modules_peak.load(Ordering::SeqCst)
    }

    /// Modules found in the module source (the records) instead of being
    /// sent by the caller, since the worker began.
    pub fn modules_fetched(&self) -> u64 {
        self.modules_fetched.load(Ordering::Relaxed)
    }

    /// Modules the caller sent as bytes since the worker began.
    pub fn modules_received(&self) -> u64 {
        self.modules_received.load(Ordering::Relaxed)
    }

    /// Runs that returned results since the worker began.
    pub fn runs_succeeded(&self) -> u64 {
        self.runs_succeeded.load(Ordering::Relaxed)
    }

    /// Runs that ended in a sandbox error since the worker began.
    pub fn runs_failed(&self) -> u64 {
        self.runs_failed.load(Ordering::Relaxed)
    }

    /// Fuel the sandbox burnt in every run since the worker began.
    pub fn fuel_burnt(&self) -> u64 {
        self.fuel_burnt.load(Ordering::Relaxed)
    }

    /// Runs that ended with an error of `kind` since the worker began.
    pub fn sandbox_errors(&self, kind: ErrorKind) -> u64 {
        ErrorKind::ALL
            .iter()
            .position(|k| *k == kind)
            .map_or(0, |i| self.errors[i].load(Ordering::Relaxed))
    }

    /// Counts a finished run: its outcome, its error's kind and its fuel.
    fn record(&self, report: &RunReport) {
        self.fuel_burnt
            .fetch_add(report.fuel_used, Ordering::Relaxed);
        match &report.outcome {
            Ok(_) => {
                self.runs_succeeded.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.runs_failed.fetch_add(1, Ordering::Relaxed);
                if let Some(i) = ErrorKind::ALL.iter().position(|k| *k == e.kind()) {
                    self.errors[i].fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    fn gauge(&self, gauge: Gauge) -> (&AtomicUsize, &AtomicUsize) {
        match gauge {
            Gauge::Guests => (&self.guests, &self.guests_peak),
            Gauge::Modules => (&self.modules, &self.modules_peak),
        }
    }
}

/// Which of [`WorkerGauges`]' level counters a [`Held`] counts in.
#[derive(Clone, Copy)]
enum Gauge {
    Guests,
    Modules,
}

/// One unit on a gauge, counted while this value lives.
struct Held {
    gauges: Arc<WorkerGauges>,
    gauge: Gauge,
}

impl Held {
    fn new(gauges: &Arc<WorkerGauges>, gauge: Gauge) -> Self {
        let (now, peak) = gauges.gauge(gauge);
        let level = now.fetch_add(1, Ordering::SeqCst) + 1;
        peak.fetch_max(level, Ordering::SeqCst);
        Held {
            gauges: gauges.clone(),
            gauge,
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.gauges
            .gauge(self.gauge)
            .0
            .fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a run holds until its guest has finished. Fields drop in order, so the
/// counts fall before the slot is freed and never exceed the slots in use.
struct Lease {
    guest: Option<Held>,
    _module: Option<Held>,
    _slot: OwnedSemaphorePermit,
}

impl Lease {
    /// A lease on `slot` for `spec`, counting its module copy if it carries bytes.
    fn new(slot: OwnedSemaphorePermit, gauges: &Arc<WorkerGauges>, spec: &RunSpec) -> Self {
        let module =
            matches!(spec.module, ModuleRef::Bytes(_)).then(|| Held::new(gauges, Gauge::Modules));
        Lease {
            guest: None,
            _module: module,
            _slot: slot,
        }
    }
}

/// Sets its flag when dropped: a run whose call went away stops at its next fuel slice.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl worker::Server for WorkerServer {
    async fn assign(
        self: Rc<Self>,
        params: worker::AssignParams,
        mut results: worker::AssignResults,
    ) -> Result<(), capnp::Error> {
        let _call = CallGuard::enter(&self.calls_in_flight, self.calls_in_flight_max())?;
        let size = params.get()?.get_wasm()?.len();
        if size > wire::MODULE_BYTES_MAX {
            return Err(capnp::Error::failed(format!(
                "module_too_large: {size} bytes, at most {}",
                wire::MODULE_BYTES_MAX
            )));
        }
        let slot = self.acquire_slot().await?;
        let params = params.get()?;
        let spec = RunSpec {
            module: ModuleRef::Bytes(params.get_wasm()?.to_vec()),
            export: "run".to_string(),
            args: vec![params.get_input(), params.get_difficulty()],
            limits: self.clamp(Limits {
                fuel_max: 0,
                memory_pages_max: 0,
                wall_time_ms: 0,
            }),
        };
        let lease = Lease::new(slot, &self.gauges, &spec);
        let report = self.execute(lease, spec).await?;
        match report.outcome {
            Ok(values) => {
                let first = values.first().ok_or_else(|| {
                    capnp::Error::failed("wrong_signature: export `run` returned no value".into())
                })?;
                results.get().set_result(first.to_string());
                Ok(())
            }
            Err(e) => Err(capnp::Error::failed(format!(
                "{}: {}",
                e.kind().as_str(),
                e.message()
            ))),
        }
    }

    async fn run(
        self: Rc<Self>,
        params: worker::RunParams,
        mut results: worker::RunResults,
    ) -> Result<(), capnp::Error> {
        let _call = CallGuard::enter(&self.calls_in_flight, self.calls_in_flight_max())?;
        // Refuse a bad request at once, but copy its module only once a slot is ours.
        wire::check_spec(params.get()?.get_spec()?)?;
        let fetched = self
            .modules
            .fill_missing(&self.sandbox, [params.get()?.get_spec()?])
            .await;
        self.gauges
            .modules_fetched
            .fetch_add(fetched as u64, Ordering::Relaxed);
        let report = self.run_one(params.get()?.get_spec()?).await?;
        self.offer_sent_module(params.get()?.get_spec()?, &report);
        wire::write_report(&report, results.get().init_report());
        Ok(())
    }

    async fn run_many(
        self: Rc<Self>,
        params: worker::RunManyParams,
        mut results: worker::RunManyResults,
    ) -> Result<(), capnp::Error> {
        let _call = CallGuard::enter(&self.calls_in_flight, self.calls_in_flight_max())?;
        let specs = params.get()?.get_specs()?;
        let count = specs.len();
        if count == 0 || count > wire::RUN_MANY_MAX {
            return Err(capnp::Error::failed(format!(
                "runMany takes 1 to {} specs, not {count}",
                wire::RUN_MANY_MAX
            )));
        }
        // Refuse a bad request whole before anything runs.
        for spec in specs.iter() {
            wire::check_spec(spec)?;
        }
        let fetched = self.modules.fill_missing(&self.sandbox, specs.iter()).await;
        self.gauges
            .modules_fetched
            .fetch_add(fetched as u64, Ordering::Relaxed);
        let reports = match self.config.mode {
            ExecMode::Blocking => self.execute_batch(specs).await?,
            // Inline and simulated runs stay on the RPC thread, each in its
            // slot, side by side as `run` calls would be.
            ExecMode::Inline | ExecMode::Simulated { .. } => {
                futures::future::try_join_all(specs.iter().map(|spec| self.run_one(spec))).await?
            }
        };
        for (spec, report) in specs.iter().zip(&reports) {
            self.offer_sent_module(spec, report);
        }
        let mut out = results.get().init_reports(count);
        for (index, report) in reports.iter().enumerate() {
            wire::write_report(report, out.reborrow().get(index as u32));
        }
        Ok(())
    }

    async fn ping(
        self: Rc<Self>,
        _: worker::PingParams,
        _: worker::PingResults,
    ) -> Result<(), capnp::Error> {
        self.last_ping.touch();
        Ok(())
    }
}
