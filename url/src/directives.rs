//! LL-HLS delivery directives (RFC 8216bis §6.2.5): `_HLS_msn`, `_HLS_part` and `_HLS_skip`
//! parsed from a playlist request's query, and written back in one canonical form (what a
//! cache keys on).

use std::fmt::Write;

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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A cache keys on the canonical query: it must mean what the request meant.
        #[test]
        fn the_canonical_query_parses_back_to_the_same_directives(
            query in "((_HLS_msn|_HLS_part|_HLS_skip|token|x)=[0-9A-Zv]{0,21}&?){0,4}"
        ) {
            if let Ok(d) = Directives::parse(Some(&query)) {
                prop_assert_eq!(Directives::parse(Some(&d.canonical_query())), Ok(d));
            }
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
}
