//! The event's presentation timeline: one clock, in 90 kHz ticks, that every rendition of an
//! event is placed on, continuous across publisher sessions.

use std::ops::{Add, Sub};
use std::time::Duration;

use weir_media::{Timescale, Timestamp};

/// A presentation time on an event's timeline, in 90 kHz ticks (ISO/IEC 13818-1 §2.4.3.7).
///
/// The timeline starts at 0 with the event's first session and continues where the previous
/// session ended: a track's `tfdt` is this time (minus its composition offset) expressed in
/// the track's own timescale. Cut points, program date times and the alignment of renditions
/// are all computed on it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct EventTime(i64);

/// The event timeline's tick rate.
pub(crate) const EVENT_TIMESCALE: Timescale = Timescale::MPEG_90K;

impl EventTime {
    /// `ticks` of 90 kHz.
    pub(crate) const fn from_ticks(ticks: i64) -> EventTime {
        EventTime(ticks)
    }

    /// The 90 kHz tick count.
    pub(crate) fn ticks(self) -> i64 {
        self.0
    }

    /// This time in a track's timescale, rounded to the nearest tick.
    pub(crate) fn in_timescale(self, timescale: Timescale) -> i64 {
        Timestamp::new(self.0, EVENT_TIMESCALE).rescale(timescale)
    }

    /// A time given in a track's timescale.
    pub(crate) fn from_track(ticks: i64, timescale: Timescale) -> EventTime {
        EventTime(Timestamp::new(ticks, timescale).rescale(EVENT_TIMESCALE))
    }

    /// How long after `earlier` this is; zero if it is not later.
    pub(crate) fn since(self, earlier: EventTime) -> Duration {
        ticks_to_duration((self.0 - earlier.0).max(0))
    }
}

impl Add<Duration> for EventTime {
    type Output = EventTime;
    fn add(self, d: Duration) -> EventTime {
        EventTime(self.0 + duration_to_ticks(d))
    }
}

impl Sub for EventTime {
    type Output = i64;
    /// The difference in 90 kHz ticks.
    fn sub(self, other: EventTime) -> i64 {
        self.0 - other.0
    }
}

/// `ticks` of 90 kHz as a `Duration` (negative counts as zero).
pub(crate) fn ticks_to_duration(ticks: i64) -> Duration {
    let ticks = ticks.max(0) as u64;
    let per_sec = u64::from(EVENT_TIMESCALE.get());
    Duration::new(
        ticks / per_sec,
        ((ticks % per_sec) * 1_000_000_000 / per_sec) as u32,
    )
}

/// A `Duration` in 90 kHz ticks, rounded down.
pub(crate) fn duration_to_ticks(d: Duration) -> i64 {
    (d.as_nanos() * u128::from(EVENT_TIMESCALE.get()) / 1_000_000_000) as i64
}

/// `ticks` of `timescale` as a `Duration` (negative counts as zero).
pub(crate) fn track_duration(ticks: u64, timescale: Timescale) -> Duration {
    let per_sec = u64::from(timescale.get());
    Duration::new(
        ticks / per_sec,
        ((ticks % per_sec) * 1_000_000_000 / per_sec) as u32,
    )
}

/// A `Duration` in ticks of `timescale`, rounded down.
pub(crate) fn duration_in(d: Duration, timescale: Timescale) -> u64 {
    (d.as_nanos() * u128::from(timescale.get()) / 1_000_000_000) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_trip() {
        let t = EventTime::from_ticks(180_180); // 2.002 s
        assert_eq!(t.since(EventTime::default()), Duration::from_millis(2_002));
        assert_eq!(t.in_timescale(Timescale::new(48_000).unwrap()), 96_096);
        assert_eq!(
            EventTime::from_track(96_096, Timescale::new(48_000).unwrap()),
            t
        );
        assert_eq!(duration_to_ticks(Duration::from_millis(333)), 29_970);
        assert_eq!(
            track_duration(1_024, Timescale::new(48_000).unwrap()),
            Duration::from_nanos(21_333_333)
        );
        assert_eq!(
            duration_in(Duration::from_secs(2), Timescale::new(44_100).unwrap()),
            88_200
        );
        assert_eq!(EventTime::default().since(t), Duration::ZERO);
    }
}
