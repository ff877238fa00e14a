//! Live playlist freshness: while viewers ask an edge for a media playlist without delivery
//! directives, the edge follows it at the origin with blocking playlist reloads
//! (RFC 8216bis §6.2.5.2), asking for the next part (or segment) each time, and swaps every
//! new version into the cache as it arrives. A plain request therefore sees a new part as
//! soon as the origin has it (one round trip later), instead of up to a whole `max-age`
//! later, and the follower costs one upstream request per part, whatever the audience.
//!
//! It stops when nobody asked for the plain playlist for [`IDLE`], or when the upstream does
//! not support blocking reload (then the cache's TTL alone applies).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::coalesce::{Cached, Coalescer};

/// A follower with no plain request for this long stops.
pub(crate) const IDLE: Duration = Duration::from_secs(10);

/// Where a playlist's live edge is, read from its text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LiveEdge {
    /// The next (msn, part) to ask for with `_HLS_msn`/`_HLS_part`; part `None` when the
    /// playlist lists no parts.
    pub(crate) next: (u64, Option<u64>),
}

/// Reads a media playlist: `None` if it does not offer blocking reload, has ended, or lists
/// nothing.
pub(crate) fn live_edge(text: &str) -> Option<LiveEdge> {
    let mut can_block = false;
    let mut sequence = None;
    let mut segments = 0u64;
    let mut parts_since_segment = 0u64;
    let mut parts_of_last_segment = 0u64;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("#EXT-X-SERVER-CONTROL:") {
            can_block = v.split(',').any(|a| a.trim() == "CAN-BLOCK-RELOAD=YES");
        } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            sequence = v.trim().parse::<u64>().ok();
        } else if let Some(v) = line.strip_prefix("#EXT-X-SKIP:") {
            let n = v
                .split(',')
                .find_map(|a| a.strip_prefix("SKIPPED-SEGMENTS="));
            segments += n.and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
        } else if line.starts_with("#EXT-X-ENDLIST") {
            return None;
        } else if line.starts_with("#EXT-X-PART:") {
            parts_since_segment += 1;
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            segments += 1;
            parts_of_last_segment = parts_since_segment;
            parts_since_segment = 0;
        }
    }
    let first = sequence.unwrap_or(0);
    if !can_block || (segments == 0 && parts_since_segment == 0) {
        return None;
    }
    let next = if parts_since_segment > 0 {
        // The segment being built: its next part.
        (first + segments, Some(parts_since_segment))
    } else if parts_of_last_segment > 0 {
        // The last segment is complete: past its last part means part 0 of the next one.
        (first + segments - 1, Some(parts_of_last_segment))
    } else {
        (first + segments, None)
    };
    Some(LiveEdge { next })
}

/// The playlists being followed, by path.
pub(crate) struct Followers {
    active: Mutex<HashMap<String, Arc<AtomicU64>>>,
    /// The clock `seen` times count from, ms.
    epoch: Instant,
}

