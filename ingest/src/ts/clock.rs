//! 33-bit MPEG timestamps (90 kHz, wrapping every 26.5 hours) extended to a continuous
//! 64-bit timeline (ISO/IEC 13818-1 §2.4.3.7).

/// Ticks in one cycle of a 33-bit timestamp.
pub(crate) const WRAP: i64 = 1 << 33;

/// Places each 33-bit timestamp on a 64-bit timeline at the position nearest the one before
/// it, so a wrap (…8589934591, 0, 1…) continues forward and a small step back stays a step
/// back. One unwrapper serves every stream of a program: they share its clock.
#[derive(Debug, Default, Clone)]
pub(crate) struct Unwrapper {
    last: Option<i64>,
}

impl Unwrapper {
    /// The 64-bit position of `raw` (taken modulo 2^33), in 90 kHz ticks.
    pub(crate) fn unwrap(&mut self, raw: u64) -> i64 {
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
    pub(crate) fn near(anchor: i64, raw: u64) -> i64 {
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

    #[test]
    fn continues_across_the_wrap_and_keeps_small_steps_back() {
        let mut u = Unwrapper::default();
        assert_eq!(u.unwrap(WRAP as u64 - 3_000), WRAP - 3_000);
        assert_eq!(u.unwrap(600), WRAP + 600);
        assert_eq!(u.unwrap(300), WRAP + 300);
        assert_eq!(u.unwrap(WRAP as u64 - 10), WRAP - 10);
        assert_eq!(Unwrapper::near(WRAP - 10, 20), WRAP + 20);
        assert_eq!(Unwrapper::near(WRAP + 20, WRAP as u64 - 10), WRAP - 10);
    }

    proptest! {
        /// Any walk with steps smaller than half a cycle comes out exactly as it went in,
        /// whatever 33-bit value it starts from and however often it wraps.
        #[test]
        fn recovers_any_walk_with_small_steps(
            start in 0i64..WRAP,
            steps in prop::collection::vec(-(WRAP / 4)..(WRAP / 4), 1..200),
        ) {
            let mut u = Unwrapper::default();
            let mut t = start;
            prop_assert_eq!(u.unwrap(t.rem_euclid(WRAP) as u64), t);
            for s in steps {
                t += s;
                prop_assert_eq!(u.unwrap(t.rem_euclid(WRAP) as u64), t);
            }
        }
    }
}
