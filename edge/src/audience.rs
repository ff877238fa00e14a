//! Who watches what through this edge: viewers per event (distinct clients seen in the last
//! [`VIEWER_WINDOW`]), requests and cache hits, reported to the upstream every
//! [`REPORT_EVERY`] (`POST /internal/v1/edge-reports`, JSON) and exported as the gauge
//! `weir_edge_viewers{event}`.
//!
//! A viewer is a client address plus its `User-Agent` (hashed): players behind one NAT with
//! different user agents count apart, one player fetching playlist, parts and segments counts
//! once. Memory is bounded: at most [`MAX_VIEWERS_PER_EVENT`] clients per event (a 16th of
//! it per shard of the client map) and
//! [`MAX_EVENTS`] events are tracked; beyond that new ones are not counted.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

/// A client that requested nothing for this long is no longer a viewer.
pub const VIEWER_WINDOW: Duration = Duration::from_secs(30);
/// How often the edge reports to its upstream.
pub const REPORT_EVERY: Duration = Duration::from_secs(5);
/// Clients tracked per event at most.
pub const MAX_VIEWERS_PER_EVENT: usize = 200_000;
/// Events tracked at most.
pub const MAX_EVENTS: usize = 10_000;

/// Client maps per event, each behind its own lock, so that requests of different viewers
/// rarely contend.
const SHARDS: usize = 16;

#[derive(Default)]
struct EventAudience {
    /// Client hash -> when it last asked for something, sharded by the hash.
    clients: [Mutex<HashMap<u64, Instant>>; SHARDS],
    /// Requests and cache hits (HIT or COALESCED) since the last report.
    requests: AtomicU64,
    hits: AtomicU64,
}

/// The audience of every event this edge serves. Recording a request takes the shared read
/// lock of the event map and one shard's lock; only a new event or a report takes the
/// write lock.
#[derive(Default)]
pub(crate) struct Audience {
    events: RwLock<HashMap<String, EventAudience>>,
}

/// One event in a report.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct EventReport {
    pub(crate) event: String,
    pub(crate) viewers: usize,
    pub(crate) requests: u64,
    pub(crate) hits: u64,
}

/// What an edge tells its upstream.
#[derive(Debug, Serialize)]
struct Report<'a> {
    edge: &'a str,
    interval_ms: u64,
    events: Vec<EventReport>,
}

fn client_hash(ip: IpAddr, user_agent: Option<&str>) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ip.hash(&mut h);
    user_agent.hash(&mut h);
    h.finish()
}

impl Audience {
    /// A request for `event` from `ip` with `user_agent`, answered from the cache (`hit`) or
    /// not.
    pub(crate) fn record(
        &self,
        event: &str,
        ip: IpAddr,
        user_agent: Option<&str>,
        hit: bool,
        now: Instant,
    ) {
        let client = client_hash(ip, user_agent);
        {
            let events = self.events.read().unwrap_or_else(|e| e.into_inner());
            if let Some(a) = events.get(event) {
                a.record(client, hit, now);
                return;
            }
        }
        let mut events = self.events.write().unwrap_or_else(|e| e.into_inner());
        // The event's name is copied only the first time it is seen, not per request.
        if !events.contains_key(event) {
            if events.len() >= MAX_EVENTS {
                return;
            }
            events.insert(event.to_string(), EventAudience::default());
        }
        if let Some(a) = events.get(event) {
            a.record(client, hit, now);
        }
    }

    /// Forgets clients idle for [`VIEWER_WINDOW`] and events with none, and returns each
    /// event's viewers and its requests and hits since the last call.
    pub(crate) fn take_report(&self, now: Instant) -> Vec<EventReport> {
        let mut events = self.events.write().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        events.retain(|event, a| {
            let mut viewers = 0;
            for shard in &a.clients {
                let mut clients = shard.lock().unwrap_or_else(|e| e.into_inner());
                clients.retain(|_, seen| now.saturating_duration_since(*seen) < VIEWER_WINDOW);
                viewers += clients.len();
            }
            out.push(EventReport {
                event: event.clone(),
                viewers,
                requests: a.requests.swap(0, Ordering::Relaxed),
                hits: a.hits.swap(0, Ordering::Relaxed),
            });
            viewers > 0
        });
        out.sort_by(|a, b| a.event.cmp(&b.event));
        out
    }
}

impl EventAudience {
    fn record(&self, client: u64, hit: bool, now: Instant) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if hit {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        let shard = &self.clients[(client % SHARDS as u64) as usize];
        let mut clients = shard.lock().unwrap_or_else(|e| e.into_inner());
        let full = clients.len() >= MAX_VIEWERS_PER_EVENT / SHARDS;
        match clients.get_mut(&client) {
            Some(seen) => *seen = now,
            None if !full => {
                clients.insert(client, now);
            }
            None => {}
        }
    }
}

/// How long an event's `weir_edge_*` label sets stay after its last viewer left (its viewer
/// gauge at 0 meanwhile): an edge sees events come and go for months.
pub(crate) const FORGET_UNWATCHED: Duration = Duration::from_secs(3600);

/// Events whose viewers all left, and when.
#[derive(Default)]
struct Unwatched {
    since: HashMap<String, Instant>,
}

