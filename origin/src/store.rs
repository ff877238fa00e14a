//! The origin's store of live-window objects, and the live state of every media playlist
//! that blocking requests wait on.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use weir_packager::{
    Artifact, Expired, MediaSequence, PartIndex, PlaylistUpdate, RenditionId, SessionId,
};

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
    /// A media segment or a part: `video/iso.segment`, immutable.
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

/// The newest version of a media playlist, as blocking requests see it; `None` until the
/// packager published one.
pub type PlaylistWatch = watch::Receiver<Option<Arc<PlaylistUpdate>>>;

/// Where the origin keeps what it serves. Owned by the origin; the in-memory
/// [`MemoryStore`] holds the live window.
pub trait Store: Send + Sync + 'static {
    /// The object a route names, if it is stored. Media playlists are read through
    /// [`Store::playlist`].
    fn get(&self, route: &Route) -> Option<Object>;
    /// The live state of a media playlist: its newest version, and a notification when the
    /// next one is published. `None` if the event never had the rendition.
    fn playlist(&self, event: &EventId, rendition: &RenditionId) -> Option<PlaylistWatch>;
    /// Applies a packager artifact for `event`: stores, replaces or drops an object.
    fn apply(&self, event: &EventId, artifact: Artifact);
}

type PartKey = (RenditionId, SessionId, MediaSequence, PartIndex);

#[derive(Debug, Default)]
struct EventObjects {
    master: Option<Object>,
    playlists: HashMap<RenditionId, watch::Sender<Option<Arc<PlaylistUpdate>>>>,
    inits: HashMap<(RenditionId, SessionId), Bytes>,
    segments: HashMap<(RenditionId, SessionId, MediaSequence), Bytes>,
    parts: HashMap<PartKey, Bytes>,
    target_duration: Option<Duration>,
}

/// The live window in memory: segments and parts leave when the packager expires them
/// (window plus availability time, RFC 8216bis §6.2.2), so memory is bounded by the window.
#[derive(Debug, Default)]
pub struct MemoryStore {
    events: RwLock<HashMap<EventId, EventObjects>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Bytes of segment, part and init bodies held, for metrics and tests.
    pub fn media_bytes(&self) -> usize {
        let events = self.events.read().unwrap_or_else(|e| e.into_inner());
        events
            .values()
            .map(|e| {
                e.segments.values().map(Bytes::len).sum::<usize>()
                    + e.parts.values().map(Bytes::len).sum::<usize>()
                    + e.inits.values().map(Bytes::len).sum::<usize>()
            })
            .sum()
    }
}

/// `max-age` of a live playlist: half the target duration, in whole seconds (at least 1).
pub(crate) fn half_target(target: Option<Duration>) -> u64 {
    target.map_or(1, |t| t.as_secs().div_ceil(2).max(1))
}

impl Store for MemoryStore {
    fn get(&self, route: &Route) -> Option<Object> {
        let events = self.events.read().unwrap_or_else(|e| e.into_inner());
        let e = events.get(route.event())?;
        let media = |body: Option<&Bytes>, kind| {
            body.map(|b| Object {
                kind,
                body: b.clone(),
            })
        };
        match route {
            Route::Master(_) => e.master.clone(),
            Route::MediaPlaylist(..) | Route::Key(..) => None,
            Route::InitSegment(_, r, s) => media(
                e.inits.get(&(r.clone(), s.clone())),
                ObjectKind::InitSegment,
            ),
            Route::Segment(_, r, s, m) => media(
                e.segments.get(&(r.clone(), s.clone(), *m)),
                ObjectKind::Segment,
            ),
            Route::Part(_, r, s, m, p) => media(
                e.parts.get(&(r.clone(), s.clone(), *m, *p)),
                ObjectKind::Segment,
            ),
        }
    }

    fn playlist(&self, event: &EventId, rendition: &RenditionId) -> Option<PlaylistWatch> {
        let events = self.events.read().unwrap_or_else(|e| e.into_inner());
        Some(events.get(event)?.playlists.get(rendition)?.subscribe())
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
            Artifact::Part {
                rendition,
                session,
                msn,
                part,
                data,
            } => {
                e.parts.insert((rendition, session, msn, part), data);
            }
            Artifact::Segment {
                rendition,
                session,
                msn,
                data,
            } => {
                e.segments.insert((rendition, session, msn), data);
            }
            Artifact::MediaPlaylist {
                rendition,
                playlist,
            } => {
                e.target_duration = Some(playlist.target_duration);
                let update = Some(Arc::new(playlist));
                match e.playlists.get(&rendition) {
                    // Wakes every request waiting on this playlist or its parts.
                    Some(tx) => {
                        tx.send_replace(update);
                    }
                    None => {
                        e.playlists.insert(rendition, watch::Sender::new(update));
                    }
                }
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
                what,
            } => match what {
                Expired::Init => {
                    e.inits.remove(&(rendition, session));
                }
                Expired::Segment(msn) => {
                    e.segments.remove(&(rendition, session, msn));
                }
                Expired::Parts { msn, count } => {
                    for i in 0..count {
                        e.parts
                            .remove(&(rendition.clone(), session.clone(), msn, PartIndex(i)));
                    }
                }
            },
            _ => {}
        }
    }
}
