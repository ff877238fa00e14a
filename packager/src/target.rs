//! The target duration policy: `EXT-X-TARGETDURATION` is chosen once per event and never
//! changes (RFC 8216bis §6.2.1), and every segment is cut short enough that its `EXTINF`,
//! rounded to the nearest integer, stays at or below it (§4.4.3.1).

use std::time::Duration;

/// How an event's `EXT-X-TARGETDURATION` is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetDurationPolicy {
    /// From the configured segment target alone: the event's keyframes are placed by weir's
    /// transcoder, so no segment is longer than the target plus one frame. Playlists can be
    /// published from the first part on.
    Configured,
    /// From the configured target and the event's first segment (passthrough: the source's
    /// GOP decides). Playlists are published once the first segment is complete; a later,
    /// longer GOP is split so the rule still holds.
    FirstSegment,
}

/// The longest target duration weir chooses from a source's GOP, seconds. A source with
/// longer GOPs (a slide show at one keyframe a minute) gets segments split at this length.
pub const MAX_TARGET_DURATION_SECS: u64 = 10;

/// `EXT-X-TARGETDURATION` of a configured segment target: the target plus 100 ms (a frame at
/// the lowest frame rates, and the audio frame an audio segment can end later), rounded half
/// up; at least 1 s. 2 s gives 2; 2.4 s gives 3.
pub fn configured_target_duration(segment_target: Duration) -> u64 {
    round_half_up(segment_target + Duration::from_millis(100)).max(1)
}

fn round_half_up(d: Duration) -> u64 {
    (d.as_secs_f64() + 0.5).floor() as u64
}

/// The event's target duration: chosen once, then fixed.
#[derive(Clone, Debug)]
pub(crate) struct TargetDuration {
    policy: TargetDurationPolicy,
    segment_target: Duration,
    chosen: Option<u64>,
}

impl TargetDuration {
    pub(crate) fn new(policy: TargetDurationPolicy, segment_target: Duration) -> TargetDuration {
        let chosen = match policy {
            TargetDurationPolicy::Configured => Some(configured_target_duration(segment_target)),
            TargetDurationPolicy::FirstSegment => None,
        };
        TargetDuration {
            policy,
            segment_target,
            chosen,
        }
    }

    /// The target duration in whole seconds, once chosen.
    pub(crate) fn get(&self) -> Option<u64> {
        self.chosen
    }

    /// The lead rendition's first segment closed with `duration`; `margin` is how much longer
    /// a sibling segment can be (one audio frame). Chooses the target duration if it is not
    /// chosen yet, and returns it.
    pub(crate) fn first_segment(&mut self, duration: Duration, margin: Duration) -> u64 {
        if let Some(td) = self.chosen {
            return td;
        }
        debug_assert_eq!(self.policy, TargetDurationPolicy::FirstSegment);
        let td = round_half_up(duration + margin)
            .max(configured_target_duration(self.segment_target))
            .min(MAX_TARGET_DURATION_SECS);
        self.chosen = Some(td);
        td
    }

    /// The longest segment the lead may make so that every rendition's `EXTINF` rounds to at
    /// most the target duration: TD + 0.5 s, less `margin` (a sibling's audio frame) and the
    /// 1 ms the three-decimal `EXTINF` can round up by. Before the target duration is chosen,
    /// the cap [`MAX_TARGET_DURATION_SECS`] applies.
    pub(crate) fn segment_limit(&self, margin: Duration) -> Duration {
        let td = self.chosen.unwrap_or(MAX_TARGET_DURATION_SECS);
        (Duration::from_secs(td) + Duration::from_millis(500))
            .saturating_sub(margin + Duration::from_millis(2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_targets() {
        for (target_ms, td) in [
            (500, 1),
            (1_000, 1),
            (1_500, 2),
            (2_000, 2),
            (2_400, 3),
            (6_000, 6),
        ] {
            assert_eq!(
                configured_target_duration(Duration::from_millis(target_ms)),
                td,
                "{target_ms} ms"
            );
        }
    }

    #[test]
    fn first_segment_rounds_to_nearest_and_is_fixed() {
        let audio = Duration::from_nanos(21_333_333);
        // 29.97 fps, 60-frame GOP: 2.002 s segments get TD 2, not 3.
        let mut td =
            TargetDuration::new(TargetDurationPolicy::FirstSegment, Duration::from_secs(2));
        assert_eq!(td.get(), None);
        assert_eq!(td.first_segment(Duration::from_millis(2_002), audio), 2);
        assert_eq!(td.first_segment(Duration::from_secs(9), audio), 2);
        let limit = td.segment_limit(audio);
        assert!(limit < Duration::from_millis(2_500) - audio, "{limit:?}");
        assert!(limit > Duration::from_millis(2_450), "{limit:?}");
        // One 5.28 s GOP (BBB copied): 5.
        let mut td =
            TargetDuration::new(TargetDurationPolicy::FirstSegment, Duration::from_secs(2));
        assert_eq!(td.first_segment(Duration::from_millis(5_280), audio), 5);
        // A minute-long GOP is capped.
        let mut td =
            TargetDuration::new(TargetDurationPolicy::FirstSegment, Duration::from_secs(2));
        assert_eq!(
            td.first_segment(Duration::from_secs(60), audio),
            MAX_TARGET_DURATION_SECS
        );
    }
}
