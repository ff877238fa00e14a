//! Test fixtures: real codec configurations and generated frame sequences.

use bytes::Bytes;
pub(crate) use weir_media::TrackInfo;
use weir_media::{AacConfig, AvcConfig, CodecConfig, Frame, Timescale, Timestamp, TrackKind};

/// The avcC of the bundled Big Buck Bunny clip: 1280x720 Main@3.1.
const BBB_AVCC: &[u8] = &[
    0x01, 0x4d, 0x40, 0x1f, 0xff, 0xe1, 0x00, 0x17, 0x67, 0x4d, 0x40, 0x1f, 0xda, 0x01, 0x40, 0x16,
    0xec, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40, 0x00, 0x00, 0x0c, 0x83, 0xc6, 0x0c, 0xa8, 0x01,
    0x00, 0x04, 0x68, 0xef, 0x3c, 0x80,
];

pub(crate) fn video_info() -> TrackInfo {
    TrackInfo {
        kind: TrackKind::Video,
        codec: CodecConfig::H264(AvcConfig::parse(Bytes::from_static(BBB_AVCC)).unwrap()),
    }
}

/// AAC-LC stereo at 48 kHz.
pub(crate) fn audio_info() -> TrackInfo {
    TrackInfo {
        kind: TrackKind::Audio,
        codec: CodecConfig::Aac(AacConfig::parse(Bytes::from_static(&[0x11, 0x90])).unwrap()),
    }
}

/// A video frame at `dts_us` microseconds (carried in a 90 kHz timestamp).
pub(crate) fn video(dts_90k: i64, cto_90k: i64, keyframe: bool) -> Frame {
    Frame {
        track: TrackKind::Video,
        dts: Timestamp::new(dts_90k, Timescale::MPEG_90K),
        composition_offset: cto_90k,
        keyframe,
        data: Bytes::from_static(&[0, 0, 0, 2, 0x65, 0x88]),
    }
}

/// An audio frame at `dts_ms` milliseconds (as RTMP carries it).
pub(crate) fn audio(dts_ms: i64) -> Frame {
    Frame {
        track: TrackKind::Audio,
        dts: Timestamp::new(dts_ms, Timescale::MILLIS),
        composition_offset: 0,
        keyframe: true,
        data: Bytes::from_static(&[0x21, 0x10, 0x04]),
    }
}

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use crate::{Artifact, Expired, Packager, PackagerConfig, RenditionId, SessionId};

/// `tfdt`, summed sample durations and whether the first sample is a sync sample, over all
/// fragments of a part or segment.
pub(crate) fn timing(data: &[u8]) -> (u64, u64, bool) {
    let mut tfdt = None;
    let mut duration = 0;
    let mut first_sync = None;
    for (kind, moof) in boxes(data) {
        if kind != b"moof" {
            continue;
        }
        for (kind, traf) in boxes(moof) {
            if kind != b"traf" {
                continue;
            }
            for (kind, body) in boxes(traf) {
                if kind == b"tfdt" {
                    tfdt.get_or_insert(u64::from_be_bytes(body[4..12].try_into().unwrap()));
                }
                if kind == b"trun" {
                    let count = u32::from_be_bytes(body[4..8].try_into().unwrap()) as usize;
                    for i in 0..count {
                        let at = 12 + i * 16;
                        duration +=
                            u64::from(u32::from_be_bytes(body[at..at + 4].try_into().unwrap()));
                        let flags = u32::from_be_bytes(body[at + 8..at + 12].try_into().unwrap());
                        first_sync.get_or_insert(flags & 0x0001_0000 == 0);
                    }
                }
            }
        }
    }
    (tfdt.unwrap(), duration, first_sync.unwrap_or(false))
}

fn boxes(data: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= data.len() {
        let size = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        assert!(size >= 8 && at + size <= data.len(), "malformed box");
        out.push((&data[at + 4..at + 8], &data[at + 8..at + size]));
        at += size;
    }
    out
}

