//! An ordered event trace of a simulation, collected from `tracing` events and
//! stamped with simulated time.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

/// Events kept at most; later ones are counted, not stored, so a runaway
/// simulation cannot exhaust memory.
pub const TRACE_EVENTS_MAX: usize = 1_000_000;

/// The trace of one simulation run. Clones share the same record.
#[derive(Clone, Default)]
pub struct Trace {
    events: Arc<Mutex<TraceEvents>>,
}

#[derive(Default)]
struct TraceEvents {
    lines: Vec<String>,
    dropped: u64,
}

impl Trace {
    /// An empty trace.
    pub fn new() -> Self {
        Trace::default()
    }

    /// Appends one event, stamped with the simulation's clock.
    pub fn record(&self, event: impl Into<String>) {
        let at = turmoil::sim_elapsed().unwrap_or_default();
        let line = format!("{:>10.3}ms {}", at.as_secs_f64() * 1e3, event.into());
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if events.lines.len() < TRACE_EVENTS_MAX {
            events.lines.push(line);
        } else {
            events.dropped += 1;
        }
    }

    /// Every recorded line, in order.
    pub fn lines(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .lines
            .clone()
    }

    /// SHA-256 over every line (and the count of dropped ones), as lowercase hex.
    pub fn digest(&self) -> String {
        let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        let mut hasher = Sha256::new();
        for line in &events.lines {
            hasher.update(line.as_bytes());
            hasher.update(b"\n");
        }
        hasher.update(events.dropped.to_le_bytes());
        hasher.finalize().iter().fold(String::new(), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
    }

    /// A `tracing` layer that records every event from ww-sched's crates here.
    pub fn layer(&self) -> TraceLayer {
        TraceLayer {
            trace: self.clone(),
        }
    }
}

/// Feeds `tracing` events from the `ww_sched` and `ww_sim` targets into a [`Trace`].
pub struct TraceLayer {
    trace: Trace,
}

struct LineVisitor(String);

impl Visit for LineVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for TraceLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let target = event.metadata().target();
        if !(target.starts_with("ww_sched") || target.starts_with("ww_sim")) {
            return;
        }
        let mut visitor = LineVisitor(format!("{} {target}:", event.metadata().level()));
        event.record(&mut visitor);
        self.trace.record(visitor.0);
    }
}
