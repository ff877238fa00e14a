//! An SRT publisher's connection statistics as metrics, labelled by event (bounded: one
//! publisher per event at a time).
//!
//! | metric | kind | from (libsrt name) |
//! |---|---|---|
//! | `weir_srt_packets_received_total` | counter | `pktRecvTotal` |
//! | `weir_srt_loss_reports_total` | counter | `pktSentNAKTotal`: loss reports (NAKs) sent, each naming one or more lost packets |
//! | `weir_srt_packets_retransmitted_total` | counter | `pktRcvRetransTotal` |
//! | `weir_srt_packets_dropped_total` | counter | `pktRcvDropTotal` (too late to play) |
//! | `weir_srt_receive_rate_bits_per_second` | gauge | `byteRecvTotal`, over the last sample |
//! | `weir_srt_send_rate_bits_per_second` | gauge | `byteSentTotal` (control traffic) |
//! | `weir_srt_handshake_rtt_seconds` | gauge | round trip measured during the handshake |
//! | `weir_srt_publishers` | gauge | 1 while a publisher is connected |
//!
//! srt-tokio fills in neither its running RTT (`msRTT`) nor its lost-packet count
//! (`pktRcvLossTotal`), so the round trip published is the handshake's, and losses are
//! seen as the loss reports weir sent and the retransmissions that answered them.

use std::time::Duration;

use srt_tokio::SocketStatistics;

/// Turns the cumulative statistics srt-tokio reports (about once a second) into counter
/// increments and rate gauges.
#[derive(Debug)]
pub(crate) struct Recorder {
    event: String,
    last: Option<Sample>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Sample {
    elapsed: Duration,
    received: u64,
    loss_reports: u64,
    retransmitted: u64,
    dropped: u64,
    rx_bytes: u64,
    tx_bytes: u64,
}

impl Sample {
    fn of(s: &SocketStatistics) -> Sample {
        Sample {
            elapsed: s.elapsed_time,
            received: s.rx_data,
            loss_reports: s.tx_nak,
            retransmitted: s.rx_retransmit_data,
            dropped: s.rx_dropped_data,
            rx_bytes: s.rx_all_bytes,
            tx_bytes: s.tx_all_bytes,
        }
    }
}

impl Recorder {
    /// Starts recording for a publisher of `event` whose handshake took `rtt`.
    pub(crate) fn new(event: &str, rtt: Duration) -> Recorder {
        let event = event.to_string();
        metrics::gauge!("weir_srt_handshake_rtt_seconds", "event" => event.clone())
            .set(rtt.as_secs_f64());
        metrics::gauge!("weir_srt_publishers", "event" => event.clone()).set(1.0);
        Recorder { event, last: None }
    }

    /// Records one statistics report.
    pub(crate) fn record(&mut self, s: &SocketStatistics) {
        let now = Sample::of(s);
        let before = self.last.unwrap_or_default();
        let label = || ("event", self.event.clone());
        let grew = |a: u64, b: u64| a.saturating_sub(b);
        metrics::counter!("weir_srt_packets_received_total", &[label()])
            .increment(grew(now.received, before.received));
        metrics::counter!("weir_srt_loss_reports_total", &[label()])
            .increment(grew(now.loss_reports, before.loss_reports));
        metrics::counter!("weir_srt_packets_retransmitted_total", &[label()])
            .increment(grew(now.retransmitted, before.retransmitted));
        metrics::counter!("weir_srt_packets_dropped_total", &[label()])
            .increment(grew(now.dropped, before.dropped));
        let secs = now.elapsed.saturating_sub(before.elapsed).as_secs_f64();
        if secs > 0.0 {
            let rate = |a: u64, b: u64| grew(a, b) as f64 * 8.0 / secs;
            metrics::gauge!("weir_srt_receive_rate_bits_per_second", &[label()])
                .set(rate(now.rx_bytes, before.rx_bytes));
            metrics::gauge!("weir_srt_send_rate_bits_per_second", &[label()])
                .set(rate(now.tx_bytes, before.tx_bytes));
        }
        self.last = Some(now);
    }

    /// The publisher is gone: its rates and presence go to zero.
    pub(crate) fn finish(self) {
        let label = [("event", self.event)];
        metrics::gauge!("weir_srt_receive_rate_bits_per_second", &label).set(0.0);
        metrics::gauge!("weir_srt_send_rate_bits_per_second", &label).set(0.0);
        metrics::gauge!("weir_srt_publishers", &label).set(0.0);
    }
}
