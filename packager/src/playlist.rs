//! Media and master playlist state and rendering (RFC 8216, draft-pantos-hls-rfc8216bis).

use std::collections::VecDeque;
use std::fmt::Write;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::{MediaSequence, RenditionId, SessionId};

/// `EXT-X-VERSION` of weir's playlists: `EXT-X-MAP` in a playlist that is not I-frame only
/// needs version 6 (RFC 8216 §7).
const VERSION: u32 = 6;

/// One segment as listed in a media playlist.
#[derive(Clone, Debug)]
pub(crate) struct SegmentEntry {
    pub(crate) msn: MediaSequence,
    pub(crate) session: SessionId,
    pub(crate) duration: Duration,
    pub(crate) program_date_time: SystemTime,
    /// Whether `EXT-X-DISCONTINUITY` precedes this segment (first segment of a later session).
    pub(crate) discontinuity: bool,
    pub(crate) bytes: usize,
}

/// A segment that has left the playlist and may be deleted at `deadline`.
#[derive(Clone, Debug)]
struct Removed {
    deadline: SystemTime,
    session: SessionId,
    msn: MediaSequence,
}

/// What left the live window for good: the store may drop it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Expiry {
    Segment(SessionId, MediaSequence),
    Init(SessionId),
}

/// The sliding window of one rendition's live media playlist.
#[derive(Debug)]
pub(crate) struct MediaPlaylist {
    rendition: RenditionId,
    window: usize,
    segments: VecDeque<SegmentEntry>,
    removed: VecDeque<Removed>,
    discontinuity_sequence: u64,
    /// Highest bit rate of a segment of at least half a target duration, bits/s.
    pub(crate) peak_bps: u64,
    total_bits: u64,
    total_duration: Duration,
}

