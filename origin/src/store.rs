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
    /// How long a CDN (the edge) should keep it, sent as `CDN-Cache-Control: max-age`
    /// (RFC 9213): a live segment, part or init segment is useful only while a playlist can
    /// list it plus its availability time, though its name never changes (`Cache-Control`
    /// stays long and immutable for players). `None`: as `Cache-Control` says.
    pub cdn_max_age: Option<Duration>,
}

/// How long a CDN keeps live media objects of an event whose window holds
/// `window_segments` and whose target duration is `target` (`None` until its first media
/// playlist: a minute). A segment (and the init segment its session uses) is listed for at
/// most the window (at least 4 target durations: the packager keeps 3 beside the newest),
/// then stays available for its duration plus the playlist's (RFC 8216bis §6.2.2): twice the
/// window plus a target duration from its cut. A part is listed for 3 target durations and
/// available for 3 more after (the packager's rule): 7 target durations with a margin.
pub fn live_lifetime(
    kind: ObjectKind,
    target: Option<Duration>,
    window_segments: usize,
) -> Option<Duration> {
    let Some(td) = target.map(whole_seconds) else {
        return Some(UNKNOWN_TARGET_LIFETIME);
    };
    match kind {
        ObjectKind::LivePlaylist { .. } => None,
        ObjectKind::InitSegment | ObjectKind::Segment => {
            let listed = td * window_segments.max(4) as u32;
            Some(listed * 2 + td)
        }
    }
}

/// [`live_lifetime`] of a part.
fn part_lifetime(target: Option<Duration>) -> Duration {
    target.map_or(UNKNOWN_TARGET_LIFETIME, |t| whole_seconds(t) * 7)
}

/// The CDN lifetime of media objects before the event's first media playlist.
const UNKNOWN_TARGET_LIFETIME: Duration = Duration::from_secs(60);

/// A target duration in whole seconds, rounded up, at least one (as `EXT-X-TARGETDURATION`).
fn whole_seconds(target: Duration) -> Duration {
    Duration::from_secs(target.as_secs_f64().ceil().max(1.0) as u64)
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
    /// Drops everything of `event` (it was deleted): objects, playlists, and the requests
    /// held on its playlists, which are answered 404.
    fn remove_event(&self, event: &EventId);
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
#[derive(Debug)]
pub struct MemoryStore {
    events: RwLock<HashMap<EventId, EventObjects>>,
    /// The packager's window, segments: how long media objects stay useful to a CDN.
    window_segments: usize,
}

impl Default for MemoryStore {
    fn default() -> MemoryStore {
        MemoryStore::with_window(6)
    }
}

impl MemoryStore {
    /// An empty store for the default window (6 segments).
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// An empty store for a packager window of `window_segments` segments (the lifetime it
    /// gives CDNs for media objects, [`live_lifetime`]).
    pub fn with_window(window_segments: usize) -> MemoryStore {
        MemoryStore {
            events: RwLock::default(),
            window_segments,
        }
    }

    /// Bytes and objects held by kind, for `/metrics`: in order playlist (master and media
    /// playlists, full and delta), init, segment, part.
    pub fn held(&self) -> [(&'static str, u64, u64); 4] {
        let events = self.events.read().unwrap_or_else(|e| e.into_inner());
        let mut out = [
            ("playlist", 0, 0),
            ("init", 0, 0),
            ("segment", 0, 0),
            ("part", 0, 0),
        ];
        let mut add = |i: usize, bytes: usize| {
            out[i].1 += bytes as u64;
            out[i].2 += 1;
        };
        for e in events.values() {
            if let Some(m) = &e.master {
                add(0, m.body.len());
            }
            for tx in e.playlists.values() {
                if let Some(p) = tx.borrow().as_ref() {
                    add(0, p.full.len() + p.delta.as_ref().map_or(0, Bytes::len));
                }
            }
            e.inits.values().for_each(|b| add(1, b.len()));
            e.segments.values().for_each(|b| add(2, b.len()));
            e.parts.values().for_each(|b| add(3, b.len()));
        }
        out
    }

    /// Sets `weir_origin_store_bytes{kind}` and `weir_origin_store_objects{kind}` from
    /// [`MemoryStore::held`] (called when `/metrics` is rendered).
    pub fn publish_gauges(&self) {
        for (kind, bytes, objects) in self.held() {
            metrics::gauge!("weir_origin_store_bytes", "kind" => kind).set(bytes as f64);
            metrics::gauge!("weir_origin_store_objects", "kind" => kind).set(objects as f64);
        }
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
    fn remove_event(&self, event: &EventId) {
        // Dropping the playlists' senders wakes every request held on them.
        self.events
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(event);
    }

    fn get(&self, route: &Route) -> Option<Object> {
        let events = self.events.read().unwrap_or_else(|e| e.into_inner());
        let e = events.get(route.event())?;
        let window = self.window_segments;
        let media = |body: Option<&Bytes>, kind| {
            body.map(|b| Object {
                kind,
                body: b.clone(),
                cdn_max_age: live_lifetime(kind, e.target_duration, window),
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
            Route::Part(_, r, s, m, p) => {
                e.parts
                    .get(&(r.clone(), s.clone(), *m, *p))
                    .map(|b| Object {
                        kind: ObjectKind::Segment,
                        body: b.clone(),
                        cdn_max_age: Some(part_lifetime(e.target_duration)),
                    })
            }
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
                e.master = Some(Object {
                    kind,
                    body: data,
                    cdn_max_age: None,
                });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_media_objects_live_for_their_listing_and_availability() {
        let secs = Duration::from_secs;
        // (kind, target duration, window) -> lifetime
        let cases = [
            (ObjectKind::Segment, Some(secs(2)), 6, Some(secs(26))),
            (ObjectKind::InitSegment, Some(secs(2)), 6, Some(secs(26))),
            // Never under four target durations listed.
            (ObjectKind::Segment, Some(secs(4)), 2, Some(secs(36))),
            // Target durations count in whole seconds, rounded up.
            (
                ObjectKind::Segment,
                Some(Duration::from_millis(1500)),
                6,
                Some(secs(26)),
            ),
            (ObjectKind::Segment, None, 6, Some(secs(60))),
            (
                ObjectKind::LivePlaylist { max_age_secs: 1 },
                Some(secs(2)),
                6,
                None,
            ),
        ];
        for (kind, target, window, want) in cases {
            assert_eq!(
                live_lifetime(kind, target, window),
                want,
                "{kind:?} {target:?} {window}"
            );
        }
        assert_eq!(part_lifetime(Some(secs(2))), secs(14));
        assert_eq!(part_lifetime(None), secs(60));
    }

    #[test]
    fn stored_media_objects_carry_their_cdn_lifetime() {
        let store = MemoryStore::with_window(6);
        let event = EventId::parse("e").unwrap();
        let rendition = RenditionId::SOURCE;
        let session = SessionId::parse("s1").unwrap();
        store.apply(
            &event,
            Artifact::Segment {
                rendition: rendition.clone(),
                session: session.clone(),
                msn: MediaSequence(0),
                data: Bytes::from_static(b"seg"),
            },
        );
        let route = Route::Segment(event.clone(), rendition, session, MediaSequence(0));
        let got = store.get(&route).expect("stored");
        // No playlist yet: the one-minute fallback.
        assert_eq!(got.cdn_max_age, Some(Duration::from_secs(60)));
        assert_eq!(got.kind, ObjectKind::Segment);
    }
}
