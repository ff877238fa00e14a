use std::fmt;
use std::num::NonZeroU32;

/// A number of timestamp ticks per second, e.g. 1 000 for RTMP, 90 000 for MPEG video, or the
/// audio sample rate.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timescale(NonZeroU32);

impl Timescale {
    /// Milliseconds: the timescale of RTMP/FLV timestamps (Adobe FLV spec v10.1 §E.4.1).
    pub const MILLIS: Timescale = Timescale(NonZeroU32::new(1_000).unwrap());
    /// 90 kHz: the MPEG system clock most video tracks use (ISO/IEC 13818-1 §2.4.3.7).
    pub const MPEG_90K: Timescale = Timescale(NonZeroU32::new(90_000).unwrap());

    /// A timescale of `ticks_per_second`; `None` for zero.
    pub const fn new(ticks_per_second: u32) -> Option<Timescale> {
        match NonZeroU32::new(ticks_per_second) {
            Some(n) => Some(Timescale(n)),
            None => None,
        }
    }

    /// Ticks per second.
    pub const fn get(self) -> u32 {
        self.0.get()
    }
}

impl fmt::Debug for Timescale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}Hz", self.0)
    }
}

/// A point on a media timeline: `ticks` of `1 / timescale` seconds. Signed, because composition
/// offsets and rebased timelines can go below zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timestamp {
    /// The count of ticks.
    pub ticks: i64,
    /// What one tick means.
    pub timescale: Timescale,
}

impl Timestamp {
    /// `ticks` in `timescale`.
    pub const fn new(ticks: i64, timescale: Timescale) -> Timestamp {
        Timestamp { ticks, timescale }
    }

    /// This timestamp's tick count in another timescale, rounded to the nearest tick.
    pub fn rescale(self, to: Timescale) -> i64 {
        rescale(self.ticks, self.timescale, to)
    }

    /// Seconds, as a float (for display and ratios, never for arithmetic on timelines).
    pub fn as_secs_f64(self) -> f64 {
        self.ticks as f64 / f64::from(self.timescale.get())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{:?}", self.ticks, self.timescale)
    }
}

/// `ticks` of `from` expressed in `to`, rounded to the nearest tick (half away from zero).
pub(crate) fn rescale(ticks: i64, from: Timescale, to: Timescale) -> i64 {
    let num = i128::from(ticks) * i128::from(to.get());
    let den = i128::from(from.get());
    let half = den / 2;
    let r = if num >= 0 {
        (num + half) / den
    } else {
        (num - half) / den
    };
    r as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rescale_rounds_to_nearest() {
        let ms = Timescale::MILLIS;
        let sr = Timescale::new(44_100).unwrap();
        assert_eq!(Timestamp::new(23, ms).rescale(sr), 1_014);
        assert_eq!(Timestamp::new(-40, ms).rescale(Timescale::MPEG_90K), -3_600);
        assert_eq!(Timestamp::new(1_024, sr).rescale(ms), 23);
    }
}
