//! The per-event packager: publisher sessions in, artifacts out. It routes frames to the
//! session's tracks, holds the ones that are ahead of the lead, and turns what the tracks
//! complete into objects and playlist updates.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use weir_media::{Frame, Timestamp, TrackInfo, TrackKind, AAC_SAMPLES_PER_FRAME};

use crate::cut::{CutPlan, LeadCut};
use crate::playlist::{SegmentEntry, SegmentHead};
use crate::protect::TrackProtection;
use crate::publish::Publication;
use crate::session::{CutRules, Placed, Placement, Running, RunningTrack, Session, Unused};
use crate::target::TargetDuration;
use crate::timeline::{track_duration, EventTime};
use crate::{fmp4, Artifact, EncryptionMethod, MediaSequence, RenditionId, SessionId};

/// Frames held while a session waits for its lead video rendition's first keyframe (about
/// 1.4 s of AAC at 44.1 kHz, or a few frames of each other rendition of a ladder); the oldest
/// is dropped when full.
const MAX_QUEUED_FRAMES: usize = 256;

/// Audio frames after which a session with no video configuration starts audio-only.
const AUDIO_ONLY_AFTER_FRAMES: usize = 48;

/// Frames of one rendition held while the lead catches up (about 10 s of 48 kHz audio);
/// beyond that the lead is taken to have stalled and the oldest goes on alone.
const MAX_HELD_PER_TRACK: usize = 512;

/// Cuts a session keeps for renditions that lag behind the lead; a rendition further behind
/// is cut where it is and continues from the newest cut, with gaps in between.
const MAX_CUTS: usize = 64;

/// Packages one event: keeps its playlists across publisher sessions.
///
/// Feed it [`begin_session`](Packager::begin_session) when a publisher is accepted, then
/// [`track`](Packager::track) for every rendition's decoder configuration and
/// [`frame`](Packager::frame) for every access unit, and
/// [`end_session`](Packager::end_session) when the publisher leaves. Each call appends what
/// it produced to `out`. Time is passed in; nothing is read from a clock.
///
/// An event has any number of video renditions and at most one audio rendition. The first
/// video rendition configured in a session is its *lead*: the session starts at the lead's
/// first keyframe, and the lead alone decides where segments are cut and allocates their
/// media sequence numbers. Every other rendition cuts at the same presentation times with the
/// same numbers (a rendition with no media for a span lists an `EXT-X-GAP` segment), so a
/// number always names the same span of the event in every playlist, and
/// `EXT-X-PROGRAM-DATE-TIME` is the same for it everywhere.
///
/// Each later session continues the same playlists after `EXT-X-DISCONTINUITY`, with media
/// sequence numbers that never go back and a decode timeline (`tfdt`) that continues where
/// the previous session ended.
#[derive(Debug)]
pub struct Packager {
    config: PackagerConfig,
    target: TargetDuration,
    publication: Publication,
    next_msn: MediaSequence,
    /// End of the event's decode timeline so far.
    timeline_end: EventTime,
    sessions_run: u64,
    session: Option<Session>,
    /// How much longer than the lead's a sibling segment can be: one audio frame.
    audio_margin: Duration,
    stats: PackagerStats,
    /// [`end_event`](Packager::end_event) was called.
    ended: bool,
}

impl Packager {
    /// A packager for one event.
    pub fn new(config: PackagerConfig) -> Packager {
        Packager {
            target: TargetDuration::new(config.target_duration_policy, config.target_duration),
            publication: Publication::new(
                config.window_segments.get(),
                config.low_latency.then_some(config.part_target),
                config.encryption.clone(),
            ),
            next_msn: config.first_msn,
            timeline_end: EventTime::default(),
            sessions_run: 0,
            session: None,
            audio_margin: Duration::ZERO,
            stats: PackagerStats::default(),
            ended: false,
            config,
        }
    }

    /// What the packager corrected so far.
    pub fn stats(&self) -> PackagerStats {
        self.stats
    }

    /// Every rendition the event has a playlist for (video and audio, in the order they
    /// appeared), with its average bit rate over the segments it has listed, bits/s (the
    /// master playlist's `AVERAGE-BANDWIDTH` basis).
    pub fn renditions(&self) -> Vec<(RenditionId, u64)> {
        self.publication.bitrates()
    }

