//! Wires ingest to packaging: the events of the configuration, as the ingest's
//! [`EventDirectory`], feeding each event's [`Packager`] and applying what it produces to the
//! origin's store.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use weir_config::{EventSettings, PackagerSettings, StreamKey};
use weir_ingest::{EventDirectory, PublishRequest, PublishSession, Rejection};
use weir_media::{Frame, TrackInfo};
use weir_origin::{EventId, Store};
use weir_packager::{Artifact, Packager, PackagerConfig, SessionId};

/// The configured events.
pub(crate) struct Directory<S> {
    events: Vec<Event>,
    store: Arc<S>,
    sessions: AtomicU32,
}

struct Event {
    id: EventId,
    stream_key: StreamKey,
    state: Arc<Mutex<EventState>>,
}

struct EventState {
    packager: Packager,
    live: bool,
    out: Vec<Artifact>,
}

impl<S: Store> Directory<S> {
    pub(crate) fn new(
        events: &[EventSettings],
        packager: &PackagerSettings,
        store: Arc<S>,
    ) -> anyhow::Result<Self> {
        let config = PackagerConfig {
            target_duration: packager.segment_target,
            part_target: packager.part_target,
            window_segments: packager.window_segments,
        };
        let events = events
            .iter()
            .map(|e| {
                let id = EventId::parse(&e.id)
                    .ok_or_else(|| anyhow::anyhow!("bad event id {:?}", e.id))?;
                Ok(Event {
                    id,
                    stream_key: e.stream_key.clone(),
                    state: Arc::new(Mutex::new(EventState {
                        packager: Packager::new(config.clone()),
                        live: false,
                        out: Vec::new(),
                    })),
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Directory {
            events,
            store,
            sessions: AtomicU32::new(0),
        })
    }
}

fn lock(state: &Mutex<EventState>) -> MutexGuard<'_, EventState> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl<S: Store> EventDirectory for Directory<S> {
    type Session = Publisher<S>;

    fn authorize(&self, request: &PublishRequest<'_>) -> Result<Publisher<S>, Rejection> {
        // Every key is compared, so the time taken says nothing about which one matched.
        let mut found = None;
        for e in &self.events {
            if e.stream_key.matches(request.stream_key) {
                found = Some(e);
            }
        }
        let event = found.ok_or(Rejection::UnknownStreamKey)?;
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
        tracing::info!(event = %event.id, session = %session, "publisher accepted");
        let state_ref = &mut *state;
        state_ref
            .packager
            .begin_session(session, now, &mut state_ref.out);
        drain(&*self.store, &event.id, state_ref);
        Ok(Publisher {
            event: event.id.clone(),
            state: event.state.clone(),
            store: self.store.clone(),
        })
    }
}

fn drain<S: Store>(store: &S, event: &EventId, state: &mut EventState) {
    for artifact in state.out.drain(..) {
        store.apply(event, artifact);
    }
}

/// One accepted publisher: its media goes through the event's packager into the store.
pub(crate) struct Publisher<S: Store> {
    event: EventId,
    state: Arc<Mutex<EventState>>,
    store: Arc<S>,
}

impl<S: Store> PublishSession for Publisher<S> {
    fn track(&mut self, info: TrackInfo) {
        let mut state = lock(&self.state);
        let s = &mut *state;
        s.packager.track(info, SystemTime::now(), &mut s.out);
        drain(&*self.store, &self.event, s);
    }

    fn frame(&mut self, frame: Frame) {
        let mut state = lock(&self.state);
        let s = &mut *state;
        s.packager.frame(frame, SystemTime::now(), &mut s.out);
        drain(&*self.store, &self.event, s);
    }
}

impl<S: Store> Drop for Publisher<S> {
    fn drop(&mut self) {
        let mut state = lock(&self.state);
        let s = &mut *state;
        // The partial GOP becomes a short final segment; the playlists keep their window.
        s.packager.end_session(SystemTime::now(), &mut s.out);
        drain(&*self.store, &self.event, s);
        s.live = false;
        tracing::info!(event = %self.event, "publisher session ended");
    }
}
