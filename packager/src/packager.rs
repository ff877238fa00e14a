//! The per-event packager: publisher sessions in, artifacts out.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use weir_media::{CodecConfig, Frame, Timescale, Timestamp, TrackInfo, TrackKind};

use crate::playlist::{render_master, Expiry, MediaPlaylist, SegmentEntry, VariantInfo};
use crate::track::{ClosedSegment, TrackSegmenter};
use crate::{fmp4, MediaSequence, RenditionId, SessionId};

/// Audio frames held while a session waits for its first video keyframe (about 1.4 s of AAC
/// at 44.1 kHz); the oldest is dropped when full.
const MAX_QUEUED_AUDIO: usize = 64;

/// Audio frames after which a session with no video configuration starts audio-only.
const AUDIO_ONLY_AFTER_FRAMES: usize = 48;

/// How the packager cuts and lists segments.
#[derive(Clone, Debug)]
pub struct PackagerConfig {
    /// Segment target: a segment is cut at the first keyframe at or after this much media
    /// time. With a longer GOP the segment is as long as the GOP. Default 2 s.
    pub target_duration: Duration,
    /// Part target: segments are built as parts (CMAF chunks, one `moof`+`mdat` each) no
    /// longer than this, ready for LL-HLS `EXT-X-PART` (RFC 8216bis §4.4.4.9). Default 1 s.
    pub part_target: Duration,
    /// Segments listed in each live media playlist. Default 6.
    pub window_segments: NonZeroUsize,
}

impl Default for PackagerConfig {
    fn default() -> Self {
        PackagerConfig {
            target_duration: Duration::from_secs(2),
            part_target: Duration::from_secs(1),
            window_segments: NonZeroUsize::new(6).unwrap_or(NonZeroUsize::MIN),
        }
    }
}

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
    /// `{rendition}/{session}/{msn}.m4s`: `moof`+`mdat` pairs, starting with a sync sample.
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
        /// The playlist text.
        data: Bytes,
    },
    /// `master.m3u8`, the new master playlist.
    MasterPlaylist {
        /// The playlist text.
        data: Bytes,
    },
    /// A segment (or, with `msn: None`, an init segment) left the live window more than its
    /// availability time ago (RFC 8216 §6.2.2): the store may drop it.
    Expired {
        /// The rendition.
        rendition: RenditionId,
        /// The session.
        session: SessionId,
        /// The segment, or `None` for the session's init segment.
        msn: Option<MediaSequence>,
    },
}

/// Packages one event: keeps its playlists across publisher sessions.
///
/// Feed it [`begin_session`](Packager::begin_session) when a publisher is accepted, then
/// [`track`](Packager::track) for every sequence header and [`frame`](Packager::frame) for
/// every access unit, and [`end_session`](Packager::end_session) when the publisher leaves.
/// Each call appends what it produced to `out`. Time is passed in; nothing is read from a
/// clock.
///
/// A session starts at its first video keyframe (audio frames before it are dropped), or
/// audio-only when about a second of audio has arrived and no video configuration has. Each
/// later session continues the same playlists after `EXT-X-DISCONTINUITY`, with media
/// sequence numbers that never go back and a decode timeline (`tfdt`) that continues where
/// the previous session ended.
#[derive(Debug)]
pub struct Packager {
    config: PackagerConfig,
    next_msn: MediaSequence,
    /// `EXT-X-TARGETDURATION`, seconds: set by the event's first segment.
    target_duration: Option<u64>,
    video_playlist: MediaPlaylist,
    audio_playlist: MediaPlaylist,
    /// End of the event's decode timeline so far, 90 kHz ticks.
    timeline_end: u64,
    sessions_run: u64,
    session: Option<Session>,
    master: Option<Bytes>,
}

#[derive(Debug)]
struct Session {
    id: SessionId,
    video_config: Option<TrackInfo>,
    audio_config: Option<TrackInfo>,
    queued_audio: VecDeque<Frame>,
    running: Option<Running>,
    config_changes: u32,
}