    /// Whether the master playlist has been published (players can start).
    pub fn has_master(&self) -> bool {
        self.publication.has_master()
    }

    /// `EXT-X-TARGETDURATION`, once chosen.
    pub fn target_duration(&self) -> Option<Duration> {
        self.target.get().map(Duration::from_secs)
    }

    /// A publisher was accepted: what follows belongs to session `id`. Ends any session still
    /// open. Ignored once the event has [ended](Self::end_event).
    pub fn begin_session(&mut self, id: SessionId, now: SystemTime, out: &mut Vec<Artifact>) {
        self.end_session(now, out);
        if !self.ended {
            self.session = Some(Session::new(id));
        }
    }

    /// The event is over: the open session ends (its partial GOP becomes a short final
    /// segment) and every media playlist gets `EXT-X-ENDLIST` and keeps what it lists, so the
    /// event stays playable from its window as a finished event. Sessions are refused until
    /// [`reopen`](Self::reopen).
    pub fn end_event(&mut self, now: SystemTime, out: &mut Vec<Artifact>) {
        self.end_session(now, out);
        self.ended = true;
        self.publication.set_ended(true, self.target.get(), out);
    }

    /// The event runs again after [`end_event`](Self::end_event): the next session continues
    /// the playlists after a discontinuity, without `EXT-X-ENDLIST`, media sequence numbers
    /// continuing (a new live run: players that saw the end treat the event as finished).
    pub fn reopen(&mut self, out: &mut Vec<Artifact>) {
        if self.ended {
            self.ended = false;
            self.publication.set_ended(false, self.target.get(), out);
        }
    }

    /// Whether the event has ended ([`end_event`](Self::end_event)).
    pub fn is_ended(&self) -> bool {
        self.ended
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
        let samples_encrypted = self
            .config
            .encryption
            .as_ref()
            .is_some_and(|e| e.method() == EncryptionMethod::SampleAes);
        if samples_encrypted {
            if let Err(error) = weir_media::ProtectedRanges::new(&info.codec) {
                // Never in the clear: the rendition is left out of the event.
                tracing::error!(%rendition, %error, "cannot encrypt this rendition's samples; not packaging it");
                return;
            }
        }
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let slot = session.configs.iter().position(|(r, _)| *r == rendition);
        if slot.is_some_and(|i| session.configs[i].1 == info) {
            return;
        }
        let running = session
            .running
            .as_ref()
            .is_some_and(|r| r.tracks.iter().any(|t| t.rendition == rendition));
        if running {
            tracing::warn!(%rendition, "codec configuration changed mid-session; continuing after a discontinuity");
            self.restart(now, out);
        }
        let Some(session) = self.session.as_mut() else {
            return;
        };
        match slot {
            Some(i) => session.configs[i].1 = info,
            None => session.configs.push((rendition, info)),
        }
    }

