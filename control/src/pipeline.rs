//! What packages one input of an event: its packager session, and its transcoder when the
//! event's ladder encodes renditions. An event has at most one at a time; a switch between
//! its primary and backup encoder ends one and starts the next (one discontinuity).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::hooks::Hooks;
use weir_config::LadderSettings;
use weir_ingest::{RenditionSink, Transcoder, TranscoderConfig};
use weir_media::{Frame, TrackInfo, TrackKind};
use weir_origin::{EventId, Store};
use weir_packager::{Artifact, Packager, PackagerStats, RenditionId, SessionId};

/// An event's packaging state, shared by its pipeline and its transcoder's thread.
pub(crate) struct EventState {
    pub(crate) packager: Packager,
    /// What the packager's stats were when last exported to metrics.
    stats: PackagerStats,
    out: Vec<Artifact>,
    /// Every video rendition the event has published, so later sessions continue them all.
    renditions: Vec<String>,
    /// When the newest segment was published.
    last_segment_at: Option<SystemTime>,
    /// The event was deleted: nothing more reaches the store.
    removed: bool,
    /// When each rendition's newest frame reached the packager: a part or segment is
    /// published when the frame after its last one arrives, so its publish delay is measured
    /// from the arrival before.
    last_arrival: HashMap<RenditionId, SystemTime>,
}

impl EventState {
    pub(crate) fn new(packager: Packager) -> EventState {
        EventState {
            packager,
            stats: PackagerStats::default(),
            out: Vec::new(),
            renditions: Vec::new(),
            last_segment_at: None,
            removed: false,
            last_arrival: HashMap::new(),
        }
    }

    /// When the newest segment was published.
    pub(crate) fn last_segment_at(&self) -> Option<SystemTime> {
        self.last_segment_at
    }
}

