//! What a packager is configured with, and what it reports.

use std::num::NonZeroUsize;
use std::time::Duration;

use std::sync::Arc;

use crate::{MediaSequence, SegmentEncryption, TargetDurationPolicy};

/// How the packager cuts and lists segments.
#[derive(Clone, Debug)]
pub struct PackagerConfig {
    /// Segment target: a segment is cut at the first keyframe at or after this much media
    /// time. Default 2 s.
    pub target_duration: Duration,
    /// How `EXT-X-TARGETDURATION` is chosen. Default [`TargetDurationPolicy::FirstSegment`].
    pub target_duration_policy: TargetDurationPolicy,
    /// Part target: segments are built as parts (CMAF chunks, one `moof`+`mdat` each) no
    /// longer than this (RFC 8216bis §4.4.4.9). Default 333 ms.
    pub part_target: Duration,
    /// Whether playlists list the parts (LL-HLS: `EXT-X-PART`, preload hints, rendition
    /// reports, delta updates). Default true.
    pub low_latency: bool,
    /// Segments in each live media playlist (at least three target durations are kept).
    /// Default 6.
    pub window_segments: NonZeroUsize,
    /// The event's first media sequence number, e.g. [`MediaSequence::from_unix_millis`] of
    /// the process start so that a restarted process never reuses a number. Default 0.
    pub first_msn: MediaSequence,
    /// How segments and parts are encrypted (`EXT-X-KEY:METHOD=AES-128`); `None` (the
    /// default): in the clear.
    pub encryption: Option<Arc<dyn SegmentEncryption>>,
}

impl Default for PackagerConfig {
    fn default() -> Self {
        PackagerConfig {
            target_duration: Duration::from_secs(2),
            target_duration_policy: TargetDurationPolicy::FirstSegment,
            part_target: Duration::from_millis(333),
            low_latency: true,
            window_segments: NonZeroUsize::new(6).unwrap_or(NonZeroUsize::MIN),
            first_msn: MediaSequence(0),
            encryption: None,
        }
    }
}

/// What the packager had to correct in its input, since it was made; for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PackagerStats {
    /// Segments split before a non-keyframe because the source's GOP was longer than the
    /// target duration allows.
    pub segments_split: u64,
    /// Audio samples stretched to fill a gap in the audio timestamps (lost frames).
    pub audio_resyncs: u64,
    /// Audio frames dropped because their timestamps overlapped the previous frame.
    pub audio_frames_dropped: u64,
    /// Sessions continued after a discontinuity because timestamps jumped.
    pub timestamp_jumps: u64,
}
