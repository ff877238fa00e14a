//! Deciding whether a playlist version answers a blocking request's LL-HLS delivery
//! directives (RFC 8216bis §6.2.5.2; [`Directives`] are parsed by `weir-url`). No I/O: the
//! HTTP layer waits when this says [`Readiness::Wait`].

use std::time::Duration;

use weir_packager::PlaylistUpdate;
use weir_url::Directives;

/// Whether a playlist version answers a blocking request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// It does: respond now.
    Ready,
    /// Not yet: wait for the next version (at most three target durations).
    Wait,
    /// Never in time: 400 at once.
    TooFarAhead,
}

/// The advance part limit (RFC 8216bis §6.2.5.2): `3 / PART-TARGET` parts when the part
/// target is under a second (rounded up), else 3.
pub fn advance_part_limit(part_target: Duration) -> u64 {
    let secs = part_target.as_secs_f64();
    if secs > 0.0 && secs < 1.0 {
        (3.0 / secs).ceil() as u64
    } else {
        3
    }
}

/// Whether `playlist` holds what `d` asks for (RFC 8216bis §6.2.5.2): segment `_HLS_msn`
/// complete, or part `_HLS_part` of it listed (a part past the segment's last one means part
/// 0 of the next segment, so any later part answers it).
pub fn readiness(d: &Directives, playlist: &PlaylistUpdate) -> Readiness {
    // An ended playlist answers at once, whatever was asked (HLS-RULES: the directives are
    // ignored once EXT-X-ENDLIST is present).
    if playlist.ended {
        return Readiness::Ready;
    }
    let Some(msn) = d.msn else {
        return Readiness::Ready;
    };
    let last_segment = playlist.last_msn.map(|m| m.0);
    let last_part = playlist.last_part.map(|(m, p)| (m.0, u64::from(p.0)));
    let newest = last_segment.max(last_part.map(|(m, _)| m));
    if newest.is_none_or(|n| msn > n + 2) {
        return if newest.is_none() {
            Readiness::Wait
        } else {
            Readiness::TooFarAhead
        };
    }
    match (d.part, last_part, playlist.part_target) {
        (Some(part), Some((pm, pp)), Some(part_target)) => {
            let part = u64::from(part);
            if pm > msn || (pm == msn && pp >= part) {
                return Readiness::Ready;
            }
            // Parts from the newest listed one to the one asked for.
            let per_segment = (playlist.target_duration.as_secs_f64()
                / part_target.as_secs_f64().max(0.001))
            .ceil() as u64;
            let ahead = (msn - pm) * per_segment + part - pp.min(part + (msn - pm) * per_segment);
            if ahead > advance_part_limit(part_target) {
                Readiness::TooFarAhead
            } else {
                Readiness::Wait
            }
        }
        _ => {
            if last_segment.is_some_and(|m| m >= msn) {
                Readiness::Ready
            } else {
                Readiness::Wait
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use weir_packager::{MediaSequence, PartIndex};

    fn playlist(last_msn: Option<u64>, last_part: Option<(u64, u32)>) -> PlaylistUpdate {
        PlaylistUpdate {
            full: Bytes::new(),
            delta: None,
            target_duration: Duration::from_secs(2),
            part_target: Some(Duration::from_millis(333)),
            last_msn: last_msn.map(MediaSequence),
            last_part: last_part.map(|(m, p)| (MediaSequence(m), PartIndex(p))),
            preload_hint: None,
            ended: false,
        }
    }

    #[test]
    fn readiness_table() {
        let live = playlist(Some(10), Some((11, 2)));
        let d = |msn, part| Directives {
            msn: Some(msn),
            part,
            skip: false,
        };
        for (directives, expected) in [
            (d(10, None), Readiness::Ready),
            (d(11, None), Readiness::Wait),
            (d(12, None), Readiness::Wait),
            (d(13, None), Readiness::Wait),
            (d(14, None), Readiness::TooFarAhead), // beyond last + 2
            (d(11, Some(2)), Readiness::Ready),
            (d(11, Some(3)), Readiness::Wait),  // the hinted part
            (d(10, Some(5)), Readiness::Ready), // past segment 10's last part: 11.0 exists
            (d(9, Some(0)), Readiness::Ready),
            (d(12, Some(0)), Readiness::Wait),
            (d(11, Some(12)), Readiness::Wait), // ten parts ahead: at the limit
            (d(11, Some(13)), Readiness::TooFarAhead),
            (d(12, Some(6)), Readiness::TooFarAhead),
        ] {
            assert_eq!(readiness(&directives, &live), expected, "{directives:?}");
        }
        assert_eq!(readiness(&Directives::default(), &live), Readiness::Ready);
        assert_eq!(advance_part_limit(Duration::from_millis(333)), 10);
        assert_eq!(advance_part_limit(Duration::from_secs(1)), 3);
        // Without parts, _HLS_part is ignored and the segment decides.
        let plain = PlaylistUpdate {
            part_target: None,
            last_part: None,
            ..playlist(Some(10), None)
        };
        assert_eq!(readiness(&d(10, Some(4)), &plain), Readiness::Ready);
        assert_eq!(readiness(&d(11, Some(0)), &plain), Readiness::Wait);
        // An ended playlist answers every request at once, even one far ahead.
        let ended = PlaylistUpdate {
            ended: true,
            ..playlist(Some(10), Some((11, 2)))
        };
        for (msn, part) in [(11, Some(3)), (12, None), (40, Some(0))] {
            assert_eq!(readiness(&d(msn, part), &ended), Readiness::Ready);
        }
    }
}
