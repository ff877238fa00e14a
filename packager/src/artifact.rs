//! What the packager produces: objects, playlists and expiries, in the order a store must
//! apply them.

use std::time::Duration;

use bytes::Bytes;

use crate::playlist::{Expired, PartRef};
use crate::{MediaSequence, PartIndex, RenditionId, SessionId};

/// What the packager produced, in the order a store must apply it: every object is emitted
/// before the first playlist that names it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Artifact {
    /// `{rendition}/{session}/init.mp4`: `ftyp`+`moov` (ISO/IEC 23000-19 §7.3.1).
    InitSegment {
        /// The rendition it belongs to.
        rendition: RenditionId,
        /// The publisher session it belongs to.
        session: SessionId,
        /// The bytes.
        data: Bytes,
    },
    /// `{rendition}/{session}/{msn}.{part}.m4s`: one CMAF chunk (`moof`+`mdat`), an LL-HLS
    /// partial segment (RFC 8216bis §4.4.4.9). In the clear, its segment's bytes are its
    /// parts' bytes in order; encrypted, each part and segment is encrypted on its own.
    Part {
        /// The rendition it belongs to.
        rendition: RenditionId,
        /// The publisher session it belongs to.
        session: SessionId,
        /// Its parent segment.
        msn: MediaSequence,
        /// Its index in the parent segment.
        part: PartIndex,
        /// The bytes.
        data: Bytes,
    },
    /// `{rendition}/{session}/{msn}.m4s`: `moof`+`mdat` pairs.
    Segment {
        /// The rendition it belongs to.
        rendition: RenditionId,
        /// The publisher session it belongs to.
        session: SessionId,
        /// Its media sequence number.
        msn: MediaSequence,
        /// The bytes.
        data: Bytes,
    },
    /// `{rendition}/index.m3u8`, the new live media playlist.
    MediaPlaylist {
        /// The rendition.
        rendition: RenditionId,
        /// The playlist, its delta update and where its live edge is.
        playlist: PlaylistUpdate,
    },
    /// `master.m3u8`, the new master playlist.
    MasterPlaylist {
        /// The playlist text.
        data: Bytes,
    },
    /// An object left the live window more than its availability time ago
    /// (RFC 8216bis §6.2.2): the store may drop it.
    Expired {
        /// The rendition.
        rendition: RenditionId,
        /// The session.
        session: SessionId,
        /// Which of the session's objects.
        what: Expired,
    },
}

/// One version of a media playlist, with what an origin needs to answer blocking playlist
/// reloads and preload hints (RFC 8216bis §6.2.5, §6.2.6) without reading the text.
#[derive(Clone, Debug)]
pub struct PlaylistUpdate {
    /// The full playlist.
    pub full: Bytes,
    /// Its delta update (`_HLS_skip=YES`: older segments replaced by `EXT-X-SKIP`), when the
    /// playlist advertises `CAN-SKIP-UNTIL` and has segments to skip.
    pub delta: Option<Bytes>,
    /// `EXT-X-TARGETDURATION`.
    pub target_duration: Duration,
    /// `PART-TARGET`, when the playlist lists parts (LL-HLS).
    pub part_target: Option<Duration>,
    /// The newest complete segment.
    pub last_msn: Option<MediaSequence>,
    /// The newest listed part (parent segment, index), when parts are listed.
    pub last_part: Option<(MediaSequence, PartIndex)>,
    /// The part `EXT-X-PRELOAD-HINT` names: requestable before it exists, answered when it
    /// is complete.
    pub preload_hint: Option<PartRef>,
    /// The playlist carries `EXT-X-ENDLIST`: the event has ended, and blocking-reload and
    /// skip directives are ignored (RFC 8216bis §6.2.5.2).
    pub ended: bool,
}
