//! One track's segmenter within a publisher session: samples in, CMAF segments (as a sequence
//! of parts) out.

use bytes::{Bytes, BytesMut};
use weir_media::{Frame, Timescale, TrackInfo, TrackKind, AAC_SAMPLES_PER_FRAME};

use crate::fmp4::{self, Sample};
use crate::MediaSequence;

/// Longest believable gap between two frames of a track; a larger jump (or a step back) in the
/// publisher's timestamps is treated as a timestamp error, and the sample keeps the previous
/// sample's duration so that the decode timeline stays continuous.
const MAX_FRAME_GAP_SECS: i64 = 10;

/// A segment the track has finished.
#[derive(Debug)]
pub(crate) struct ClosedSegment {
    pub(crate) msn: MediaSequence,
    /// Decode time of the first sample, track ticks (the `tfdt`).
    pub(crate) start: u64,
    /// Sum of the sample durations, track ticks.
    pub(crate) duration: u64,
    /// Samples per second, from the typical sample duration (robust to a timestamp gap).
    pub(crate) sample_rate: Option<f64>,
    pub(crate) data: Bytes,
}

#[derive(Debug)]
struct Pending {
    dts: i64,
    composition_offset: i32,
    keyframe: bool,
    data: Bytes,
}

/// Cuts one track of a session into segments, each a sequence of parts (CMAF chunks, one
/// `moof`+`mdat` each) no longer than the part target.
#[derive(Debug)]
pub(crate) struct TrackSegmenter {
    pub(crate) info: TrackInfo,
    pub(crate) timescale: Timescale,
    part_target: u64,
    fragment_sequence: u32,
    /// Decode time the next appended sample gets, track ticks.
    next_decode_time: u64,
    /// The newest frame: its duration is known only when the next one arrives.
    pending: Option<Pending>,
    last_duration: u32,
    segment_msn: MediaSequence,
    segment_start: u64,
    segment_samples: usize,
    parts: Vec<Bytes>,
    part_samples: Vec<Sample>,
    part_start: u64,
    /// Durations of the segment's samples so far, track ticks.
    durations: Vec<u32>,
}

impl TrackSegmenter {
    /// A segmenter whose first sample decodes at `start` (track ticks) and whose first segment
    /// is `msn`.
    pub(crate) fn new(
        info: TrackInfo,
        start: u64,
        msn: MediaSequence,
        part_target_secs: f64,
    ) -> Self {
        let timescale = info.codec.timescale();
        let default_duration = match info.kind {
            TrackKind::Audio => AAC_SAMPLES_PER_FRAME,
            TrackKind::Video => timescale.get() / 25,
        };
        TrackSegmenter {
            part_target: (part_target_secs * f64::from(timescale.get())) as u64,
            timescale,
            info,
            fragment_sequence: 1,
            next_decode_time: start,
            pending: None,
            last_duration: default_duration,
            segment_msn: msn,
            segment_start: start,
            segment_samples: 0,
            parts: Vec::new(),
            part_samples: Vec::new(),
            part_start: start,
            durations: Vec::new(),
        }
    }

    /// Decode time where the next frame will start, track ticks.
    pub(crate) fn next_decode_time(&self) -> u64 {
        self.next_decode_time
    }

    /// Media sequence number of the segment being built.
    pub(crate) fn segment_msn(&self) -> MediaSequence {
        self.segment_msn
    }

    /// Duration of the segment being built so far, track ticks (the pending frame excluded).
    pub(crate) fn segment_duration(&self) -> u64 {
        self.next_decode_time - self.segment_start
    }

    /// Adds `frame`. When `cut` says so (given the decode time where `frame` starts, and
    /// whether it is a keyframe), the segment built so far is closed first and `frame` starts
    /// the next one.
    pub(crate) fn push(
        &mut self,
        frame: Frame,
        cut: impl FnOnce(u64, bool) -> bool,
    ) -> Option<ClosedSegment> {
        let dts = frame.dts.rescale(self.timescale);
        if let Some(p) = self.pending.take() {
            let duration = match self.info.kind {
                TrackKind::Audio => AAC_SAMPLES_PER_FRAME,
                TrackKind::Video => {
                    let delta = dts - p.dts;
                    let max = MAX_FRAME_GAP_SECS * i64::from(self.timescale.get());
                    if delta > 0 && delta <= max {
                        delta as u32
                    } else {
                        tracing::warn!(
                            delta_ticks = delta,
                            "publisher timestamp jump; keeping the timeline continuous"
                        );
                        self.last_duration
                    }
                }
            };
            self.append(p, duration);
        }
        let closed = if self.segment_samples > 0 && cut(self.next_decode_time, frame.keyframe) {
            Some(self.close_segment())
        } else {
            None
        };
        self.pending = Some(Pending {
            dts,
            composition_offset: offset_in(
                frame.composition_offset,
                frame.dts.timescale,
                self.timescale,
            ),
            keyframe: frame.keyframe || self.info.kind == TrackKind::Audio,
            data: frame.data,
        });
        closed
    }

    /// Flushes the pending frame (with the previous frame's duration) and closes the segment
    /// being built, if it holds anything.
    pub(crate) fn finish(&mut self) -> Option<ClosedSegment> {
        if let Some(p) = self.pending.take() {
            self.append(p, self.last_duration);
        }
        (self.segment_samples > 0).then(|| self.close_segment())
    }

    fn append(&mut self, p: Pending, duration: u32) {
        let part_duration = self.next_decode_time - self.part_start;
        if !self.part_samples.is_empty() && part_duration + u64::from(duration) > self.part_target {
            self.close_part();
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
    }

    fn close_part(&mut self) {
        if self.part_samples.is_empty() {
            return;
        }
        let part = fmp4::fragment(self.fragment_sequence, self.part_start, &self.part_samples);
        self.fragment_sequence = self.fragment_sequence.wrapping_add(1);
        self.parts.push(part);
        self.part_samples.clear();
        self.part_start = self.next_decode_time;
    }

    fn close_segment(&mut self) -> ClosedSegment {
        self.close_part();
        let data = if self.parts.len() == 1 {
            self.parts.pop().unwrap_or_default()
        } else {
            let mut buf = BytesMut::with_capacity(self.parts.iter().map(Bytes::len).sum());
            self.parts.drain(..).for_each(|p| buf.extend_from_slice(&p));
            buf.freeze()
        };
        let closed = ClosedSegment {
            msn: self.segment_msn,
            start: self.segment_start,
            duration: self.next_decode_time - self.segment_start,
            sample_rate: typical_rate(&mut self.durations, self.timescale),
            data,
        };
        self.durations.clear();
        self.segment_msn = MediaSequence(self.segment_msn.0 + 1);
        self.segment_start = self.next_decode_time;
        self.segment_samples = 0;
        closed
    }
}

fn offset_in(ticks: i64, from: Timescale, to: Timescale) -> i32 {
    weir_media::Timestamp::new(ticks, from)
        .rescale(to)
        .clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
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
}
