//! An SRT publisher's connection statistics (libsrt's `srt_bstats`) as metrics, labelled by
//! event (bounded: one publisher per event at a time).
//!
//! | metric | kind | from (libsrt name) |
//! |---|---|---|
//! | `weir_srt_packets_received_total` | counter | `pktRecv` |
//! | `weir_srt_packets_lost_total` | counter | `pktRcvLoss` (gaps detected; most are recovered) |
//! | `weir_srt_packets_retransmitted_total` | counter | `pktRcvRetrans` |
//! | `weir_srt_packets_dropped_total` | counter | `pktRcvDrop` (too late to play: lost for good) |
//! | `weir_srt_rtt_seconds` | gauge | `msRTT` |
//! | `weir_srt_receive_rate_bits_per_second` | gauge | `mbpsRecvRate` |
//! | `weir_srt_send_rate_bits_per_second` | gauge | `mbpsSendRate` (acknowledgements, loss reports) |
//! | `weir_srt_publishers` | gauge | 1 while a publisher is connected |

use weir_srt::Stats;

/// Publishes the statistics of one publisher's connection.
#[derive(Debug)]
pub(crate) struct Recorder {
    event: String,
}

impl Recorder {
    /// Starts recording for a publisher of `event`.
    pub(crate) fn new(event: &str) -> Recorder {
        let event = event.to_string();
        metrics::gauge!("weir_srt_publishers", "event" => event.clone()).set(1.0);
        Recorder { event }
    }

    /// Records the statistics of one interval.
    pub(crate) fn record(&mut self, s: &Stats) {
        let label = [("event", self.event.clone())];
        metrics::counter!("weir_srt_packets_received_total", &label).increment(s.packets_received);
        metrics::counter!("weir_srt_packets_lost_total", &label).increment(s.packets_lost);
        metrics::counter!("weir_srt_packets_retransmitted_total", &label)
            .increment(s.packets_retransmitted);
        metrics::counter!("weir_srt_packets_dropped_total", &label).increment(s.packets_dropped);
        metrics::gauge!("weir_srt_rtt_seconds", &label).set(s.rtt.as_secs_f64());
        metrics::gauge!("weir_srt_receive_rate_bits_per_second", &label).set(s.receive_rate_bps);
        metrics::gauge!("weir_srt_send_rate_bits_per_second", &label).set(s.send_rate_bps);
    }

    /// The publisher is gone: its rates and presence go to zero.
    pub(crate) fn finish(self) {
        let label = [("event", self.event)];
        metrics::gauge!("weir_srt_receive_rate_bits_per_second", &label).set(0.0);
        metrics::gauge!("weir_srt_send_rate_bits_per_second", &label).set(0.0);
        metrics::gauge!("weir_srt_publishers", &label).set(0.0);
    }
}
