//! weir's metrics recorder: the Prometheus text exposition (metrics-exporter-prometheus),
//! with every label set of one event kept apart so that it can be dropped with the event.
//!
//! A process that runs for months sees events come and go; a recorder that keeps every label
//! set it was ever given (as metrics-exporter-prometheus does: it has no removal) grows with
//! every event ever published. Here a metric with an `event` label is registered in a
//! registry of that event's own (one for its `weir_edge_*` metrics, one for the rest);
//! [`forget_event`] drops both when the event is deleted, [`forget_edge_event`] the edge's
//! when an edge has stopped seeing the event. `/metrics` renders the shared registry and
//! every event's as one exposition, each metric family once.
//!
//! After [`forget_event`], label sets of that event registered during the next
//! [`TOMBSTONE`] are not kept (its last sessions' final counters arrive after the delete);
//! [`revive_event`] ends that early when an event of the same id is created.
//!
//! Histograms are drained by an upkeep thread every [`UPKEEP`] (without it their samples
//! would pile up between scrapes, or for ever with nobody scraping).

mod render;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};

/// How long label sets of a forgotten event are refused after [`forget_event`].
pub const TOMBSTONE: Duration = Duration::from_secs(300);

/// How often the installed recorder's histograms are drained.
pub const UPKEEP: Duration = Duration::from_secs(5);

/// The label that scopes a metric to an event.
pub const EVENT_LABEL: &str = "event";

/// The recorder: install it with [`install`], or use it locally (tests) with
/// [`metrics::with_local_recorder`].
#[derive(Debug)]
pub struct Recorder {
    inner: Arc<Inner>,
}

/// Renders and maintains a [`Recorder`]'s metrics; cheap to clone.
#[derive(Clone, Debug)]
pub struct Handle {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    shared: PrometheusRecorder,
    events: RwLock<HashMap<Scope, Arc<PrometheusRecorder>>>,
    /// Forgotten events, and when.
    tombstones: Mutex<HashMap<String, Instant>>,
}

/// One event's registry: its edge metrics (`weir_edge_*`) or the rest.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
struct Scope {
    event: String,
    edge: bool,
}

/// Where a metric goes.
enum Route {
    Shared,
    Event(Arc<PrometheusRecorder>),
    /// Of an event forgotten less than [`TOMBSTONE`] ago: not kept.
    Gone,
}

static INSTALLED: OnceLock<Handle> = OnceLock::new();

/// Installs a new [`Recorder`] as the process's metrics recorder and starts its upkeep
/// thread; returns its handle.
///
/// # Errors
/// If a recorder is installed already.
pub fn install() -> Result<Handle, metrics::SetRecorderError<Recorder>> {
    let recorder = Recorder::new();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)?;
    let _ = INSTALLED.set(handle.clone());
    let upkeep = handle.clone();
    let _ = std::thread::Builder::new()
        .name("weir-metrics".into())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP);
            upkeep.run_upkeep();
        });
    Ok(handle)
}

/// Drops every label set of `event` from the installed recorder (see the crate docs); does
/// nothing without one.
pub fn forget_event(event: &str) {
    if let Some(h) = INSTALLED.get() {
        h.forget_event(event);
    }
}

/// Drops the `weir_edge_*` label sets of `event` from the installed recorder.
pub fn forget_edge_event(event: &str) {
    if let Some(h) = INSTALLED.get() {
        h.forget_edge_event(event);
    }
}

/// `event` exists (again): its label sets are kept from now on, even within [`TOMBSTONE`]
/// of a [`forget_event`].
pub fn revive_event(event: &str) {
    if let Some(h) = INSTALLED.get() {
        h.revive_event(event);
    }
}

