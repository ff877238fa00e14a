//! One publisher session: the renditions it announced, the frames held before it starts, and
//! once it runs, every track placed on the event timeline and cut where the lead cuts.

use std::collections::VecDeque;
use std::time::Duration;

use weir_media::{Frame, Timescale, Timestamp, TrackInfo, TrackKind, AAC_SAMPLES_PER_FRAME};

use crate::clock::{audio_step, video_step, Step};
use crate::cut::{lead_cut, CutPlan, LeadCut, LeadFrame};
use crate::timeline::{duration_in, EventTime};
use crate::track::{Closed, PendingSample, TrackSegmenter};
use crate::{MediaSequence, RenditionId, SessionId};

/// A publisher session of an event.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) id: SessionId,
    /// The renditions announced so far, in order: the first video one is the lead.
    pub(crate) configs: Vec<(RenditionId, TrackInfo)>,
    /// Frames that arrived before the lead's first keyframe.
    pub(crate) queued: VecDeque<(RenditionId, Frame)>,
    pub(crate) running: Option<Running>,
    /// The ID the publisher session was accepted with; restarts append `x{n}` to it.
    pub(crate) base: SessionId,
    /// How many times the session was restarted after a discontinuity (new configuration or
    /// timestamp jump): the suffix of the next session's ID.
    pub(crate) restarts: u32,
}

impl Session {
    pub(crate) fn new(id: SessionId) -> Session {
        Session {
            base: id.clone(),
            id,
            configs: Vec::new(),
            queued: VecDeque::new(),
            running: None,
            restarts: 0,
        }
    }

    /// The rendition whose keyframes cut segments: the first video one announced.
    pub(crate) fn lead(&self) -> Option<&RenditionId> {
        self.configs
            .iter()
            .find(|(_, info)| info.kind == TrackKind::Video)
            .map(|(r, _)| r)
    }
}

/// What every track's placement needs to know about the event.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CutRules {
    /// The segment target.
    pub(crate) target: Duration,
    /// The longest segment the lead may make (target duration rule).
    pub(crate) limit: Duration,
}

/// A running session: its tracks on the event timeline and its cut plan.
#[derive(Debug)]
pub(crate) struct Running {
    /// The publisher's timestamp of the lead's first keyframe: the session's time zero.
    pub(crate) start_dts: Timestamp,
    pub(crate) first_msn: MediaSequence,
    pub(crate) plan: CutPlan,
    /// One per rendition configured when the session started; the lead first.
    pub(crate) tracks: Vec<RunningTrack>,
    /// Frames of other renditions that are later than the lead's newest frame: held until the
    /// lead has decided whether a cut comes before them (a transcoder's video comes out later
    /// than its audio, and its rungs at slightly different times).
    pub(crate) held: Vec<VecDeque<Frame>>,
    /// Presentation time of the lead's newest frame: every cut up to it is decided.
    pub(crate) lead_reach: Option<EventTime>,
    /// The lead's newest complete segment and its duration.
    pub(crate) lead_last: Option<(MediaSequence, Duration)>,
    /// Parts are at most this long.
    pub(crate) part_target: Duration,
    /// `SAMPLE-AES`: the key ID of the session's first init segments; segments under another
    /// key use an init segment of their key period.
    pub(crate) default_kid: Option<[u8; 16]>,
}

/// One track of a running session.
#[derive(Debug)]
pub(crate) struct RunningTrack {
    pub(crate) rendition: RenditionId,
    pub(crate) info: TrackInfo,
    pub(crate) timescale: Timescale,
    /// Decode time of the session's time zero, track ticks.
    base: i64,
    /// Built from the track's first usable frame on.
    pub(crate) segmenter: Option<TrackSegmenter>,
    /// The `cbcs` protection its segmenter takes when it is built.
    pub(crate) protection: Option<crate::protect::TrackProtection>,
    /// The key periods' init segments published for it, newest last (a few).
    pub(crate) key_inits: Vec<SessionId>,
    /// Where the publisher's timestamp says the pending sample decodes, track ticks.
    pending_expected: i64,
    /// Presentation time of the segment being built, track ticks.
    segment_pts: i64,
    /// The cut (index in the plan) of the segment being built.
    pub(crate) cursor: usize,
    /// Frames per second, measured on the track's first segment.
    pub(crate) frame_rate: Option<f64>,
    /// Video: ticks of a timestamp gap not yet given to a sample (no sample may last longer
    /// than a part, so a long gap is spread over the next samples).
    debt: u64,
    /// Audio: whether the previous sample was stretched (one gap counts once).
    resyncing: bool,
}