pub(crate) fn lock(state: &Mutex<EventState>) -> MutexGuard<'_, EventState> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Applies what the packager produced to the store and exports its counters; once the
/// event is removed, what a finishing pipeline still produces is dropped.
fn drain<S: Store>(store: &S, hooks: &Hooks, event: &EventId, state: &mut EventState) {
    if state.removed {
        state.out.clear();
        return;
    }
    for artifact in state.out.drain(..) {
        if let Artifact::Segment {
            rendition,
            session,
            msn,
            data,
        } = &artifact
        {
            state.last_segment_at = Some(SystemTime::now());
            hooks.on_segment(
                event.as_str(),
                rendition.as_str(),
                session,
                msn.0,
                data.len(),
            );
        }
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

/// What every pipeline of one event shares.
pub(crate) struct EventOutput<S: Store> {
    pub(crate) id: EventId,
    pub(crate) hooks: Arc<Hooks>,
    pub(crate) segment_target: Duration,
    pub(crate) state: Arc<Mutex<EventState>>,
    pub(crate) store: Arc<S>,
}

impl<S: Store> EventOutput<S> {
    /// Ends the event's playlists (`EXT-X-ENDLIST`).
    pub(crate) fn end_event(&self) {
        let mut state = lock(&self.state);
        let s = &mut *state;
        s.packager.end_event(SystemTime::now(), &mut s.out);
        drain(&*self.store, &self.hooks, &self.id, s);
    }

    /// Lets go of what left the playlists and whose availability time has passed, without
    /// waiting for a new segment ([`Packager::expire`]).
    pub(crate) fn expire(&self) {
        let mut state = lock(&self.state);
        let s = &mut *state;
        s.packager.expire(SystemTime::now(), &mut s.out);
        if !s.out.is_empty() {
            drain(&*self.store, &self.hooks, &self.id, s);
        }
    }

    /// The event was deleted: its objects leave the store, and what a finishing pipeline
    /// still produces is dropped.
    pub(crate) fn remove(&self) {
        let mut state = lock(&self.state);
        state.removed = true;
        state.out.clear();
        self.store.remove_event(&self.id);
    }

    /// Opens an ended event again.
    pub(crate) fn reopen(&self) {
        let mut state = lock(&self.state);
        let s = &mut *state;
        s.packager.reopen(&mut s.out);
        drain(&*self.store, &self.hooks, &self.id, s);
    }
}

/// Where an event's renditions go: its packager, then its store. Used directly for a
/// passthrough event, and as the transcoder's [`RenditionSink`] otherwise.
pub(crate) struct EventSink<S: Store> {
    event: EventId,
    hooks: Arc<Hooks>,
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
            hooks: self.hooks.clone(),
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

    /// Packages one frame of `rendition`, observing the publish delay of what it completes:
    /// `weir_packager_publish_delay_seconds{kind="part"|"segment"}`, from the arrival of the
    /// object's last frame at the packager to its publication (mostly the wait for the next
    /// frame, which tells that an object is complete).
    fn package(&self, rendition: &RenditionId, frame: Frame) {
        let mut state = lock(&self.state);
        let s = &mut *state;
        let now = SystemTime::now();
        let previous = s.last_arrival.insert(rendition.clone(), now);
        s.packager.frame(rendition, frame, now, &mut s.out);
        if let Some(previous) = previous {
            let delay = now
                .duration_since(previous)
                .unwrap_or_default()
                .as_secs_f64();
            for a in &s.out {
                let kind = match a {
                    Artifact::Part { rendition: r, .. } if r == rendition => "part",
                    Artifact::Segment { rendition: r, .. } if r == rendition => "segment",
                    _ => continue,
                };
                metrics::histogram!("weir_packager_publish_delay_seconds", "kind" => kind)
                    .record(delay);
            }
        }
        drain(&*self.store, &self.hooks, &self.event, s);
    }

    fn with_packager(&self, f: impl FnOnce(&mut Packager, SystemTime, &mut Vec<Artifact>)) {
        let mut state = lock(&self.state);
        let s = &mut *state;
        f(&mut s.packager, SystemTime::now(), &mut s.out);
        drain(&*self.store, &self.hooks, &self.event, s);
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
        drain(&*self.store, &self.hooks, &self.event, s);
    }

    fn frame(&mut self, rendition: &str, frame: Frame) {
        if let Some(r) = self.rendition(rendition) {
            self.package(&r, frame);
        }
    }

    fn discontinuity(&mut self) {
        self.discontinuities += 1;
        let id = SessionId::parse(&format!("{}d{}", self.session, self.discontinuities))
            .unwrap_or_else(|| self.session.clone());
        self.with_packager(|p, now, out| p.begin_session(id, now, out));
    }
}

/// Packages one input: a packager session, through the transcoder when the event's ladder
/// has encoded renditions. [`Pipeline::finish`] ends it.
pub(crate) struct Pipeline<S: Store> {
    sink: EventSink<S>,
    transcoder: Option<Transcoder>,
}

/// Session ids are unique per process: the start time in ms plus a counter.
static SESSIONS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl<S: Store> Pipeline<S> {
    /// Begins a packager session for a new input (after a discontinuity when the event has
    /// published before) and starts its transcoder.
    ///
    /// # Errors
    /// The transcoder could not start; nothing is left running.
    pub(crate) fn start(
        event: &EventOutput<S>,
        ladder: &LadderSettings,
    ) -> Result<Pipeline<S>, weir_ingest::TranscodeError> {
        let now = SystemTime::now();
        let millis = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let counter = SESSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 36;
        let session = SessionId::from_unix_millis(millis, counter);
        let keep_renditions = {
            let mut state = lock(&event.state);
            let s = &mut *state;
            s.packager.begin_session(session.clone(), now, &mut s.out);
            drain(&*event.store, &event.hooks, &event.id, s);
            (!s.renditions.is_empty()).then(|| s.renditions.clone())
        };
        let sink = EventSink {
            event: event.id.clone(),
            hooks: event.hooks.clone(),
            state: event.state.clone(),
            store: event.store.clone(),
            session,
            discontinuities: 0,
            renditions: Vec::new(),
        };
        let transcoder = if ladder.is_passthrough() {
            None
        } else {
            let config = TranscoderConfig {
                event: event.id.to_string(),
                ladder: ladder.clone(),
                segment_target: event.segment_target,
                keep_renditions,
            };
            Some(Transcoder::start(config, sink.clone_handle())?)
        };
        Ok(Pipeline { sink, transcoder })
    }

    /// The session's id (for logs).
    pub(crate) fn session(&self) -> &SessionId {
        &self.sink.session
    }

    /// A decoder configuration of the input.
    pub(crate) fn track(&mut self, info: TrackInfo) {
        match &self.transcoder {
            Some(t) => t.track(info),
            None => {
                let rendition = weir_packager::passthrough_rendition(info.kind);
                self.sink
                    .with_packager(|p, now, out| p.track(rendition, info, now, out));
            }
        }
    }

    /// A frame of the input. Blocks while the transcoder's queue is full.
    pub(crate) fn frame(&mut self, frame: Frame) {
        match &self.transcoder {
            Some(t) => t.frame(frame),
            None => {
                let rendition = weir_packager::passthrough_rendition(frame.track);
                self.sink.package(&rendition, frame);
            }
        }
    }

    /// Ends the session: everything queued is transcoded and the encoders flushed, and the
    /// partial GOP becomes a short final segment; the playlists keep their window.
    pub(crate) fn finish(mut self) {
        if let Some(t) = self.transcoder.take() {
            t.finish();
        }
        let mut state = lock(&self.sink.state);
        let s = &mut *state;
        s.packager.end_session(SystemTime::now(), &mut s.out);
        drain(&*self.sink.store, &self.sink.hooks, &self.sink.event, s);
    }
}
