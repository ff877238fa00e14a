//! The upstreams an edge may fetch from (origins, or shield edges), in order of preference,
//! and which of them are up. A request goes to the first one up; one that refuses the
//! connection, times out or answers 502/503/504 is marked down and the next is tried at once
//! (passive checks). A probe task asks each down upstream for `/` every [`PROBE_EVERY`]: any
//! HTTP answer within [`PROBE_TIMEOUT`] marks it up again (active checks), so traffic goes
//! back to the preferred upstream when it returns. With every upstream down, they are still
//! tried in order: an edge never refuses a request for want of a healthy upstream.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often down upstreams are probed.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How long a probe waits for an answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// One upstream.
#[derive(Debug)]
pub(crate) struct Target {
    /// Base URL, `http://host:port`, no trailing slash.
    pub(crate) base: String,
    up: AtomicBool,
}

impl Target {
    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Records an answer from this upstream.
    pub(crate) fn mark_up(&self) {
        if !self.up.swap(true, Ordering::Relaxed) {
            tracing::info!(upstream = %self.base, "upstream is up again");
            self.gauge(1.0);
        }
    }

    /// Records a failure of this upstream (connection, timeout, 502/503/504).
    pub(crate) fn mark_down(&self, why: &str) {
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::warn!(upstream = %self.base, why, "upstream marked down; trying the next");
            self.gauge(0.0);
        }
    }

    fn gauge(&self, value: f64) {
        metrics::gauge!("weir_edge_upstream_up", "upstream" => self.base.clone()).set(value);
    }
}

/// The upstreams, most preferred first.
#[derive(Debug)]
pub(crate) struct Targets(Vec<Arc<Target>>);

impl Targets {
    /// `list`: one or more base URLs separated by commas, most preferred first.
    pub(crate) fn parse(list: &str) -> Targets {
        let targets: Vec<Arc<Target>> = list
            .split(',')
            .map(|b| b.trim().trim_end_matches('/'))
            .filter(|b| !b.is_empty())
            .map(|base| {
                let t = Arc::new(Target {
                    base: base.to_string(),
                    up: AtomicBool::new(true),
                });
                t.gauge(1.0);
                t
            })
            .collect();
        Targets(targets)
    }

    /// The most preferred upstream (where reports go).
    pub(crate) fn primary(&self) -> Option<&Arc<Target>> {
        self.0.first()
    }

    /// The order to try them in for one request: those up, then those down, each in order
    /// of preference.
    pub(crate) fn order(&self) -> Vec<Arc<Target>> {
        let (up, down): (Vec<_>, Vec<_>) = self.0.iter().cloned().partition(|t| t.is_up());
        up.into_iter().chain(down).collect()
    }

    /// Probes every down upstream each [`PROBE_EVERY`] until the process ends (only
    /// useful with more than one upstream).
    pub(crate) async fn probe_loop(self: Arc<Self>, client: crate::upstream::UpstreamClient) {
        let mut tick = tokio::time::interval(PROBE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for t in self.0.iter().filter(|t| !t.is_up()) {
                let Ok(uri) = format!("{}/", t.base).parse::<http::Uri>() else {
                    continue;
                };
                let answered = tokio::time::timeout(PROBE_TIMEOUT, client.get(uri))
                    .await
                    .is_ok_and(|r| r.is_ok());
                if answered {
                    t.mark_up();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn up_upstreams_come_first_in_order_of_preference() {
        let t = Targets::parse("http://a:1/, http://b:2,http://c:3");
        let bases = |v: Vec<Arc<Target>>| v.iter().map(|t| t.base.clone()).collect::<Vec<_>>();
        assert_eq!(bases(t.order()), ["http://a:1", "http://b:2", "http://c:3"]);
        t.0[0].mark_down("test");
        assert_eq!(bases(t.order()), ["http://b:2", "http://c:3", "http://a:1"]);
        t.0[2].mark_down("test");
        assert_eq!(bases(t.order()), ["http://b:2", "http://a:1", "http://c:3"]);
        t.0[0].mark_up();
        assert_eq!(bases(t.order()), ["http://a:1", "http://b:2", "http://c:3"]);
        assert_eq!(t.primary().unwrap().base, "http://a:1");
    }
}
