//! weir's origin: the store of an event's live window and the HTTP server edges pull from.
//!
//! The packager's [`Artifact`](weir_packager::Artifact)s are applied to a [`Store`] in the
//! order they come; the origin serves what the store holds with the `Content-Type`,
//! `Cache-Control` and CORS headers a CDN expects. Request paths are parsed into a typed
//! [`Route`]; nothing is ever looked up by joining request text into a path. The origin does
//! not cache for viewers: edges do.
//!
//! Media playlists are served from their live state ([`Store::playlist`]): a request with
//! LL-HLS delivery directives (`_HLS_msn`, `_HLS_part`) is held until the playlist holds
//! what it asks for (RFC 8216bis §6.2.5.2), and a request for the part the preload hint
//! names is held until the part is complete (§6.2.6); both wait on the playlist's
//! notification, not on timers.
//!
//! ```text
//! Packager --Artifact--> Store::apply --notify--> held playlist/part requests
//! edge --GET /live/..--> Route::parse --> Store::get | Store::playlist (+ Directives)
//! ```

mod directives;
mod http;
mod store;

// The public interface.
pub use crate::http::{
    object_response, router, MetricsRender, OriginConfig, OriginError, IMMUTABLE,
};
pub use directives::{advance_part_limit, readiness, Readiness};
pub use store::{live_lifetime, MemoryStore, Object, ObjectKind, PlaylistWatch, Store};
pub use weir_url::{DirectiveError, Directives, EventId, Route};
