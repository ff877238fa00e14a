//! Wires ingest to packaging: the events of the configuration, as the ingest's
//! [`EventDirectory`]. Each event has up to two inputs (its primary and backup stream keys);
//! its [`InputSelector`] decides which one is packaged, and a [`Pipeline`] packages it.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use weir_config::{EventSettings, PackagerSettings, SrtPassphrase, StreamKey};
use weir_ingest::{
    Admission, Departure, EventDirectory, FailoverPolicy, InputRole, InputSelector, PublishRequest,
    PublishSession, Rejection, Route, Switch, SwitchReason,
};
use weir_media::{Frame, TrackInfo};
use weir_origin::{EventId, Store};
use weir_packager::{MediaSequence, Packager, PackagerConfig, TargetDurationPolicy};

use crate::pipeline::{EventOutput, EventState, Pipeline};

/// The configured events.
pub(crate) struct Directory<S: Store> {
    events: Vec<Arc<Event<S>>>,
}

struct Event<S: Store> {
    stream_key: StreamKey,
    backup_stream_key: Option<StreamKey>,
    srt_passphrase: Option<SrtPassphrase>,
    max_ingest_bitrate_bps: u64,
    output: EventOutput<S>,
    inputs: Mutex<Inputs<S>>,
}

/// Which input is packaged, and what packages it.
struct Inputs<S: Store> {
    selector: InputSelector,
    pipeline: Option<Pipeline<S>>,
}

impl<S: Store> Directory<S> {
    pub(crate) fn new(
        events: &[EventSettings],
        packager: &PackagerSettings,
        store: Arc<S>,
    ) -> anyhow::Result<Self> {
        // A restarted process starts above every media sequence number it used before.
        let started_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let events: Vec<Arc<Event<S>>> = events
            .iter()
            .map(|e| {
                let id = EventId::parse(&e.id)
                    .ok_or_else(|| anyhow::anyhow!("bad event id {:?}", e.id))?;
                // weir's encoder places every keyframe when no rendition is the source's.
                let encoded = e.ladder.video.iter().all(|v| v.encoding.is_some());
                let config = PackagerConfig {
                    target_duration: packager.segment_target,
                    target_duration_policy: if encoded {
                        TargetDurationPolicy::Configured
                    } else {
                        TargetDurationPolicy::FirstSegment
                    },
                    part_target: packager.part_target,
                    low_latency: e.low_latency,
                    window_segments: packager.window_segments,
                    first_msn: MediaSequence::from_unix_millis(started_ms),
                };
                let policy = FailoverPolicy {
                    failover_after: e.failover.failover_after,
                    failback_after: e.failover.failback_after,
                };
                Ok(Arc::new(Event {
                    stream_key: e.stream_key.clone(),
                    backup_stream_key: e.backup_stream_key.clone(),
                    srt_passphrase: e.srt_passphrase.clone(),
                    max_ingest_bitrate_bps: e.max_ingest_bitrate_bps,
                    output: EventOutput {
                        id,
                        ladder: e.ladder.clone(),
                        segment_target: packager.segment_target,
                        state: Arc::new(Mutex::new(EventState::new(Packager::new(config)))),
                        store: store.clone(),
                    },
                    inputs: Mutex::new(Inputs {
                        selector: InputSelector::new(policy),
                        pipeline: None,
                    }),
                }))
            })
            .collect::<anyhow::Result<_>>()?;
        if events.iter().any(|e| !e.output.ladder.is_passthrough()) {
            weir_ingest::check_ffmpeg()?;
        }
        Ok(Directory { events })
    }

    /// The event and input `stream_key` publishes. Every key is compared, so the time taken
    /// says nothing about which one matched.
    fn find(&self, stream_key: &str) -> Result<(&Arc<Event<S>>, InputRole), Rejection> {
        let mut found = None;
        for e in &self.events {
            if e.stream_key.matches(stream_key) {
                found = Some((e, InputRole::Primary));
            }
            if e.backup_stream_key
                .as_ref()
                .is_some_and(|k| k.matches(stream_key))
            {
                found = Some((e, InputRole::Backup));
            }
        }
        found.ok_or(Rejection::UnknownStreamKey)
    }
}

fn lock_inputs<S: Store>(inputs: &Mutex<Inputs<S>>) -> MutexGuard<'_, Inputs<S>> {
    inputs.lock().unwrap_or_else(|e| e.into_inner())
}

