//! Wrapping protocol timestamps extended to a continuous 64-bit timeline: MPEG-TS's 33-bit
//! 90 kHz PTS/DTS (wrapping every 26.5 hours, ISO/IEC 13818-1 §2.4.3.7) and RTMP's 32-bit
//! millisecond clock (wrapping every 49.7 days, RTMP spec §5.3.1.3).

/// Ticks in one cycle of a 33-bit MPEG timestamp.
pub(crate) const WRAP_33: i64 = 1 << 33;
/// Ticks in one cycle of RTMP's 32-bit timestamp.
pub(crate) const WRAP_32: i64 = 1 << 32;

/// Places each wrapping timestamp on a 64-bit timeline at the position nearest the one
/// before it, so a wrap (…8589934591, 0, 1…) continues forward and a small step back stays a
/// step back. One unwrapper serves every stream of a clock (a TS program, an RTMP
/// connection).
#[derive(Debug, Clone)]
pub(crate) struct Unwrapper {
    wrap: i64,
    last: Option<i64>,
}

impl Unwrapper {
    /// An unwrapper for timestamps that wrap after `wrap` ticks ([`WRAP_33`], [`WRAP_32`]).
    pub(crate) fn new(wrap: i64) -> Unwrapper {
        Unwrapper { wrap, last: None }
    }

    /// The 64-bit position of `raw` (taken modulo the wrap), in the clock's ticks.
    pub(crate) fn unwrap(&mut self, raw: u64) -> i64 {
        #[allow(non_snake_case)]
        let WRAP = self.wrap;
        let raw = (raw as i64).rem_euclid(WRAP);
        let value = match self.last {
            None => raw,
            Some(last) => {
                let base = last - last.rem_euclid(WRAP);
                [base - WRAP + raw, base + raw, base + WRAP + raw]
                    .into_iter()
                    .min_by_key(|c| (c - last).abs())
                    .unwrap_or(raw)
            }
        };
        self.last = Some(value);
        value
    }

    /// `raw` placed nearest `anchor` (already unwrapped) without moving the reference: a
    /// PTS relative to its own frame's DTS.
    pub(crate) fn near(&self, anchor: i64, raw: u64) -> i64 {
        #[allow(non_snake_case)]
        let WRAP = self.wrap;
        let delta = (raw as i64 - anchor).rem_euclid(WRAP);
        if delta > WRAP / 2 {
            anchor + delta - WRAP
        } else {
            anchor + delta
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const WRAP: i64 = WRAP_33;

    #[test]
    fn continues_across_the_wrap_and_keeps_small_steps_back() {
        let mut u = Unwrapper::new(WRAP);
        assert_eq!(u.unwrap(WRAP as u64 - 3_000), WRAP - 3_000);
        assert_eq!(u.unwrap(600), WRAP + 600);
        assert_eq!(u.unwrap(300), WRAP + 300);
        assert_eq!(u.unwrap(WRAP as u64 - 10), WRAP - 10);
        assert_eq!(u.near(WRAP - 10, 20), WRAP + 20);
        assert_eq!(u.near(WRAP + 20, WRAP as u64 - 10), WRAP - 10);
    }

    #[test]
    fn rtmp_milliseconds_continue_after_49_7_days() {
        let mut u = Unwrapper::new(WRAP_32);
        assert_eq!(u.unwrap(u64::from(u32::MAX) - 40), WRAP_32 - 41);
        assert_eq!(u.unwrap(0), WRAP_32);
        assert_eq!(u.unwrap(40), WRAP_32 + 40);
        assert_eq!(u.unwrap(u64::from(u32::MAX)), WRAP_32 - 1);
    }

    proptest! {
        /// Any walk with steps smaller than half a cycle comes out exactly as it went in,
        /// whatever 33-bit value it starts from and however often it wraps.
        #[test]
        fn recovers_any_walk_with_small_steps(
            start in 0i64..WRAP,
            steps in prop::collection::vec(-(WRAP / 4)..(WRAP / 4), 1..200),
        ) {
            let mut u = Unwrapper::new(WRAP);
            let mut t = start;
            prop_assert_eq!(u.unwrap(t.rem_euclid(WRAP) as u64), t);
            for s in steps {
                t += s;
                prop_assert_eq!(u.unwrap(t.rem_euclid(WRAP) as u64), t);
            }
        }
    }
}