/// A media playlist as the tests read it back.
#[derive(Debug, Default, Clone)]
pub(crate) struct Parsed {
    pub(crate) version: u32,
    pub(crate) target_duration: u64,
    pub(crate) media_sequence: u64,
    pub(crate) part_target: Option<f64>,
    pub(crate) independent_segments: bool,
    pub(crate) skipped: u64,
    pub(crate) segments: Vec<ParsedSegment>,
    /// Parts after the last segment (the one being built).
    pub(crate) open_parts: Vec<ParsedPart>,
    pub(crate) hint: Option<String>,
    pub(crate) reports: Vec<String>,
    pub(crate) server_control: String,
    /// `EXT-X-ENDLIST` was the last line.
    pub(crate) ended: bool,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct ParsedSegment {
    pub(crate) duration: f64,
    pub(crate) uri: String,
    pub(crate) pdt: Option<String>,
    pub(crate) discontinuity: bool,
    pub(crate) gap: bool,
    pub(crate) map: Option<String>,
    /// The URI of the `EXT-X-KEY` in force (none, or `METHOD=NONE`: in the clear).
    pub(crate) key: Option<String>,
    pub(crate) parts: Vec<ParsedPart>,
}

#[derive(Debug, Clone)]
pub(crate) struct ParsedPart {
    pub(crate) duration: f64,
    pub(crate) uri: String,
    pub(crate) independent: bool,
}

fn attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let at = line.find(&format!("{name}="))? + name.len() + 1;
    let rest = &line[at..];
    Some(match rest.strip_prefix('"') {
        Some(q) => &q[..q.find('"')?],
        None => rest.split(',').next()?,
    })
}

pub(crate) fn parse(text: &str) -> Parsed {
    let mut p = Parsed::default();
    let mut seg = ParsedSegment::default();
    let mut map = None;
    let mut key = None;
    assert!(text.starts_with("#EXTM3U\n"), "{text}");
    for line in text.lines().skip(1) {
        if let Some(v) = line.strip_prefix("#EXT-X-VERSION:") {
            p.version = v.parse().unwrap();
        } else if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            p.target_duration = v.parse().unwrap();
        } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            p.media_sequence = v.parse().unwrap();
        } else if let Some(v) = line.strip_prefix("#EXT-X-SERVER-CONTROL:") {
            p.server_control = v.to_string();
        } else if line.starts_with("#EXT-X-PART-INF:") {
            p.part_target = attr(line, "PART-TARGET").map(|v| v.parse().unwrap());
        } else if line == "#EXT-X-INDEPENDENT-SEGMENTS" {
            p.independent_segments = true;
        } else if line.starts_with("#EXT-X-SKIP:") {
            p.skipped = attr(line, "SKIPPED-SEGMENTS").unwrap().parse().unwrap();
        } else if line == "#EXT-X-DISCONTINUITY" {
            seg.discontinuity = true;
        } else if line == "#EXT-X-GAP" {
            seg.gap = true;
        } else if line.starts_with("#EXT-X-MAP:") {
            assert!(
                key.as_ref().is_none_or(|k: &String| k.contains('#')),
                "an EXT-X-MAP under an AES-128 key would be encrypted: {text}"
            );
            map = attr(line, "URI").map(String::from);
        } else if line.starts_with("#EXT-X-KEY:") {
            key = match attr(line, "METHOD") {
                Some("NONE") => None,
                Some("AES-128") => attr(line, "URI").map(String::from),
                Some("SAMPLE-AES") => Some(format!(
                    "{}#{}",
                    attr(line, "URI").unwrap(),
                    attr(line, "KEYID").unwrap()
                )),
                other => panic!("key method {other:?}"),
            };
        } else if let Some(v) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            seg.pdt = Some(v.to_string());
        } else if line.starts_with("#EXT-X-PART:") {
            seg.parts.push(ParsedPart {
                duration: attr(line, "DURATION").unwrap().parse().unwrap(),
                uri: attr(line, "URI").unwrap().to_string(),
                independent: attr(line, "INDEPENDENT") == Some("YES"),
            });
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            assert!(v.ends_with(','), "EXTINF needs its comma: {line}");
            seg.duration = v.trim_end_matches(',').parse().unwrap();
        } else if line.starts_with("#EXT-X-PRELOAD-HINT:") {
            assert_eq!(attr(line, "TYPE"), Some("PART"));
            p.hint = attr(line, "URI").map(String::from);
        } else if line.starts_with("#EXT-X-RENDITION-REPORT:") {
            p.reports.push(line.to_string());
        } else if line == "#EXT-X-ENDLIST" {
            assert!(
                text.ends_with("#EXT-X-ENDLIST\n"),
                "ENDLIST is the last line"
            );
            p.ended = true;
        } else if !line.starts_with('#') && !line.is_empty() {
            seg.uri = line.to_string();
            seg.map = map.clone();
            seg.key = key.clone();
            p.segments.push(std::mem::take(&mut seg));
        } else if !line.starts_with("#EXT-X-DISCONTINUITY-SEQUENCE:") {
            panic!("unexpected line {line:?}");
        }
    }
    p.open_parts = seg.parts;
    p
}

