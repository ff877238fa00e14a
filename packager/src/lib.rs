//! weir's packager: frames in, CMAF init segments, parts, segments and HLS playlists out.
//!
//! Sans-I/O: it never touches a socket, a file or a clock. The caller passes the wall-clock
//! time with every input (it only stamps `EXT-X-PROGRAM-DATE-TIME` and schedules expiry) and
//! applies the [`Artifact`]s it gets back to a store, in order.
//!
//! ```text
//!            +------------------------ Packager (one per event) -------------------------+
//! TrackInfo->| Session: lead track --cuts (msn, time, date)--> CutPlan                   |
//! Frame ---->|   every track: clock (sample durations) -> TrackSegmenter -> parts/segment |-> Artifact::*
//!            |   followers held until the lead has decided the cuts before them           |
//!            | Publication: media playlists (LL-HLS parts, hints, reports), master        |
//!            +----------------------------------------------------------------------------+
//! ```
//!
//! Every rendition is placed on one event timeline (90 kHz, continuous across publisher
//! sessions). The lead rendition (the first video one) cuts segments at the first keyframe at
//! or after the segment target (RFC 8216 §4.3.3.1), or earlier when a long GOP would break
//! the target duration rule, and allocates each cut's media sequence number; every other
//! rendition and the audio cut at the same times and take the same numbers. Each segment is
//! built as parts (CMAF chunks) no longer than the part target, published as they complete
//! (RFC 8216bis §4.4.4.9).
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

mod artifact;
mod clock;
mod cut;
mod encryption;
mod fmp4;
mod master;
mod packager;
mod playlist;
mod protect;
mod publish;
mod session;
mod target;
#[cfg(test)]
mod testing;
mod timeline;
mod track;

// The public interface.
pub use artifact::{Artifact, PlaylistUpdate};
pub use encryption::{EncryptionMethod, Pattern, SegmentEncryption, SegmentKey};
pub use weir_url::{MediaSequence, PartIndex, RenditionId, SessionId};

/// The rendition a passthrough event puts a source track of `kind` in:
/// [`RenditionId::SOURCE`] or [`RenditionId::AUDIO`].
pub fn passthrough_rendition(kind: weir_media::TrackKind) -> RenditionId {
    match kind {
        weir_media::TrackKind::Video => RenditionId::SOURCE,
        weir_media::TrackKind::Audio => RenditionId::AUDIO,
    }
}
pub use packager::{Packager, PackagerConfig, PackagerStats};
pub use playlist::{Expired, PartRef};
pub use target::{configured_target_duration, TargetDurationPolicy, MAX_TARGET_DURATION_SECS};
