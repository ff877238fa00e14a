//! One track's segmenter within a publisher session: samples in, CMAF parts (LL-HLS partial
//! segments) and segments out. Where to cut and how long each sample lasts are decided by the
//! caller (the cut policy and the sample clock); this module only builds the bytes.

use bytes::{Bytes, BytesMut};
use weir_media::{Timescale, TrackInfo};

use crate::fmp4::{self, Sample};
use crate::protect::TrackProtection;
use crate::{MediaSequence, PartIndex};

/// A part the track has finished: one `moof`+`mdat` (a CMAF chunk).
#[derive(Debug)]
pub(crate) struct ClosedPart {
    pub(crate) msn: MediaSequence,
    pub(crate) index: PartIndex,
    /// Sum of its sample durations, track ticks.
    pub(crate) duration: u64,
    /// Whether it starts with a sync sample (`INDEPENDENT=YES`).
    pub(crate) independent: bool,
    pub(crate) data: Bytes,
}

/// A segment the track has finished: the concatenation of its parts.
#[derive(Debug)]
pub(crate) struct ClosedSegment {
    pub(crate) msn: MediaSequence,
    /// Decode time of the first sample, track ticks (the `tfdt`).
    #[cfg_attr(not(test), allow(dead_code))] // checked by the tests: tfdt is continuous
    pub(crate) start: u64,
    /// Sum of the sample durations, track ticks.
    pub(crate) duration: u64,
    /// Samples per second, from the typical sample duration (robust to a timestamp gap).
    pub(crate) sample_rate: Option<f64>,
    /// Whether it starts with a sync sample.
    pub(crate) independent: bool,
    pub(crate) data: Bytes,
}

/// What one call produced, in order: parts first, then the segment they complete.
#[derive(Debug, Default)]
pub(crate) struct Closed {
    pub(crate) parts: Vec<ClosedPart>,
    pub(crate) segment: Option<ClosedSegment>,
}

/// A sample whose duration is not known yet.
#[derive(Debug)]
pub(crate) struct PendingSample {
    /// Presentation minus decode time, track ticks.
    pub(crate) composition_offset: i32,
    pub(crate) keyframe: bool,
    pub(crate) data: Bytes,
}

/// Cuts one track of a session into segments, each a sequence of parts no longer than the
/// part target.
#[derive(Debug)]
pub(crate) struct TrackSegmenter {
    pub(crate) timescale: Timescale,
    part_target: u64,
    fragment_sequence: u32,
    /// Decode time the pending sample starts at (the end of what is appended), track ticks.
    next_decode_time: u64,
    pending: Option<PendingSample>,
    last_duration: u32,
    /// The duration of the sample before the last one.
    previous_duration: u32,
    segment_msn: MediaSequence,
    segment_start: u64,
    segment_samples: usize,
    segment_independent: bool,
    parts: Vec<Bytes>,
    part_samples: Vec<Sample>,
    part_start: u64,
    /// Durations of the segment's samples so far, track ticks.
    durations: Vec<u32>,
    /// `cbcs` encryption of every fragment, when the event encrypts samples.
    protection: Option<TrackProtection>,
}

impl TrackSegmenter {
    /// A segmenter whose first sample decodes at `start` (track ticks) and belongs to segment
    /// `msn`; parts are at most `part_target` ticks; `default_duration` is what the last
    /// sample of a track lasts when nothing follows it, until a real duration is known.
    pub(crate) fn new(
        info: &TrackInfo,
        start: u64,
        msn: MediaSequence,
        part_target: u64,
        default_duration: u32,
    ) -> Self {
        TrackSegmenter {
            timescale: info.codec.timescale(),
            part_target: part_target.max(1),
            fragment_sequence: 1,
            next_decode_time: start,
            pending: None,
            last_duration: default_duration,
            previous_duration: default_duration,
            segment_msn: msn,
            segment_start: start,
            segment_samples: 0,
            segment_independent: true,
            parts: Vec::new(),
            part_samples: Vec::new(),
            part_start: start,
            durations: Vec::new(),
            protection: None,
        }
    }

    /// Encrypts every fragment from now on with `protection`.
    pub(crate) fn protect(&mut self, protection: Option<TrackProtection>) {
        self.protection = protection;
    }

    /// Decode time where the pending sample starts, track ticks.
    pub(crate) fn next_decode_time(&self) -> u64 {
        self.next_decode_time
    }

    /// Decode time of the segment being built, track ticks.
    pub(crate) fn segment_start(&self) -> u64 {
        self.segment_start
    }