/// Runs a packager and keeps what a store would hold, checking on every playlist that the
/// objects it names exist.
pub(crate) struct Harness {
    pub(crate) packager: Packager,
    pub(crate) t0: SystemTime,
    pub(crate) store: HashMap<String, bytes::Bytes>,
    /// Every version of every media playlist, by rendition.
    pub(crate) playlists: HashMap<String, Vec<Parsed>>,
    pub(crate) deltas: HashMap<String, Vec<Parsed>>,
    pub(crate) masters: Vec<String>,
    /// Every segment ever emitted: rendition, msn, bytes.
    pub(crate) segments: Vec<(String, u64, bytes::Bytes)>,
    /// The packager encrypts.
    encrypted: bool,
    out: Vec<Artifact>,
}

impl Harness {
    pub(crate) fn new(config: PackagerConfig) -> Harness {
        Harness {
            encrypted: config.encryption.is_some(),
            packager: Packager::new(config),
            t0: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            store: HashMap::new(),
            playlists: HashMap::new(),
            deltas: HashMap::new(),
            masters: Vec::new(),
            segments: Vec::new(),
            out: Vec::new(),
        }
    }

    pub(crate) fn at(&self, ms: i64) -> SystemTime {
        self.t0 + Duration::from_millis(ms.max(0) as u64)
    }

    pub(crate) fn begin(&mut self, session: &str, ms: i64) {
        let now = self.at(ms);
        let id = SessionId::parse(session).unwrap();
        self.packager.begin_session(id, now, &mut self.out);
        self.apply();
    }

    pub(crate) fn track(
        &mut self,
        rendition: &RenditionId,
        info: crate::testing::TrackInfo,
        ms: i64,
    ) {
        let now = self.at(ms);
        self.packager
            .track(rendition.clone(), info, now, &mut self.out);
        self.apply();
    }

    pub(crate) fn frame(&mut self, rendition: &RenditionId, frame: Frame, ms: i64) {
        let now = self.at(ms);
        self.packager.frame(rendition, frame, now, &mut self.out);
        self.apply();
    }

    pub(crate) fn end(&mut self, ms: i64) {
        let now = self.at(ms);
        self.packager.end_session(now, &mut self.out);
        self.apply();
    }

    pub(crate) fn end_event(&mut self, ms: i64) {
        let now = self.at(ms);
        self.packager.end_event(now, &mut self.out);
        self.apply();
    }

    pub(crate) fn reopen(&mut self) {
        self.packager.reopen(&mut self.out);
        self.apply();
    }

    pub(crate) fn last(&self, rendition: &str) -> &Parsed {
        self.playlists[rendition].last().unwrap()
    }

    fn apply(&mut self) {
        for a in std::mem::take(&mut self.out) {
            match a {
                Artifact::InitSegment {
                    rendition,
                    session,
                    data,
                } => {
                    self.store
                        .insert(format!("{rendition}/{session}/init.mp4"), data);
                }
                Artifact::Part {
                    rendition,
                    session,
                    msn,
                    part,
                    data,
                } => {
                    self.store
                        .insert(format!("{rendition}/{session}/{msn}.{part}.m4s"), data);
                }
                Artifact::Segment {
                    rendition,
                    session,
                    msn,
                    data,
                } => {
                    let parts: Vec<u8> = (0..)
                        .map_while(|i| {
                            self.store
                                .get(&format!("{rendition}/{session}/{msn}.{i}.m4s"))
                        })
                        .flat_map(|p| p.iter().copied())
                        .collect();
                    // In the clear, a segment is its parts; encrypted, each is on its own.
                    assert!(
                        parts.is_empty() || parts[..] == data[..] || self.encrypted,
                        "{rendition} {msn}: the segment is not its parts"
                    );
                    self.segments
                        .push((rendition.to_string(), msn.0, data.clone()));
                    self.store
                        .insert(format!("{rendition}/{session}/{msn}.m4s"), data);
                }
                Artifact::MediaPlaylist {
                    rendition,
                    playlist,
                } => {
                    let r = rendition.to_string();
                    let full = parse(std::str::from_utf8(&playlist.full).unwrap());
                    self.check_listed(&r, &full, &playlist.full);
                    if let Some(delta) = &playlist.delta {
                        let d = parse(std::str::from_utf8(delta).unwrap());
                        self.check_listed(&r, &d, delta);
                        self.deltas.entry(r.clone()).or_default().push(d);
                    }
                    self.playlists.entry(r).or_default().push(full);
                }
                Artifact::MasterPlaylist { data } => {
                    self.masters.push(String::from_utf8(data.to_vec()).unwrap());
                }
                Artifact::Expired {
                    rendition,
                    session,
                    what,
                } => match what {
                    Expired::Init => {
                        self.store
                            .remove(&format!("{rendition}/{session}/init.mp4"));
                    }
                    Expired::Segment(msn) => {
                        self.store
                            .remove(&format!("{rendition}/{session}/{msn}.m4s"));
                    }
                    Expired::Parts { msn, count } => {
                        for i in 0..count {
                            let key = format!("{rendition}/{session}/{msn}.{i}.m4s");
                            assert!(self.store.remove(&key).is_some(), "expired twice: {key}");
                        }
                    }
                },
            }
        }
    }

