//! The lookup/coalesce and upstream phases: one upstream request per cache key however many
//! viewers ask at once. The fetch runs as a task of its own, detached from the viewer that
//! started it: a viewer that goes away neither cancels it nor makes the others start again.
//! A media object's body is streamed to its waiters as it arrives ([`crate::filling`]); at
//! most `max_waiters` requests wait on one fetch (the rest get 503). A playlist refresh
//! slower than the stale-while-revalidate limit is answered with the last good copy while
//! the fetch goes on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use moka::Expiry;
use tokio::sync::watch;

pub(crate) use crate::cached::Cached;
use crate::filling::{receive, Filling};
use crate::upstream::{collect, Fetched, Upstream};
use crate::EdgeError;

/// What a fetch gives every viewer that waited on it.
pub(crate) type Outcome = Result<Arc<Cached>, EdgeError>;

/// What a fetch in flight has to tell its waiters.
#[derive(Clone, Debug)]
enum Progress {
    /// A media object's body is arriving.
    Streaming(Arc<Filling>),
    /// The fetch is over.
    Done(Outcome),
}

/// What a viewer gets: an object whole (from the cache or a finished fetch), or one whose
/// body is still arriving.
#[derive(Debug)]
pub(crate) enum Answer {
    Whole(Arc<Cached>),
    Streaming(Arc<Filling>),
}

/// How a request takes part in a fetch.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Wait {
    /// A media object: a fetch this request starts streams a `200` body to its waiters.
    pub(crate) media: bool,
    /// This request takes a body still arriving (not a `HEAD`, `Range` or conditional one,
    /// which need the whole object).
    pub(crate) take_stream: bool,
    /// Answer with the last good copy (`X-Cache: STALE`) if the fetch takes longer than
    /// this; the fetch goes on and refreshes the cache.
    pub(crate) stale_after: Option<Duration>,
}

/// A fetch in flight: its progress, and how many requests wait on it.
struct Inflight {
    progress: watch::Receiver<Option<Progress>>,
    waiters: Arc<AtomicUsize>,
}

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
        // Recency, not frequency: a live edge must admit the newest segment, which nobody
        // has asked for yet, over an old one many asked for (TinyLFU, moka's default, may
        // refuse it).
        .eviction_policy(EvictionPolicy::lru())
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
    inflight: Mutex<HashMap<String, Inflight>>,
    upstream: Upstream,
    /// Most requests waiting on one fetch; more get [`EdgeError::Overloaded`].
    max_waiters: usize,
}

impl Coalescer {
    /// A cache of `capacity_bytes`; with a non-zero `stale_if_error`, a failed upstream fetch
    /// of a short-lived object is answered with its last good copy if it expired less than
    /// that long ago.
    pub(crate) fn new(
        capacity_bytes: u64,
        upstream: Upstream,
        stale_if_error: Duration,
        max_waiters: usize,
    ) -> Coalescer {
        let cache = cache(capacity_bytes, Duration::ZERO);
        let stale =
            (!stale_if_error.is_zero()).then(|| cache_of_stale(capacity_bytes, stale_if_error));
        Coalescer {
            cache,
            stale,
            inflight: Mutex::new(HashMap::new()),
            upstream,
            max_waiters: max_waiters.max(1),
        }
    }

    /// The last good copy of `key` (for a blocking playlist request, of the plain playlist)
    /// marked stale, or `fallback`.
    fn stale_or(&self, key: &str, fallback: Outcome) -> Outcome {
        self.stale_copy(key).map(Ok).unwrap_or(fallback)
    }

    /// The last good copy of `key` (for a blocking playlist request, of the plain playlist)
    /// marked stale, counted in `weir_edge_stale_served_total`.
    fn stale_copy(&self, key: &str) -> Option<Arc<Cached>> {
        let plain = key.split('?').next().unwrap_or(key);
        let copy = self
            .stale
            .as_ref()
            .and_then(|s| s.get(key).or_else(|| s.get(plain)))?;
        metrics::counter!("weir_edge_stale_served_total").increment(1);
        Some(Arc::new(Cached {
            fetched: copy.fetched.clone(),
            fetched_at: copy.fetched_at,
            ttl: None,
            derived: Default::default(),
            stale: true,
        }))
    }

