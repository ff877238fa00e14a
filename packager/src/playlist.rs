//! One rendition's live media playlist: the sliding window of segments, the parts of the live
//! edge, what leaves it and when its objects may go, and its rendering (RFC 8216 §4.3.3,
//! RFC 8216bis §4.4.3-4.4.5, §6.2.2).

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use crate::{MediaSequence, PartIndex, RenditionId, SessionId};

/// Parts stay listed while their segment ends within this many target durations of the live
/// edge, and stay fetchable as long again after (RFC 8216bis §6.2.2).
const PART_TARGET_DURATIONS: u32 = 3;

/// One part as listed (`EXT-X-PART`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PartEntry {
    pub(crate) duration: Duration,
    pub(crate) independent: bool,
}

/// What a segment's playlist lines say besides its parts.
#[derive(Clone, Debug)]
pub(crate) struct SegmentHead {
    pub(crate) msn: MediaSequence,
    /// The session in the segment's URI.
    pub(crate) session: SessionId,
    /// The session whose init segment decodes it (its `EXT-X-MAP`).
    pub(crate) init: SessionId,
    pub(crate) program_date_time: SystemTime,
    /// Whether `EXT-X-DISCONTINUITY` precedes it (the first segment of a later session).
    pub(crate) discontinuity: bool,
    /// The key it (and its parts) are encrypted with, if the event encrypts.
    pub(crate) key: Option<crate::SegmentKey>,
}

/// One segment as listed in a media playlist.
#[derive(Clone, Debug)]
pub(crate) struct SegmentEntry {
    pub(crate) head: SegmentHead,
    pub(crate) duration: Duration,
    pub(crate) bytes: usize,
    /// Whether it starts with a sync sample.
    pub(crate) independent: bool,
    /// `EXT-X-GAP`: the rendition has no media for this span (RFC 8216bis §6.2.1).
    pub(crate) gap: bool,
    /// Its parts, while they are listed.
    pub(crate) parts: Vec<PartEntry>,
}

/// What left the live window for good: the store may drop it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expired {
    /// The session's init segment.
    Init,
    /// A segment.
    Segment(MediaSequence),
    /// The parts `0..count` of a segment.
    Parts {
        /// Their segment.
        msn: MediaSequence,
        /// How many there are.
        count: u32,
    },
}

#[derive(Clone, Debug)]
struct Removal {
    deadline: SystemTime,
    session: SessionId,
    /// The init segment a removed segment used (its session's, or a key period's).
    init: SessionId,
    what: Expired,
}

/// A part of one rendition: what a preload hint or a rendition report names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartRef {
    /// The publisher session (URI component).
    pub session: SessionId,
    /// The parent segment.
    pub msn: MediaSequence,
    /// The part's index in it.
    pub part: PartIndex,
}