#[derive(Debug)]
struct Running {
    wall_start: SystemTime,
    /// The publisher's timestamp of the session's first frame.
    start_dts: Timestamp,
    video: Option<RunningTrack>,
    audio: Option<RunningTrack>,
    /// Segment boundaries the video has cut and the audio has not reached, audio ticks.
    boundaries: VecDeque<u64>,
    frame_rate: Option<f64>,
}

#[derive(Debug)]
struct RunningTrack {
    segmenter: TrackSegmenter,
    /// Decode time at the session start (the video's first keyframe), track ticks.
    base: u64,
    segments: u64,
    /// Whether the track's first sample has been placed relative to the session start.
    anchored: bool,
}

impl Packager {
    /// A packager for one event.
    pub fn new(config: PackagerConfig) -> Packager {
        let window = config.window_segments.get();
        Packager {
            config,
            next_msn: MediaSequence(0),
            target_duration: None,
            video_playlist: MediaPlaylist::new(RenditionId::SOURCE, window),
            audio_playlist: MediaPlaylist::new(RenditionId::AUDIO, window),
            timeline_end: 0,
            sessions_run: 0,
            session: None,
            master: None,
        }
    }

    /// A publisher was accepted: what follows belongs to session `id`. Ends any session still
    /// open.
    pub fn begin_session(&mut self, id: SessionId, now: SystemTime, out: &mut Vec<Artifact>) {
        self.end_session(now, out);
        self.session = Some(Session {
            id,
            video_config: None,
            audio_config: None,
            queued_audio: VecDeque::new(),
            running: None,
            config_changes: 0,
        });
    }