impl Unwatched {
    /// Takes out the events unwatched for [`FORGET_UNWATCHED`] by `now`.
    fn expired(&mut self, now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        self.since.retain(|e, at| {
            let keep = now.saturating_duration_since(*at) < FORGET_UNWATCHED;
            if !keep {
                out.push(e.clone());
            }
            keep
        });
        out
    }
}

/// Reports to `upstream` (`http://host:port`) every [`REPORT_EVERY`] as edge `edge`, and sets
/// the viewer gauges (an event's edge label sets are dropped after [`FORGET_UNWATCHED`] with
/// no viewer); runs until dropped. A failed report is logged at debug and skipped.
pub(crate) async fn report_loop(
    audience: Arc<Audience>,
    upstream: String,
    edge: String,
    cluster_secret: Option<weir_config::ClusterSecret>,
) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let url = format!("{upstream}/internal/v1/edge-reports");
    let mut ticker = tokio::time::interval(REPORT_EVERY);
    ticker.tick().await;
    let mut gauged: Vec<String> = Vec::new();
    let mut unwatched = Unwatched::default();
    loop {
        ticker.tick().await;
        let now = Instant::now();
        let events = audience.take_report(now);
        for e in &gauged {
            if !events.iter().any(|r| &r.event == e) {
                metrics::gauge!("weir_edge_viewers", "event" => e.clone()).set(0.0);
                unwatched.since.insert(e.clone(), now);
            }
        }
        for e in &events {
            unwatched.since.remove(&e.event);
        }
        for e in unwatched.expired(now) {
            weir_metrics::forget_edge_event(&e);
        }
        gauged = events.iter().map(|r| r.event.clone()).collect();
        for r in &events {
            metrics::gauge!("weir_edge_viewers", "event" => r.event.clone()).set(r.viewers as f64);
        }
        let report = Report {
            edge: &edge,
            interval_ms: REPORT_EVERY.as_millis() as u64,
            events,
        };
        let Ok(body) = serde_json::to_vec(&report) else {
            continue;
        };
        let mut request =
            http::Request::post(&url).header(http::header::CONTENT_TYPE, "application/json");
        if let Some(secret) = &cluster_secret {
            request = request.header(crate::CLUSTER_SECRET_HEADER, secret.expose());
        }
        let request = request.body(Full::new(Bytes::from(body)));
        let Ok(request) = request else { return };
        match tokio::time::timeout(REPORT_EVERY, client.request(request)).await {
            Ok(Ok(r)) if r.status().is_success() => {}
            Ok(Ok(r)) => tracing::debug!(status = %r.status(), "edge report refused"),
            Ok(Err(e)) => tracing::debug!(error = %e, "edge report failed"),
            Err(_) => tracing::debug!("edge report timed out"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwatched_events_expire_after_the_forget_time_once() {
        let mut u = Unwatched::default();
        let t0 = Instant::now();
        u.since.insert("old".into(), t0);
        u.since.insert("new".into(), t0 + FORGET_UNWATCHED / 2);
        assert!(u.expired(t0 + FORGET_UNWATCHED / 2).is_empty());
        assert_eq!(u.expired(t0 + FORGET_UNWATCHED), ["old"]);
        assert!(
            u.expired(t0 + FORGET_UNWATCHED).is_empty(),
            "taken out once"
        );
        assert_eq!(u.expired(t0 + FORGET_UNWATCHED * 2), ["new"]);
    }

    #[test]
    fn viewers_are_distinct_clients_seen_in_the_window() {
        let a = Audience::default();
        let t0 = Instant::now();
        let ip1: IpAddr = "10.0.0.1".parse().unwrap();
        let ip2: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..5 {
            a.record("ev", ip1, Some("hls.js"), true, t0);
        }
        a.record("ev", ip1, Some("Safari"), false, t0);
        a.record("ev", ip2, None, false, t0 + Duration::from_secs(20));
        a.record("other", ip2, None, true, t0);
        let r = a.take_report(t0 + Duration::from_secs(25));
        assert_eq!(
            r,
            vec![
                EventReport {
                    event: "ev".into(),
                    viewers: 3,
                    requests: 7,
                    hits: 5
                },
                EventReport {
                    event: "other".into(),
                    viewers: 1,
                    requests: 1,
                    hits: 1
                },
            ]
        );
        // 35 s on, only the client seen at 20 s is left; counters restart from zero. An event
        // whose last viewer left is reported once with none, then forgotten.
        let r = a.take_report(t0 + Duration::from_secs(35));
        let none = |event: &str, viewers| EventReport {
            event: event.into(),
            viewers,
            requests: 0,
            hits: 0,
        };
        assert_eq!(r, vec![none("ev", 1), none("other", 0)]);
        assert_eq!(
            a.take_report(t0 + Duration::from_secs(36)),
            vec![none("ev", 1)]
        );
        // An event with no viewer left is forgotten.
        assert!(a
            .take_report(t0 + Duration::from_secs(60))
            .iter()
            .all(|e| e.viewers == 0));
        assert!(a.take_report(t0 + Duration::from_secs(61)).is_empty());
    }
}
