//! Each event's access policy (tokens, geo, viewers per token), as the origin says:
//! `GET /internal/v1/events/{event}/access` (with the cluster secret, if configured), fetched
//! through the edge's own cache and coalescing (one upstream request per event per
//! `max-age`, 2 s at a weir origin), parsed once per version.
//!
//! An event the origin does not know is a 404 for the viewer, without asking for the object.
//! When the upstream cannot answer (down, slow, 5xx), the last policy it gave for the event
//! stays in force, and the edge waits [`RETRY_AFTER_FAILURE`] before asking again, so cached
//! objects keep being served to the viewers that policy admits. An event never seen while
//! the upstream is away cannot be checked: 502.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use http::StatusCode;
use weir_config::{AccessOptions, AccessPolicy};

use crate::coalesce::{Cached, Coalescer};
use crate::EdgeError;

/// After a failed policy fetch, the last known policy is used without asking for this long.
pub(crate) const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(2);

/// Most events whose policy is remembered (beyond it, the oldest half is forgotten).
const MAX_EVENTS: usize = 10_000;

/// The upstream path of `event`'s policy.
pub(crate) fn policy_path(event: &str) -> String {
    format!("/internal/v1/events/{event}/access")
}

struct Known {
    /// The response it was parsed from (compared by pointer: a new fetch is a new `Arc`).
    from: Arc<Cached>,
    policy: Arc<AccessPolicy>,
    /// Until when `from` is fresh (its fetch time plus TTL): the policy is used without
    /// looking in the cache until then.
    fresh_until: Instant,
    /// When a fetch last failed, if the last attempt did.
    failed_at: Option<Instant>,
}

/// The policies, by event.
#[derive(Default)]
pub(crate) struct Policies {
    known: RwLock<HashMap<String, Known>>,
}

impl Policies {
    fn lock(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Known>> {
        self.known.write().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Known>> {
        self.known.read().unwrap_or_else(|e| e.into_inner())
    }

    /// `event`'s policy at `now`.
    ///
    /// # Errors
    /// [`EdgeError::NotFound`] if the origin does not know the event;
    /// [`EdgeError::UpstreamUnreachable`]/[`EdgeError::UpstreamTimeout`] if it cannot say
    /// and no earlier answer is known.
    pub(crate) async fn get(
        &self,
        event: &str,
        coalescer: &Arc<Coalescer>,
        timeout: Duration,
        now: Instant,
    ) -> Result<Arc<AccessPolicy>, EdgeError> {
        if let Some(policy) = self.current(event, now) {
            return Ok(policy);
        }
        // Asking the upstream: boxed, so that a hit's future stays small.
        Box::pin(self.ask(event, coalescer, timeout)).await
    }

    /// [`Policies::get`] past the known policy: asks the upstream for `event`'s.
    async fn ask(
        &self,
        event: &str,
        coalescer: &Arc<Coalescer>,
        timeout: Duration,
    ) -> Result<Arc<AccessPolicy>, EdgeError> {
        let path = policy_path(event);
        let (outcome, _) = coalescer.fetch(&path, &path, timeout).await;
        let failure = match outcome {
            Ok(cached) if cached.fetched.head.status == StatusCode::OK => {
                return self.parsed(event, cached);
            }
            Ok(cached) if cached.fetched.head.status == StatusCode::NOT_FOUND => {
                self.lock().remove(event);
                return Err(EdgeError::NotFound);
            }
            Ok(cached) => {
                tracing::warn!(event, status = cached.fetched.head.status.as_u16(),
                    "the upstream refused the event's access policy (is [access] cluster_secret the same on both?)");
                EdgeError::UpstreamUnreachable
            }
            Err(e) => e,
        };
        let mut known = self.lock();
        match known.get_mut(event) {
            Some(k) => {
                k.failed_at = Some(Instant::now());
                Ok(k.policy.clone())
            }
            None => Err(failure),
        }
    }

    /// The common case, a fresh policy, or a recent failure: the last known policy at `now`,
    /// without asking (one shared read lock, no cache lookup); `None`: ask ([`Policies::get`]).
    pub(crate) fn current(&self, event: &str, now: Instant) -> Option<Arc<AccessPolicy>> {
        let known = self.read();
        let k = known.get(event)?;
        let usable = now < k.fresh_until
            || k.failed_at
                .is_some_and(|t| now.saturating_duration_since(t) < RETRY_AFTER_FAILURE);
        usable.then(|| k.policy.clone())
    }

    /// Forgets `event`'s policy (a purge): the next request asks the upstream.
    pub(crate) fn forget(&self, event: &str) {
        self.lock().remove(event);
    }

    fn parsed(&self, event: &str, cached: Arc<Cached>) -> Result<Arc<AccessPolicy>, EdgeError> {
        // The common case: the same cached object as last time, already parsed.
        if let Some(k) = self.read().get(event) {
            if Arc::ptr_eq(&k.from, &cached) && k.failed_at.is_none() {
                return Ok(k.policy.clone());
            }
        }
        let mut known = self.lock();
        if let Some(k) = known.get_mut(event) {
            if Arc::ptr_eq(&k.from, &cached) {
                k.failed_at = None;
                return Ok(k.policy.clone());
            }
        }
        let options: AccessOptions = serde_json::from_slice(&cached.fetched.body).map_err(|e| {
            tracing::warn!(event, error = %e, "unreadable access policy from the upstream");
            EdgeError::UpstreamUnreachable
        })?;
        let policy = Arc::new(AccessPolicy::validate(event, &options).map_err(|e| {
            tracing::warn!(event, error = %e, "invalid access policy from the upstream");
            EdgeError::UpstreamUnreachable
        })?);
        if known.len() >= MAX_EVENTS && !known.contains_key(event) {
            let drop: Vec<String> = known.keys().take(MAX_EVENTS / 2).cloned().collect();
            for k in drop {
                known.remove(&k);
            }
        }
        known.insert(
            event.to_string(),
            Known {
                fresh_until: cached.fetched_at + cached.ttl.unwrap_or_default(),
                from: cached,
                policy: policy.clone(),
                failed_at: None,
            },
        );
        Ok(policy)
    }
}
