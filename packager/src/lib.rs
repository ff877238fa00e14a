//! weir's packager: frames in, CMAF init segments, segments and HLS playlists out.
//!
//! Sans-I/O: it never touches a socket, a file or a clock. The caller passes the wall-clock
//! time with every input (it only stamps `EXT-X-PROGRAM-DATE-TIME` and schedules expiry) and
//! applies the [`Artifact`]s it gets back to a store, in order.
//!
//! ```text
//!             +--------------------- Packager (one per event) ---------------------+
//! TrackInfo ->| TrackSegmenter (video) --parts--> segment --> MediaPlaylist source |--> Artifact::*
//! Frame     ->| TrackSegmenter (audio) --parts--> segment --> MediaPlaylist audio  |
//!             |            cut points: video keyframes at/after the target         |
//!             +--------------------------------------------------------------------+
//! ```
//!
//! Segments are cut only at keyframes, at the first keyframe at or after the target duration
//! (RFC 8216 §4.3.3.1, HLS authoring spec §1.10); audio segments end at the first audio frame
//! at or after the video's cut, so renditions stay aligned and share media sequence numbers.
//! Each segment is built as a sequence of parts (CMAF chunks) no longer than the part target,
//! ready for LL-HLS.
//!
//! ```
//! use std::time::SystemTime;
//! use weir_packager::{Packager, PackagerConfig, SessionId};
//! let mut packager = Packager::new(PackagerConfig::default());
//! let mut out = Vec::new();
//! packager.begin_session(SessionId::from_unix_millis(1_763_716_172_123, 0), SystemTime::now(), &mut out);
//! // ... packager.track(..), packager.frame(..) for each input, then:
//! packager.end_session(SystemTime::now(), &mut out);
//! assert!(out.is_empty()); // nothing was published without a keyframe
//! ```

mod fmp4;
mod ids;
mod packager;
mod playlist;
mod track;

// The public interface.
pub use ids::{MediaSequence, RenditionId, SessionId};
pub use packager::{Artifact, Packager, PackagerConfig};
