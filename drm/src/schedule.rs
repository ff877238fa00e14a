//! Key rotation: which key period a segment belongs to. Sans-I/O and deterministic, so the
//! key of a segment not cut yet (a preload hint's) is known in advance.

use std::num::NonZeroU32;

/// Rotation every `every` segments counted from `base` (the event's first media sequence
/// number), or never: period `p` holds segments `base + p * every ..= base + (p + 1) * every
/// - 1`. Segments before `base` belong to period 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotationSchedule {
    base: u64,
    every: Option<NonZeroU32>,
}

impl RotationSchedule {
    /// A new key every `every` segments from `base` (`None`: one key for good).
    pub fn new(base: u64, every: Option<NonZeroU32>) -> RotationSchedule {
        RotationSchedule { base, every }
    }

    /// The period of segment `msn`.
    pub fn period(&self, msn: u64) -> u64 {
        match self.every {
            Some(n) => msn.saturating_sub(self.base) / u64::from(n.get()),
            None => 0,
        }
    }

    /// The last segment of period `period`; `None` when keys never rotate.
    pub fn last_msn(&self, period: u64) -> Option<u64> {
        let n = u64::from(self.every?.get());
        Some(
            self.base
                .saturating_add(period.saturating_add(1).saturating_mul(n))
                .saturating_sub(1),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn periods_of_a_table() {
        let s = RotationSchedule::new(100, NonZeroU32::new(3));
        let periods: Vec<u64> = (98..=107).map(|m| s.period(m)).collect();
        assert_eq!(periods, [0, 0, 0, 0, 0, 1, 1, 1, 2, 2]);
        assert_eq!(s.last_msn(0), Some(102));
        assert_eq!(s.last_msn(1), Some(105));
        let never = RotationSchedule::new(100, None);
        assert_eq!(never.period(1_000_000), 0);
        assert_eq!(never.last_msn(0), None);
    }

    proptest! {
        #[test]
        fn a_new_period_every_n_segments(base in 0u64..1u64 << 50, n in 1u32..100, k in 0u64..10_000) {
            let s = RotationSchedule::new(base, NonZeroU32::new(n));
            let msn = base + k;
            let p = s.period(msn);
            // Periods never go back, and change exactly every n segments.
            prop_assert!(s.period(msn + 1) >= p);
            prop_assert_eq!(s.period(msn + 1) != p, (k + 1) % u64::from(n) == 0);
            // A segment is within its period's bounds.
            let last = s.last_msn(p).unwrap();
            prop_assert!(msn <= last && last - msn < u64::from(n));
        }
    }
}