    /// Ends the session and begins the next one with the same renditions, after a
    /// discontinuity.
    fn restart(&mut self, now: SystemTime, out: &mut Vec<Artifact>) {
        let Some(session) = self.session.as_ref() else {
            return;
        };
        let restarts = session.restarts + 1;
        let configs = session.configs.clone();
        let base = session.base.clone();
        let id = SessionId::parse(&format!("{base}x{restarts}")).unwrap_or_else(|| base.clone());
        self.begin_session(id, now, out);
        if let Some(s) = self.session.as_mut() {
            s.configs = configs;
            s.restarts = restarts;
            s.base = base;
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
        let Some(running) = session.running.as_mut() else {
            self.before_start(rendition, frame, now, out);
            return;
        };
        let Some(index) = running
            .tracks
            .iter()
            .position(|t| t.rendition == *rendition)
        else {
            return;
        };
        let lead_is_video = running.tracks[0].info.kind == TrackKind::Video;
        if index > 0 && lead_is_video {
            let pts = running.event_pts(index, &frame);
            let held = &mut running.held[index];
            if !held.is_empty() || running.lead_reach.is_none_or(|r| pts > r) {
                let overflow = (held.len() == MAX_HELD_PER_TRACK).then(|| held.pop_front());
                held.push_back(frame);
                if let Some(Some(oldest)) = overflow {
                    self.feed(index, oldest, now, out);
                }
                return;
            }
        }
        self.feed(index, frame, now, out);
        if index == 0 {
            self.release_held(false, now, out);
        }
    }

    /// A frame of a session that has not started: the lead's first keyframe starts it;
    /// other renditions' frames wait (bounded), and audio alone starts an audio-only session.
    fn before_start(
        &mut self,
        rendition: &RenditionId,
        frame: Frame,
        now: SystemTime,
        out: &mut Vec<Artifact>,
    ) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        if !session.configs.iter().any(|(r, _)| r == rendition) {
            return;
        }
        let lead = session.lead().cloned();
        if lead.as_ref() == Some(rendition) {
            if frame.keyframe {
                self.start(&frame, now, out);
                self.feed(0, frame, now, out);
                self.drain_queued(now, out);
            }
            return;
        }
        if session.queued.len() == MAX_QUEUED_FRAMES {
            session.queued.pop_front();
        }
        session.queued.push_back((rendition.clone(), frame));
        let audio_only = lead.is_none()
            && session.queued.len() >= AUDIO_ONLY_AFTER_FRAMES
            && session
                .configs
                .iter()
                .all(|(_, i)| i.kind == TrackKind::Audio);
        if audio_only {
            let first = session.queued[0].1.clone();
            self.start(&first, now, out);
            self.drain_queued(now, out);
        }
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

    /// Places the held frames the lead has caught up with (all of them with `all`).
    fn release_held(&mut self, all: bool, now: SystemTime, out: &mut Vec<Artifact>) {
        let tracks = self
            .session
            .as_ref()
            .and_then(|s| s.running.as_ref())
            .map_or(0, |r| r.tracks.len());
        for index in 1..tracks {
            loop {
                let Some(running) = self.session.as_mut().and_then(|s| s.running.as_mut()) else {
                    return;
                };
                let ready = running.held[index].front().is_some_and(|f| {
                    all || running
                        .lead_reach
                        .is_some_and(|reach| running.event_pts(index, f) <= reach)
                });
                if !ready {
                    break;
                }
                let Some(frame) = running.held[index].pop_front() else {
                    break;
                };
                self.feed(index, frame, now, out);
            }
        }
    }

    fn start(&mut self, first: &Frame, now: SystemTime, out: &mut Vec<Artifact>) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let origin = self.timeline_end;
        let lead = session.lead().cloned();
        let mut tracks: Vec<RunningTrack> = session
            .configs
            .iter()
            .map(|(r, info)| RunningTrack::new(r.clone(), info.clone(), origin))
            .collect();
        if let Some(e) = self.config.encryption.as_ref() {
            if e.method() == EncryptionMethod::SampleAes {
                for t in &mut tracks {
                    match TrackProtection::new(e.clone(), &t.info, self.next_msn) {
                        Ok(p) => t.protection = Some(p),
                        Err(error) => {
                            // Never in the clear: the session does not start.
                            tracing::error!(rendition = %t.rendition, %error, "cannot encrypt this track; not packaging");
                            return;
                        }
                    }
                }
            }
        }
        let default_kid = tracks
            .iter()
            .find_map(|t| t.protection.as_ref().map(TrackProtection::default_kid));
        self.sessions_run += 1;
        tracks.sort_by_key(|t| Some(&t.rendition) != lead.as_ref());
        self.audio_margin = tracks
            .iter()
            .filter(|t| t.info.kind == TrackKind::Audio)
            .map(|t| track_duration(u64::from(AAC_SAMPLES_PER_FRAME), t.timescale))
            .max()
            .unwrap_or_default();
        let cto = Timestamp::new(first.composition_offset, first.dts.timescale);
        let at =
            EventTime::from_ticks(origin.ticks() + cto.rescale(crate::timeline::EVENT_TIMESCALE));
        self.publication
            .set_siblings(tracks.iter().map(|t| t.rendition.clone()).collect());
        for t in &tracks {
            self.publication.playlist(&t.rendition);
            out.push(Artifact::InitSegment {
                rendition: t.rendition.clone(),
                session: session.id.clone(),
                data: fmp4::init_segment(
                    &t.info,
                    t.protection.as_ref().map(TrackProtection::init).as_ref(),
                ),
            });
        }
        tracing::info!(session = %session.id, renditions = tracks.len(), msn = self.next_msn.0, "packaging started");
        session.running = Some(Running {
            start_dts: first.dts,
            first_msn: self.next_msn,
            plan: CutPlan::new(self.next_msn, at, now),
            held: tracks.iter().map(|_| VecDeque::new()).collect(),
            tracks,
            lead_reach: None,
            lead_last: None,
            part_target: self.config.part_target,
            default_kid,
        });
    }

