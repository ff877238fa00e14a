//! weir's URL vocabulary, shared by the packager (which writes the URLs), the origin and the
//! edge (which parse them), and nothing else: no I/O, no dependencies but `thiserror`, so
//! that an edge links no packager and the parsers can be fuzzed on their own.
//!
//! ```text
//! /live/{event}/master.m3u8
//! /live/{event}/{rendition}/index.m3u8[?_HLS_msn=M[&_HLS_part=P]][&_HLS_skip=YES]
//! /live/{event}/{rendition}/{session}/init.mp4
//! /live/{event}/{rendition}/{session}/{msn}.m4s
//! /live/{event}/{rendition}/{session}/{msn}.{part}.m4s
//! /keys/{event}/{key_id}
//! ```
//!
//! A path either parses into a [`Route`] made of validated identifiers ([`EventId`],
//! [`RenditionId`], [`SessionId`], [`MediaSequence`], [`PartIndex`]) or it names nothing;
//! no path is ever joined from request text.

mod directives;
mod ids;
mod route;

// The public interface.
pub use directives::{DirectiveError, Directives};
pub use ids::{EventId, MediaSequence, PartIndex, RenditionId, SessionId};
pub use route::Route;