/// The sliding window of one rendition's live media playlist.
#[derive(Debug)]
pub(crate) struct MediaPlaylist {
    rendition: RenditionId,
    window: usize,
    segments: VecDeque<SegmentEntry>,
    /// The segment being built: its head and the parts published so far.
    open: Option<(SegmentHead, Vec<PartEntry>)>,
    hint: Option<PartRef>,
    removed: Vec<Removal>,
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
            open: None,
            hint: None,
            removed: Vec::new(),
            discontinuity_sequence: 0,
            peak_bps: 0,
            total_bits: 0,
            total_duration: Duration::ZERO,
        }
    }

    pub(crate) fn rendition(&self) -> &RenditionId {
        &self.rendition
    }

    /// Whether it lists no complete segment yet.
    pub(crate) fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// The newest listed segment's media sequence number.
    pub(crate) fn last_msn(&self) -> Option<MediaSequence> {
        self.segments.back().map(|s| s.head.msn)
    }

    /// The session of the newest init segment the playlist refers to.
    pub(crate) fn last_init(&self) -> Option<&SessionId> {
        self.open
            .as_ref()
            .map(|(h, _)| &h.init)
            .or(self.segments.back().map(|s| &s.head.init))
    }

    /// The last listed part, as (msn, part), or the last segment when no part is listed.
    pub(crate) fn last_position(&self) -> Option<(MediaSequence, Option<PartIndex>)> {
        if let Some((head, parts)) = &self.open {
            if !parts.is_empty() {
                return Some((head.msn, Some(PartIndex(parts.len() as u32 - 1))));
            }
        }
        let last = self.segments.back()?;
        let part = (!last.parts.is_empty()).then(|| PartIndex(last.parts.len() as u32 - 1));
        Some((last.head.msn, part))
    }

    /// The part `EXT-X-PRELOAD-HINT` names, if any.
    pub(crate) fn hint(&self) -> Option<&PartRef> {
        self.hint.as_ref()
    }

    /// A part of the segment `head` was published.
    pub(crate) fn part(&mut self, head: SegmentHead, part: PartEntry) {
        let open = match &mut self.open {
            Some((h, parts)) if h.msn == head.msn => parts,
            slot => &mut slot.insert((head, Vec::new())).1,
        };
        open.push(part);
        if let Some((h, parts)) = &self.open {
            self.hint = Some(PartRef {
                session: h.session.clone(),
                msn: h.msn,
                part: PartIndex(parts.len() as u32),
            });
        }
    }

    /// Appends a complete segment (with the parts published for it) and slides the window.
    /// Segments that leave it stay available for their duration plus the playlist's
    /// (RFC 8216bis §6.2.2); parts that are no longer listed, for three target durations.
    /// What has passed its deadline by `now` is returned.
    pub(crate) fn push(
        &mut self,
        mut entry: SegmentEntry,
        target_duration: Duration,
        now: SystemTime,
    ) -> Vec<(SessionId, Expired)> {
        if let Some((head, parts)) = self.open.take() {
            if head.msn > entry.head.msn {
                self.open = Some((head, parts));
            } else if head.msn == entry.head.msn && !entry.gap {
                entry.parts = parts;
            } else if !parts.is_empty() {
                self.removed.push(Removal {
                    deadline: now + target_duration * PART_TARGET_DURATIONS,
                    init: head.init,
                    session: head.session,
                    what: Expired::Parts {
                        msn: head.msn,
                        count: parts.len() as u32,
                    },
                });
            }
        }
        if !entry.gap {
            let bits = entry.bytes as u64 * 8;
            self.total_bits += bits;
            self.total_duration += entry.duration;
            if entry.duration >= target_duration / 2 && !entry.duration.is_zero() {
                let bps = (bits as f64 / entry.duration.as_secs_f64()).ceil() as u64;
                self.peak_bps = self.peak_bps.max(bps);
            }
        }
        if self.open.is_none() {
            self.hint = (!entry.gap).then(|| PartRef {
                session: entry.head.session.clone(),
                msn: entry.head.msn.next(),
                part: PartIndex(0),
            });
        }
        self.segments.push_back(entry);
        self.slide(target_duration, now);
        self.expire(now)
    }

    /// The session ended: nothing more is coming, so nothing is hinted.
    pub(crate) fn end_session(&mut self) {
        self.hint = None;
    }

    fn slide(&mut self, target_duration: Duration, now: SystemTime) {
        let min_duration = target_duration * 3;
        loop {
            let total: Duration = self.segments.iter().map(|s| s.duration).sum();
            let Some(front) = self.segments.front() else {
                break;
            };
            // Never shorter than three target durations (RFC 8216bis §6.2.2).
            if self.segments.len() <= self.window || total - front.duration < min_duration {
                break;
            }
            let Some(gone) = self.segments.pop_front() else {
                break;
            };
            // The sequence counts the discontinuity tags that have left (§4.4.3.3).
            if gone.head.discontinuity {
                self.discontinuity_sequence += 1;
            }
            let playlist = total - gone.duration;
            if !gone.gap {
                self.removed.push(Removal {
                    deadline: now + gone.duration + playlist,
                    session: gone.head.session.clone(),
                    init: gone.head.init.clone(),
                    what: Expired::Segment(gone.head.msn),
                });
            }
            if !gone.parts.is_empty() {
                self.removed.push(Removal {
                    deadline: now + target_duration * PART_TARGET_DURATIONS,
                    init: gone.head.init,
                    session: gone.head.session,
                    what: Expired::Parts {
                        msn: gone.head.msn,
                        count: gone.parts.len() as u32,
                    },
                });
            }
        }
        // Parts are listed for the segments that end within three target durations of the
        // live edge (the end of the newest part).
        let horizon = target_duration * PART_TARGET_DURATIONS;
        let mut from_end = self.open.as_ref().map_or(Duration::ZERO, |(_, parts)| {
            parts.iter().map(|p| p.duration).sum()
        });
        for s in self.segments.iter_mut().rev() {
            if from_end > horizon && !s.parts.is_empty() {
                self.removed.push(Removal {
                    deadline: now + horizon,
                    session: s.head.session.clone(),
                    init: s.head.init.clone(),
                    what: Expired::Parts {
                        msn: s.head.msn,
                        count: s.parts.len() as u32,
                    },
                });
                s.parts.clear();
            }
            from_end += s.duration;
        }
    }

    /// What has passed its deadline by `now` (segments, parts, and init segments no segment
    /// still uses), with no new segment.
    pub(crate) fn expire_due(&mut self, now: SystemTime) -> Vec<(SessionId, Expired)> {
        if self.removed.is_empty() {
            return Vec::new();
        }
        self.expire(now)
    }

    fn expire(&mut self, now: SystemTime) -> Vec<(SessionId, Expired)> {
        let mut out = Vec::new();
        let mut inits = Vec::new();
        let mut i = 0;
        while i < self.removed.len() {
            if self.removed[i].deadline <= now {
                let r = self.removed.swap_remove(i);
                if matches!(r.what, Expired::Segment(_)) {
                    inits.push(r.init);
                }
                out.push((r.session, r.what));
            } else {
                i += 1;
            }
        }
        let mut gone_inits: Vec<SessionId> = Vec::new();
        for init in inits {
            if !gone_inits.contains(&init) && !self.uses_init(&init) {
                gone_inits.push(init);
            }
        }
        out.extend(gone_inits.into_iter().map(|s| (s, Expired::Init)));
        out
    }

    fn uses_init(&self, session: &SessionId) -> bool {
        self.segments.iter().any(|s| &s.head.init == session)
            || self.open.as_ref().is_some_and(|(h, _)| &h.init == session)
            || self
                .removed
                .iter()
                .any(|r| &r.init == session && matches!(r.what, Expired::Segment(_)))
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
}

mod render;

pub(crate) use render::RenderContext;

#[cfg(test)]
#[path = "playlist_tests.rs"]
mod tests;
