//! The lease protocol in a seeded discrete-event simulation: gateways
//! ([`ww_sched::lease::gateway::LeaseGateway`], each on its own offset clock)
//! over one linearizable store ([`ww_sched::lease::model::Store`], applying
//! requests atomically in arrival order on the simulation's clock), messages
//! with seeded delays, simulated workers, and the scenario's faults (crash and
//! restart of gateways; partitions, one-way partitions, holds, latency and loss
//! on the gateway-store links).
//!
//! Not turmoil: the store is one actor and the gateways talk to nothing else,
//! so an event queue ordered by (time, sequence) is the whole network; it runs
//! a minute of simulated time in milliseconds. Everything the checks judge is
//! logged here: every committed store operation, every gateway action.

use std::collections::{BTreeMap, BTreeSet};

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ww_sched::lease::gateway::{LeaseGateway, Output, RequestId};
use ww_sched::lease::model::{Reply, Request};
use ww_sched::lease::{Epoch, GatewayId, RunOutcome, RunRef, TaskId};

mod faults;
mod seams;

use seams::{LocalClock, SimStore};

use super::leases_spec::{lease_gateway_name, LeasesSpec};
use crate::derive_seed;
use crate::sabotage::Sabotage;
use crate::scenario::format::Fault;

/// One committed store operation.
#[derive(Clone, Debug)]
pub struct OpRecord {
    /// Order among ops and actions.
    pub seq: u64,
    /// The store's clock when it applied it.
    pub at_ms: u64,
    /// The request.
    pub request: Request,
    /// Its reply.
    pub reply: Reply,
}

/// Something a gateway did outside the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Handed a run to a worker.
    Dispatch {
        /// The epoch it acted under.
        epoch: Epoch,
        /// The run.
        run: RunRef,
    },
    /// Told a worker to stop a run.
    Stop {
        /// The run.
        run: RunRef,
    },
    /// A worker reported a run's outcome to the gateway.
    RunDone {
        /// The run.
        run: RunRef,
    },
    /// Acknowledged a submission to the client.
    SubmitAcked {
        /// The task.
        task: TaskId,
        /// The epoch it acted under.
        epoch: Epoch,
    },
    /// Acknowledged a cancel to the client.
    CancelAcked {
        /// The task.
        task: TaskId,
        /// The epoch it acted under.
        epoch: Epoch,
    },
}

/// One gateway action.
#[derive(Clone, Debug)]
pub struct ActionRecord {
    /// Order among ops and actions.
    pub seq: u64,
    /// Simulated time.
    pub at_ms: u64,
    /// The gateway.
    pub gateway: GatewayId,
    /// What it did.
    pub action: Action,
}

/// Everything a run logged, for the checks.
#[derive(Clone, Debug, Default)]
pub struct LeaseLog {
    /// Committed store operations, in order.
    pub ops: Vec<OpRecord>,
    /// Gateway actions, in order.
    pub actions: Vec<ActionRecord>,
    /// Moments a gateway lost touch with the store: (seq, time, gateway, what).
    pub cuts: Vec<(u64, u64, GatewayId, &'static str)>,
    /// The trace, one line per op, action and fault.
    pub trace: Vec<String>,
}

#[derive(Clone, Debug)]
enum Event {
    ToStore {
        from: GatewayId,
        incarnation: u64,
        id: RequestId,
        request: Request,
    },
    ToGateway {
        to: GatewayId,
        incarnation: u64,
        id: RequestId,
        reply: Reply,
    },
    Wake {
        gateway: GatewayId,
        incarnation: u64,
    },
    RunDone {
        gateway: GatewayId,
        incarnation: u64,
        run: RunRef,
        outcome: RunOutcome,
    },
    Submit(usize),
    Cancel(usize),
    Fault(usize),
}

/// A gateway's link to the store.
#[derive(Clone, Debug, Default)]
struct Link {
    cut_up: bool,
    cut_down: bool,
    held: bool,
    latency_ms: Option<u64>,
    loss: f64,
    held_messages: Vec<Event>,
}

struct Host {
    gateway: LeaseGateway,
    /// Events that reached it while paused, to handle at resume.
    paused: Option<Vec<Event>>,
    /// A pause is due: it strikes at the next reply the gateway would act on
    /// (a start, submission or cancel committed), before it is handled: the
    /// worst moment.
    pause_due: bool,
    incarnation: u64,
    clock: LocalClock,
    wake_at_ms: Option<u64>,
    on_workers: BTreeSet<RunRef>,
}

impl Host {
    fn gateway_id(&self) -> GatewayId {
        self.gateway.id()
    }
}

/// A planned task: when and through which gateway it is submitted, its runs,
/// and when (through which gateway) it is cancelled, if it is.
#[derive(Clone, Debug)]
struct Plan {
    task: TaskId,
    submit_ms: u64,
    runs: u32,
    cancel_ms: Option<u64>,
}

/// The simulation.
struct Sim<'a> {
    spec: &'a LeasesSpec,
    faults: &'a [Fault],
    now_ms: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Event>,
    store: SimStore,
    hosts: BTreeMap<GatewayId, Option<Host>>,
    links: BTreeMap<GatewayId, Link>,
    loss: f64,
    max_latency_ms: u64,
    net: ChaCha8Rng,
    work: ChaCha8Rng,
    plans: Vec<Plan>,
    /// Gateway clocks leave pauses out (`lease-act-past-deadline`).
    clocks_stop_when_paused: bool,
    incarnations: u64,
    log: LeaseLog,
}

