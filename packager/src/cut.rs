//! The cut policy: where a session's segments begin. The lead rendition decides each cut,
//! once, and allocates its media sequence number; every other rendition and the audio cut at
//! the same presentation times and take the same numbers.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use crate::timeline::EventTime;
use crate::MediaSequence;

/// The start of one segment, shared by every rendition of the session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cut {
    /// The segment's media sequence number.
    pub(crate) msn: MediaSequence,
    /// Presentation time of the lead's first sample in it.
    pub(crate) at: EventTime,
    /// Its `EXT-X-PROGRAM-DATE-TIME`: the session's wall-clock start plus the presentation
    /// time elapsed since the session's first cut.
    pub(crate) program_date_time: SystemTime,
}

/// The cuts of one session, oldest first. Cuts every rendition has passed are dropped, so the
/// plan holds a few entries however long the session runs.
#[derive(Debug)]
pub(crate) struct CutPlan {
    cuts: VecDeque<Cut>,
    /// The index (counted from the session's first cut) of `cuts[0]`.
    first_index: usize,
    origin: EventTime,
    wall_start: SystemTime,
}

impl CutPlan {
    /// A plan whose first segment is `msn`, starting at `at`, which happened at `wall_start`.
    pub(crate) fn new(msn: MediaSequence, at: EventTime, wall_start: SystemTime) -> CutPlan {
        CutPlan {
            cuts: VecDeque::from([Cut {
                msn,
                at,
                program_date_time: wall_start,
            }]),
            first_index: 0,
            origin: at,
            wall_start,
        }
    }

    /// The lead cut at `at`: the next segment starts there. Returns its index.
    pub(crate) fn push(&mut self, at: EventTime) -> usize {
        let last = self.last();
        let cut = Cut {
            msn: last.msn.next(),
            at: at.max(last.at),
            program_date_time: self.wall_start + at.since(self.origin),
        };
        self.cuts.push_back(cut);
        self.first_index + self.cuts.len() - 1
    }

    /// The newest cut (the segment the lead is building).
    pub(crate) fn last(&self) -> &Cut {
        self.cuts
            .back()
            .unwrap_or_else(|| unreachable!("a plan always has a cut"))
    }

    /// The index of the newest cut.
    pub(crate) fn last_index(&self) -> usize {
        self.first_index + self.cuts.len() - 1
    }

    /// The cut with index `index`, if it is still held.
    pub(crate) fn get(&self, index: usize) -> Option<&Cut> {
        index
            .checked_sub(self.first_index)
            .and_then(|i| self.cuts.get(i))
    }

    /// The index of the newest cut at or before `at` (0 if `at` is before them all).
    pub(crate) fn index_at(&self, at: EventTime) -> usize {
        let held = self.cuts.iter().rposition(|c| c.at <= at).unwrap_or(0);
        self.first_index + held
    }

    /// How long the segment starting at cut `index` is, if the next cut is known.
    pub(crate) fn span(&self, index: usize) -> Option<Duration> {
        let (a, b) = (self.get(index)?, self.get(index + 1)?);
        Some(b.at.since(a.at))
    }

    /// Forgets the cuts before `index` (every rendition is past them).
    pub(crate) fn forget_before(&mut self, index: usize) {
        while self.first_index < index && self.cuts.len() > 1 {
            self.cuts.pop_front();
            self.first_index += 1;
        }
    }
}

/// Why the lead cuts before a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LeadCut {
    /// A keyframe at or after the segment target: a regular cut.
    Keyframe,
    /// The source's GOP is longer than the target duration allows: the segment is split
    /// before a frame that is not a keyframe (the next segment is not independent).
    Split,
}

/// What the lead knows when a frame arrives, in track ticks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LeadFrame {
    /// Presentation time of the segment's first sample.
    pub(crate) segment_pts: i64,
    /// Decode time of the segment's first sample.
    pub(crate) segment_dts: i64,
    /// The new frame's presentation time.
    pub(crate) pts: i64,
    /// The new frame's decode time.
    pub(crate) dts: i64,
    /// Whether the new frame is a keyframe.
    pub(crate) keyframe: bool,
    /// The expected duration of the new frame (the previous sample's).
    pub(crate) frame_duration: i64,
}

