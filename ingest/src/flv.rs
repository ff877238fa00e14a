//! FLV tag bodies as RTMP carries them in video (type 9) and audio (type 8) messages
//! (Adobe Flash Video File Format Specification v10.1, §E.4.2.1 AUDIODATA, §E.4.3.1 VIDEODATA).

use bytes::Bytes;
use weir_media::{
    AacConfig, Av1Config, AvcConfig, CodecConfig, Frame, HevcConfig, MediaError, Timescale,
    Timestamp, TrackInfo, TrackKind,
};

/// What one FLV audio or video tag body holds.
#[derive(Debug)]
pub enum Tag {
    /// A decoder configuration: an AVC sequence header or an AAC sequence header.
    Config(TrackInfo),
    /// A coded frame.
    Frame(Frame),
    /// Nothing to package: an AVC end-of-sequence marker or an empty body.
    Nothing,
}

/// Why a tag body could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TagError {
    /// The body is shorter than its headers.
    #[error("truncated FLV {0} tag")]
    Truncated(&'static str),
    /// The codec is not one weir packages (legacy video codec IDs other than 7/AVC, Enhanced
    /// RTMP FourCCs other than `avc1`/`hvc1`/`av01`, audio formats other than 10/AAC).
    #[error("unsupported {kind} codec id {id}")]
    UnsupportedCodec {
        /// "video" or "audio".
        kind: &'static str,
        /// The FLV codec ID or sound format.
        id: u8,
    },
    /// The sequence header does not parse.
    #[error(transparent)]
    Config(#[from] MediaError),
}

/// Parses an FLV VIDEODATA body whose timestamp is `timestamp_ms` (unwrapped: RTMP's 32-bit
/// clock extended past its wrap by the caller).
///
/// # Errors
/// [`TagError`] for a truncated body, a codec other than H.264 (legacy or Enhanced RTMP
/// `avc1`), HEVC or AV1 (Enhanced RTMP `hvc1`, `av01`), or a bad configuration record.
pub fn parse_video(timestamp_ms: i64, data: Bytes) -> Result<Tag, TagError> {
    let Some(&first) = data.first() else {
        return Ok(Tag::Nothing);
    };
    if first & 0x80 != 0 {
        return parse_enhanced_video(timestamp_ms, data);
    }
    let codec_id = first & 0x0f;
    if codec_id != 7 {
        return Err(TagError::UnsupportedCodec {
            kind: "video",
            id: codec_id,
        });
    }
    let frame_type = first >> 4;
    if frame_type == 5 {
        return Ok(Tag::Nothing); // video info/command frame
    }
    if data.len() < 5 {
        return Err(TagError::Truncated("video"));
    }
    // CompositionTime is a signed 24-bit integer, milliseconds.
    let cts = ((i32::from(data[2]) << 24 | i32::from(data[3]) << 16 | i32::from(data[4]) << 8) >> 8)
        as i64;
    match data[1] {
        0 => {
            let avc = AvcConfig::parse(data.slice(5..))?;
            Ok(Tag::Config(TrackInfo {
                kind: TrackKind::Video,
                codec: CodecConfig::H264(avc),
            }))
        }
        1 if data.len() > 5 => Ok(Tag::Frame(Frame {
            track: TrackKind::Video,
            dts: Timestamp::new(timestamp_ms, Timescale::MILLIS),
            composition_offset: cts,
            keyframe: frame_type == 1,
            data: data.slice(5..),
        })),
        _ => Ok(Tag::Nothing),
    }
}

/// Parses an FLV AUDIODATA body whose timestamp is `timestamp_ms` (unwrapped, as for
/// [`parse_video`]).
///
/// # Errors
/// [`TagError`] for a truncated body, a format other than AAC, or a bad AudioSpecificConfig.
pub fn parse_audio(timestamp_ms: i64, data: Bytes) -> Result<Tag, TagError> {
    let Some(&first) = data.first() else {
        return Ok(Tag::Nothing);
    };
    let format = first >> 4;
    if format != 10 {
        return Err(TagError::UnsupportedCodec {
            kind: "audio",
            id: format,
        });
    }
    if data.len() < 2 {
        return Err(TagError::Truncated("audio"));
    }
    match data[1] {
        0 => {
            let aac = AacConfig::parse(data.slice(2..))?;
            Ok(Tag::Config(TrackInfo {
                kind: TrackKind::Audio,
                codec: CodecConfig::Aac(aac),
            }))
        }
        1 if data.len() > 2 => Ok(Tag::Frame(Frame {
            track: TrackKind::Audio,
            dts: Timestamp::new(timestamp_ms, Timescale::MILLIS),
            composition_offset: 0,
            keyframe: true,
            data: data.slice(2..),
        })),
        _ => Ok(Tag::Nothing),
    }
}

/// Iterates over the tags of an FLV file (§E.2, §E.3): `(tag type, timestamp ms, body)`, with
/// tag type 8 audio, 9 video, 18 script data. Stops at the first truncated tag. For tools,
/// tests and benchmarks that replay a recorded stream.
pub fn file_tags(file: &Bytes) -> impl Iterator<Item = (u8, u32, Bytes)> + '_ {
    let start = if file.len() >= 9 && &file[..3] == b"FLV" {
        u32::from_be_bytes([file[5], file[6], file[7], file[8]]) as usize + 4
    } else {
        file.len()
    };
    let mut at = start;
    std::iter::from_fn(move || {
        let h = file.get(at..at + 11)?;
        let size = (usize::from(h[1]) << 16) | (usize::from(h[2]) << 8) | usize::from(h[3]);
        let ts = (u32::from(h[7]) << 24)
            | (u32::from(h[4]) << 16)
            | (u32::from(h[5]) << 8)
            | u32::from(h[6]);
        let body = file.get(at + 11..at + 11 + size)?;
        let tag = (h[0] & 0x1f, ts, file.slice_ref(body));
        at += 11 + size + 4;
        Some(tag)
    })
}

