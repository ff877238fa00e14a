//! The lookup/coalesce and upstream phases: one upstream request per cache key however many
//! viewers ask at once. The fetch runs as a task of its own, detached from the viewer that
//! started it: a viewer that goes away neither cancels it nor makes the others start again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::sync::Cache;
use moka::Expiry;
use tokio::sync::watch;

use crate::upstream::{Fetched, Upstream};
use crate::EdgeError;

/// A cached (or just fetched) upstream response.
#[derive(Debug)]
pub(crate) struct Cached {
    pub(crate) fetched: Fetched,
    pub(crate) fetched_at: Instant,
    /// How long it may be served from the cache; `None`: not stored (shared with the viewers
    /// that waited on the fetch, then forgotten).
    pub(crate) ttl: Option<Duration>,
    /// The body's strong ETag, computed on first use.
    pub(crate) etag: std::sync::OnceLock<http::HeaderValue>,
    /// A last good copy served because the upstream failed (`X-Cache: STALE`).
    pub(crate) stale: bool,
}

impl Cached {
    /// The ETag of the body as fetched ([`crate::conditional::etag_of`]), computed once.
    pub(crate) fn etag(&self) -> &http::HeaderValue {
        self.etag
            .get_or_init(|| crate::conditional::etag_of(&self.fetched.body))
    }
}

/// What a fetch gives every viewer that waited on it.
pub(crate) type Outcome = Result<Arc<Cached>, EdgeError>;

/// Per-entry lifetime: the TTL the upstream's `Cache-Control` gave, plus a margin (zero for
/// the cache itself; the stale-if-error window for last good copies).
struct TtlPlus(Duration);

impl Expiry<String, Arc<Cached>> for TtlPlus {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Arc<Cached>,
        _at: Instant,
    ) -> Option<Duration> {
        Some(value.ttl.unwrap_or_default() + self.0)
    }

    /// A replaced entry (a followed playlist's new version) lives by its own TTL, not the
    /// one it replaced (moka's default keeps the old expiry).
    fn expire_after_update(
        &self,
        _key: &String,
        value: &Arc<Cached>,
        _at: Instant,
        _remaining: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl.unwrap_or_default() + self.0)
    }
}

/// The last-good-copy cache beside a cache of `capacity` bytes: an eighth of it.
fn cache_of_stale(capacity: u64, window: Duration) -> Cache<String, Arc<Cached>> {
    cache((capacity / 8).max(1024 * 1024), window)
}

/// A cache of `capacity` bytes (bodies and keys) whose entries live by [`TtlPlus`]`(margin)`.
fn cache(capacity: u64, margin: Duration) -> Cache<String, Arc<Cached>> {
    Cache::builder()
        .max_capacity(capacity)
        .weigher(|key: &String, value: &Arc<Cached>| {
            (key.len() + value.fetched.body.len() + 256)
                .try_into()
                .unwrap_or(u32::MAX)
        })
        .expire_after(TtlPlus(margin))
        .build()
}

/// Objects cached for less than this also keep a last good copy for stale-if-error (live
/// playlists and policies; segments live long in the cache itself).
const STALE_COPY_BELOW: Duration = Duration::from_secs(60);

/// The cache and the fetches in flight.
pub(crate) struct Coalescer {
    pub(crate) cache: Cache<String, Arc<Cached>>,
    /// Last good copies of short-lived objects, kept for the stale-if-error window after they
    /// expire.
    stale: Option<Cache<String, Arc<Cached>>>,
    inflight: Mutex<HashMap<String, watch::Receiver<Option<Outcome>>>>,
    upstream: Upstream,
}

impl Coalescer {
    /// A cache of `capacity_bytes`; with a non-zero `stale_if_error`, a failed upstream fetch
    /// of a short-lived object is answered with its last good copy if it expired less than
    /// that long ago.
    pub(crate) fn new(
        capacity_bytes: u64,
        upstream: Upstream,
        stale_if_error: Duration,
    ) -> Coalescer {
        let cache = cache(capacity_bytes, Duration::ZERO);
        let stale =
            (!stale_if_error.is_zero()).then(|| cache_of_stale(capacity_bytes, stale_if_error));
        Coalescer {
            cache,
            stale,
            inflight: Mutex::new(HashMap::new()),
            upstream,
        }
    }

