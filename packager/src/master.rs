//! The master (multivariant) playlist: one variant stream per video rendition, sharing the
//! audio rendition as a group (RFC 8216bis §4.4.6).

use std::fmt::Write;

use bytes::Bytes;

use crate::RenditionId;

/// `EXT-X-VERSION` of the master playlist: nothing in it needs more than the default, but
/// players treat a missing or low version as a legacy stream; 6 matches the media playlists.
const VERSION: u32 = 6;

/// What the master playlist says about one variant stream (RFC 8216 §4.3.4.2): a video
/// rendition, whose numbers the audio group's are added to.
#[derive(Clone, Debug)]
pub(crate) struct VariantInfo {
    /// Peak segment bit rate, bits/s.
    pub(crate) bandwidth: u64,
    /// Average bit rate, bits/s.
    pub(crate) average_bandwidth: u64,
    /// The video codec's RFC 6381 string.
    pub(crate) codecs: String,
    pub(crate) resolution: Option<(u32, u32)>,
    pub(crate) frame_rate: Option<f64>,
    pub(crate) rendition: RenditionId,
}

/// The audio rendition every variant stream shares.
#[derive(Clone, Debug)]
pub(crate) struct AudioGroup {
    pub(crate) rendition: RenditionId,
    pub(crate) channels: u8,
    pub(crate) codecs: String,
    pub(crate) bandwidth: u64,
    pub(crate) average_bandwidth: u64,
}

/// Renders the master playlist: one `EXT-X-STREAM-INF` per video rendition, in the order
/// given, with the audio as an `EXT-X-MEDIA TYPE=AUDIO` group (RFC 8216 §4.3.4.1) whose bit
/// rate is included in each variant's `BANDWIDTH` (§4.3.4.2); or, with no video, the audio
/// rendition as the only variant stream.
pub(crate) fn render_master(
    videos: &[VariantInfo],
    audio: Option<&AudioGroup>,
    session_keys: &[Box<str>],
) -> Bytes {
    let mut out = format!("#EXTM3U\n#EXT-X-VERSION:{VERSION}\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for key in session_keys {
        let _ = writeln!(out, "#EXT-X-SESSION-KEY:{key}");
    }
    if videos.is_empty() {
        if let Some(a) = audio {
            let _ = write!(
                out,
                "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},CODECS=\"{}\"\n{}/index.m3u8\n",
                a.bandwidth, a.average_bandwidth, a.codecs, a.rendition
            );
        }
        return Bytes::from(out);
    }
    if let Some(a) = audio {
        let _ = writeln!(
            out,
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"audio\",DEFAULT=YES,AUTOSELECT=YES,\
             CHANNELS=\"{}\",URI=\"{}/index.m3u8\"",
            a.channels, a.rendition
        );
    }
    for v in videos {
        let (bandwidth, average, codecs) = match audio {
            Some(a) => (
                v.bandwidth + a.bandwidth,
                v.average_bandwidth + a.average_bandwidth,
                format!("{},{}", v.codecs, a.codecs),
            ),
            None => (v.bandwidth, v.average_bandwidth, v.codecs.clone()),
        };
        let _ = write!(
            out,
            "#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},AVERAGE-BANDWIDTH={average},CODECS=\"{codecs}\""
        );
        if let Some((w, h)) = v.resolution {
            let _ = write!(out, ",RESOLUTION={w}x{h}");
        }
        if let Some(fps) = v.frame_rate {
            let _ = write!(out, ",FRAME-RATE={fps:.3}");
        }
        if audio.is_some() {
            out.push_str(",AUDIO=\"audio\"");
        }
        let _ = writeln!(out, "\n{}/index.m3u8", v.rendition);
    }
    Bytes::from(out)
}