    /// Places one frame on its track and publishes what that completed.
    fn feed(&mut self, index: usize, frame: Frame, now: SystemTime, out: &mut Vec<Artifact>) {
        let rules = CutRules {
            target: self.config.target_duration,
            limit: self.target.segment_limit(self.audio_margin),
        };
        let Some(running) = self.session.as_mut().and_then(|s| s.running.as_mut()) else {
            return;
        };
        let rendition = running.tracks[index].rendition.clone();
        match running.place(index, frame.clone(), rules) {
            Placement::Placed(placed) => self.placed(index, placed, now, out),
            Placement::Dropped(Unused::AudioOverlap) => self.stats.audio_frames_dropped += 1,
            Placement::Dropped(_) => {}
            Placement::Jump => {
                self.stats.timestamp_jumps += 1;
                tracing::warn!(%rendition, "publisher timestamps jumped; continuing after a discontinuity");
                self.restart(now, out);
                self.frame(&rendition, frame, now, out);
            }
        }
    }

    fn placed(&mut self, index: usize, placed: Placed, now: SystemTime, out: &mut Vec<Artifact>) {
        if placed.resynced {
            self.stats.audio_resyncs += 1;
            if self.stats.audio_resyncs.is_power_of_two() {
                tracing::warn!(
                    resyncs = self.stats.audio_resyncs,
                    "audio timestamps skipped ahead (lost frames); audio resynced to them"
                );
            }
        }
        if placed.cut == Some(LeadCut::Split) {
            self.stats.segments_split += 1;
            tracing::warn!(
                target_duration_s = self.target.get(),
                "the source's GOP is longer than the target duration allows; segment split before a non-keyframe"
            );
        }
        self.publish(index, placed.closed, now, out);
        for gap in placed.gaps {
            self.publish_gap(index, gap, None, now, out);
        }
        self.trim_plan(now, out);
    }

    /// Emits what left every playlist and whose availability time (RFC 8216bis §6.2.2) has
    /// passed by `now` (`Artifact::Expired`). Segments do this as they arrive; call it on a
    /// timer too (once a second), so that an event whose publisher left lets go of its old
    /// segments, parts and init segments on time.
    pub fn expire(&mut self, now: SystemTime, out: &mut Vec<Artifact>) {
        self.publication.expire(now, out);
    }

    /// The publisher left: everything held is placed, every track's last segment is closed
    /// (a short final segment), renditions that ended early list gaps up to the lead's last
    /// segment, and nothing is hinted any more.
    pub fn end_session(&mut self, now: SystemTime, out: &mut Vec<Artifact>) {
        if self.session.as_ref().is_some_and(|s| s.running.is_some()) {
            self.release_held(true, now, out);
            let tracks = self
                .session
                .as_ref()
                .and_then(|s| s.running.as_ref())
                .map_or(0, |r| r.tracks.len());
            for i in 0..tracks {
                self.finish_track(i, now, out);
            }
            self.fill_to_lead(now, out);
            if let Some(running) = self.session.as_ref().and_then(|s| s.running.as_ref()) {
                let lead = &running.tracks[0].rendition;
                let last = self.publication.last_msn(lead).unwrap_or(running.first_msn);
                self.next_msn = self.next_msn.max(last.next());
            }
            self.publication.end_session(self.target.get(), out);
        }
        self.session = None;
    }
}

fn running_has(session: Option<&Session>, rendition: &RenditionId) -> bool {
    session
        .and_then(|s| s.running.as_ref())
        .is_some_and(|r| r.tracks.iter().any(|t| &t.rendition == rendition))
}

fn gap_entry(head: SegmentHead, duration: Duration) -> SegmentEntry {
    SegmentEntry {
        head,
        duration,
        bytes: 0,
        independent: true,
        gap: true,
        parts: Vec::new(),
    }
}

mod config;
mod emit;

pub use config::{PackagerConfig, PackagerStats};

#[cfg(test)]
#[path = "packager_tests.rs"]
mod tests;