impl<S: Store> Event<S> {
    /// Carries out a switch of the packaged input: ends the current pipeline, starts one for
    /// the new input and hands it the new input's configurations and buffered frames.
    fn switch(&self, inputs: &mut Inputs<S>, switch: Switch) {
        let event = &self.output.id;
        if let Some(old) = inputs.pipeline.take() {
            old.finish();
        }
        match switch.reason {
            SwitchReason::Start => {}
            reason => {
                let from = switch.from.map_or("none", InputRole::as_str);
                match reason {
                    SwitchReason::Stalled(silent) => {
                        tracing::warn!(%event, %from, to = %switch.to, silent_ms = silent.as_millis() as u64, replayed_frames = switch.frames.len(), "input failover: the packaged encoder stalled")
                    }
                    SwitchReason::Disconnected => {
                        tracing::warn!(%event, %from, to = %switch.to, replayed_frames = switch.frames.len(), "input failover: the packaged encoder disconnected")
                    }
                    _ => {
                        tracing::info!(%event, %from, to = %switch.to, "input failback: the primary encoder is healthy again")
                    }
                }
                metrics::counter!("weir_ingest_input_switches_total", "event" => event.to_string(), "to" => switch.to.as_str(), "reason" => reason.as_str()).increment(1);
            }
        }
        for role in [InputRole::Primary, InputRole::Backup] {
            let active = f64::from(u8::from(Some(role) == Some(switch.to)));
            metrics::gauge!("weir_ingest_active_input", "event" => event.to_string(), "input" => role.as_str()).set(active);
        }
        match Pipeline::start(&self.output) {
            Ok(mut pipeline) => {
                tracing::info!(%event, input = %switch.to, session = %pipeline.session(), ladder = %self.output.ladder.name, "packaging input");
                for info in switch.tracks {
                    pipeline.track(info);
                }
                for (frame, _) in switch.frames {
                    pipeline.frame(frame);
                }
                inputs.pipeline = Some(pipeline);
            }
            Err(e) => {
                tracing::error!(%event, error = %e, "cannot start the transcoder; the input is not packaged");
            }
        }
    }
}

impl<S: Store> EventDirectory for Directory<S> {
    type Session = Publisher<S>;

    fn admit(&self, request: &PublishRequest<'_>) -> Result<Admission, Rejection> {
        let (event, role) = self.find(request.stream_key)?;
        if lock_inputs(&event.inputs).selector.is_connected(role) {
            return Err(Rejection::AlreadyPublishing);
        }
        Ok(Admission {
            srt_passphrase: event
                .srt_passphrase
                .as_ref()
                .map(|p| p.expose().to_string()),
        })
    }

    fn authorize(&self, request: &PublishRequest<'_>) -> Result<Publisher<S>, Rejection> {
        let (event, role) = self.find(request.stream_key)?;
        let mut inputs = lock_inputs(&event.inputs);
        if inputs.selector.is_connected(role) {
            return Err(Rejection::AlreadyPublishing);
        }
        tracing::info!(event = %event.output.id, input = %role, peer = %request.peer, "publisher accepted");
        if let Some(start) = inputs.selector.connect(role, Instant::now()) {
            event.switch(&mut inputs, start);
            if inputs.pipeline.is_none() {
                inputs.selector.disconnect(role);
                return Err(Rejection::Unavailable);
            }
        }
        drop(inputs);
        Ok(Publisher {
            event: event.clone(),
            role,
        })
    }
}

/// One accepted publisher (one input of an event): its media goes to the event's input
/// selector, which packages it or keeps it on standby.
pub(crate) struct Publisher<S: Store> {
    event: Arc<Event<S>>,
    role: InputRole,
}

impl<S: Store> PublishSession for Publisher<S> {
    fn event_id(&self) -> &str {
        self.event.output.id.as_str()
    }

    fn max_ingest_bitrate(&self) -> u64 {
        self.event.max_ingest_bitrate_bps
    }

    fn track(&mut self, info: TrackInfo) {
        let mut inputs = lock_inputs(&self.event.inputs);
        let inputs = &mut *inputs;
        if inputs.selector.track(self.role, info.clone()) {
            if let Some(p) = inputs.pipeline.as_mut() {
                p.track(info);
            }
        }
    }

    fn frame(&mut self, frame: Frame) {
        let mut inputs = lock_inputs(&self.event.inputs);
        let inputs = &mut *inputs;
        match inputs.selector.frame(self.role, frame, Instant::now()) {
            Route::Forward(frame) => {
                if let Some(p) = inputs.pipeline.as_mut() {
                    p.frame(frame);
                }
            }
            Route::Standby => {}
            Route::Switch(switch) => self.event.switch(inputs, switch),
        }
    }
}

impl<S: Store> Drop for Publisher<S> {
    fn drop(&mut self) {
        let mut inputs = lock_inputs(&self.event.inputs);
        let inputs = &mut *inputs;
        let event = &self.event.output.id;
        match inputs.selector.disconnect(self.role) {
            Departure::Standby => {}
            Departure::Switch(switch) => self.event.switch(inputs, switch),
            Departure::Ended => {
                if let Some(p) = inputs.pipeline.take() {
                    p.finish();
                }
                for role in [InputRole::Primary, InputRole::Backup] {
                    metrics::gauge!("weir_ingest_active_input", "event" => event.to_string(), "input" => role.as_str()).set(0.0);
                }
            }
        }
        tracing::info!(%event, input = %self.role, "publisher session ended");
    }
}