impl Followers {
    pub(crate) fn new() -> Followers {
        Followers {
            active: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// A viewer asked for the plain playlist at `path`: follow it (start a follower if none
    /// runs), asking the upstream with blocking reloads bounded by `blocking_timeout`.
    pub(crate) fn touch(
        self: &Arc<Self>,
        path: &str,
        coalescer: &Arc<Coalescer>,
        blocking_timeout: Duration,
    ) {
        let now = self.now_ms();
        let mut active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(seen) = active.get(path) {
            seen.store(now, Ordering::Relaxed);
            return;
        }
        let seen = Arc::new(AtomicU64::new(now));
        active.insert(path.to_string(), seen.clone());
        let (me, coalescer, path) = (self.clone(), coalescer.clone(), path.to_string());
        tokio::spawn(async move {
            me.follow(&path, &coalescer, blocking_timeout, &seen).await;
            me.active
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&path);
        });
    }

    async fn follow(
        &self,
        path: &str,
        coalescer: &Arc<Coalescer>,
        blocking_timeout: Duration,
        seen: &AtomicU64,
    ) {
        metrics::gauge!("weir_edge_followed_playlists").increment(1.0);
        let mut current = coalescer.hit(path);
        // What the upstream says of the plain playlist, which viewers are told too.
        let last_plain_ttl = current.as_ref().and_then(|c| c.ttl);
        let plain_cache_control = current
            .as_ref()
            .and_then(|c| c.fetched.head.cache_control.clone());
        while self.now_ms().saturating_sub(seen.load(Ordering::Relaxed)) < IDLE.as_millis() as u64 {
            let Some(plain) = current
                .take()
                .filter(|c| c.fetched.head.status.is_success())
            else {
                break;
            };
            let Some(edge) = std::str::from_utf8(&plain.fetched.body)
                .ok()
                .and_then(live_edge)
            else {
                break;
            };
            let query = match edge.next {
                (msn, Some(part)) => format!("_HLS_msn={msn}&_HLS_part={part}"),
                (msn, None) => format!("_HLS_msn={msn}"),
            };
            let key = format!("{path}?{query}");
            let (outcome, _) = coalescer.fetch(&key, &key, blocking_timeout).await;
            match outcome {
                Ok(next) if next.fetched.head.status.is_success() => {
                    // The new version under the plain key, as fresh as the origin's. While
                    // it is followed, the copy lives as long as a blocking request may wait
                    // (the follower replaces it first); a slow part does not expire it.
                    let mut fetched = next.fetched.clone();
                    fetched.head.cache_control.clone_from(&plain_cache_control);
                    let swapped = Arc::new(Cached {
                        fetched,
                        fetched_at: Instant::now(),
                        ttl: Some(blocking_timeout),
                        derived: Default::default(),
                        stale: false,
                    });
                    coalescer.store(path.to_string(), swapped.clone());
                    current = Some(swapped);
                }
                // 503 (nothing new in three target durations), 400, or the upstream is
                // away: stop following.
                other => {
                    let status = other.as_ref().map(|c| c.fetched.head.status.as_u16()).ok();
                    tracing::info!(path, query, ?status, "playlist follower stopped");
                    current = Some(plain);
                    break;
                }
            }
        }
        // Unfollowed, the newest copy expires as the upstream's Cache-Control says.
        if let Some(last) = current.or_else(|| coalescer.hit(path)) {
            let age = last.fetched_at.elapsed();
            let ttl = last_plain_ttl.and_then(|t| t.checked_sub(age));
            match ttl {
                Some(ttl) if !ttl.is_zero() => coalescer.store(
                    path.to_string(),
                    Arc::new(Cached {
                        fetched: last.fetched.clone(),
                        fetched_at: last.fetched_at,
                        ttl: Some(ttl),
                        derived: Default::default(),
                        stale: false,
                    }),
                ),
                _ => coalescer.cache.invalidate(path),
            }
        }
        metrics::gauge!("weir_edge_followed_playlists").decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n\
        #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.0,HOLD-BACK=6.0\n\
        #EXT-X-MEDIA-SEQUENCE:100\n";

    #[test]
    fn finds_the_next_part_or_segment() {
        let open = format!(
            "{HEAD}#EXTINF:2.0,\na/100.m4s\n#EXT-X-PART:DURATION=0.3,URI=\"a/101.0.m4s\"\n\
             #EXT-X-PART:DURATION=0.3,URI=\"a/101.1.m4s\"\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"a/101.2.m4s\"\n"
        );
        assert_eq!(
            live_edge(&open),
            Some(LiveEdge {
                next: (101, Some(2))
            })
        );
        let closed = format!(
            "{HEAD}#EXT-X-PART:DURATION=0.3,URI=\"a/100.0.m4s\"\n#EXTINF:0.3,\na/100.m4s\n"
        );
        assert_eq!(
            live_edge(&closed),
            Some(LiveEdge {
                next: (100, Some(1))
            })
        );
        let plain = format!("{HEAD}#EXTINF:2.0,\na/100.m4s\n#EXTINF:2.0,\na/101.m4s\n");
        assert_eq!(live_edge(&plain), Some(LiveEdge { next: (102, None) }));
        let delta = format!("{HEAD}#EXT-X-SKIP:SKIPPED-SEGMENTS=5\n#EXTINF:2.0,\na/105.m4s\n");
        assert_eq!(live_edge(&delta), Some(LiveEdge { next: (106, None) }));
        assert_eq!(live_edge(&plain.replace("CAN-BLOCK-RELOAD=YES,", "")), None);
        assert_eq!(live_edge(&format!("{plain}#EXT-X-ENDLIST\n")), None);
        assert_eq!(live_edge(HEAD), None);
    }
}