impl Recorder {
    /// A recorder with nothing registered; Prometheus' defaults (histograms as summaries).
    pub fn new() -> Recorder {
        Recorder {
            inner: Arc::new(Inner {
                shared: PrometheusBuilder::new().build_recorder(),
                events: RwLock::new(HashMap::new()),
                tombstones: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Its handle.
    pub fn handle(&self) -> Handle {
        Handle {
            inner: self.inner.clone(),
        }
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Handle {
    /// The Prometheus text exposition (version 0.0.4) of every metric: each family once,
    /// with the shared registry's samples first and then each event's, by event id.
    pub fn render(&self) -> String {
        let events: Vec<(Scope, Arc<PrometheusRecorder>)> = {
            let map = self.inner.read_events();
            let mut v: Vec<_> = map.iter().map(|(s, r)| (s.clone(), r.clone())).collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        let mut texts = vec![self.inner.shared.handle().render()];
        texts.extend(events.iter().map(|(_, r)| r.handle().render()));
        render::merge(&texts)
    }

    /// Drains histogram samples into their summaries (what a scrape also does).
    pub fn run_upkeep(&self) {
        self.inner.shared.handle().run_upkeep();
        for r in self.inner.read_events().values() {
            r.handle().run_upkeep();
        }
    }

    /// Drops every label set of `event`; for [`TOMBSTONE`] none of it is kept again.
    pub fn forget_event(&self, event: &str) {
        let now = Instant::now();
        {
            let mut t = self.inner.lock_tombstones();
            t.retain(|_, at| now.duration_since(*at) < TOMBSTONE);
            t.insert(event.to_string(), now);
        }
        self.inner.write_events().retain(|s, _| s.event != event);
    }

    /// Drops the `weir_edge_*` label sets of `event`; a later one is kept again.
    pub fn forget_edge_event(&self, event: &str) {
        self.inner.write_events().remove(&Scope {
            event: event.to_string(),
            edge: true,
        });
    }

    /// Ends `event`'s tombstone: its label sets are kept from now on.
    pub fn revive_event(&self, event: &str) {
        self.inner.lock_tombstones().remove(event);
    }

    /// How many events have label sets of their own (the `weir_edge_*` ones counted apart).
    pub fn event_registries(&self) -> usize {
        self.inner.read_events().len()
    }
}

impl Inner {
    fn read_events(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, HashMap<Scope, Arc<PrometheusRecorder>>> {
        self.events.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_events(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, HashMap<Scope, Arc<PrometheusRecorder>>> {
        self.events.write().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_tombstones(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.tombstones.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn route(&self, key: &Key) -> Route {
        let Some(event) = key
            .labels()
            .find(|l| l.key() == EVENT_LABEL)
            .map(|l| l.value())
        else {
            return Route::Shared;
        };
        let scope = Scope {
            event: event.to_string(),
            edge: key.name().starts_with("weir_edge_"),
        };
        if let Some(r) = self.read_events().get(&scope) {
            return Route::Event(r.clone());
        }
        if let Some(at) = self.lock_tombstones().get(event) {
            if at.elapsed() < TOMBSTONE {
                return Route::Gone;
            }
        }
        let r = self
            .write_events()
            .entry(scope)
            .or_insert_with(|| Arc::new(PrometheusBuilder::new().build_recorder()))
            .clone();
        Route::Event(r)
    }
}

impl metrics::Recorder for Recorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.shared.describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.shared.describe_gauge(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.shared.describe_histogram(key, unit, description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        match self.inner.route(key) {
            Route::Shared => self.inner.shared.register_counter(key, metadata),
            Route::Event(r) => r.register_counter(key, metadata),
            Route::Gone => Counter::noop(),
        }
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        match self.inner.route(key) {
            Route::Shared => self.inner.shared.register_gauge(key, metadata),
            Route::Event(r) => r.register_gauge(key, metadata),
            Route::Gone => Gauge::noop(),
        }
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        match self.inner.route(key) {
            Route::Shared => self.inner.shared.register_histogram(key, metadata),
            Route::Event(r) => r.register_histogram(key, metadata),
            Route::Gone => Histogram::noop(),
        }
    }
}

#[cfg(test)]
mod tests;
