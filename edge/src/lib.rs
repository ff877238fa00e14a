//! weir's edge: a pull-through HTTP cache in front of an origin (or a shield edge).
//!
//! A request goes through these phases, in order, one module each:
//!
//! ```text
//! viewer --> 1 client_addr: the socket peer; X-Forwarded-For/Forwarded only from
//!              [access] trusted_proxies
//!        --> route: is this a path we serve; default: weir's viewer URLs (weir-url's Route)
//!              and the access-policy path for a shield tier; junk is a 404 with no upstream
//!              request
//!        --> policy: the event's access policy from the origin (cached 2 s; an event the
//!              origin does not know is a 404)
//!        --> 2 geo: the country from the MaxMind database against the event's
//!              geo_allow/geo_deny (default: no rule, everyone admitted) -> 403
//!        --> 3 token: an HMAC-SHA256 signed token for the event, address and path, and the
//!              per-token viewer limit (default: not required) -> 403 / 429
//!        --> 4 cache_key: the path; for a media playlist, plus its normalized LL-HLS
//!              directives; every other query parameter (the token too) dropped
//!        --> 5 coalesce: HIT, or one upstream fetch per key however many viewers wait (on
//!              its own task: a viewer leaving never cancels or restarts it; a media body
//!              streamed to its waiters as it arrives; at most max_waiters_per_object
//!              waiters, then 503; a playlist refresh slower than stale_while_revalidate
//!              answered with the last good copy)
//!        --> 6 upstream: bounded by a timeout, a longer one for blocking playlist requests;
//!              502 unreachable, 504 too slow; TTL from the upstream's Cache-Control; with
//!              several upstreams, the first one up, failing over to the next (health)
//!        --> 7 response: Age, X-Cache, CORS exposing Age; a playlist of a token-protected
//!              event gets the viewer's token in every URI, on the way out; ETag and
//!              If-None-Match (304), Range on media (206/416); br/gzip for playlists,
//!              compressed once per playlist version and shared (encoding)
//! ```
//!
//! The phases run straight from the request ([`Edge`] is the service `weir-http` serves):
//! a cache hit takes no lock but the cache's own, and counts itself with counters resolved
//! at start.
//!
//! The cache is moka's, weighed in body bytes against a capacity; each entry lives for the
//! upstream's `max-age` minus the upstream `Age`. Responses that may not be stored
//! (`no-store`, `private`, non-200) are still shared with the viewers that waited on the same
//! fetch, then forgotten. While viewers ask for a media playlist without directives, a
//! follower long-polls the upstream for its next part ([`follow`](crate) module docs) and
//! swaps each new version in, so the edge's copy is as fresh as the origin's.

mod access;
mod audience;
mod cache_key;
mod cached;
mod client_addr;
mod coalesce;
mod conditional;
mod counters;
mod encoding;
mod filling;
mod follow;
mod geo;
mod health;
mod held;
mod internal;
mod licence;
mod local;
mod policy;
mod purge;
mod response;
mod rewrite;
mod route;
mod server;
mod sharing;
mod slices;
pub mod token;
mod upstream;

// The public interface.
pub use access::Denial;
pub use audience::{MAX_EVENTS, MAX_VIEWERS_PER_EVENT, REPORT_EVERY, VIEWER_WINDOW};
pub use geo::RELOAD_CHECK as GEOIP_RELOAD_CHECK;
pub use health::{PROBE_EVERY as UPSTREAM_PROBE_EVERY, PROBE_TIMEOUT as UPSTREAM_PROBE_TIMEOUT};
pub use held::HELD_EVERY as CACHE_GAUGES_EVERY;
pub use local::LocalOrigin;
pub use server::{edge, Edge, EdgeConfig, EdgeConnection, EdgeError};
pub use sharing::VIEWER_WINDOW as TOKEN_VIEWER_WINDOW;

pub use weir_config::CLUSTER_SECRET_HEADER;
