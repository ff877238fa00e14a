//! Wires ingest to packaging: the events of the configuration, as the ingest's
//! [`EventDirectory`], feeding each event's [`Packager`] and applying what it produces to the
//! origin's store.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use std::time::Duration;

use weir_config::{EventSettings, LadderSettings, PackagerSettings, SrtPassphrase, StreamKey};
use weir_ingest::{
    Admission, EventDirectory, PublishRequest, PublishSession, Rejection, RenditionSink,
    Transcoder, TranscoderConfig,
};
use weir_media::{Frame, TrackInfo, TrackKind};
use weir_origin::{EventId, Store};
use weir_packager::{
    Artifact, MediaSequence, Packager, PackagerConfig, PackagerStats, RenditionId, SessionId,
    TargetDurationPolicy,
};

/// The configured events.
pub(crate) struct Directory<S> {
    events: Vec<Event>,
    segment_target: Duration,
    store: Arc<S>,
    sessions: AtomicU32,
}

struct Event {
    id: EventId,
    stream_key: StreamKey,
    srt_passphrase: Option<SrtPassphrase>,
    max_ingest_bitrate_bps: u64,
    ladder: LadderSettings,
    state: Arc<Mutex<EventState>>,
}

struct EventState {
    packager: Packager,
    /// What the packager's stats were when last exported to metrics.
    stats: PackagerStats,
    live: bool,
    out: Vec<Artifact>,
    /// Every video rendition the event has published, so later sessions continue them all.
    renditions: Vec<String>,
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
        let events: Vec<Event> = events
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
                Ok(Event {
                    id,
                    stream_key: e.stream_key.clone(),
                    srt_passphrase: e.srt_passphrase.clone(),
                    max_ingest_bitrate_bps: e.max_ingest_bitrate_bps,
                    ladder: e.ladder.clone(),
                    state: Arc::new(Mutex::new(EventState {
                        packager: Packager::new(config),
                        stats: PackagerStats::default(),
                        live: false,
                        out: Vec::new(),
                        renditions: Vec::new(),
                    })),
                })
            })
            .collect::<anyhow::Result<_>>()?;
        if events.iter().any(|e: &Event| !e.ladder.is_passthrough()) {
            weir_ingest::check_ffmpeg()?;
        }
        Ok(Directory {
            events,
            segment_target: packager.segment_target,
            store,
            sessions: AtomicU32::new(0),
        })
    }
}

fn lock(state: &Mutex<EventState>) -> MutexGuard<'_, EventState> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl<S: Store> Directory<S> {
    /// The event `stream_key` publishes. Every key is compared, so the time taken says
    /// nothing about which one matched.
    fn find(&self, stream_key: &str) -> Result<&Event, Rejection> {
        let mut found = None;
        for e in &self.events {
            if e.stream_key.matches(stream_key) {
                found = Some(e);
            }
        }
        found.ok_or(Rejection::UnknownStreamKey)
    }
}

impl<S: Store> EventDirectory for Directory<S> {
    type Session = Publisher<S>;

    fn admit(&self, request: &PublishRequest<'_>) -> Result<Admission, Rejection> {
        let event = self.find(request.stream_key)?;
        if lock(&event.state).live {
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
        let event = self.find(request.stream_key)?;
        let mut state = lock(&event.state);
        if state.live {
            return Err(Rejection::AlreadyPublishing);
        }
        state.live = true;
        let now = SystemTime::now();
        let millis = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let session =
            SessionId::from_unix_millis(millis, self.sessions.fetch_add(1, Ordering::Relaxed) % 36);
        tracing::info!(event = %event.id, session = %session, ladder = %event.ladder.name, "publisher accepted");
        let state_ref = &mut *state;
        state_ref
            .packager
            .begin_session(session.clone(), now, &mut state_ref.out);
        drain(&*self.store, &event.id, state_ref);
        let keep_renditions =
            (!state_ref.renditions.is_empty()).then(|| state_ref.renditions.clone());
        drop(state);
        let sink = EventSink {
            event: event.id.clone(),
            state: event.state.clone(),
            store: self.store.clone(),
            session,
            discontinuities: 0,
            renditions: Vec::new(),
        };
        let transcoder = if event.ladder.is_passthrough() {
            None
        } else {
            let config = TranscoderConfig {
                event: event.id.to_string(),
                ladder: event.ladder.clone(),
                segment_target: self.segment_target,
                keep_renditions,
            };
            match Transcoder::start(config, sink.clone_handle()) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::error!(event = %event.id, error = %e, "cannot start the transcoder");
                    lock(&event.state).live = false;
                    return Err(Rejection::Unavailable);
                }
            }
        };
        Ok(Publisher {
            sink,
            transcoder,
            max_ingest_bitrate_bps: event.max_ingest_bitrate_bps,
        })
    }
}