    /// The last good copy of `key` (for a blocking playlist request, of the plain playlist)
    /// marked stale, or `fallback`.
    fn stale_or(&self, key: &str, fallback: Outcome) -> Outcome {
        let plain = key.split('?').next().unwrap_or(key);
        let Some(copy) = self
            .stale
            .as_ref()
            .and_then(|s| s.get(key).or_else(|| s.get(plain)))
        else {
            return fallback;
        };
        metrics::counter!("weir_edge_stale_served_total").increment(1);
        Ok(Arc::new(Cached {
            fetched: copy.fetched.clone(),
            fetched_at: copy.fetched_at,
            ttl: None,
            etag: Default::default(),
            stale: true,
        }))
    }

    /// The cached response for `key`, if fresh.
    pub(crate) fn hit(&self, key: &str) -> Option<Arc<Cached>> {
        self.cache.get(key)
    }

    /// Stores `cached` under `key` (if it has a TTL).
    pub(crate) fn store(&self, key: String, cached: Arc<Cached>) {
        let Some(ttl) = cached.ttl else {
            return;
        };
        let good = cached.fetched.status == http::StatusCode::OK;
        if let Some(stale) = self
            .stale
            .as_ref()
            .filter(|_| good && ttl < STALE_COPY_BELOW)
        {
            stale.insert(key.clone(), cached.clone());
        }
        self.cache.insert(key, cached);
    }

    /// The response for `key`: from the cache, from a fetch in flight, or from a new fetch of
    /// `upstream_path` bounded by `timeout`. The second element says whether this call
    /// started the fetch (a miss) or joined one (coalesced).
    pub(crate) async fn fetch(
        self: &Arc<Self>,
        key: &str,
        upstream_path: &str,
        timeout: Duration,
    ) -> (Outcome, FetchRole) {
        // The common case, a hit, takes no lock of ours.
        if let Some(hit) = self.cache.get(key) {
            return (Ok(hit), FetchRole::Hit);
        }
        let (mut rx, role) = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            // Checked under the lock: a finished fetch is in the cache before it leaves the
            // in-flight map, so nothing is fetched twice.
            if let Some(hit) = self.cache.get(key) {
                return (Ok(hit), FetchRole::Hit);
            }
            match inflight.get(key) {
                Some(rx) => (rx.clone(), FetchRole::Joined),
                None => {
                    let (tx, rx) = watch::channel(None);
                    inflight.insert(key.to_string(), rx.clone());
                    let me = self.clone();
                    let (key, path) = (key.to_string(), upstream_path.to_string());
                    tokio::spawn(async move { me.run(key, path, timeout, tx).await });
                    (rx, FetchRole::Started)
                }
            }
        };
        // Viewers waiting on a fetch in flight (started or joined), until answered or gone.
        let waiting = Waiting::new();
        loop {
            if let Some(outcome) = rx.borrow_and_update().clone() {
                drop(waiting);
                return (outcome, role);
            }
            if rx.changed().await.is_err() {
                return (Err(EdgeError::UpstreamUnreachable), role);
            }
        }
    }

    async fn run(
        &self,
        key: String,
        path: String,
        timeout: Duration,
        tx: watch::Sender<Option<Outcome>>,
    ) {
        metrics::counter!("weir_edge_upstream_requests_total").increment(1);
        let outcome = self.upstream.get(&path, timeout).await.map(|fetched| {
            let ttl = fetched.ttl();
            Arc::new(Cached {
                fetched,
                fetched_at: Instant::now(),
                ttl,
                etag: Default::default(),
                stale: false,
            })
        });
        if let Ok(cached) = &outcome {
            self.store(key.clone(), cached.clone());
        }
        // The upstream failed: the last good copy, if it is recent enough (stale-if-error).
        let outcome = match outcome {
            Ok(c) if c.fetched.status.is_server_error() => self.stale_or(&key, Ok(c)),
            Err(e) if e.is_retryable() => self.stale_or(&key, Err(e)),
            other => other,
        };
        self.inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        tx.send_replace(Some(outcome));
    }
}

/// How a viewer's request was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FetchRole {
    /// From the cache.
    Hit,
    /// It started the upstream fetch.
    Started,
    /// It waited on a fetch another request started.
    Joined,
}

/// One request waiting on an upstream fetch: counted in the gauge
/// `weir_edge_waiting_requests` while it lives (a viewer who leaves is uncounted too).
struct Waiting(metrics::Gauge);

impl Waiting {
    fn new() -> Waiting {
        let gauge = metrics::gauge!("weir_edge_waiting_requests");
        gauge.increment(1.0);
        Waiting(gauge)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}
