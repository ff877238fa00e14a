//! weir's edge: a pull-through HTTP cache in front of an origin (or a shield edge).
//!
//! A request goes through these phases, in order:
//!
//! ```text
//! viewer --> route (parse the path; junk is a 404 with no upstream request)
//!        --> cache key (the path; for a media playlist, plus its normalized LL-HLS
//!            directives _HLS_msn/_HLS_part/_HLS_skip; every other query parameter dropped)
//!        --> lookup: HIT --> response
//!        --> MISS: coalesce (one upstream fetch per key, however many viewers wait; the fetch
//!            runs on its own task, so a viewer leaving never cancels or restarts it)
//!        --> upstream (bounded by a timeout, a longer one for blocking playlist requests;
//!            502 unreachable, 504 too slow)
//!        --> store (TTL from the upstream Cache-Control, weighed in bytes)
//!        --> response (Age, X-Cache, CORS exposing Age) --> log
//! ```
//!
//! The cache is moka's, weighed in body bytes against a capacity; each entry lives for the
//! upstream's `max-age` minus the upstream `Age`. Responses that may not be stored
//! (`no-store`, `private`, non-200) are still shared with the viewers that waited on the same
//! fetch, then forgotten. While viewers ask for a media playlist without directives, a
//! follower long-polls the upstream for its next part ([`follow`](crate) module docs) and
//! swaps each new version in, so the edge's copy is as fresh as the origin's. Geo, tokens
//! and key issuance come later, as phases before the cache key.

mod audience;
mod cache;
mod coalesce;
mod follow;
mod upstream;

// The public interface.
pub use audience::{MAX_EVENTS, MAX_VIEWERS_PER_EVENT, REPORT_EVERY, VIEWER_WINDOW};
pub use cache::{serve, EdgeConfig, EdgeError};
