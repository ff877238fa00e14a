//! weir's edge: a pull-through HTTP cache in front of an origin (or a shield edge).
//!
//! A request goes through these phases, in order:
//!
//! ```text
//! viewer --> route (parse the path; junk is a 404 with no upstream request)
//!        --> cache key (the path)
//!        --> lookup: HIT --> response
//!        --> MISS: coalesce (one upstream fetch per key, however many viewers wait)
//!        --> upstream (bounded by a timeout; 502 unreachable, 504 too slow)
//!        --> store (TTL from the upstream Cache-Control, weighed in bytes)
//!        --> response (Age, X-Cache, CORS) --> log
//! ```
//!
//! The cache is moka's, weighed in body bytes against a capacity; each entry lives for the
//! upstream's `max-age` minus the upstream `Age`. Responses that may not be stored (`no-store`,
//! `private`, non-200) are still shared with the viewers that waited on the same fetch, then
//! forgotten. Geo, tokens and key issuance come later, as phases before the cache key.

mod cache;
mod upstream;

// The public interface.
pub use cache::{serve, EdgeConfig, EdgeError};
