//! The per-token viewer limit (`max_viewers_per_token`): how many viewers may use one token at
//! once. A viewer is a client address and user agent seen fetching with the token within the
//! last [`VIEWER_WINDOW`]; one more is answered 429 until one of them has been gone that long.
//! Sans-I/O: the caller gives the time.
//!
//! Bounded: at most [`MAX_TOKENS`] tokens are tracked (past it, tokens seen least recently are
//! forgotten first), and a token's viewers beyond its limit are never stored.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A viewer counts for this long after their last request.
pub const VIEWER_WINDOW: Duration = Duration::from_secs(30);

/// Most tokens tracked at once.
pub(crate) const MAX_TOKENS: usize = 200_000;

struct Seen {
    /// (viewer hash, last request).
    viewers: Vec<(u64, Instant)>,
    last: Instant,
}

/// Viewers per token.
pub(crate) struct TokenSharing {
    tokens: Mutex<HashMap<u64, Seen>>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for TokenSharing {
    fn default() -> Self {
        TokenSharing {
            tokens: Mutex::new(HashMap::new()),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }
}

impl TokenSharing {
    fn hash(&self, value: impl Hash) -> u64 {
        self.hasher.hash_one(value)
    }

    /// Whether the viewer (`ip`, `user_agent`) may fetch with `token` when at most `limit`
    /// viewers may share it; records the request if so.
    pub(crate) fn admit(
        &self,
        token: &str,
        ip: IpAddr,
        user_agent: Option<&str>,
        limit: u32,
        now: Instant,
    ) -> bool {
        let (key, viewer) = (self.hash(token), self.hash((ip, user_agent)));
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        if tokens.len() >= MAX_TOKENS && !tokens.contains_key(&key) {
            tokens.retain(|_, s| now.saturating_duration_since(s.last) < VIEWER_WINDOW);
            if tokens.len() >= MAX_TOKENS {
                // Still full of live tokens: forget the least recently seen half.
                let mut lasts: Vec<Instant> = tokens.values().map(|s| s.last).collect();
                lasts.sort_unstable();
                let cut = lasts[lasts.len() / 2];
                tokens.retain(|_, s| s.last > cut);
            }
        }
        let seen = tokens.entry(key).or_insert_with(|| Seen {
            viewers: Vec::new(),
            last: now,
        });
        seen.last = now;
        seen.viewers
            .retain(|(_, t)| now.saturating_duration_since(*t) < VIEWER_WINDOW);
        if let Some(v) = seen.viewers.iter_mut().find(|(v, _)| *v == viewer) {
            v.1 = now;
            return true;
        }
        if seen.viewers.len() >= limit as usize {
            return false;
        }
        seen.viewers.push((viewer, now));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_viewers_per_token_within_the_window() {
        let s = TokenSharing::default();
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let c: IpAddr = "192.0.2.3".parse().unwrap();
        assert!(s.admit("t", a, Some("ua"), 2, t0));
        assert!(s.admit("t", b, Some("ua"), 2, t0));
        // A third viewer is refused; the first two keep going.
        assert!(!s.admit("t", c, Some("ua"), 2, t0));
        assert!(s.admit("t", a, Some("ua"), 2, t0 + Duration::from_secs(20)));
        // Another user agent at the same address is another viewer.
        assert!(!s.admit("t", a, Some("other"), 2, t0 + Duration::from_secs(20)));
        // Another token is counted apart.
        assert!(s.admit("u", c, Some("ua"), 1, t0));
        // b has been gone for the window: c takes its place.
        assert!(s.admit("t", c, Some("ua"), 2, t0 + VIEWER_WINDOW));
        assert!(!s.admit("t", b, Some("ua"), 2, t0 + VIEWER_WINDOW));
    }
}