/// Parses an Enhanced RTMP video tag body (`IsExHeader` set; Veovera E-RTMP v1,
/// "ExVideoTagHeader"): `avc1`, `hvc1` and `av01` FourCCs, sequence start and coded frames.
fn parse_enhanced_video(timestamp_ms: i64, data: Bytes) -> Result<Tag, TagError> {
    if data.len() < 5 {
        return Err(TagError::Truncated("enhanced video"));
    }
    let frame_type = (data[0] >> 4) & 0x07;
    let packet_type = data[0] & 0x0f;
    let fourcc = [data[1], data[2], data[3], data[4]];
    #[derive(PartialEq)]
    enum Kind {
        Avc,
        Hevc,
        Av1,
    }
    let kind = match &fourcc {
        b"hvc1" => Kind::Hevc,
        b"avc1" => Kind::Avc,
        b"av01" => Kind::Av1,
        _ => {
            return Err(TagError::UnsupportedCodec {
                kind: "enhanced video",
                id: data[1],
            })
        }
    };
    if frame_type == 5 {
        return Ok(Tag::Nothing); // command frame
    }
    let body = data.slice(5..);
    match packet_type {
        // SequenceStart: the decoder configuration record.
        0 => {
            let codec = match kind {
                Kind::Hevc => CodecConfig::H265(HevcConfig::parse(body)?),
                Kind::Avc => CodecConfig::H264(AvcConfig::parse(body)?),
                Kind::Av1 => CodecConfig::Av1(Av1Config::parse(body)?),
            };
            Ok(Tag::Config(TrackInfo {
                kind: TrackKind::Video,
                codec,
            }))
        }
        // CodedFrames (SI24 composition time first, except for AV1, which has none) and
        // CodedFramesX (composition time 0).
        1 | 3 => {
            let (cts, sample) = if packet_type == 1 && kind != Kind::Av1 {
                if body.len() < 3 {
                    return Err(TagError::Truncated("enhanced video"));
                }
                let cts =
                    (i32::from(body[0]) << 24 | i32::from(body[1]) << 16 | i32::from(body[2]) << 8)
                        >> 8;
                (i64::from(cts), body.slice(3..))
            } else {
                (0, body)
            };
            if sample.is_empty() {
                return Ok(Tag::Nothing);
            }
            Ok(Tag::Frame(Frame {
                track: TrackKind::Video,
                dts: Timestamp::new(timestamp_ms, Timescale::MILLIS),
                composition_offset: cts,
                keyframe: frame_type == 1,
                data: sample,
            }))
        }
        // SequenceEnd, Metadata (HDR), and what weir does not read (multitrack, ModEx).
        _ => Ok(Tag::Nothing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_frame_with_negative_composition_time() {
        let body = Bytes::from_static(&[0x27, 0x01, 0xff, 0xff, 0xd8, 0, 0, 0, 1, 0x41]);
        let Tag::Frame(f) = parse_video(1_000, body).unwrap() else {
            panic!("not a frame")
        };
        assert_eq!(
            (f.composition_offset, f.keyframe, f.data.len()),
            (-40, false, 5)
        );
    }

    #[test]
    fn rejects_other_codecs_and_truncation() {
        assert!(matches!(
            parse_video(0, Bytes::from_static(&[0x12, 0])),
            Err(TagError::UnsupportedCodec { id: 2, .. })
        ));
        assert!(matches!(
            parse_video(0, Bytes::from_static(&[0x17, 1])),
            Err(TagError::Truncated(_))
        ));
        assert!(matches!(
            parse_audio(0, Bytes::from_static(&[0x2f, 1])),
            Err(TagError::UnsupportedCodec { id: 2, .. })
        ));
        assert!(matches!(
            parse_audio(0, Bytes::from_static(&[0xaf, 0, 0x12])),
            Err(TagError::Config(_))
        ));
        let Tag::Config(t) = parse_audio(0, Bytes::from_static(&[0xaf, 0, 0x12, 0x10])).unwrap()
        else {
            panic!()
        };
        assert_eq!(t.codec.codec_string(), "mp4a.40.2");
    }

    #[test]
    fn enhanced_rtmp_coded_frames_and_refusals() {
        // hvc1 CodedFrames, keyframe, composition time 40 ms.
        let mut tag = vec![0x91];
        tag.extend_from_slice(b"hvc1");
        tag.extend_from_slice(&[0, 0, 40, 0, 0, 0, 2, 0x26, 0x01]);
        let Tag::Frame(f) = parse_video(5_000, Bytes::from(tag)).unwrap() else {
            panic!("a frame");
        };
        assert!(f.keyframe);
        assert_eq!((f.dts.ticks, f.composition_offset), (5_000, 40));
        assert_eq!(&f.data[..], &[0, 0, 0, 2, 0x26, 0x01]);
        // CodedFramesX: no composition time, inter frame.
        let mut tag = vec![0xa3];
        tag.extend_from_slice(b"hvc1");
        tag.extend_from_slice(&[0, 0, 0, 2, 0x02, 0x01]);
        let Tag::Frame(f) = parse_video(5_040, Bytes::from(tag)).unwrap() else {
            panic!("a frame");
        };
        assert!(!f.keyframe && f.composition_offset == 0 && f.data.len() == 6);
        // av01 CodedFrames carry no composition time: the OBUs start right after the FourCC.
        let mut tag = vec![0x91];
        tag.extend_from_slice(b"av01");
        tag.extend_from_slice(&[0x12, 0x00, 0x0a, 0x0b]);
        let Tag::Frame(f) = parse_video(0, Bytes::from(tag)).unwrap() else {
            panic!("a frame");
        };
        assert_eq!(
            (&f.data[..], f.composition_offset),
            (&[0x12, 0x00, 0x0a, 0x0b][..], 0)
        );
        // Other FourCCs (VP9) are not packaged; a command frame and metadata carry nothing.
        let mut av1 = vec![0x90];
        av1.extend_from_slice(b"vp09");
        assert!(matches!(
            parse_video(0, Bytes::from(av1)),
            Err(TagError::UnsupportedCodec { .. })
        ));
        for first in [0xd1u8, 0x94] {
            let mut tag = vec![first];
            tag.extend_from_slice(b"hvc1");
            tag.extend_from_slice(&[0, 0, 0]);
            assert!(matches!(parse_video(0, Bytes::from(tag)), Ok(Tag::Nothing)));
        }
        assert!(matches!(
            parse_video(0, Bytes::from_static(&[0x90, b'h'])),
            Err(TagError::Truncated(_))
        ));
    }
}
