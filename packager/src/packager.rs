//! The per-event packager: publisher sessions in, artifacts out.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use weir_media::{CodecConfig, Frame, Timescale, Timestamp, TrackInfo, TrackKind};

use crate::playlist::{
    render_master, AudioGroup, Expiry, MediaPlaylist, SegmentEntry, VariantInfo,
};
use crate::track::{ClosedSegment, TrackSegmenter};
use crate::{fmp4, MediaSequence, RenditionId, SessionId};

/// Frames held while a session waits for its lead video rendition's first keyframe (about
/// 1.4 s of AAC at 44.1 kHz, or a few frames of each other rendition of a ladder); the oldest
/// is dropped when full.
const MAX_QUEUED_FRAMES: usize = 256;

/// Audio frames after which a session with no video configuration starts audio-only.
const AUDIO_ONLY_AFTER_FRAMES: usize = 48;

/// Audio frames held while waiting for the lead video to catch up (about 10 s at 48 kHz);
/// beyond that the video is taken to have stalled and audio goes on alone.
const MAX_HELD_AUDIO: usize = 512;

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
/// [`track`](Packager::track) for every rendition's decoder configuration and
/// [`frame`](Packager::frame) for every access unit, and
/// [`end_session`](Packager::end_session) when the publisher leaves. Each call appends what
/// it produced to `out`. Time is passed in; nothing is read from a clock.
///
/// An event has any number of video renditions (the passthrough `source`, or the rungs of a
/// transcoding ladder) and at most one audio rendition. The first video rendition configured
/// in a session is its *lead*: the session starts at the lead's first keyframe (frames of
/// other renditions that arrive earlier are held), or audio-only when about a second of audio
/// has arrived and no video configuration has. Every video rendition cuts at its first
/// keyframe at or after the target duration; a ladder whose keyframes sit at the same
/// presentation times in every rendition (as weir's transcoder makes them) therefore gets
/// segments with the same media sequence numbers and start times everywhere. Audio follows
/// the lead's cuts.
///
/// Each later session continues the same playlists after `EXT-X-DISCONTINUITY`, with media
/// sequence numbers that never go back and a decode timeline (`tfdt`) that continues where
/// the previous session ended.
#[derive(Debug)]
pub struct Packager {
    config: PackagerConfig,
    next_msn: MediaSequence,
    /// `EXT-X-TARGETDURATION`, seconds: set by the event's first segment.
    target_duration: Option<u64>,
    /// Every rendition the event has had, in the order it first appeared.
    playlists: Vec<MediaPlaylist>,
    /// End of the event's decode timeline so far, 90 kHz ticks.
    timeline_end: u64,
    sessions_run: u64,
    session: Option<Session>,
    master: Option<Bytes>,
}

#[derive(Debug)]
struct Session {
    id: SessionId,
    /// The renditions announced so far, in order: the first video one is the lead.
    configs: Vec<(RenditionId, TrackInfo)>,
    queued: VecDeque<(RenditionId, Frame)>,
    running: Option<Running>,
    config_changes: u32,
}

impl Session {
    fn lead(&self) -> Option<&RenditionId> {
        self.configs
            .iter()
            .find(|(_, info)| info.kind == TrackKind::Video)
            .map(|(r, _)| r)
    }
}

#[derive(Debug)]
struct Running {
    wall_start: SystemTime,
    /// The publisher's timestamp of the session's first frame.
    start_dts: Timestamp,
    /// One per rendition configured when the session started; the lead first.
    tracks: Vec<RunningTrack>,
    /// Presentation times (90 kHz, event timeline) where the lead cut segments that the audio
    /// has not reached yet.
    boundaries: VecDeque<u64>,
    /// Audio frames later than the lead's newest frame: held until the lead has caught up, so
    /// that no audio frame passes a cut the lead has not made yet (a transcoder's video comes
    /// out later than its audio).
    held_audio: VecDeque<(RenditionId, Frame)>,
    /// Decode timestamp of the lead's newest frame, 90 kHz (publisher's timeline).
    lead_dts: Option<i64>,
}