    /// The previous sample's duration, track ticks.
    pub(crate) fn last_duration(&self) -> u32 {
        self.last_duration
    }

    /// Adds `next`. The pending sample is appended first with `pending_duration` ticks; then,
    /// with `cut: Some(msn)`, the segment built so far is closed and `next` starts segment
    /// `msn`.
    pub(crate) fn push(
        &mut self,
        next: PendingSample,
        pending_duration: u32,
        cut: Option<MediaSequence>,
    ) -> Closed {
        self.push_filled(next, pending_duration, (&[], &[]), cut)
    }

    /// As [`push`](Self::push), with copies of the pending sample appended after it (one per
    /// entry, lasting that many ticks): `before` the cut, then `after` it, in the new
    /// segment. Audio fills a gap in its timestamps this way, keeping its timeline continuous
    /// and aligned to the cuts with no sample longer than a part.
    pub(crate) fn push_filled(
        &mut self,
        next: PendingSample,
        pending_duration: u32,
        (before, after): (&[u32], &[u32]),
        cut: Option<MediaSequence>,
    ) -> Closed {
        let mut closed = Closed::default();
        let copy = self.pending.as_ref().map(|p| p.data.clone());
        let filler = |d: &u32| {
            let sample = PendingSample {
                composition_offset: 0,
                keyframe: true,
                data: copy.clone().unwrap_or_default(),
            };
            (sample, *d)
        };
        if let Some(p) = self.pending.take() {
            self.append(p, pending_duration, &mut closed);
            for (sample, d) in before.iter().map(filler) {
                self.append(sample, d, &mut closed);
            }
        }
        if let Some(msn) = cut {
            if self.segment_samples > 0 {
                closed.segment = Some(self.close_segment(&mut closed));
            }
            self.segment_msn = msn;
        }
        if copy.is_some() {
            for (sample, d) in after.iter().map(filler) {
                self.append(sample, d, &mut closed);
            }
        }
        if self.segment_samples == 0 {
            self.segment_independent = next.keyframe;
        }
        self.pending = Some(next);
        closed
    }

    /// Appends the pending sample (with the previous sample's duration) and closes the
    /// segment being built, if it holds anything.
    pub(crate) fn finish(&mut self) -> Closed {
        let mut closed = Closed::default();
        if let Some(p) = self.pending.take() {
            self.append(p, self.last_duration, &mut closed);
        }
        if self.segment_samples > 0 {
            closed.segment = Some(self.close_segment(&mut closed));
        }
        closed
    }

    fn append(&mut self, p: PendingSample, duration: u32, closed: &mut Closed) {
        if self.segment_samples == 0 {
            self.segment_independent = p.keyframe;
        }
        let part_duration = self.next_decode_time - self.part_start;
        if !self.part_samples.is_empty() && part_duration + u64::from(duration) > self.part_target {
            closed.parts.push(self.close_part());
        }
        self.part_samples.push(Sample {
            duration,
            composition_offset: p.composition_offset,
            keyframe: p.keyframe,
            data: p.data,
        });
        self.last_duration = duration;
        self.durations.push(duration);
        self.next_decode_time += u64::from(duration);
        self.segment_samples += 1;
        // Close the part now if one more sample would not fit: the part is published a frame
        // earlier than waiting for that sample would allow. The next sample is taken to be as
        // long as the shorter of the last two (one long sample, at a gap or a source's loop
        // point, does not make the part short).
        let part_duration = self.next_decode_time - self.part_start;
        let next = u64::from(duration.min(self.previous_duration));
        self.previous_duration = duration;
        if part_duration + next > self.part_target {
            closed.parts.push(self.close_part());
        }
    }

    fn close_part(&mut self) -> ClosedPart {
        let data = match self.protection.as_mut() {
            Some(p) => p.fragment(
                self.segment_msn,
                self.fragment_sequence,
                self.part_start,
                &self.part_samples,
            ),
            None => fmp4::fragment(
                self.fragment_sequence,
                self.part_start,
                &self.part_samples,
                None,
            ),
        };
        self.fragment_sequence = self.fragment_sequence.wrapping_add(1);
        let part = ClosedPart {
            msn: self.segment_msn,
            index: PartIndex(self.parts.len() as u32),
            duration: self.next_decode_time - self.part_start,
            independent: self.part_samples.first().is_some_and(|s| s.keyframe),
            data,
        };
        self.parts.push(part.data.clone());
        self.part_samples.clear();
        self.part_start = self.next_decode_time;
        part
    }

