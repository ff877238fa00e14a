//! How long each sample lasts, from the publisher's timestamps: the decision the segmenter
//! cannot make alone, because a sample's duration is known only when the next one arrives.
//!
//! Video samples last until the next one's decode time. Audio samples are counted in codec
//! frames (1 024 AAC samples), which keeps `tfdt` exact whatever the millisecond rounding of
//! RTMP timestamps, but the count is checked against the timestamps at every frame: a gap or
//! a lost frame stretches the previous sample to fill it, an overlap drops the frame, so A/V
//! sync never drifts by more than half an audio frame. A timestamp that jumps far (back, or
//! forward beyond [`MAX_GAP`]) is a discontinuity, not a sample.

use std::time::Duration;

use weir_media::Timescale;

/// The longest believable gap between two frames of one track: beyond it, a timestamp jump.
pub(crate) const MAX_GAP: Duration = Duration::from_secs(10);

/// The furthest a timestamp may step back before it is a jump rather than jitter.
pub(crate) const MAX_STEP_BACK: Duration = Duration::from_secs(1);

/// What to do with the pending sample when the next frame of its track arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// The pending sample lasts this many track ticks; the new frame follows it.
    Duration(u32),
    /// Audio: the new frame is later than the count says by more than half a frame (a gap,
    /// lost frames): the pending sample is stretched to this many ticks to fill it.
    Resync(u32),
    /// Video: the new frame's decode time does not advance (jitter, a duplicate time): the
    /// pending sample keeps the previous duration.
    Glitch(u32),
    /// Audio: the new frame overlaps the pending one by more than half a frame: it is
    /// dropped and the pending sample waits for the next frame.
    DropNew,
    /// The timestamps jumped back by more than [`MAX_STEP_BACK`] or forward by more than
    /// [`MAX_GAP`]: the session continues after a discontinuity.
    Jump,
}

fn ticks(d: Duration, timescale: Timescale) -> i64 {
    (d.as_nanos() * u128::from(timescale.get()) / 1_000_000_000) as i64
}

/// The step for a video track: `pending` and `new` are the two frames' decode times, and
/// `last` the previous sample's duration, in track ticks.
pub(crate) fn video_step(pending: i64, new: i64, last: u32, timescale: Timescale) -> Step {
    let delta = new - pending;
    if delta > ticks(MAX_GAP, timescale) || delta < -ticks(MAX_STEP_BACK, timescale) {
        Step::Jump
    } else if delta <= 0 {
        Step::Glitch(last.max(1))
    } else {
        Step::Duration(u32::try_from(delta).unwrap_or(u32::MAX))
    }
}

/// The step for an audio track: the pending sample was placed at `pending_start`, the new
/// frame's timestamp says it starts at `new_expected` (track ticks); a codec frame is `frame`
/// ticks.
pub(crate) fn audio_step(
    pending_start: i64,
    new_expected: i64,
    frame: u32,
    timescale: Timescale,
) -> Step {
    let from_pending = new_expected - pending_start;
    if from_pending > ticks(MAX_GAP, timescale) || from_pending < -ticks(MAX_STEP_BACK, timescale) {
        return Step::Jump;
    }
    let drift = from_pending - i64::from(frame);
    let tolerance = i64::from(frame / 2);
    if drift.abs() <= tolerance {
        Step::Duration(frame)
    } else if drift > 0 {
        Step::Resync(u32::try_from(from_pending).unwrap_or(u32::MAX))
    } else {
        Step::DropNew
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SR: u32 = 48_000;

    fn sr() -> Timescale {
        Timescale::new(SR).unwrap()
    }

    #[test]
    fn audio_steps_table() {
        let ms = |v: i64| v * i64::from(SR) / 1_000;
        for (new, step) in [
            (1_024, Step::Duration(1_024)),
            (1_024 + 48, Step::Duration(1_024)), // 1 ms of RTMP rounding
            (1_024 - 48, Step::Duration(1_024)),
            (1_024 + ms(500), Step::Resync((1_024 + ms(500)) as u32)), // a 500 ms gap
            (2_048, Step::Resync(2_048)),                              // one lost frame
            (0, Step::DropNew),                                        // a repeated frame
            (ms(11_000), Step::Jump),
            (-ms(1_500), Step::Jump),
        ] {
            assert_eq!(audio_step(0, new, 1_024, sr()), step, "new at {new}");
        }
    }

    #[test]
    fn video_steps_table() {
        let ts = Timescale::MPEG_90K;
        assert_eq!(video_step(0, 3_003, 3_000, ts), Step::Duration(3_003));
        assert_eq!(video_step(0, 0, 3_000, ts), Step::Glitch(3_000));
        assert_eq!(video_step(0, -90, 3_000, ts), Step::Glitch(3_000));
        assert_eq!(video_step(0, 90_000 * 11, 3_000, ts), Step::Jump);
        assert_eq!(video_step(0, -90_000 * 2, 3_000, ts), Step::Jump);
    }

    proptest! {
        /// Whatever the jitter, gaps and repeated frames in the timestamps, every audio frame
        /// that is kept starts within half a frame of where its timestamp says.
        #[test]
        fn audio_never_drifts(
            events in prop::collection::vec((0u8..=2, -96i64..=96), 1..400)
        ) {
            // Each event: 0 = the next frame, 1 = a frame after a gap of two frames and a bit,
            // 2 = the same frame again; with up to 2 ms of timestamp jitter.
            let frame = 1_024i64;
            let mut truth = 0i64;
            let mut placed = 0i64; // where the pending sample was placed
            for (kind, jitter) in events {
                truth += match kind {
                    0 => frame,
                    1 => frame * 3 + 500,
                    _ => 0,
                };
                let expected = truth + jitter;
                match audio_step(placed, expected, frame as u32, sr()) {
                    Step::Duration(d) | Step::Resync(d) => {
                        placed += i64::from(d);
                        prop_assert!((placed - expected).abs() <= frame / 2,
                            "placed {placed} expected {expected}");
                    }
                    Step::DropNew => prop_assert!(expected < placed + frame / 2),
                    other => prop_assert!(false, "unexpected {other:?}"),
                }
            }
        }
    }
}
