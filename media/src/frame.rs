use bytes::Bytes;

use crate::{CodecConfig, Timestamp};

/// Which kind of elementary stream a track carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TrackKind {
    /// A video elementary stream (H.264 today).
    Video,
    /// An audio elementary stream (AAC today).
    Audio,
}

/// What a track is: its kind and its codec configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct TrackInfo {
    /// Video or audio.
    pub kind: TrackKind,
    /// The decoder configuration (avcC / AudioSpecificConfig) the track was announced with.
    pub codec: CodecConfig,
}

/// One access unit: a coded picture or one audio frame, with its timing.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    /// The track the frame belongs to.
    pub track: TrackKind,
    /// Decode timestamp, in the timescale the ingest protocol uses (milliseconds for RTMP).
    pub dts: Timestamp,
    /// Presentation time minus decode time, in the timescale of `dts` (FLV `CompositionTime`).
    /// Zero for audio and for streams without B-frames.
    pub composition_offset: i64,
    /// Whether the frame can be decoded on its own: an H.264 IDR picture (FLV frame type 1),
    /// or any audio frame.
    pub keyframe: bool,
    /// The coded bytes. H.264: length-prefixed NAL units as in an `avc1` sample
    /// (ISO/IEC 14496-15 §5.3.2), with the length size of the track's avcC. AAC: one raw
    /// access unit without ADTS header.
    pub data: Bytes,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("track", &self.track)
            .field("dts", &self.dts)
            .field("composition_offset", &self.composition_offset)
            .field("keyframe", &self.keyframe)
            .field("bytes", &self.data.len())
            .finish()
    }
}