impl MediaPlaylist {
    pub(crate) fn new(rendition: RenditionId, window: usize) -> MediaPlaylist {
        MediaPlaylist {
            rendition,
            window,
            segments: VecDeque::new(),
            removed: VecDeque::new(),
            discontinuity_sequence: 0,
            peak_bps: 0,
            total_bits: 0,
            total_duration: Duration::ZERO,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Appends a segment and slides the window. Segments that leave it stay available for
    /// their duration plus the playlist's duration (RFC 8216 §6.2.2); what has passed that
    /// deadline by `now` is returned.
    pub(crate) fn push(
        &mut self,
        entry: SegmentEntry,
        target_duration: Duration,
        now: SystemTime,
    ) -> Vec<Expiry> {
        let bits = entry.bytes as u64 * 8;
        self.total_bits += bits;
        self.total_duration += entry.duration;
        if entry.duration >= target_duration / 2 {
            let bps = (bits as f64 / entry.duration.as_secs_f64()).ceil() as u64;
            self.peak_bps = self.peak_bps.max(bps);
        }
        self.segments.push_back(entry);
        while self.segments.len() > self.window {
            let Some(gone) = self.segments.pop_front() else {
                break;
            };
            // The sequence counts the discontinuity tags that have left (RFC 8216 §4.3.3.3).
            if gone.discontinuity {
                self.discontinuity_sequence += 1;
            }
            let playlist: Duration = self.segments.iter().map(|s| s.duration).sum();
            self.removed.push_back(Removed {
                deadline: now + gone.duration + playlist,
                session: gone.session,
                msn: gone.msn,
            });
        }
        self.expire(now)
    }

    fn expire(&mut self, now: SystemTime) -> Vec<Expiry> {
        let mut out = Vec::new();
        while self.removed.front().is_some_and(|r| r.deadline <= now) {
            let Some(r) = self.removed.pop_front() else {
                break;
            };
            let still_used = self.segments.iter().any(|s| s.session == r.session)
                || self.removed.iter().any(|o| o.session == r.session);
            out.push(Expiry::Segment(r.session.clone(), r.msn));
            if !still_used {
                out.push(Expiry::Init(r.session));
            }
        }
        out
    }

    /// Average bit rate over everything this playlist listed, bits/s.
    pub(crate) fn average_bps(&self) -> u64 {
        let secs = self.total_duration.as_secs_f64();
        if secs > 0.0 {
            (self.total_bits as f64 / secs).ceil() as u64
        } else {
            0
        }
    }

    /// Renders the live media playlist with `EXT-X-TARGETDURATION:target_duration_secs`.
    pub(crate) fn render(&self, target_duration_secs: u64) -> Bytes {
        let mut out = String::with_capacity(256 + self.segments.len() * 120);
        let first = self.segments.front().map_or(0, |s| s.msn.0);
        let _ = write!(
            out,
            "#EXTM3U\n#EXT-X-VERSION:{VERSION}\n#EXT-X-TARGETDURATION:{target_duration_secs}\n\
             #EXT-X-MEDIA-SEQUENCE:{first}\n#EXT-X-DISCONTINUITY-SEQUENCE:{}\n\
             #EXT-X-INDEPENDENT-SEGMENTS\n",
            self.discontinuity_sequence
        );
        let mut map: Option<&SessionId> = None;
        for s in &self.segments {
            if s.discontinuity {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if map != Some(&s.session) {
                let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}/init.mp4\"", s.session);
                map = Some(&s.session);
            }
            let pdt = humantime::format_rfc3339_millis(s.program_date_time);
            let _ = write!(
                out,
                "#EXT-X-PROGRAM-DATE-TIME:{pdt}\n#EXTINF:{:.3},\n{}/{}.m4s\n",
                s.duration.as_secs_f64(),
                s.session,
                s.msn
            );
        }
        Bytes::from(out)
    }

    pub(crate) fn rendition(&self) -> &RenditionId {
        &self.rendition
    }

    #[cfg(test)]
    pub(crate) fn session_of_newest(&self) -> Option<&SessionId> {
        self.segments.back().map(|s| &s.session)
    }
}

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
pub(crate) fn render_master(videos: &[VariantInfo], audio: Option<&AudioGroup>) -> Bytes {
    let mut out = format!("#EXTM3U\n#EXT-X-VERSION:{VERSION}\n#EXT-X-INDEPENDENT-SEGMENTS\n");
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(msn: u64, session: &str, secs: f64, discontinuity: bool) -> SegmentEntry {
        SegmentEntry {
            msn: MediaSequence(msn),
            session: SessionId::parse(session).unwrap(),
            duration: Duration::from_secs_f64(secs),
            program_date_time: SystemTime::UNIX_EPOCH
                + Duration::from_secs(1_000_000_000 + msn * 2),
            discontinuity,
            bytes: 250_000,
        }
    }

    #[test]
    fn window_slides_and_counts_discontinuities() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let td = Duration::from_secs(2);
        let mut p = MediaPlaylist::new(RenditionId::SOURCE, 3);
        for msn in 0..3 {
            assert!(p.push(entry(msn, "a", 2.0, false), td, t0).is_empty());
        }
        p.push(entry(3, "b", 2.0, true), td, t0);
        p.push(entry(4, "b", 2.0, false), td, t0);
        let text = String::from_utf8(p.render(2).to_vec()).unwrap();
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:2\n"), "{text}");
        assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:0\n"));
        assert!(text.contains("#EXT-X-MAP:URI=\"a/init.mp4\"\n"));
        assert!(text.contains("#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"b/init.mp4\"\n"));
        assert!(text.contains("#EXTINF:2.000,\na/2.m4s\n"));
        assert_eq!(p.session_of_newest().unwrap().as_str(), "b");
        // Removed segments live for their duration plus the playlist's (6 s) after removal.
        let later = p.push(entry(5, "b", 2.0, false), td, t0 + Duration::from_secs(8));
        assert_eq!(
            later,
            vec![
                Expiry::Segment(SessionId::parse("a").unwrap(), MediaSequence(0)),
                Expiry::Segment(SessionId::parse("a").unwrap(), MediaSequence(1)),
            ]
        );
        // The discontinuity tag left with segment 3: the sequence counts it.
        p.push(entry(6, "b", 2.0, false), td, t0 + Duration::from_secs(9));
        let text = String::from_utf8(p.render(2).to_vec()).unwrap();
        assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"), "{text}");
        assert!(!text.contains("#EXT-X-DISCONTINUITY\n"));
        let gone = p.push(entry(7, "b", 2.0, false), td, t0 + Duration::from_secs(30));
        assert!(
            gone.contains(&Expiry::Init(SessionId::parse("a").unwrap())),
            "{gone:?}"
        );
    }
}