fn chance(rng: &mut ChaCha8Rng, p: f64) -> bool {
    p > 0.0 && (rng.next_u64() as f64 / u64::MAX as f64) < p
}

fn between(rng: &mut ChaCha8Rng, lo: u64, hi: u64) -> u64 {
    lo + rng.next_u64() % (hi - lo + 1)
}

fn gateway_of(name: &str) -> Option<GatewayId> {
    name.strip_prefix("gw-")?.parse().ok()
}

/// Runs the `[leases]` workload of a scenario for `duration_ms` under `seed`,
/// messages taking 1..=`max_latency_ms` and lost at rate `loss`, with
/// `sabotage` made by the simulation's clocks or store if it is a lease bug.
pub fn simulate(
    spec: &LeasesSpec,
    faults: &[Fault],
    duration_ms: u64,
    max_latency_ms: u64,
    loss: f64,
    seed: u64,
    sabotage: Option<Sabotage>,
) -> LeaseLog {
    let mut plan_rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, "leases/plan"));
    let from_ms = (spec.submit_from_s * 1e3) as u64;
    let until_ms = (spec.submit_until_s * 1e3) as u64;
    let plans = (0..spec.tasks)
        .map(|i| {
            let submit_ms = between(&mut plan_rng, from_ms, until_ms);
            let runs = between(&mut plan_rng, 1, u64::from(spec.runs_max)) as u32;
            let cancelled = plan_rng.next_u64() % 100 < u64::from(spec.cancel_percent);
            let cancel_ms =
                cancelled.then(|| submit_ms + between(&mut plan_rng, 0, 2 * spec.run_ms_max));
            Plan {
                task: TaskId::parse(&format!("task-{i:04}")).expect("a valid task id"),
                submit_ms,
                runs,
                cancel_ms,
            }
        })
        .collect();
    let store = SimStore::new(
        spec.lease_ms,
        sabotage == Some(Sabotage::LeaseStartCancelled),
    );
    let mut sim = Sim {
        spec,
        faults,
        now_ms: 0,
        seq: 0,
        queue: BTreeMap::new(),
        store,
        hosts: BTreeMap::new(),
        links: BTreeMap::new(),
        loss,
        max_latency_ms: max_latency_ms.max(1),
        net: ChaCha8Rng::seed_from_u64(derive_seed(seed, "leases/net")),
        work: ChaCha8Rng::seed_from_u64(derive_seed(seed, "leases/work")),
        plans,
        clocks_stop_when_paused: sabotage == Some(Sabotage::LeaseActPastDeadline),
        incarnations: 0,
        log: LeaseLog::default(),
    };
    sim.run(seed, duration_ms);
    sim.log
}

