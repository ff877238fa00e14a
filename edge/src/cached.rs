//! A cached (or just fetched) upstream response, and what is derived from its body once and
//! shared by every viewer: the strong `ETag`, the compressed playlist codings.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::encoding::{self, Coding, Encoded};
use crate::response::Look;
use crate::upstream::Fetched;

/// A cached (or just fetched) upstream response.
#[derive(Debug)]
pub(crate) struct Cached {
    pub(crate) fetched: Fetched,
    pub(crate) fetched_at: Instant,
    /// How long it may be served from the cache; `None`: not stored (shared with the viewers
    /// that waited on the fetch, then forgotten).
    pub(crate) ttl: Option<Duration>,
    /// What is computed from the body on first use and shared by every viewer after.
    pub(crate) derived: Derived,
    /// A last good copy served because the upstream failed (`X-Cache: STALE`).
    pub(crate) stale: bool,
}

/// What is computed from a cached body once, on first use: its strong `ETag`, its
/// compressed representations ([`crate::encoding`]), and the head of its answer in each
/// coding ([`crate::response`]).
#[derive(Debug, Default)]
pub(crate) struct Derived {
    etag: OnceLock<http::HeaderValue>,
    /// gzip and br, by [`Coding::slot`].
    encoded: [OnceLock<Encoded>; 2],
    /// The head of the whole object's answer: identity, gzip, br.
    heads: [OnceLock<(Look, http::HeaderMap)>; 3],
}

impl Cached {
    /// The ETag of the body as fetched ([`crate::conditional::etag_of`]), computed once.
    pub(crate) fn etag(&self) -> &http::HeaderValue {
        self.derived
            .etag
            .get_or_init(|| crate::conditional::etag_of(&self.fetched.body))
    }

    /// The head of the answer in `look`, built by `build` the first time (for the look the
    /// object is first answered in; another look is built afresh each time).
    pub(crate) fn head(
        &self,
        look: Look,
        build: impl FnOnce() -> http::HeaderMap,
    ) -> http::HeaderMap {
        let slot = &self.derived.heads[look.coding.slot().map_or(0, |s| s + 1)];
        if let Some((made_for, head)) = slot.get() {
            return if *made_for == look {
                head.clone()
            } else {
                build()
            };
        }
        let head = build();
        let _ = slot.set((look, head.clone()));
        head
    }

    /// The body in `coding` with its tag, compressed once (identity: the body itself).
    pub(crate) fn encoded(&self, coding: Coding) -> Encoded {
        let Some(slot) = coding.slot() else {
            return Encoded {
                body: self.fetched.body.clone(),
                etag: self.etag().clone(),
            };
        };
        self.derived.encoded[slot]
            .get_or_init(|| Encoded {
                body: encoding::encode(coding, &self.fetched.body),
                etag: encoding::tag_for(self.etag(), coding),
            })
            .clone()
    }
}