#[derive(Debug)]
struct RunningTrack {
    rendition: RenditionId,
    segmenter: TrackSegmenter,
    /// Decode time at the session start (the lead's first keyframe), track ticks.
    base: u64,
    segments: u64,
    /// Whether the track's first sample has been placed relative to the session start.
    anchored: bool,
    /// Frames per second, measured on the track's first segment.
    frame_rate: Option<f64>,
    /// Presentation time of the segment being built (its first keyframe), track ticks.
    segment_pts: Option<i64>,
}

impl Packager {
    /// A packager for one event.
    pub fn new(config: PackagerConfig) -> Packager {
        Packager {
            config,
            next_msn: MediaSequence(0),
            target_duration: None,
            playlists: Vec::new(),
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
            configs: Vec::new(),
            queued: VecDeque::new(),
            running: None,
            config_changes: 0,
        });
    }

    /// The decoder configuration of `rendition` (an FLV sequence header, or an encoder's
    /// parameter sets). A configuration that differs from a running one ends the session and
    /// continues in a new one after a discontinuity, with new init segments.
    pub fn track(
        &mut self,
        rendition: RenditionId,
        info: TrackInfo,
        now: SystemTime,
        out: &mut Vec<Artifact>,
    ) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let slot = session.configs.iter().position(|(r, _)| *r == rendition);
        if let Some(i) = slot {
            if session.configs[i].1 == info {
                return;
            }
        }
        let running = session
            .running
            .as_ref()
            .is_some_and(|r| r.tracks.iter().any(|t| t.rendition == rendition));
        if !running {
            match slot {
                Some(i) => session.configs[i].1 = info,
                None => session.configs.push((rendition, info)),
            }
            return;
        }
        tracing::warn!(%rendition, "codec configuration changed mid-session; starting a new session");
        let changes = session.config_changes + 1;
        let mut configs = std::mem::take(&mut session.configs);
        let id = SessionId::parse(&format!("{}x{changes}", session.id))
            .unwrap_or_else(|| session.id.clone());
        self.begin_session(id, now, out);
        if let Some(i) = slot {
            configs[i].1 = info;
        }
        if let Some(s) = self.session.as_mut() {
            s.config_changes = changes;
            s.configs = configs;
        }
    }

    /// One access unit of `rendition` in the current session.
    pub fn frame(
        &mut self,
        rendition: &RenditionId,
        frame: Frame,
        now: SystemTime,
        out: &mut Vec<Artifact>,
    ) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        if let Some(running) = session.running.as_mut() {
            let has_video = running
                .tracks
                .first()
                .is_some_and(|t| t.segmenter.info.kind == TrackKind::Video);
            if frame.track == TrackKind::Audio && has_video {
                if running.held_audio.len() == MAX_HELD_AUDIO {
                    if let Some((r, f)) = running.held_audio.pop_front() {
                        self.push(&r, f, now, out);
                    }
                }
                if let Some(running) = self.session.as_mut().and_then(|s| s.running.as_mut()) {
                    running.held_audio.push_back((rendition.clone(), frame));
                }
                self.release_audio(now, out);
                return;
            }
            let lead = running
                .tracks
                .first()
                .is_some_and(|t| t.rendition == *rendition);
            self.push(rendition, frame, now, out);
            if lead {
                self.release_audio(now, out);
            }
            return;
        }
        if !session.configs.iter().any(|(r, _)| r == rendition) {
            return;
        }
        let has_lead = session.lead().is_some();
        if session.lead() == Some(rendition) {
            if frame.keyframe {
                self.start(frame.dts, now, out);
                self.push(rendition, frame, now, out);
                self.drain_queued(now, out);
            }
            return;
        }
        if session.queued.len() == MAX_QUEUED_FRAMES {
            session.queued.pop_front();
        }
        session.queued.push_back((rendition.clone(), frame));
        let audio_only = !has_lead
            && session.queued.len() >= AUDIO_ONLY_AFTER_FRAMES
            && session
                .configs
                .iter()
                .all(|(_, i)| i.kind == TrackKind::Audio);
        if audio_only {
            let first = session.queued[0].1.dts;
            self.start(first, now, out);
            self.drain_queued(now, out);
        }
    }

    /// Pushes the held audio frames the lead has caught up with (all of them with `all`).
    fn release_audio_until(&mut self, all: bool, now: SystemTime, out: &mut Vec<Artifact>) {
        loop {
            let Some(running) = self.session.as_mut().and_then(|s| s.running.as_mut()) else {
                return;
            };
            let ready = running.held_audio.front().is_some_and(|(_, f)| {
                all || running
                    .lead_dts
                    .is_some_and(|lead| f.dts.rescale(Timescale::MPEG_90K) <= lead)
            });
            if !ready {
                return;
            }
            let Some((r, f)) = running.held_audio.pop_front() else {
                return;
            };
            self.push(&r, f, now, out);
        }
    }

    fn release_audio(&mut self, now: SystemTime, out: &mut Vec<Artifact>) {
        self.release_audio_until(false, now, out);
    }

    /// The publisher left: each rendition's partial GOP becomes a short final segment, and
    /// the playlists keep their window until the next session continues them.
    pub fn end_session(&mut self, now: SystemTime, out: &mut Vec<Artifact>) {
        self.release_audio_until(true, now, out);
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let Some(running) = session.running.as_mut() else {
            self.session = None;
            return;
        };
        let mut closed_segments = Vec::new();
        for track in &mut running.tracks {
            let closed = track.segmenter.finish();
            let end = Timestamp::new(
                track.segmenter.next_decode_time() as i64,
                track.segmenter.timescale,
            )
            .rescale(Timescale::MPEG_90K);
            self.timeline_end = self.timeline_end.max(end.max(0) as u64);
            self.next_msn = self.next_msn.max(track.segmenter.segment_msn());
            if let Some(closed) = closed {
                let facts = SegmentFacts::of(&session.id, running.wall_start, track);
                closed_segments.push((facts, closed));
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
        let lead = session.lead().cloned();
        let mut tracks: Vec<RunningTrack> = session
            .configs
            .iter()
            .map(|(rendition, info)| {
                let base = Timestamp::new(base_90k as i64, Timescale::MPEG_90K)
                    .rescale(info.codec.timescale())
                    .max(0) as u64;
                RunningTrack {
                    rendition: rendition.clone(),
                    segmenter: TrackSegmenter::new(info.clone(), base, msn, part_secs),
                    base,
                    segments: 0,
                    anchored: Some(rendition) == lead.as_ref(),
                    frame_rate: None,
                    segment_pts: None,
                }
            })
            .collect();
        tracks.sort_by_key(|t| !t.anchored);
        for track in &tracks {
            if !self
                .playlists
                .iter()
                .any(|p| p.rendition() == &track.rendition)
            {
                let window = self.config.window_segments.get();
                self.playlists
                    .push(MediaPlaylist::new(track.rendition.clone(), window));
            }
            out.push(Artifact::InitSegment {
                rendition: track.rendition.clone(),
                session: session.id.clone(),
                data: fmp4::init_segment(&track.segmenter.info),
            });
        }
        tracing::info!(session = %session.id, renditions = tracks.len(), msn = msn.0, "packaging started");
        session.running = Some(Running {
            wall_start: now,
            start_dts,
            tracks,
            boundaries: VecDeque::new(),
            held_audio: VecDeque::new(),
            lead_dts: None,
        });
    }

    fn drain_queued(&mut self, now: SystemTime, out: &mut Vec<Artifact>) {
        let queued = match self.session.as_mut() {
            Some(s) => std::mem::take(&mut s.queued),
            None => return,
        };
        for (rendition, frame) in queued {
            self.frame(&rendition, frame, now, out);
        }
    }

    fn push(
        &mut self,
        rendition: &RenditionId,
        frame: Frame,
        now: SystemTime,
        out: &mut Vec<Artifact>,
    ) {
        let target = self.config.target_duration;
        let part_secs = self.config.part_target.as_secs_f64();
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let Some(running) = session.running.as_mut() else {
            return;
        };
        let has_video = running
            .tracks
            .iter()
            .any(|t| t.segmenter.info.kind == TrackKind::Video);
        let start_dts = running.start_dts;
        let Some(index) = running
            .tracks
            .iter()
            .position(|t| t.rendition == *rendition)
        else {
            return;
        };
        if index == 0 && running.tracks[0].segmenter.info.kind == TrackKind::Video {
            let dts = frame.dts.rescale(Timescale::MPEG_90K);
            running.lead_dts = Some(running.lead_dts.map_or(dts, |d| d.max(dts)));
        }
        let track = &mut running.tracks[index];
        let kind = track.segmenter.info.kind;
        let ts = track.segmenter.timescale;
        if !track.anchored {
            // A track other than the lead starts where its first frame lies relative to the
            // lead's first keyframe, so that renditions and A/V stay in sync. Frames before
            // it (and, for video, before the track's first keyframe) are dropped.
            let offset = frame.dts.rescale(ts) - start_dts.rescale(ts);
            if offset < 0 && kind == TrackKind::Audio || kind == TrackKind::Video && !frame.keyframe
            {
                return;
            }
            if offset < 0 {
                tracing::warn!(%rendition, offset_ticks = offset, "rendition starts before the lead; aligned to it");
            }
            let start = track.base + offset.max(0) as u64;
            track.segmenter = TrackSegmenter::new(
                track.segmenter.info.clone(),
                start,
                track.segmenter.segment_msn(),
                part_secs,
            );
            track.anchored = true;
        }
        let composition = frame.composition_offset;
        let frame_ts = frame.dts.timescale;
        let closed = match kind {
            TrackKind::Video => {
                // Cut on presentation time: keyframes forced at regular presentation times
                // can sit at irregular decode times (the encoder's reordering delay varies
                // with the frames around them).
                let target_ticks = (target.as_secs_f64() * f64::from(ts.get())) as i64;
                let cto = Timestamp::new(composition, frame_ts).rescale(ts);
                let start = *track
                    .segment_pts
                    .get_or_insert(track.segmenter.next_decode_time() as i64 + cto);
                let mut cut_at = None;
                let closed = track.segmenter.push(frame, |at, keyframe| {
                    let pts = at as i64 + cto;
                    let cut = keyframe && pts - start >= target_ticks;
                    if cut {
                        cut_at = Some(pts);
                    }
                    cut
                });
                if let Some(pts) = cut_at {
                    track.segment_pts = Some(pts);
                }
                closed
            }
            TrackKind::Audio => {
                let boundary = if has_video {
                    running.boundaries.front().map(|b| {
                        Timestamp::new(*b as i64, Timescale::MPEG_90K)
                            .rescale(ts)
                            .max(0) as u64
                    })
                } else {
                    let segment_start =
                        track.segmenter.next_decode_time() - track.segmenter.segment_duration();
                    Some(segment_start + (target.as_secs_f64() * f64::from(ts.get())) as u64)
                };
                track
                    .segmenter
                    .push(frame, |at, _| boundary.is_some_and(|b| at >= b))
            }
        };
        let Some(closed) = closed else { return };
        match kind {
            TrackKind::Video if index == 0 => {
                // The lead's cut, as a presentation time: the keyframe that starts the next
                // segment decodes at the end of this one and shows `composition` later.
                let end = Timestamp::new((closed.start + closed.duration) as i64, ts)
                    .rescale(Timescale::MPEG_90K)
                    + Timestamp::new(composition, frame_ts).rescale(Timescale::MPEG_90K);
                running.boundaries.push_back(end.max(0) as u64);
            }
            TrackKind::Audio if has_video => {
                running.boundaries.pop_front();
            }
            _ => {}
        }
        let track = &mut running.tracks[index];
        if track.frame_rate.is_none() && kind == TrackKind::Video {
            track.frame_rate = closed.sample_rate;
        }
        let facts = SegmentFacts::of(&session.id, running.wall_start, track);
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
        out.push(Artifact::Segment {
            rendition: facts.rendition.clone(),
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
        let Some(playlist) = self
            .playlists
            .iter_mut()
            .find(|p| p.rendition() == &facts.rendition)
        else {
            return;
        };
        let expired = playlist.push(entry, target, now);
        out.push(Artifact::MediaPlaylist {
            rendition: facts.rendition.clone(),
            data: playlist.render(target_duration),
        });
        if regrown {
            for other in &self.playlists {
                if other.rendition() != &facts.rendition && !other.is_empty() {
                    out.push(Artifact::MediaPlaylist {
                        rendition: other.rendition().clone(),
                        data: other.render(target_duration),
                    });
                }
            }
        }
        for e in expired {
            let (session, msn) = match e {
                Expiry::Segment(s, m) => (s, Some(m)),
                Expiry::Init(s) => (s, None),
            };
            out.push(Artifact::Expired {
                rendition: facts.rendition.clone(),
                session,
                msn,
            });
        }
        if let Some(data) = self.master_playlist() {
            if self.master.as_ref() != Some(&data) {
                self.master = Some(data.clone());
                out.push(Artifact::MasterPlaylist { data });
            }
        }
    }

    fn playlist(&self, rendition: &RenditionId) -> Option<&MediaPlaylist> {
        self.playlists.iter().find(|p| p.rendition() == rendition)
    }

    /// The master playlist of the current session, once every one of its renditions lists a
    /// segment: one variant stream per video rendition, ordered by bandwidth, sharing the
    /// audio rendition as a group (RFC 8216 §4.3.4.1.1), or one audio-only variant.
    fn master_playlist(&self) -> Option<Bytes> {
        let running = self.session.as_ref()?.running.as_ref()?;
        let mut audio = None;
        let mut videos = Vec::new();
        for track in &running.tracks {
            let playlist = self.playlist(&track.rendition)?;
            if playlist.is_empty() {
                return None;
            }
            let bandwidth = playlist.peak_bps.max(playlist.average_bps());
            match &track.segmenter.info.codec {
                CodecConfig::Aac(aac) => {
                    audio.get_or_insert(AudioGroup {
                        rendition: track.rendition.clone(),
                        channels: aac.channels.max(1),
                        codecs: track.segmenter.info.codec.codec_string(),
                        bandwidth,
                        average_bandwidth: playlist.average_bps(),
                    });
                }
                CodecConfig::H264(avc) => videos.push(VariantInfo {
                    bandwidth,
                    average_bandwidth: playlist.average_bps(),
                    codecs: track.segmenter.info.codec.codec_string(),
                    resolution: Some((avc.width, avc.height)),
                    frame_rate: track.frame_rate.or(avc.frame_rate),
                    rendition: track.rendition.clone(),
                }),
            }
        }
        videos.sort_by_key(|v| v.bandwidth);
        Some(render_master(&videos, audio.as_ref()))
    }
}

/// What the playlist needs to know about the track a segment came from.
#[derive(Debug)]
struct SegmentFacts {
    session: SessionId,
    wall_start: SystemTime,
    rendition: RenditionId,
    timescale: Timescale,
    base: u64,
    first_of_session: bool,
}

impl SegmentFacts {
    fn of(session: &SessionId, wall_start: SystemTime, track: &mut RunningTrack) -> SegmentFacts {
        track.segments += 1;
        SegmentFacts {
            session: session.clone(),
            wall_start,
            rendition: track.rendition.clone(),
            timescale: track.segmenter.timescale,
            base: track.base,
            first_of_session: track.segments == 1,
        }
    }
}
