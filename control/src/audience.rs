//! What the edges report (`POST /internal/v1/edge-reports`, every 5 s each): viewers, requests
//! and cache hits per event. Kept per edge; a report older than [`STALE_AFTER`] no longer
//! counts (the edge is gone). Bounded: [`MAX_EDGES`] edges.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A report older than this no longer counts.
pub(crate) const STALE_AFTER: Duration = Duration::from_secs(15);
/// Edges whose reports are kept at most.
pub(crate) const MAX_EDGES: usize = 1_000;

/// One event in an edge's report.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EdgeEventReport {
    pub(crate) event: String,
    pub(crate) viewers: u64,
    pub(crate) requests: u64,
    pub(crate) hits: u64,
}

/// An edge's report.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EdgeReport {
    pub(crate) edge: String,
    #[allow(dead_code)] // Part of the wire format; the receiver keeps its own clock.
    pub(crate) interval_ms: u64,
    pub(crate) events: Vec<EdgeEventReport>,
}

/// Viewers of an event at one edge.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct EdgeViewers {
    /// The edge's name (`edge.id`).
    pub edge: String,
    /// Distinct clients seen in the last 30 s.
    pub viewers: u64,
}

/// The newest report of every edge.
#[derive(Debug, Default)]
pub(crate) struct EdgeReports {
    edges: Mutex<HashMap<String, (Instant, EdgeReport)>>,
}

impl EdgeReports {
    /// Keeps `report` as its edge's newest; `false` if the edge table is full.
    pub(crate) fn record(&self, report: EdgeReport, now: Instant) -> bool {
        let mut edges = self.edges.lock().unwrap_or_else(|e| e.into_inner());
        edges.retain(|_, (at, _)| now.saturating_duration_since(*at) < STALE_AFTER);
        if !edges.contains_key(&report.edge) && edges.len() >= MAX_EDGES {
            return false;
        }
        edges.insert(report.edge.clone(), (now, report));
        true
    }

    /// `event`'s viewers per edge and its cache hit ratio over the newest reports.
    pub(crate) fn for_event(&self, event: &str, now: Instant) -> (Vec<EdgeViewers>, Option<f64>) {
        let edges = self.edges.lock().unwrap_or_else(|e| e.into_inner());
        let (mut viewers, mut requests, mut hits) = (Vec::new(), 0, 0);
        for (at, report) in edges.values() {
            if now.saturating_duration_since(*at) >= STALE_AFTER {
                continue;
            }
            for e in report.events.iter().filter(|e| e.event == event) {
                viewers.push(EdgeViewers {
                    edge: report.edge.clone(),
                    viewers: e.viewers,
                });
                requests += e.requests;
                hits += e.hits.min(e.requests);
            }
        }
        viewers.sort_by(|a, b| a.edge.cmp(&b.edge));
        let ratio = (requests > 0).then(|| hits as f64 / requests as f64);
        (viewers, ratio)
    }
}
