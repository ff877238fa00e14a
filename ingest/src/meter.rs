//! The ingest bit rate of one publisher, against its event's limit (sans-I/O: the caller
//! passes the time).

use std::time::{Duration, Instant};

/// Length of the window the rate is averaged over: long enough that a keyframe burst is not
/// mistaken for a publisher over its limit.
pub(crate) const WINDOW: Duration = Duration::from_secs(5);
const BUCKETS: usize = WINDOW.as_secs() as usize;

/// Bytes received per second over the last [`WINDOW`].
#[derive(Debug)]
pub(crate) struct IngestMeter {
    limit_bps: u64,
    start: Instant,
    buckets: [u64; BUCKETS],
    /// The whole second (since `start`) the newest bucket counts.
    current: u64,
}

impl IngestMeter {
    /// A meter for a publisher allowed `limit_bps` bits per second on average, starting now.
    pub(crate) fn new(limit_bps: u64, now: Instant) -> IngestMeter {
        IngestMeter {
            limit_bps,
            start: now,
            buckets: [0; BUCKETS],
            current: 0,
        }
    }

    /// Counts `bytes` received at `now`; returns the average rate over the window (bits per
    /// second) when it is above the limit. The window must have filled once first.
    pub(crate) fn record(&mut self, bytes: usize, now: Instant) -> Option<u64> {
        let second = now.saturating_duration_since(self.start).as_secs();
        while self.current < second {
            self.current += 1;
            self.buckets[(self.current % BUCKETS as u64) as usize] = 0;
            if second - self.current >= BUCKETS as u64 {
                // Silent for a whole window: every bucket is zero now.
                self.buckets = [0; BUCKETS];
                self.current = second;
            }
        }
        self.buckets[(self.current % BUCKETS as u64) as usize] += bytes as u64;
        if second < BUCKETS as u64 {
            return None;
        }
        let rate = self.buckets.iter().sum::<u64>() * 8 / BUCKETS as u64;
        (rate > self.limit_bps).then_some(rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `bps` for `secs` seconds in 10 ms steps; the first time the meter trips.
    fn trips(limit: u64, bps: u64, secs: u64) -> Option<Duration> {
        let t0 = Instant::now();
        let mut m = IngestMeter::new(limit, t0);
        let step = Duration::from_millis(10);
        for i in 0..secs * 100 {
            let now = t0 + step * i as u32;
            if m.record((bps / 8 / 100) as usize, now).is_some() {
                return Some(now - t0);
            }
        }
        None
    }

    #[test]
    fn trips_only_above_the_limit_and_after_a_full_window() {
        assert_eq!(trips(1_000_000, 900_000, 30), None);
        let when = trips(1_000_000, 1_500_000, 30).expect("over the limit");
        assert!(
            when >= WINDOW && when < WINDOW + Duration::from_secs(1),
            "{when:?}"
        );
    }

    #[test]
    fn a_keyframe_burst_within_the_average_is_allowed() {
        let t0 = Instant::now();
        let mut m = IngestMeter::new(2_000_000, t0);
        for s in 0..20u32 {
            // 1 Mbit/s with a 1 Mbit keyframe every 2 s: 1.5 Mbit/s on average.
            let burst = if s % 2 == 0 { 125_000 } else { 0 };
            let now = t0 + Duration::from_secs(u64::from(s));
            assert_eq!(m.record(125_000 + burst, now), None, "second {s}");
        }
    }

    #[test]
    fn a_silence_longer_than_the_window_forgets_the_past() {
        let t0 = Instant::now();
        let mut m = IngestMeter::new(1_000, t0);
        assert_eq!(m.record(1_000_000, t0), None);
        let later = t0 + Duration::from_secs(60);
        assert_eq!(m.record(10, later), None);
    }
}