/// Whether the lead cuts before `frame`: at the first keyframe at least `target` ticks after
/// the segment's start (on presentation time: forced keyframes sit at regular presentation
/// times, and the encoder's reordering delay moves their decode times), or, when a frame more
/// would make the segment longer than `limit` ticks, before any frame.
pub(crate) fn lead_cut(frame: LeadFrame, target: i64, limit: i64) -> Option<LeadCut> {
    if frame.keyframe && frame.pts - frame.segment_pts >= target {
        return Some(LeadCut::Keyframe);
    }
    let would_end = frame.dts + frame.frame_duration;
    (frame.dts > frame.segment_dts && would_end - frame.segment_dts > limit)
        .then_some(LeadCut::Split)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(ticks: i64) -> EventTime {
        EventTime::from_ticks(ticks)
    }

    #[test]
    fn plan_allocates_one_msn_per_cut_and_dates_them() {
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let mut plan = CutPlan::new(MediaSequence(7), t(90_000), wall);
        assert_eq!(plan.push(t(270_000)), 1);
        assert_eq!(plan.push(t(450_180)), 2);
        assert_eq!(plan.last().msn, MediaSequence(9));
        assert_eq!(
            plan.last().program_date_time,
            wall + Duration::from_millis(4_002)
        );
        assert_eq!(plan.index_at(t(300_000)), 1);
        assert_eq!(plan.index_at(t(0)), 0);
        assert_eq!(plan.span(0), Some(Duration::from_secs(2)));
        assert_eq!(plan.span(2), None);
        plan.forget_before(2);
        assert_eq!(plan.get(1), None);
        assert_eq!(plan.get(2).map(|c| c.msn), Some(MediaSequence(9)));
        assert_eq!(plan.index_at(t(0)), 2);
    }

    #[test]
    fn lead_cuts_table() {
        let f = |pts: i64, keyframe: bool| LeadFrame {
            segment_pts: 0,
            segment_dts: 0,
            pts,
            dts: pts,
            keyframe,
            frame_duration: 3_000,
        };
        let (target, limit) = (180_000, 220_000);
        assert_eq!(
            lead_cut(f(180_000, true), target, limit),
            Some(LeadCut::Keyframe)
        );
        assert_eq!(lead_cut(f(177_000, true), target, limit), None);
        assert_eq!(lead_cut(f(183_000, false), target, limit), None);
        assert_eq!(lead_cut(f(216_000, false), target, limit), None);
        assert_eq!(
            lead_cut(f(219_000, false), target, limit),
            Some(LeadCut::Split)
        );
        assert_eq!(
            lead_cut(f(0, false), target, 0),
            None,
            "never an empty segment"
        );
    }

    proptest! {
        /// Cutting a frame sequence with any GOP structure: every segment is at most the
        /// limit, and segments end early only where a keyframe was due.
        #[test]
        fn segments_never_exceed_the_limit(
            gops in prop::collection::vec(1usize..200, 1..30),
            frame in 1_500i64..6_000,
        ) {
            let (target, limit) = (180_000i64, 220_000i64);
            let mut segment_start = 0i64;
            let mut dts = 0i64;
            let mut lengths = Vec::new();
            for gop in &gops {
                for i in 0..*gop {
                    let f = LeadFrame {
                        segment_pts: segment_start,
                        segment_dts: segment_start,
                        pts: dts,
                        dts,
                        keyframe: i == 0,
                        frame_duration: frame,
                    };
                    if lead_cut(f, target, limit).is_some() {
                        lengths.push(dts - segment_start);
                        segment_start = dts;
                    }
                    dts += frame;
                }
            }
            lengths.push(dts - segment_start);
            for l in lengths {
                prop_assert!(l <= limit, "segment of {l} ticks");
            }
        }
    }
}