/// What placing a frame did.
#[derive(Debug)]
pub(crate) enum Placement {
    /// The frame was added.
    Placed(Placed),
    /// The frame was not used (before the session start, before a video track's first
    /// keyframe, or overlapping the previous audio frame).
    Dropped(Unused),
    /// The timestamps jumped: the session must continue after a discontinuity.
    Jump,
}

/// What adding a frame completed.
#[derive(Debug, Default)]
pub(crate) struct Placed {
    /// The parts and segment it completed.
    pub(crate) closed: Closed,
    /// The cuts (plan indices) this track passed without a sample: their segments are gaps
    /// for it.
    pub(crate) gaps: Vec<usize>,
    /// Why the lead cut before this frame, if it did.
    pub(crate) cut: Option<LeadCut>,
    /// Whether an audio sample was stretched to fill a gap in the timestamps.
    pub(crate) resynced: bool,
}

/// Why a frame was not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unused {
    BeforeStart,
    WaitingForKeyframe,
    AudioOverlap,
}

impl RunningTrack {
    pub(crate) fn new(rendition: RenditionId, info: TrackInfo, origin: EventTime) -> Self {
        let timescale = info.codec.timescale();
        RunningTrack {
            rendition,
            base: origin.in_timescale(timescale),
            timescale,
            info,
            segmenter: None,
            protection: None,
            key_inits: Vec::new(),
            pending_expected: 0,
            segment_pts: 0,
            cursor: 0,
            frame_rate: None,
            debt: 0,
            resyncing: false,
        }
    }

    fn default_duration(&self) -> u32 {
        match self.info.kind {
            TrackKind::Audio => AAC_SAMPLES_PER_FRAME,
            TrackKind::Video => self.timescale.get() / 25,
        }
    }
}

/// `ticks` as durations of at most `cap`.
fn chunks(ticks: i64, cap: u32) -> Vec<u32> {
    let mut rest = ticks.max(0) as u64;
    let mut out = Vec::new();
    while rest > 0 {
        let d = rest.min(u64::from(cap));
        out.push(d as u32);
        rest -= d;
    }
    out
}

impl Running {
    /// Where a frame of track `index` decodes, and is presented, in the track's ticks.
    fn times(&self, index: usize, frame: &Frame) -> (i64, i64) {
        let t = &self.tracks[index];
        let dts = t.base + frame.dts.rescale(t.timescale) - self.start_dts.rescale(t.timescale);
        let cto =
            Timestamp::new(frame.composition_offset, frame.dts.timescale).rescale(t.timescale);
        (dts, dts + cto)
    }

    /// The presentation time of a frame of track `index` on the event timeline.
    pub(crate) fn event_pts(&self, index: usize, frame: &Frame) -> EventTime {
        let (_, pts) = self.times(index, frame);
        EventTime::from_track(pts, self.tracks[index].timescale)
    }

