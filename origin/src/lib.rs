//! weir's origin: the store of an event's live window and the HTTP server edges pull from.
//!
//! The packager's [`Artifact`](weir_packager::Artifact)s are applied to a [`Store`] in the
//! order they come; the origin serves what the store holds with the `Content-Type`,
//! `Cache-Control` and CORS headers a CDN expects. Request paths are parsed into a typed
//! [`Route`]; nothing is ever looked up by joining request text into a path. The origin does
//! not cache for viewers: edges do.
//!
//! ```text
//! Packager --Artifact--> Store::apply        edge --GET /live/..--> Route::parse --> Store::get
//! ```

mod http;
mod route;
mod store;

// The public interface.
pub use crate::http::{
    object_response, preflight, serve, MetricsRender, OriginConfig, OriginError, IMMUTABLE,
};
pub use route::{EventId, Route};
pub use store::{MemoryStore, Object, ObjectKind, Store};
