//! The edge's per-request counters, resolved once when the edge starts: a labelled
//! `metrics::counter!` looks its label set up in the recorder's registry on every call
//! (hashing and a shared lock), which a cache hit should not pay.
//!
//! - `weir_edge_requests_total{kind, cache_status}`: `kind` is the route's
//!   ([`weir_url::Route::kind`]: master, playlist, init, segment, part, key), `cache_status`
//!   `HIT`, `MISS` or `COALESCED`;
//! - `weir_edge_bytes_sent_total{kind}`: body bytes answered (streamed misses counted at
//!   their `Content-Length`).

use metrics::Counter;

/// Route kinds, in [`weir_url::Route::kind`]'s spelling.
const KINDS: [&str; 6] = ["master", "playlist", "init", "segment", "part", "key"];
/// Cache statuses.
const STATUSES: [&str; 3] = ["HIT", "MISS", "COALESCED"];

/// Handles to the request counters.
pub(crate) struct Counters {
    requests: [[Counter; 3]; 6],
    bytes: [Counter; 6],
}

impl Counters {
    /// Registers every label set with the installed recorder.
    pub(crate) fn new() -> Counters {
        Counters {
            requests: KINDS.map(|kind| {
                STATUSES.map(|status| {
                    metrics::counter!("weir_edge_requests_total", "kind" => kind, "cache_status" => status)
                })
            }),
            bytes: KINDS.map(|kind| metrics::counter!("weir_edge_bytes_sent_total", "kind" => kind)),
        }
    }

    /// Counts one request of `kind` answered with `status`.
    pub(crate) fn request(&self, kind: &str, status: &str) {
        let s = STATUSES.iter().position(|s| *s == status).unwrap_or(1);
        self.requests[kind_index(kind)][s].increment(1);
    }

    /// Counts `bytes` sent for a request of `kind`.
    pub(crate) fn sent(&self, kind: &str, bytes: u64) {
        self.bytes[kind_index(kind)].increment(bytes);
    }
}

fn kind_index(kind: &str) -> usize {
    KINDS.iter().position(|k| *k == kind).unwrap_or(3)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_route_kind_has_its_counter() {
        use weir_url::Route;
        for path in [
            "/live/e/master.m3u8",
            "/live/e/r/index.m3u8",
            "/live/e/r/s1/init.mp4",
            "/live/e/r/s1/1.m4s",
            "/live/e/r/s1/1.0.m4s",
            "/keys/e/0123456789abcdef",
        ] {
            let route = Route::parse(path).unwrap_or_else(|| panic!("{path} parses"));
            assert!(super::KINDS.contains(&route.kind()), "{}", route.kind());
        }
    }
}