    /// Drops every cached object of `event` and its last good copies
    /// ([`crate::purge::purge_event`]); returns how many cache entries went.
    pub(crate) fn purge(&self, event: &str) -> u64 {
        if let Some(stale) = &self.stale {
            crate::purge::purge_event(stale, event);
        }
        crate::purge::purge_event(&self.cache, event)
    }

    /// Body bytes of the last good copies kept for stale-if-error.
    pub(crate) fn stale_bytes(&self) -> u64 {
        self.stale.as_ref().map_or(0, |s| {
            s.run_pending_tasks();
            s.iter().map(|(_, v)| v.fetched.body.len() as u64).sum()
        })
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
        let good = cached.fetched.head.status == http::StatusCode::OK;
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
    /// `upstream_path` bounded by `timeout`, whole. The second element says whether this
    /// call started the fetch (a miss) or joined one (coalesced).
    pub(crate) async fn fetch(
        self: &Arc<Self>,
        key: &str,
        upstream_path: &str,
        timeout: Duration,
    ) -> (Outcome, FetchRole) {
        let (answer, role) = self
            .fetch_with(key, upstream_path, timeout, Wait::default())
            .await;
        let outcome = match answer {
            Ok(Answer::Whole(cached)) => Ok(cached),
            // Not taken without `take_stream`.
            Ok(Answer::Streaming(_)) => Err(EdgeError::UpstreamUnreachable),
            Err(e) => Err(e),
        };
        (outcome, role)
    }

    /// As [`Coalescer::fetch`], taking part as `wait` says: a media object's body may come
    /// while it arrives, a slow refresh may be answered with the last good copy.
    pub(crate) async fn fetch_with(
        self: &Arc<Self>,
        key: &str,
        upstream_path: &str,
        timeout: Duration,
        wait: Wait,
    ) -> (Result<Answer, EdgeError>, FetchRole) {
        // The common case, a hit, takes no lock of ours; the rest is boxed, so a hit's
        // future (and its caller's) stays small.
        if let Some(hit) = self.cache.get(key) {
            return (Ok(Answer::Whole(hit)), FetchRole::Hit);
        }
        Box::pin(self.join_or_start(key, upstream_path, timeout, wait)).await
    }

    /// [`Coalescer::fetch_with`] past the lookup: joins the fetch of `key` in flight, or
    /// starts it.
    async fn join_or_start(
        self: &Arc<Self>,
        key: &str,
        upstream_path: &str,
        timeout: Duration,
        wait: Wait,
    ) -> (Result<Answer, EdgeError>, FetchRole) {
        let (mut rx, waiters, role) = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            // Checked under the lock: a finished fetch is in the cache before it leaves the
            // in-flight map, so nothing is fetched twice.
            if let Some(hit) = self.cache.get(key) {
                return (Ok(Answer::Whole(hit)), FetchRole::Hit);
            }
            match inflight.get(key) {
                Some(f) => {
                    if f.waiters.load(Ordering::Relaxed) >= self.max_waiters {
                        metrics::counter!("weir_edge_waiters_refused_total").increment(1);
                        return (Err(EdgeError::Overloaded), FetchRole::Joined);
                    }
                    (f.progress.clone(), f.waiters.clone(), FetchRole::Joined)
                }
                None => {
                    let (tx, rx) = watch::channel(None);
                    let waiters = Arc::new(AtomicUsize::new(0));
                    inflight.insert(
                        key.to_string(),
                        Inflight {
                            progress: rx.clone(),
                            waiters: waiters.clone(),
                        },
                    );
                    let me = self.clone();
                    let (key, path) = (key.to_string(), upstream_path.to_string());
                    let media = wait.media;
                    tokio::spawn(async move { me.run(key, path, timeout, media, tx).await });
                    (rx, waiters, FetchRole::Started)
                }
            }
        };
        // Viewers waiting on a fetch in flight (started or joined), until answered or gone.
        let _waiting = Waiting::new(waiters);
        let mut stale_at = wait.stale_after.map(|d| tokio::time::Instant::now() + d);
        loop {
            match rx.borrow_and_update().clone() {
                Some(Progress::Done(outcome)) => return (outcome.map(Answer::Whole), role),
                Some(Progress::Streaming(f)) if wait.take_stream => {
                    return (Ok(Answer::Streaming(f)), role)
                }
                _ => {}
            }
            let Some(at) = stale_at else {
                if rx.changed().await.is_err() {
                    return (Err(EdgeError::UpstreamUnreachable), role);
                }
                continue;
            };
            tokio::select! {
                changed = rx.changed() => if changed.is_err() {
                    return (Err(EdgeError::UpstreamUnreachable), role);
                },
                () = tokio::time::sleep_until(at) => {
                    // Slower than allowed: the last good copy if there is one; the fetch
                    // goes on for the cache.
                    if let Some(copy) = self.stale_copy(key) {
                        return (Ok(Answer::Whole(copy)), role);
                    }
                    stale_at = None;
                }
            }
        }
    }