    fn close_segment(&mut self, closed: &mut Closed) -> ClosedSegment {
        if !self.part_samples.is_empty() {
            closed.parts.push(self.close_part());
        }
        let data = if self.parts.len() == 1 {
            self.parts.pop().unwrap_or_default()
        } else {
            let mut buf = BytesMut::with_capacity(self.parts.iter().map(Bytes::len).sum());
            self.parts.drain(..).for_each(|p| buf.extend_from_slice(&p));
            buf.freeze()
        };
        let segment = ClosedSegment {
            msn: self.segment_msn,
            start: self.segment_start,
            duration: self.next_decode_time - self.segment_start,
            sample_rate: typical_rate(&mut self.durations, self.timescale),
            independent: self.segment_independent,
            data,
        };
        self.parts.clear();
        self.durations.clear();
        self.segment_msn = self.segment_msn.next();
        self.segment_start = self.next_decode_time;
        self.segment_samples = 0;
        segment
    }
}

/// Samples per second from the durations of a segment: the mean of the durations within 25%
/// of the median, so a timestamp gap (a looped source, a dropped frame) does not skew it, and
/// alternating 33/34 ms RTMP durations still give 29.97-30 fps.
fn typical_rate(durations: &mut [u32], timescale: Timescale) -> Option<f64> {
    if durations.is_empty() {
        return None;
    }
    durations.sort_unstable();
    let median = f64::from(durations[durations.len() / 2]);
    let near: Vec<f64> = durations
        .iter()
        .map(|d| f64::from(*d))
        .filter(|d| (d - median).abs() <= median / 4.0)
        .collect();
    let mean = near.iter().sum::<f64>() / near.len() as f64;
    (mean > 0.0).then(|| f64::from(timescale.get()) / mean)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::video_info;
    use proptest::prelude::*;

    #[test]
    fn frame_rate_ignores_a_gap_and_rtmp_rounding() {
        let ts = Timescale::MPEG_90K;
        let mut looped = vec![3_600; 131];
        looped.push(3_600 + 990); // the loop point of a -stream_loop source
        assert_eq!(typical_rate(&mut looped, ts), Some(25.0));
        let mut ntsc: Vec<u32> = (0..90)
            .map(|i| if i % 3 == 2 { 3_060 } else { 2_970 })
            .collect();
        let fps = typical_rate(&mut ntsc, ts).unwrap();
        assert!((fps - 30.0).abs() < 0.05, "{fps}");
    }

    fn sample(keyframe: bool) -> PendingSample {
        PendingSample {
            composition_offset: 0,
            keyframe,
            data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
        }
    }

    proptest! {
        /// Parts never exceed the part target (unless one sample does), add up to their
        /// segment, and the segment's bytes are its parts' bytes in order.
        #[test]
        fn parts_sum_to_their_segment(
            durations in prop::collection::vec(1_000u32..8_000, 2..200),
            cuts in prop::collection::vec(any::<bool>(), 200),
            part_target in 10_000u64..90_000,
        ) {
            let mut seg = TrackSegmenter::new(&video_info(), 1_000, MediaSequence(5), part_target, 3_000);
            let mut parts: Vec<ClosedPart> = Vec::new();
            let mut segments = Vec::new();
            let mut msn = MediaSequence(5);
            let mut prev = 3_000;
            for (i, d) in durations.iter().enumerate() {
                let cut = (cuts[i] && i > 0).then(|| { msn = msn.next(); msn });
                let closed = seg.push(sample(cut.is_some() || i == 0), prev, cut);
                prev = *d;
                parts.extend(closed.parts);
                segments.extend(closed.segment);
            }
            let closed = seg.finish();
            parts.extend(closed.parts);
            segments.extend(closed.segment);
            let mut next_tfdt = 1_000;
            for s in &segments {
                prop_assert_eq!(s.start, next_tfdt, "tfdt is continuous");
                next_tfdt = s.start + s.duration;
                let mine: Vec<&ClosedPart> = parts.iter().filter(|p| p.msn == s.msn).collect();
                prop_assert_eq!(mine.iter().map(|p| p.duration).sum::<u64>(), s.duration);
                for (i, p) in mine.iter().enumerate() {
                    prop_assert_eq!(p.index, PartIndex(i as u32));
                    let longest = durations.iter().copied().max().unwrap_or(0) as u64;
                    prop_assert!(p.duration <= part_target.max(longest));
                }
                let joined: Vec<u8> = mine.iter().flat_map(|p| p.data.iter().copied()).collect();
                prop_assert_eq!(&joined[..], &s.data[..]);
                prop_assert!(s.independent, "every segment here starts with a keyframe");
            }
        }
    }
}