fn drain<S: Store>(store: &S, event: &EventId, state: &mut EventState) {
    for artifact in state.out.drain(..) {
        store.apply(event, artifact);
    }
    let stats = state.packager.stats();
    if stats != state.stats {
        state.stats = stats;
        let e = event.to_string();
        metrics::counter!("weir_packager_segments_split_total", "event" => e.clone())
            .absolute(stats.segments_split);
        metrics::counter!("weir_packager_audio_resyncs_total", "event" => e.clone())
            .absolute(stats.audio_resyncs);
        metrics::counter!("weir_packager_audio_frames_dropped_total", "event" => e.clone())
            .absolute(stats.audio_frames_dropped);
        metrics::counter!("weir_packager_timestamp_jumps_total", "event" => e)
            .absolute(stats.timestamp_jumps);
    }
}

/// Where an event's renditions go: its packager, then its store. Used directly for a
/// passthrough event, and as the transcoder's [`RenditionSink`] otherwise.
pub(crate) struct EventSink<S: Store> {
    event: EventId,
    state: Arc<Mutex<EventState>>,
    store: Arc<S>,
    session: SessionId,
    discontinuities: u32,
    /// Rendition names seen, parsed once.
    renditions: Vec<RenditionId>,
}

impl<S: Store> EventSink<S> {
    fn clone_handle(&self) -> EventSink<S> {
        EventSink {
            event: self.event.clone(),
            state: self.state.clone(),
            store: self.store.clone(),
            session: self.session.clone(),
            discontinuities: 0,
            renditions: Vec::new(),
        }
    }

    fn rendition(&mut self, name: &str) -> Option<RenditionId> {
        if let Some(r) = self.renditions.iter().find(|r| r.as_str() == name) {
            return Some(r.clone());
        }
        let r = RenditionId::from_name(name)?;
        self.renditions.push(r.clone());
        Some(r)
    }

    fn with_packager(&self, f: impl FnOnce(&mut Packager, SystemTime, &mut Vec<Artifact>)) {
        let mut state = lock(&self.state);
        let s = &mut *state;
        f(&mut s.packager, SystemTime::now(), &mut s.out);
        drain(&*self.store, &self.event, s);
    }
}

impl<S: Store> RenditionSink for EventSink<S> {
    fn track(&mut self, rendition: &str, info: TrackInfo) {
        let Some(r) = self.rendition(rendition) else {
            return;
        };
        let mut state = lock(&self.state);
        let s = &mut *state;
        if info.kind == TrackKind::Video && !s.renditions.iter().any(|n| n == rendition) {
            s.renditions.push(rendition.to_string());
        }
        s.packager.track(r, info, SystemTime::now(), &mut s.out);
        drain(&*self.store, &self.event, s);
    }

    fn frame(&mut self, rendition: &str, frame: Frame) {
        if let Some(r) = self.rendition(rendition) {
            self.with_packager(|p, now, out| p.frame(&r, frame, now, out));
        }
    }

    fn discontinuity(&mut self) {
        self.discontinuities += 1;
        let id = SessionId::parse(&format!("{}d{}", self.session, self.discontinuities))
            .unwrap_or_else(|| self.session.clone());
        self.with_packager(|p, now, out| p.begin_session(id, now, out));
    }
}

/// One accepted publisher: its media goes to the event's packager, through the transcoder
/// when the event's ladder has encoded renditions.
pub(crate) struct Publisher<S: Store> {
    sink: EventSink<S>,
    transcoder: Option<Transcoder>,
    max_ingest_bitrate_bps: u64,
}

impl<S: Store> PublishSession for Publisher<S> {
    fn event_id(&self) -> &str {
        self.sink.event.as_str()
    }

    fn max_ingest_bitrate(&self) -> u64 {
        self.max_ingest_bitrate_bps
    }

    fn track(&mut self, info: TrackInfo) {
        match &self.transcoder {
            Some(t) => t.track(info),
            None => {
                let rendition = RenditionId::passthrough(info.kind);
                self.sink
                    .with_packager(|p, now, out| p.track(rendition, info, now, out));
            }
        }
    }

    fn frame(&mut self, frame: Frame) {
        match &self.transcoder {
            Some(t) => t.frame(frame),
            None => {
                let rendition = RenditionId::passthrough(frame.track);
                self.sink
                    .with_packager(|p, now, out| p.frame(&rendition, frame, now, out));
            }
        }
    }
}

impl<S: Store> Drop for Publisher<S> {
    fn drop(&mut self) {
        // Everything queued is transcoded and the encoders flushed before the session ends.
        if let Some(t) = self.transcoder.take() {
            t.finish();
        }
        let mut state = lock(&self.sink.state);
        let s = &mut *state;
        // The partial GOP becomes a short final segment; the playlists keep their window.
        s.packager.end_session(SystemTime::now(), &mut s.out);
        drain(&*self.sink.store, &self.sink.event, s);
        s.live = false;
        tracing::info!(event = %self.sink.event, "publisher session ended");
    }
}