    async fn run(
        &self,
        key: String,
        path: String,
        timeout: Duration,
        media: bool,
        tx: watch::Sender<Option<Progress>>,
    ) {
        metrics::counter!("weir_edge_upstream_requests_total").increment(1);
        let deadline = tokio::time::Instant::now() + timeout;
        let fetched = match self.upstream.open(&path, deadline).await {
            Err(e) => Err(e),
            Ok((head, body)) if media && head.status == http::StatusCode::OK => {
                let filling = Filling::new(head);
                tx.send_replace(Some(Progress::Streaming(filling.clone())));
                receive(body, &filling, deadline)
                    .await
                    .map(|body| Fetched::new(filling.head.clone(), body))
            }
            Ok((head, body)) => collect(body, deadline)
                .await
                .map(|body| Fetched::new(head, body)),
        };
        let outcome = fetched.map(|fetched| {
            let ttl = fetched.ttl();
            Arc::new(Cached {
                fetched,
                fetched_at: Instant::now(),
                ttl,
                derived: Default::default(),
                stale: false,
            })
        });
        if let Ok(cached) = &outcome {
            self.store(key.clone(), cached.clone());
        }
        // The upstream failed: the last good copy, if it is recent enough (stale-if-error).
        let outcome = match outcome {
            Ok(c) if c.fetched.head.status.is_server_error() => self.stale_or(&key, Ok(c)),
            Err(e) if e.is_retryable() => self.stale_or(&key, Err(e)),
            other => other,
        };
        self.inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        tx.send_replace(Some(Progress::Done(outcome)));
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
/// `weir_edge_waiting_requests` and in its fetch's waiters while it lives (a viewer who
/// leaves is uncounted too).
struct Waiting(metrics::Gauge, Arc<AtomicUsize>);

impl Waiting {
    fn new(waiters: Arc<AtomicUsize>) -> Waiting {
        let gauge = metrics::gauge!("weir_edge_waiting_requests");
        gauge.increment(1.0);
        waiters.fetch_add(1, Ordering::Relaxed);
        Waiting(gauge, waiters)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.decrement(1.0);
        self.1.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::upstream::Fetched;

    /// A cached `200` of `bytes` zero bytes, stored for an hour.
    pub(crate) fn object(bytes: usize) -> Arc<Cached> {
        Arc::new(Cached {
            fetched: Fetched::new(
                crate::filling::Head {
                    status: http::StatusCode::OK,
                    content_type: None,
                    cache_control: None,
                    cdn_cache_control: None,
                    age: 0,
                    content_length: None,
                },
                bytes::Bytes::from(vec![0u8; bytes]),
            ),
            fetched_at: Instant::now(),
            ttl: Some(Duration::from_secs(3600)),
            derived: Default::default(),
            stale: false,
        })
    }

    #[test]
    fn the_newest_live_object_is_admitted_over_old_popular_ones() {
        // Room for about four 1 MiB segments.
        let cache = cache(4 * 1024 * 1024 + 8 * 1024, Duration::ZERO);
        for n in 0..4 {
            cache.insert(format!("/old/{n}.m4s"), object(1024 * 1024));
        }
        cache.run_pending_tasks();
        // Everyone watched the old segments many times.
        for _ in 0..50 {
            for n in 0..4 {
                assert!(cache.get(&format!("/old/{n}.m4s")).is_some());
            }
        }
        // The live edge moves on: each new segment, asked for once so far, must be kept.
        for n in 0..3 {
            let key = format!("/new/{n}.m4s");
            cache.insert(key.clone(), object(1024 * 1024));
            cache.run_pending_tasks();
            assert!(cache.get(&key).is_some(), "{key} was refused");
        }
        assert!(
            cache.get("/old/0.m4s").is_none(),
            "the least recently used went"
        );
    }
}
