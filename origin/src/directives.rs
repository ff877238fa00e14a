//! LL-HLS delivery directives (RFC 8216bis §6.2.5): parsing `_HLS_msn`, `_HLS_part` and
//! `_HLS_skip` from a playlist request, and deciding whether a playlist version answers it.
//! No I/O: the HTTP layer waits when this says [`Readiness::Wait`].

use std::fmt::Write;
use std::time::Duration;

use weir_packager::PlaylistUpdate;

/// The delivery directives of one playlist request. Every other query parameter is ignored:
/// it never changes the answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Directives {
    /// `_HLS_msn`: hold until the playlist holds this media sequence number.
    pub msn: Option<u64>,
    /// `_HLS_part`: with `_HLS_msn`, hold until it holds this part of that segment.
    pub part: Option<u32>,
    /// `_HLS_skip=YES` (or `v2`): answer with a playlist delta update.
    pub skip: bool,
}

/// Why directives are refused with 400 (RFC 8216bis §6.2.5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DirectiveError {
    /// A value is not a decimal integer (or `_HLS_skip` not `YES`/`v2`).
    #[error("malformed delivery directive")]
    Malformed,
    /// `_HLS_part` without `_HLS_msn`.
    #[error("_HLS_part without _HLS_msn")]
    PartWithoutMsn,
    /// `_HLS_msn` more than two segments past the playlist's last, or `_HLS_part` beyond the
    /// advance part limit.
    #[error("delivery directive too far ahead of the live edge")]
    TooFarAhead,
}

impl Directives {
    /// Reads the directives of a request's query string.
    ///
    /// # Errors
    /// [`DirectiveError::Malformed`] for a value that is not a decimal integer (or a skip
    /// value other than `YES`/`v2`), [`DirectiveError::PartWithoutMsn`].
    pub fn parse(query: Option<&str>) -> Result<Directives, DirectiveError> {
        let mut d = Directives::default();
        for pair in query.unwrap_or("").split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let number = |v: &str, digits: usize| {
                (!v.is_empty() && v.len() <= digits && v.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| v.parse::<u64>().ok())
                    .flatten()
                    .ok_or(DirectiveError::Malformed)
            };
            match k {
                "_HLS_msn" => d.msn = Some(number(v, 19)?),
                "_HLS_part" => {
                    d.part =
                        Some(u32::try_from(number(v, 6)?).map_err(|_| DirectiveError::Malformed)?)
                }
                "_HLS_skip" => match v {
                    "YES" | "v2" => d.skip = true,
                    _ => return Err(DirectiveError::Malformed),
                },
                _ => {}
            }
        }
        if d.part.is_some() && d.msn.is_none() {
            return Err(DirectiveError::PartWithoutMsn);
        }
        Ok(d)
    }

    /// Whether the request blocks (`_HLS_msn` present).
    pub fn blocking(&self) -> bool {
        self.msn.is_some()
    }

    /// The directives in one canonical query string (empty when there are none): the part of
    /// a request a cache must key on. `_HLS_skip=v2` is answered as `YES` (weir has no date
    /// ranges), so both share one key.
    pub fn canonical_query(&self) -> String {
        let mut q = String::new();
        if let Some(m) = self.msn {
            let _ = write!(q, "_HLS_msn={m}");
        }
        if let Some(p) = self.part {
            let _ = write!(q, "&_HLS_part={p}");
        }
        if self.skip {
            if !q.is_empty() {
                q.push('&');
            }
            q.push_str("_HLS_skip=YES");
        }
        q
    }
}

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
    fn parses_directives_and_refuses_junk() {
        let d = Directives::parse(Some("_HLS_msn=12&_HLS_part=3&_HLS_skip=YES&token=abc")).unwrap();
        assert_eq!(
            d,
            Directives {
                msn: Some(12),
                part: Some(3),
                skip: true
            }
        );
        assert_eq!(d.canonical_query(), "_HLS_msn=12&_HLS_part=3&_HLS_skip=YES");
        assert_eq!(
            Directives::parse(Some("_HLS_skip=v2"))
                .unwrap()
                .canonical_query(),
            "_HLS_skip=YES"
        );
        assert_eq!(Directives::parse(None).unwrap(), Directives::default());
        assert_eq!(
            Directives::parse(Some("cb=1")).unwrap().canonical_query(),
            ""
        );
        for (bad, e) in [
            ("_HLS_part=1", DirectiveError::PartWithoutMsn),
            ("_HLS_msn=-1", DirectiveError::Malformed),
            ("_HLS_msn=1e3", DirectiveError::Malformed),
            ("_HLS_msn=", DirectiveError::Malformed),
            ("_HLS_msn=1&_HLS_part=9999999", DirectiveError::Malformed),
            ("_HLS_skip=NO", DirectiveError::Malformed),
            ("_HLS_msn=99999999999999999999", DirectiveError::Malformed),
        ] {
            assert_eq!(Directives::parse(Some(bad)), Err(e), "{bad}");
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
