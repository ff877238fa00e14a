//! The origin's store of live-window objects.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use bytes::Bytes;
use weir_packager::{Artifact, MediaSequence, RenditionId, SessionId};

use crate::{EventId, Route};

/// What kind of object a stored body is; decides `Content-Type` and `Cache-Control`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    /// A live playlist (master or media): `application/vnd.apple.mpegurl`, cached for about
    /// half a target duration.
    LivePlaylist {
        /// Half the target duration, rounded up to whole seconds (at least 1).
        max_age_secs: u64,
    },
    /// An init segment: `video/mp4`, immutable.
    InitSegment,
    /// A media segment: `video/iso.segment`, immutable.
    Segment,
}

/// A stored object.
#[derive(Clone, Debug)]
pub struct Object {
    /// What it is.
    pub kind: ObjectKind,
    /// The body.
    pub body: Bytes,
}

/// Where the origin keeps what it serves. Owned by the origin; the in-memory
/// [`MemoryStore`] holds the live window.
pub trait Store: Send + Sync + 'static {
    /// The object a route names, if it is stored.
    fn get(&self, route: &Route) -> Option<Object>;
    /// Applies a packager artifact for `event`: stores, replaces or drops an object.
    fn apply(&self, event: &EventId, artifact: Artifact);
}

#[derive(Debug, Default)]
struct EventObjects {
    master: Option<Object>,
    playlists: HashMap<RenditionId, Object>,
    inits: HashMap<(RenditionId, SessionId), Bytes>,
    segments: HashMap<(RenditionId, SessionId, MediaSequence), Bytes>,
    target_duration: Option<Duration>,
}

/// The live window in memory: segments leave when the packager expires them (window plus
/// availability time, RFC 8216 §6.2.2), so memory is bounded by the window.
#[derive(Debug, Default)]
pub struct MemoryStore {
    events: RwLock<HashMap<EventId, EventObjects>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Bytes of segment and init bodies held, for metrics and tests.
    pub fn media_bytes(&self) -> usize {
        let events = self.events.read().unwrap_or_else(|e| e.into_inner());
        events
            .values()
            .map(|e| {
                e.segments.values().map(Bytes::len).sum::<usize>()
                    + e.inits.values().map(Bytes::len).sum::<usize>()
            })
            .sum()
    }
}

fn target_duration_of(playlist: &[u8]) -> Option<Duration> {
    let text = std::str::from_utf8(playlist).ok()?;
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-TARGETDURATION:"))?;
    line.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn half_target(target: Option<Duration>) -> u64 {
    target.map_or(1, |t| t.as_secs().div_ceil(2).max(1))
}

impl Store for MemoryStore {
    fn get(&self, route: &Route) -> Option<Object> {
        let events = self.events.read().unwrap_or_else(|e| e.into_inner());
        let e = events.get(route.event())?;
        match route {
            Route::Master(_) => e.master.clone(),
            Route::MediaPlaylist(_, r) => e.playlists.get(r).cloned(),
            Route::InitSegment(_, r, s) => e.inits.get(&(r.clone(), s.clone())).map(|b| Object {
                kind: ObjectKind::InitSegment,
                body: b.clone(),
            }),
            Route::Segment(_, r, s, m) => {
                e.segments.get(&(r.clone(), s.clone(), *m)).map(|b| Object {
                    kind: ObjectKind::Segment,
                    body: b.clone(),
                })
            }
        }
    }

    fn apply(&self, event: &EventId, artifact: Artifact) {
        let mut events = self.events.write().unwrap_or_else(|e| e.into_inner());
        let e = events.entry(event.clone()).or_default();
        match artifact {
            Artifact::InitSegment {
                rendition,
                session,
                data,
            } => {
                e.inits.insert((rendition, session), data);
            }
            Artifact::Segment {
                rendition,
                session,
                msn,
                data,
            } => {
                e.segments.insert((rendition, session, msn), data);
            }
            Artifact::MediaPlaylist { rendition, data } => {
                e.target_duration = target_duration_of(&data).or(e.target_duration);
                let kind = ObjectKind::LivePlaylist {
                    max_age_secs: half_target(e.target_duration),
                };
                e.playlists.insert(rendition, Object { kind, body: data });
            }
            Artifact::MasterPlaylist { data } => {
                let kind = ObjectKind::LivePlaylist {
                    max_age_secs: half_target(e.target_duration),
                };
                e.master = Some(Object { kind, body: data });
            }
            Artifact::Expired {
                rendition,
                session,
                msn: Some(msn),
            } => {
                e.segments.remove(&(rendition, session, msn));
            }
            Artifact::Expired {
                rendition,
                session,
                msn: None,
            } => {
                e.inits.remove(&(rendition, session));
            }
            _ => {}
        }
    }
}
