//! An ordered event trace of a simulation, collected from `tracing` events and
//! stamped with simulated time.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

/// Lines kept for reading (the first ones); every line, kept or not, goes into
/// the digest, so a long run neither exhausts memory nor escapes the digest.
pub const TRACE_LINES_KEPT_MAX: usize = 200_000;

/// The trace of one simulation run. Clones share the same record.
#[derive(Clone, Default)]
pub struct Trace {
    events: Arc<Mutex<TraceEvents>>,
}

#[derive(Default)]
struct TraceEvents {
    lines: Vec<String>,
    hasher: Sha256,
    count: u64,
    /// Every gateway's "run started" line, all of them (the checks of a
    /// shared store read them; one per dispatch, so bounded by the run).
    run_starts: Vec<String>,
}

/// The target of the gateway's event for each run it dispatches.
pub const RUN_START_TARGET: &str = "ww_sched::gateway::core::driver";
/// That event's message.
pub const RUN_START_MESSAGE: &str = "run started";

impl Trace {
    /// An empty trace.
    pub fn new() -> Self {
        Trace::default()
    }

    /// Appends one event, stamped with the simulation's clock.
    pub fn record(&self, event: impl Into<String>) {
        let mut line = stamp();
        line.push_str(&event.into());
        self.record_line(line);
    }

    /// Appends one line already stamped by [`stamp`].
    fn record_line(&self, line: String) {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        events.hasher.update(line.as_bytes());
        events.hasher.update(b"\n");
        events.count += 1;
        if line.contains(RUN_START_TARGET) && line.contains(RUN_START_MESSAGE) {
            events.run_starts.push(line.clone());
        }
        if events.lines.len() < TRACE_LINES_KEPT_MAX {
            events.lines.push(line);
        }
    }

    /// The recorded lines kept (the first [`TRACE_LINES_KEPT_MAX`]), in order.
    pub fn lines(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .lines
            .clone()
    }

    /// Every line of a gateway dispatching a run, in order (not capped).
    pub fn run_starts(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .run_starts
            .clone()
    }

    /// SHA-256 over every line recorded and their count, as lowercase hex.
    pub fn digest(&self) -> String {
        let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        let mut hasher = events.hasher.clone();
        hasher.update(events.count.to_le_bytes());
        hasher.finalize().iter().fold(String::new(), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
    }

    /// Runs `simulation` on this thread with every ww-sched event recorded here.
    ///
    /// A thread-local subscriber (`tracing::subscriber::with_default`) is not
    /// enough when tests run in parallel: `tracing` caches per call site whether
    /// anyone is interested, across threads, and a call site first reached on a
    /// thread without a subscriber can be skipped here too, so the first events
    /// of a run went missing now and then. Instead one global subscriber, always
    /// interested, hands each event to the trace captured on its thread.
    pub fn capture<R>(&self, simulation: impl FnOnce() -> R) -> R {
        install_global_subscriber();
        let previous = CURRENT.with(|current| current.replace(Some(self.clone())));
        // Restore on the way out even if the simulation panics.
        struct Restore(Option<Trace>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let previous = self.0.take();
                CURRENT.with(|current| *current.borrow_mut() = previous);
            }
        }
        let _restore = Restore(previous);
        simulation()
    }
}

/// The start of a trace line: the simulation's clock and a space.
fn stamp() -> String {
    let at = turmoil::sim_elapsed().unwrap_or_default();
    format!("{:>10.3}ms ", at.as_secs_f64() * 1e3)
}

thread_local! {
    /// The trace that events on this thread go to, while [`Trace::capture`] runs.
    static CURRENT: std::cell::RefCell<Option<Trace>> = const { std::cell::RefCell::new(None) };
}

/// Installs (once per process) the global subscriber behind [`Trace::capture`].
fn install_global_subscriber() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        use tracing_subscriber::layer::SubscriberExt;
        let subscriber = tracing_subscriber::registry().with(CurrentTraceLayer);
        // If a program set its own global subscriber first, capture stays empty;
        // the digest tests would then fail loudly rather than pass unseen.
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

/// Sends events to the trace captured on the current thread, if any.
struct CurrentTraceLayer;

impl<S: Subscriber> Layer<S> for CurrentTraceLayer {
    // Whether a call site is recorded depends only on its metadata, never on the
    // thread, so interest can be decided once per call site: spans (turmoil opens
    // one per host per step) and events no trace keeps then cost nothing, where
    // they used to build a registry span or an event for `on_event` to discard.
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if recorded(metadata) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        recorded(metadata)
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        CURRENT.with(|current| {
            if let Some(trace) = current.borrow().as_ref() {
                record_event(trace, event);
            }
        });
    }
}

/// Whether events from call sites with `metadata` go into traces: events (not
/// spans) from the stack (ww), ww-sched and ww-sim at DEBUG or above.
fn recorded(metadata: &Metadata<'_>) -> bool {
    let target = metadata.target();
    // TRACE is per-packet detail (n^2 lines in a large cluster); DEBUG and
    // above say what every node decided, which is what a replay must match.
    metadata.is_event()
        && (target == "ww"
            || target.starts_with("ww::")
            || target.starts_with("ww_sched")
            || target.starts_with("ww_sim"))
        && *metadata.level() != tracing::Level::TRACE
}

fn record_event(trace: &Trace, event: &Event<'_>) {
    if !recorded(event.metadata()) {
        return;
    }
    let target = event.metadata().target();
    // Stamped first, so the line is built once (as `Trace::record` would).
    let mut visitor = LineVisitor(stamp());
    let _ = write!(visitor.0, "{} {target}:", event.metadata().level());
    event.record(&mut visitor);
    trace.record_line(visitor.0);
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