    /// Places `frame` of track `index` (0 is the lead).
    pub(crate) fn place(&mut self, index: usize, frame: Frame, rules: CutRules) -> Placement {
        let (expected, pts) = self.times(index, &frame);
        let lead = index == 0;
        let kind = self.tracks[index].info.kind;
        let event_pts = EventTime::from_track(pts, self.tracks[index].timescale);
        if lead {
            self.lead_reach = Some(self.lead_reach.map_or(event_pts, |r| r.max(event_pts)));
        }
        let sample = PendingSample {
            composition_offset: i32::try_from(pts - expected).unwrap_or(0),
            keyframe: frame.keyframe || kind == TrackKind::Audio,
            data: frame.data,
        };
        if self.tracks[index].segmenter.is_none() {
            return self.start_track(index, sample, expected, pts, event_pts);
        }
        let track = &mut self.tracks[index];
        let Some(segmenter) = track.segmenter.as_mut() else {
            return Placement::Dropped(Unused::BeforeStart);
        };
        let step = match kind {
            TrackKind::Video => video_step(
                track.pending_expected,
                expected,
                segmenter.last_duration(),
                track.timescale,
            ),
            TrackKind::Audio => audio_step(
                segmenter.next_decode_time() as i64,
                expected,
                AAC_SAMPLES_PER_FRAME,
                track.timescale,
            ),
        };
        let (mut duration, resynced) = match step {
            Step::Jump => return Placement::Jump,
            Step::DropNew => return Placement::Dropped(Unused::AudioOverlap),
            Step::Duration(d) | Step::Glitch(d) => (d, false),
            Step::Resync(d) => (d, true),
        };
        // No sample lasts longer than a part (RFC 8216bis §4.4.4.9: parts are at most the
        // part target): the rest of a long gap goes to the next samples, and audio, being
        // measured against its timestamps at every frame, catches up by itself.
        let cap = u32::try_from(duration_in(self.part_target, track.timescale))
            .unwrap_or(u32::MAX)
            .max(1);
        // Audio: the frame before a gap plays its length; copies of it fill the rest.
        let mut gap = 0;
        if kind == TrackKind::Video {
            let total = u64::from(duration) + track.debt;
            duration = u32::try_from(total.min(u64::from(cap))).unwrap_or(cap);
            track.debt = total - u64::from(duration);
        } else if resynced {
            gap = i64::from(duration.saturating_sub(AAC_SAMPLES_PER_FRAME));
            duration = duration.min(AAC_SAMPLES_PER_FRAME);
        }
        let new_resync = resynced && !track.resyncing;
        track.resyncing = resynced;
        let start = segmenter.next_decode_time() as i64;
        let placed_dts = start + i64::from(duration) + gap;
        let mut gaps = Vec::new();
        let mut lead_reason = None;
        let cut = if lead {
            let decision = lead_cut(
                LeadFrame {
                    segment_pts: track.segment_pts,
                    segment_dts: segmenter.segment_start() as i64,
                    pts: placed_dts + i64::from(sample.composition_offset),
                    dts: placed_dts,
                    keyframe: sample.keyframe,
                    frame_duration: i64::from(duration),
                },
                duration_in(rules.target, track.timescale) as i64,
                duration_in(rules.limit, track.timescale) as i64,
            );
            decision.map(|reason| {
                lead_reason = Some(reason);
                let at = EventTime::from_track(
                    placed_dts + i64::from(sample.composition_offset),
                    track.timescale,
                );
                let i = self.plan.push(at);
                track.cursor = i;
                track.segment_pts = placed_dts + i64::from(sample.composition_offset);
                self.plan.last().msn
            })
        } else {
            let crossed = self.plan.index_at(event_pts);
            let cut = self.plan.get(crossed).filter(|_| crossed > track.cursor);
            cut.map(|c| {
                gaps.extend(track.cursor + 1..crossed);
                track.cursor = crossed;
                track.segment_pts = pts;
                c.msn
            })
        };
        // Fillers up to a follower's cut close its segment; the rest open the next one.
        let filled_to = start + i64::from(duration);
        let split = match (cut, lead) {
            (Some(_), false) => self
                .plan
                .get(track.cursor)
                .map_or(filled_to, |c| c.at.in_timescale(track.timescale))
                .clamp(filled_to, filled_to + gap),
            _ => filled_to + gap,
        };
        let before = chunks(split - filled_to, cap);
        let after = chunks(filled_to + gap - split, cap);
        track.pending_expected = expected;
        let closed = segmenter.push_filled(sample, duration, (&before, &after), cut);
        if track.frame_rate.is_none() && kind == TrackKind::Video {
            track.frame_rate = closed.segment.as_ref().and_then(|s| s.sample_rate);
        }
        Placement::Placed(Placed {
            closed,
            gaps,
            cut: lead_reason,
            resynced: new_resync,
        })
    }

    /// A track's first usable frame: it starts at the cut its presentation time falls in.
    fn start_track(
        &mut self,
        index: usize,
        sample: PendingSample,
        expected: i64,
        pts: i64,
        event_pts: EventTime,
    ) -> Placement {
        let track = &self.tracks[index];
        if expected < track.base {
            return Placement::Dropped(Unused::BeforeStart);
        }
        if track.info.kind == TrackKind::Video && !sample.keyframe {
            return Placement::Dropped(Unused::WaitingForKeyframe);
        }
        let at = if index == 0 {
            self.plan.last_index()
        } else {
            self.plan.index_at(event_pts)
        };
        // Nothing before the lead's first presented frame (its segments start there), and
        // nothing in a segment whose gap was already listed.
        let before_cut = index > 0 && self.plan.get(at).is_some_and(|c| event_pts < c.at);
        if at < track.cursor || before_cut {
            return Placement::Dropped(Unused::BeforeStart);
        }
        let msn = self.plan.get(at).map_or(self.first_msn, |c| c.msn);
        let part_target = self.part_target_ticks(index);
        let default_duration = track.default_duration();
        let track = &mut self.tracks[index];
        let gaps: Vec<usize> = (track.cursor..at).collect();
        track.cursor = at;
        track.pending_expected = expected;
        track.segment_pts = pts;
        let mut segmenter = TrackSegmenter::new(
            &track.info,
            expected.max(0) as u64,
            msn,
            part_target,
            default_duration,
        );
        segmenter.protect(track.protection.take());
        let closed = segmenter.push(sample, 0, None);
        track.segmenter = Some(segmenter);
        Placement::Placed(Placed {
            closed,
            gaps,
            ..Placed::default()
        })
    }

    fn part_target_ticks(&self, index: usize) -> u64 {
        duration_in(self.part_target, self.tracks[index].timescale)
    }
}
