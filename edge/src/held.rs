//! What the edge's cache holds, by kind of object, for `/metrics`:
//! `weir_edge_cache_bytes{kind}` (body bytes) and `weir_edge_cache_objects{kind}`, where kind
//! is the route's (master, playlist, init, segment, part) or `other` (access policies), and
//! `weir_edge_stale_copies_bytes` for the last good copies kept for stale-if-error. Counted
//! every [`HELD_EVERY`] by walking the cache (a live edge holds thousands of objects, not
//! millions), after moka has dropped what expired.

use std::sync::Arc;
use std::time::Duration;

use weir_url::Route;

use crate::coalesce::Coalescer;

/// How often the gauges are refreshed.
pub const HELD_EVERY: Duration = Duration::from_secs(2);

/// Kinds counted, in order; the last one is everything that is not a viewer route.
const KINDS: [&str; 6] = ["master", "playlist", "init", "segment", "part", "other"];

/// The kind of object under cache key `key` (a path, perhaps with a query).
fn kind_of(key: &str) -> usize {
    let path = key.split('?').next().unwrap_or(key);
    let kind = Route::parse(path).map_or("other", |r| r.kind());
    KINDS
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(KINDS.len() - 1)
}

/// Bytes and objects per kind of the cache's current entries.
pub(crate) fn held(coalescer: &Coalescer) -> ([u64; 6], [u64; 6]) {
    coalescer.cache.run_pending_tasks();
    let (mut bytes, mut objects) = ([0u64; 6], [0u64; 6]);
    for (key, value) in coalescer.cache.iter() {
        let k = kind_of(&key);
        bytes[k] += value.fetched.body.len() as u64;
        objects[k] += 1;
    }
    (bytes, objects)
}

/// Refreshes the gauges every [`HELD_EVERY`]; runs until dropped.
pub(crate) async fn gauge_loop(coalescer: Arc<Coalescer>) {
    let bytes = KINDS.map(|k| metrics::gauge!("weir_edge_cache_bytes", "kind" => k));
    let objects = KINDS.map(|k| metrics::gauge!("weir_edge_cache_objects", "kind" => k));
    let stale = metrics::gauge!("weir_edge_stale_copies_bytes");
    let mut ticker = tokio::time::interval(HELD_EVERY);
    loop {
        ticker.tick().await;
        let (b, o) = held(&coalescer);
        for i in 0..KINDS.len() {
            bytes[i].set(b[i] as f64);
            objects[i].set(o[i] as f64);
        }
        stale.set(coalescer.stale_bytes() as f64);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_counted_by_their_route_kind() {
        let cases = [
            ("/live/e/master.m3u8", "master"),
            ("/live/e/r/index.m3u8?_HLS_msn=3&_HLS_part=1", "playlist"),
            ("/live/e/r/s1/init.mp4", "init"),
            ("/live/e/r/s1/12.m4s", "segment"),
            ("/live/e/r/s1/12.3.m4s", "part"),
            ("/internal/v1/events/e/access", "other"),
        ];
        for (key, kind) in cases {
            assert_eq!(super::KINDS[super::kind_of(key)], kind, "{key}");
        }
    }
}
