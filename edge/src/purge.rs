//! Purging an event's objects from this edge: `POST /internal/v1/purge/{event}`, from the
//! control plane (the admin API's `POST /admin/v1/events/{id}/purge`) with the cluster
//! secret (or, for the edge inside `weir serve`, the secret that process made). Every cached
//! object under `/live/{event}/` (playlists with or without directives, init segments,
//! segments, parts, cached 404s), its last good copies, and the event's access policy are
//! dropped; the next request for each is a miss. Answers `{"purged": N}` (entries dropped).

use moka::sync::Cache;
use std::sync::Arc;

use crate::coalesce::Cached;

/// Drops every entry of `cache` whose key is one of `event`'s; returns how many.
pub(crate) fn purge_event(cache: &Cache<String, Arc<Cached>>, event: &str) -> u64 {
    let objects = format!("/live/{event}/");
    let policy = crate::policy::policy_path(event);
    let doomed: Vec<Arc<String>> = cache
        .iter()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with(&objects) || **k == policy)
        .collect();
    for k in &doomed {
        cache.invalidate(k.as_str());
    }
    doomed.len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coalesce::tests::object;

    #[test]
    fn only_the_events_entries_go() {
        let cache: Cache<String, Arc<Cached>> = Cache::new(1000);
        for k in [
            "/live/a/master.m3u8",
            "/live/a/720p/index.m3u8?_HLS_msn=5&_HLS_part=1",
            "/live/a/720p/s1/5.m4s",
            "/internal/v1/events/a/access",
            "/live/ab/master.m3u8",
            "/live/b/720p/s1/5.m4s",
            "/internal/v1/events/ab/access",
        ] {
            cache.insert(k.to_string(), object(1));
        }
        assert_eq!(purge_event(&cache, "a"), 4);
        cache.run_pending_tasks();
        let mut left: Vec<String> = cache.iter().map(|(k, _)| (*k).clone()).collect();
        left.sort();
        assert_eq!(
            left,
            [
                "/internal/v1/events/ab/access",
                "/live/ab/master.m3u8",
                "/live/b/720p/s1/5.m4s"
            ]
        );
    }
}