    /// A track's decoder configuration (an FLV sequence header). A configuration that differs
    /// from the running one ends the session and continues in a new one after a
    /// discontinuity, with a new init segment.
    pub fn track(&mut self, info: TrackInfo, now: SystemTime, out: &mut Vec<Artifact>) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let slot = match info.kind {
            TrackKind::Video => &mut session.video_config,
            TrackKind::Audio => &mut session.audio_config,
        };
        if slot.as_ref() == Some(&info) {
            return;
        }
        let running = session.running.as_ref().is_some_and(|r| match info.kind {
            TrackKind::Video => r.video.is_some(),
            TrackKind::Audio => r.audio.is_some(),
        });
        if !running {
            *slot = Some(info);
            return;
        }
        tracing::warn!(kind = ?info.kind, "codec configuration changed mid-session; starting a new session");
        let changes = session.config_changes + 1;
        let (video, audio) = (session.video_config.clone(), session.audio_config.clone());
        let id = SessionId::parse(&format!("{}x{changes}", session.id))
            .unwrap_or_else(|| session.id.clone());
        self.begin_session(id, now, out);
        if let Some(s) = self.session.as_mut() {
            s.config_changes = changes;
            s.video_config = video;
            s.audio_config = audio;
            match info.kind {
                TrackKind::Video => s.video_config = Some(info),
                TrackKind::Audio => s.audio_config = Some(info),
            }
        }
    }

    /// One access unit of the current session.
    pub fn frame(&mut self, frame: Frame, now: SystemTime, out: &mut Vec<Artifact>) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        if session.running.is_none() {
            match frame.track {
                TrackKind::Audio if session.audio_config.is_some() => {
                    if session.queued_audio.len() == MAX_QUEUED_AUDIO {
                        session.queued_audio.pop_front();
                    }
                    session.queued_audio.push_back(frame);
                    if session.video_config.is_none()
                        && session.queued_audio.len() >= AUDIO_ONLY_AFTER_FRAMES
                    {
                        let first = session.queued_audio[0].dts;
                        self.start(first, now, out);
                        self.drain_queued_audio(now, out);
                    }
                }
                TrackKind::Video if frame.keyframe && session.video_config.is_some() => {
                    let start = frame.dts;
                    self.start(start, now, out);
                    self.push_video(frame, now, out);
                    self.drain_queued_audio(now, out);
                }
                _ => {}
            }
            return;
        }
        match frame.track {
            TrackKind::Video => self.push_video(frame, now, out),
            TrackKind::Audio => self.push_audio(frame, now, out),
        }
    }

    /// The publisher left: the partial GOP becomes a short final segment, and the playlists
    /// keep their window until the next session continues them.
    pub fn end_session(&mut self, now: SystemTime, out: &mut Vec<Artifact>) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let Some(running) = session.running.as_mut() else {
            self.session = None;
            return;
        };
        let mut closed_segments = Vec::new();
        for kind in [TrackKind::Video, TrackKind::Audio] {
            let wall_start = running.wall_start;
            let Some(track) = running.track_mut(kind) else {
                continue;
            };
            let closed = track.segmenter.finish();
            let end = Timestamp::new(
                track.segmenter.next_decode_time() as i64,
                track.segmenter.timescale,
            )
            .rescale(Timescale::MPEG_90K);
            self.timeline_end = self.timeline_end.max(end.max(0) as u64);
            self.next_msn = self.next_msn.max(track.segmenter.segment_msn());
            if let Some(closed) = closed {
                closed_segments.push((
                    SegmentFacts::of(&session.id, wall_start, kind, track),
                    closed,
                ));
            }
        }
        // Published while the session is still current, so the master playlist can use it.
        for (facts, closed) in closed_segments {
            self.publish(facts, closed, now, out);
        }
        self.session = None;
    }

    fn start(&mut self, start_dts: Timestamp, now: SystemTime, out: &mut Vec<Artifact>) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        self.sessions_run += 1;
        let part_secs = self.config.part_target.as_secs_f64();
        let (base_90k, msn) = (self.timeline_end, self.next_msn);
        let make = |info: &TrackInfo| {
            let base = Timestamp::new(base_90k as i64, Timescale::MPEG_90K)
                .rescale(info.codec.timescale())
                .max(0) as u64;
            RunningTrack {
                segmenter: TrackSegmenter::new(info.clone(), base, msn, part_secs),
                base,
                segments: 0,
                anchored: info.kind == TrackKind::Video,
            }
        };
        let video = session.video_config.as_ref().map(make);
        let audio = session.audio_config.as_ref().map(make);
        for track in [&video, &audio].into_iter().flatten() {
            out.push(Artifact::InitSegment {
                rendition: rendition_of(track.segmenter.info.kind),
                session: session.id.clone(),
                data: fmp4::init_segment(&track.segmenter.info),
            });
        }
        tracing::info!(session = %session.id, video = video.is_some(), audio = audio.is_some(), msn = msn.0, "packaging started");
        session.running = Some(Running {
            wall_start: now,
            start_dts,
            video,
            audio,
            boundaries: VecDeque::new(),
            frame_rate: None,
        });
    }

    fn drain_queued_audio(&mut self, now: SystemTime, out: &mut Vec<Artifact>) {
        let queued = match self.session.as_mut() {
            Some(s) => std::mem::take(&mut s.queued_audio),
            None => return,
        };
        for f in queued {
            self.push_audio(f, now, out);
        }
    }

    fn push_video(&mut self, frame: Frame, now: SystemTime, out: &mut Vec<Artifact>) {
        let target = self.config.target_duration;
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let Some(running) = session.running.as_mut() else {
            return;
        };
        let Some(track) = running.video.as_mut() else {
            return;
        };
        let ts = track.segmenter.timescale;
        let target_ticks = (target.as_secs_f64() * f64::from(ts.get())) as u64;
        let segment_start = track.segmenter.next_decode_time() - track.segmenter.segment_duration();
        let closed = track.segmenter.push(frame, |at, keyframe| {
            keyframe && at - segment_start >= target_ticks
        });
        let Some(closed) = closed else { return };
        if running.frame_rate.is_none() {
            running.frame_rate = closed.sample_rate;
        }
        if let Some(audio) = running.audio.as_ref() {
            let at = Timestamp::new((closed.start + closed.duration) as i64, ts)
                .rescale(audio.segmenter.timescale);
            running.boundaries.push_back(at.max(0) as u64);
        }
        let Some(track) = running.video.as_mut() else {
            return;
        };
        let facts = SegmentFacts::of(&session.id, running.wall_start, TrackKind::Video, track);
        self.publish(facts, closed, now, out);
    }

    fn push_audio(&mut self, frame: Frame, now: SystemTime, out: &mut Vec<Artifact>) {
        let target = self.config.target_duration;
        let part_secs = self.config.part_target.as_secs_f64();
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let Some(running) = session.running.as_mut() else {
            return;
        };
        let has_video = running.video.is_some();
        let start_dts = running.start_dts;
        let Some(track) = running.audio.as_mut() else {
            return;
        };
        if !track.anchored {
            // Audio before the first keyframe is dropped; the first kept frame starts the
            // track where it lies relative to that keyframe, so A/V stay in sync.
            let ts = track.segmenter.timescale;
            let offset = frame.dts.rescale(ts) - start_dts.rescale(ts);
            if offset < 0 {
                return;
            }
            let start = track.base + offset as u64;
            track.segmenter = TrackSegmenter::new(
                track.segmenter.info.clone(),
                start,
                track.segmenter.segment_msn(),
                part_secs,
            );
            track.anchored = true;
        }
        let boundary = if has_video {
            running.boundaries.front().copied()
        } else {
            let ts = track.segmenter.timescale;
            let segment_start =
                track.segmenter.next_decode_time() - track.segmenter.segment_duration();
            Some(segment_start + (target.as_secs_f64() * f64::from(ts.get())) as u64)
        };
        let closed = track
            .segmenter
            .push(frame, |at, _| boundary.is_some_and(|b| at >= b));
        let Some(closed) = closed else { return };
        if has_video {
            running.boundaries.pop_front();
        }
        let facts = SegmentFacts::of(&session.id, running.wall_start, TrackKind::Audio, track);
        self.publish(facts, closed, now, out);
    }

    /// Emits a closed segment, then the playlists that now list it.
    fn publish(
        &mut self,
        facts: SegmentFacts,
        closed: ClosedSegment,
        now: SystemTime,
        out: &mut Vec<Artifact>,
    ) {
        let ts = f64::from(facts.timescale.get());
        let duration = Duration::from_secs_f64(closed.duration as f64 / ts);
        let since_start =
            Duration::from_secs_f64(closed.start.saturating_sub(facts.base) as f64 / ts);
        let rounded = duration.as_secs_f64().round() as u64;
        let mut regrown = false;
        let target_duration = match self.target_duration {
            None => {
                // Chosen once, from the configured target and the first GOP; ceil leaves room
                // for the audio segment, which ends up to one audio frame later.
                let td = self
                    .config
                    .target_duration
                    .as_secs_f64()
                    .ceil()
                    .max(duration.as_secs_f64().ceil()) as u64;
                self.target_duration = Some(td.max(1));
                td.max(1)
            }
            Some(td) if rounded > td => {
                tracing::warn!(
                    previous = td,
                    now = rounded,
                    "the source's GOP grew: EXT-X-TARGETDURATION grows"
                );
                self.target_duration = Some(rounded);
                regrown = true;
                rounded
            }
            Some(td) => td,
        };
        let rendition = rendition_of(facts.kind);
        out.push(Artifact::Segment {
            rendition,
            session: facts.session.clone(),
            msn: closed.msn,
            data: closed.data.clone(),
        });
        let entry = SegmentEntry {
            msn: closed.msn,
            session: facts.session.clone(),
            duration,
            program_date_time: facts.wall_start + since_start,
            discontinuity: facts.first_of_session && self.sessions_run > 1,
            bytes: closed.data.len(),
        };
        let target = Duration::from_secs(target_duration);
        let playlist = match facts.kind {
            TrackKind::Video => &mut self.video_playlist,
            TrackKind::Audio => &mut self.audio_playlist,
        };
        let expired = playlist.push(entry, target, now);
        out.push(Artifact::MediaPlaylist {
            rendition,
            data: playlist.render(target_duration),
        });
        if regrown {
            let other = match facts.kind {
                TrackKind::Video => &self.audio_playlist,
                TrackKind::Audio => &self.video_playlist,
            };
            if !other.is_empty() {
                out.push(Artifact::MediaPlaylist {
                    rendition: other.rendition(),
                    data: other.render(target_duration),
                });
            }
        }
        for e in expired {
            let (session, msn) = match e {
                Expiry::Segment(s, m) => (s, Some(m)),
                Expiry::Init(s) => (s, None),
            };
            out.push(Artifact::Expired {
                rendition,
                session,
                msn,
            });
        }
        let variant = self.session.as_ref().and_then(|s| self.variant(s));
        if let Some(v) = variant {
            let data = render_master(&v);
            if self.master.as_ref() != Some(&data) {
                self.master = Some(data.clone());
                out.push(Artifact::MasterPlaylist { data });
            }
        }
    }

    /// The variant stream of the session, once every one of its renditions lists a segment.
    fn variant(&self, session: &Session) -> Option<VariantInfo> {
        let running = session.running.as_ref()?;
        let video = running.video.as_ref().map(|t| &t.segmenter.info);
        let audio = running.audio.as_ref().map(|t| &t.segmenter.info);
        if video.is_some() && self.video_playlist.is_empty()
            || audio.is_some() && self.audio_playlist.is_empty()
        {
            return None;
        }
        let mut codecs = Vec::new();
        let mut v = VariantInfo {
            bandwidth: 0,
            average_bandwidth: 0,
            codecs: String::new(),
            resolution: None,
            frame_rate: None,
            video: None,
            audio: None,
        };
        if let Some(info) = video {
            codecs.push(info.codec.codec_string());
            v.bandwidth += self
                .video_playlist
                .peak_bps
                .max(self.video_playlist.average_bps());
            v.average_bandwidth += self.video_playlist.average_bps();
            if let CodecConfig::H264(avc) = &info.codec {
                v.resolution = Some((avc.width, avc.height));
                v.frame_rate = running.frame_rate.or(avc.frame_rate);
            }
            v.video = Some(RenditionId::SOURCE);
        }
        if let Some(info) = audio {
            codecs.push(info.codec.codec_string());
            v.bandwidth += self
                .audio_playlist
                .peak_bps
                .max(self.audio_playlist.average_bps());
            v.average_bandwidth += self.audio_playlist.average_bps();
            let channels = match &info.codec {
                CodecConfig::Aac(aac) => aac.channels.max(1),
                CodecConfig::H264(_) => 2,
            };
            v.audio = Some((RenditionId::AUDIO, channels));
        }
        v.codecs = codecs.join(",");
        Some(v)
    }
}

/// What the playlist needs to know about the track a segment came from.
#[derive(Debug)]
struct SegmentFacts {
    session: SessionId,
    wall_start: SystemTime,
    kind: TrackKind,
    timescale: Timescale,
    base: u64,
    first_of_session: bool,
}

impl SegmentFacts {
    fn of(
        session: &SessionId,
        wall_start: SystemTime,
        kind: TrackKind,
        track: &mut RunningTrack,
    ) -> SegmentFacts {
        track.segments += 1;
        SegmentFacts {
            session: session.clone(),
            wall_start,
            kind,
            timescale: track.segmenter.timescale,
            base: track.base,
            first_of_session: track.segments == 1,
        }
    }
}

impl Running {
    fn track_mut(&mut self, kind: TrackKind) -> Option<&mut RunningTrack> {
        match kind {
            TrackKind::Video => self.video.as_mut(),
            TrackKind::Audio => self.audio.as_mut(),
        }
    }
}

fn rendition_of(kind: TrackKind) -> RenditionId {
    match kind {
        TrackKind::Video => RenditionId::SOURCE,
        TrackKind::Audio => RenditionId::AUDIO,
    }
}