impl Sim<'_> {
    fn run(&mut self, seed: u64, duration_ms: u64) {
        for g in 0..self.spec.gateways as GatewayId {
            self.links.insert(g, Link::default());
            self.start_gateway(seed, g);
        }
        for (i, plan) in self.plans.clone().iter().enumerate() {
            self.push(plan.submit_ms, Event::Submit(i));
            if let Some(at) = plan.cancel_ms {
                self.push(at, Event::Cancel(i));
            }
        }
        for (i, fault) in self.faults.iter().enumerate() {
            self.push((fault.at_s * 1e3) as u64, Event::Fault(i));
        }
        while let Some(entry) = self.queue.first_entry() {
            let (at, _) = *entry.key();
            if at > duration_ms {
                break;
            }
            let event = entry.remove();
            self.now_ms = at;
            self.handle(seed, event);
        }
    }

    fn push(&mut self, at_ms: u64, event: Event) {
        self.seq += 1;
        self.queue.insert((at_ms, self.seq), event);
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn start_gateway(&mut self, seed: u64, g: GatewayId) {
        self.incarnations += 1;
        let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, &format!("leases/clock/{g}")));
        let offset_ms = rng.next_u64() % (self.spec.clock_offset_ms_max + 1);
        let clock = LocalClock::new(offset_ms, self.clocks_stop_when_paused);
        let gateway = LeaseGateway::new(g, self.spec.config(), clock.local(self.now_ms));
        self.hosts.insert(
            g,
            Some(Host {
                gateway,
                incarnation: self.incarnations,
                paused: None,
                pause_due: false,
                clock,
                wake_at_ms: None,
                on_workers: BTreeSet::new(),
            }),
        );
        self.drive(g, |gw, now| gw.handle_timeout(now));
    }

    /// Calls `f` on gateway `g` (if up) at its local time, then carries out
    /// its outputs and reschedules its wake-up.
    fn drive(&mut self, g: GatewayId, f: impl FnOnce(&mut LeaseGateway, u64)) {
        let now_ms = self.now_ms;
        let Some(Some(host)) = self.hosts.get_mut(&g) else {
            return;
        };
        f(&mut host.gateway, host.clock.local(now_ms));
        let mut outputs = Vec::new();
        while let Some(output) = host.gateway.poll_output() {
            outputs.push(output);
        }
        let incarnation = host.incarnation;
        let wake = host.clock.sim(host.gateway.poll_timeout());
        let wake = wake.max(now_ms + 1);
        let reschedule = host.wake_at_ms.is_none_or(|at| wake < at || at <= now_ms);
        if reschedule {
            host.wake_at_ms = Some(wake);
        }
        for output in outputs {
            self.carry_out(g, incarnation, output);
        }
        if reschedule {
            self.push(
                wake,
                Event::Wake {
                    gateway: g,
                    incarnation,
                },
            );
        }
    }

    fn carry_out(&mut self, g: GatewayId, incarnation: u64, output: Output) {
        let action = match output {
            Output::Send { id, request } => {
                let event = Event::ToStore {
                    from: g,
                    incarnation,
                    id,
                    request,
                };
                self.transmit(g, true, event);
                return;
            }
            Output::Dispatch { epoch, run } => {
                let spec = self.spec;
                let took = between(&mut self.work, spec.run_ms_min, spec.run_ms_max);
                let failed = self.work.next_u64() % 100 < u64::from(spec.fail_percent);
                let outcome = if failed {
                    RunOutcome::Failed
                } else {
                    RunOutcome::Succeeded
                };
                if let Some(Some(host)) = self.hosts.get_mut(&g) {
                    host.on_workers.insert(run.clone());
                }
                self.push(
                    self.now_ms + took,
                    Event::RunDone {
                        gateway: g,
                        incarnation,
                        run: run.clone(),
                        outcome,
                    },
                );
                Action::Dispatch { epoch, run }
            }
            Output::Stop { run } => {
                if let Some(Some(host)) = self.hosts.get_mut(&g) {
                    host.on_workers.remove(&run);
                }
                Action::Stop { run }
            }
            Output::SubmitAcked { task, epoch } => Action::SubmitAcked { task, epoch },
            Output::CancelAcked { task, epoch } => Action::CancelAcked { task, epoch },
            other => {
                let line = format!("{} gw-{g} {other:?}", self.now_ms);
                self.log.trace.push(line);
                return;
            }
        };
        self.record(g, action);
    }

    fn record(&mut self, gateway: GatewayId, action: Action) {
        let seq = self.next_seq();
        let at_ms = self.now_ms;
        self.log
            .trace
            .push(format!("{at_ms} gw-{gateway} {action:?}"));
        self.log.actions.push(ActionRecord {
            seq,
            at_ms,
            gateway,
            action,
        });
    }

    /// Sends `event` over gateway `g`'s link, up (to the store) or down.
    fn transmit(&mut self, g: GatewayId, up: bool, event: Event) {
        let global = self.loss;
        let max = self.max_latency_ms;
        let Some(link) = self.links.get_mut(&g) else {
            return;
        };
        if (up && link.cut_up) || (!up && link.cut_down) {
            return;
        }
        if link.held {
            link.held_messages.push(event);
            return;
        }
        let (loss, fixed) = (link.loss, link.latency_ms);
        if chance(&mut self.net, global) || chance(&mut self.net, loss) {
            return;
        }
        let delay = fixed.unwrap_or_else(|| between(&mut self.net, 1, max));
        self.push(self.now_ms + delay, event);
    }

    fn handle(&mut self, seed: u64, event: Event) {
        let target = match &event {
            Event::ToGateway { to, .. } => Some(*to),
            Event::Wake { gateway, .. } | Event::RunDone { gateway, .. } => Some(*gateway),
            _ => None,
        };
        if let Some(Some(host)) = target.and_then(|g| self.hosts.get_mut(&g)) {
            let acts_on = matches!(
                event,
                Event::ToGateway {
                    reply: Reply::Started(_) | Reply::Done,
                    ..
                }
            );
            if host.pause_due && acts_on {
                self.pause(target);
                return self.handle(seed, event);
            }
            if let Some(queued) = &mut host.paused {
                queued.push(event);
                return;
            }
        }
        match event {
            Event::ToStore {
                from,
                incarnation,
                id,
                request,
            } => self.at_store(from, incarnation, id, request),
            Event::ToGateway {
                to,
                incarnation,
                id,
                reply,
            } => {
                if self.is_incarnation(to, incarnation) {
                    self.drive(to, |gw, now| gw.handle_reply(now, id, reply));
                }
            }
            Event::Wake {
                gateway,
                incarnation,
            } => {
                let now_ms = self.now_ms;
                let due = matches!(self.hosts.get(&gateway), Some(Some(h))
                    if h.incarnation == incarnation && h.wake_at_ms == Some(now_ms));
                if due {
                    self.drive(gateway, |gw, now| gw.handle_timeout(now));
                }
            }
            Event::RunDone {
                gateway,
                incarnation,
                run,
                outcome,
            } => {
                let on_worker = matches!(self.hosts.get(&gateway), Some(Some(h))
                    if h.incarnation == incarnation && h.on_workers.contains(&run));
                if on_worker {
                    if let Some(Some(host)) = self.hosts.get_mut(&gateway) {
                        host.on_workers.remove(&run);
                    }
                    self.record(gateway, Action::RunDone { run: run.clone() });
                    self.drive(gateway, |gw, now| gw.run_finished(now, run, outcome));
                }
            }
            Event::Submit(i) => {
                let plan = self.plans[i].clone();
                if let Some(g) = self.pick_gateway() {
                    self.drive(g, |gw, now| gw.submit(now, plan.task, plan.runs));
                }
            }
            Event::Cancel(i) => {
                let task = self.plans[i].task.clone();
                if let Some(g) = self.pick_gateway() {
                    self.drive(g, |gw, now| gw.cancel(now, task));
                }
            }
            Event::Fault(i) => self.fault(seed, i),
        }
    }

    /// Freezes gateway `target` now: what reaches it waits for its resume.
    fn pause(&mut self, target: Option<GatewayId>) {
        let at = self.now_ms;
        let Some(Some(host)) = target.and_then(|g| self.hosts.get_mut(&g)) else {
            return;
        };
        host.pause_due = false;
        host.paused = Some(Vec::new());
        host.clock.pause(at);
        let g = host.gateway_id();
        let seq = self.next_seq();
        self.log.cuts.push((seq, at, g, "pause"));
        self.log.trace.push(format!("{at} gw-{g} paused"));
    }

    /// The store applies `request` from `from` now, logs it, and answers.
    fn at_store(&mut self, from: GatewayId, incarnation: u64, id: RequestId, request: Request) {
        let reply = self.store.apply(self.now_ms, &request);
        let seq = self.next_seq();
        self.log
            .trace
            .push(format!("{} store {request:?} -> {reply:?}", self.now_ms));
        self.log.ops.push(OpRecord {
            seq,
            at_ms: self.now_ms,
            request,
            reply: reply.clone(),
        });
        let event = Event::ToGateway {
            to: from,
            incarnation,
            id,
            reply,
        };
        self.transmit(from, false, event);
    }

    fn is_incarnation(&self, g: GatewayId, incarnation: u64) -> bool {
        matches!(self.hosts.get(&g), Some(Some(h)) if h.incarnation == incarnation)
    }

    /// A running gateway, as a client's load balancer picks one.
    fn pick_gateway(&mut self) -> Option<GatewayId> {
        let up: Vec<GatewayId> = self
            .hosts
            .iter()
            .filter(|(_, h)| h.as_ref().is_some_and(|h| h.paused.is_none()))
            .map(|(g, _)| *g)
            .collect();
        if up.is_empty() {
            return None;
        }
        Some(up[(self.work.next_u64() % up.len() as u64) as usize])
    }
}

/// The host name of gateway `g`.
pub fn host_of(g: GatewayId) -> String {
    lease_gateway_name(g as usize)
}
