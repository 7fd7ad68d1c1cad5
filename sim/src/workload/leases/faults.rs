//! The scenario's faults in the lease driver: gateway crashes, restarts and
//! pauses, and disturbances of the gateway-store links.

use ww_sched::lease::GatewayId;

use super::{gateway_of, Event, Sim};
use crate::scenario::format::{Fault, FaultKind};
use crate::workload::leases_spec::STORE_HOST;

impl Sim<'_> {
    /// Applies the scenario's fault `i` now.
    pub(super) fn fault(&mut self, seed: u64, i: usize) {
        let fault = self.faults[i].clone();
        self.log
            .trace
            .push(format!("{} fault {:?}", self.now_ms, fault.kind));
        match fault.kind {
            FaultKind::Crash => {
                for g in fault.nodes.iter().filter_map(|n| gateway_of(n)) {
                    // Its memory and its workers' runs are gone.
                    self.hosts.insert(g, None);
                    let seq = self.next_seq();
                    self.log.cuts.push((seq, self.now_ms, g, "crash"));
                }
            }
            FaultKind::Restart => {
                for g in fault.nodes.iter().filter_map(|n| gateway_of(n)) {
                    if matches!(self.hosts.get(&g), Some(Some(_))) {
                        let seq = self.next_seq();
                        self.log.cuts.push((seq, self.now_ms, g, "restart"));
                    }
                    self.start_gateway(seed, g);
                }
            }
            FaultKind::Pause => {
                for g in fault.nodes.iter().filter_map(|n| gateway_of(n)) {
                    if let Some(Some(host)) = self.hosts.get_mut(&g) {
                        host.pause_due = true;
                    }
                }
            }
            FaultKind::Resume => {
                for g in fault.nodes.iter().filter_map(|n| gateway_of(n)) {
                    self.resume(g);
                }
            }
            FaultKind::Loss => self.loss = fault.fail_rate.unwrap_or(0.0),
            _ => self.link_fault(&fault),
        }
    }

    /// Unfreezes `g`: what queued is handled first, in order, then its time.
    fn resume(&mut self, g: GatewayId) {
        let Some(Some(host)) = self.hosts.get_mut(&g) else {
            return;
        };
        host.pause_due = false;
        if host.paused.is_some() {
            host.clock.resume(self.now_ms);
        }
        let queued = host.paused.take().unwrap_or_default();
        let incarnation = host.incarnation;
        for event in queued {
            // A wake-up that came due while frozen is replaced by the one below.
            if !matches!(event, Event::Wake { .. }) {
                self.push(self.now_ms, event);
            }
        }
        if let Some(Some(host)) = self.hosts.get_mut(&g) {
            host.wake_at_ms = Some(self.now_ms);
        }
        self.push(
            self.now_ms,
            Event::Wake {
                gateway: g,
                incarnation,
            },
        );
    }

    fn link_fault(&mut self, fault: &Fault) {
        // (gateway, whether the gateway is on the `a` side)
        let mut touched = Vec::new();
        for (x, y) in fault
            .a
            .iter()
            .flat_map(|a| fault.b.iter().map(move |b| (a, b)))
        {
            if y == STORE_HOST {
                touched.extend(gateway_of(x).map(|g| (g, true)));
            } else if x == STORE_HOST {
                touched.extend(gateway_of(y).map(|g| (g, false)));
            }
        }
        for (g, gateway_sends) in touched {
            let now = self.now_ms;
            let Some(link) = self.links.get_mut(&g) else {
                continue;
            };
            let mut cut = None;
            let mut released = Vec::new();
            match fault.kind {
                FaultKind::Partition => {
                    link.cut_up = true;
                    link.cut_down = true;
                    cut = Some("partition");
                }
                FaultKind::Repair => {
                    link.cut_up = false;
                    link.cut_down = false;
                }
                FaultKind::PartitionOneway if gateway_sends => {
                    link.cut_up = true;
                    cut = Some("partition_oneway");
                }
                FaultKind::PartitionOneway => {
                    link.cut_down = true;
                    cut = Some("partition_oneway");
                }
                FaultKind::RepairOneway if gateway_sends => link.cut_up = false,
                FaultKind::RepairOneway => link.cut_down = false,
                FaultKind::Hold => {
                    link.held = true;
                    cut = Some("hold");
                }
                FaultKind::Release => {
                    link.held = false;
                    released = std::mem::take(&mut link.held_messages);
                }
                // 0 gives the link back its seeded random latency.
                FaultKind::Latency => link.latency_ms = fault.latency_ms.filter(|ms| *ms > 0),
                FaultKind::LinkLoss => link.loss = fault.fail_rate.unwrap_or(0.0),
                _ => {}
            }
            if let Some(what) = cut {
                self.seq += 1;
                self.log.cuts.push((self.seq, now, g, what));
            }
            for event in released {
                let up = matches!(event, Event::ToStore { .. });
                self.transmit(g, up, event);
            }
        }
    }
}