    /// A viewer never sees a playlist naming an object that cannot be fetched.
    fn check_listed(&self, rendition: &str, p: &Parsed, text: &[u8]) {
        let text = String::from_utf8_lossy(text);
        let has = |uri: &str| self.store.contains_key(&format!("{rendition}/{uri}"));
        for s in &p.segments {
            if let Some(map) = &s.map {
                assert!(has(map), "{rendition}: {map} listed but missing\n{text}");
            }
            assert!(
                s.gap || has(&s.uri),
                "{rendition}: {} listed but missing\n{text}",
                s.uri
            );
            for part in &s.parts {
                assert!(
                    has(&part.uri),
                    "{rendition}: {} listed but missing\n{text}",
                    part.uri
                );
            }
        }
        for part in &p.open_parts {
            assert!(
                has(&part.uri),
                "{rendition}: {} listed but missing\n{text}",
                part.uri
            );
        }
        if let Some(h) = &p.hint {
            assert!(
                !has(h),
                "{rendition}: hinted part {h} already exists\n{text}"
            );
        }
    }
}

/// A generated live source: video renditions with the same keyframes, and audio, in the
/// order a publisher (or a transcoder) delivers them.
#[derive(Clone, Debug)]
pub(crate) struct Source {
    /// Video frame duration, 90 kHz ticks (3 003 for 29.97 fps).
    pub(crate) frame_ticks: i64,
    /// GOP lengths in frames, repeated.
    pub(crate) gops: Vec<usize>,
    /// A composition offset on every frame, 90 kHz ticks.
    pub(crate) cto: i64,
    pub(crate) videos: Vec<RenditionId>,
    pub(crate) audio: bool,
    /// Audio frames missing from (start ms, length ms).
    pub(crate) audio_gaps: Vec<(i64, i64)>,
    /// How much earlier than the video the audio arrives, ms.
    pub(crate) audio_ahead_ms: i64,
    /// Where every timestamp starts, ms.
    pub(crate) start_ms: i64,
}

impl Default for Source {
    fn default() -> Self {
        Source {
            frame_ticks: 3_600,
            gops: vec![50],
            cto: 0,
            videos: vec![RenditionId::SOURCE],
            audio: true,
            audio_gaps: Vec::new(),
            audio_ahead_ms: 0,
            start_ms: 0,
        }
    }
}

impl Source {
    /// `(arrival ms, rendition, frame)` for `seconds` of media, in arrival order.
    pub(crate) fn events(&self, seconds: f64) -> Vec<(i64, RenditionId, Frame)> {
        let mut events = Vec::new();
        let frames = (seconds * 90_000.0 / self.frame_ticks as f64) as usize;
        let mut gop = 0;
        let mut in_gop = 0;
        let start = self.start_ms * 90;
        for i in 0..frames {
            let key = in_gop == 0;
            in_gop += 1;
            if in_gop == self.gops[gop % self.gops.len()] {
                in_gop = 0;
                gop += 1;
            }
            let dts = start + i as i64 * self.frame_ticks;
            for r in &self.videos {
                events.push((dts / 90, r.clone(), video(dts, self.cto, key)));
            }
        }
        if self.audio {
            let count = (seconds * 48_000.0 / 1_024.0) as i64;
            for j in 0..count {
                let ms = (j * 1_024 * 1_000 + 24_000) / 48_000;
                if self.audio_gaps.iter().any(|(s, l)| ms >= *s && ms < s + l) {
                    continue;
                }
                let ts = self.start_ms + ms;
                events.push((ts - self.audio_ahead_ms, RenditionId::AUDIO, audio(ts)));
            }
        }
        events.sort_by_key(|e| e.0);
        events
    }

    /// Configures the renditions and feeds `seconds` of media as one session.
    pub(crate) fn run(&self, h: &mut Harness, session: &str, seconds: f64, wall_offset_ms: i64) {
        h.begin(session, wall_offset_ms);
        for r in &self.videos {
            h.track(r, video_info(), wall_offset_ms);
        }
        if self.audio {
            h.track(&RenditionId::AUDIO, audio_info(), wall_offset_ms);
        }
        let mut last = 0;
        for (ms, r, f) in self.events(seconds) {
            last = ms;
            h.frame(&r, f, wall_offset_ms + ms - self.start_ms);
        }
        h.end(wall_offset_ms + last - self.start_ms);
    }
}
