//! Blocking playlist reload and preload hints against the store, on tokio's paused clock.

use std::time::Duration;

use bytes::Bytes;
use weir_packager::{
    Artifact, MediaSequence, PartIndex, PartRef, PlaylistUpdate, RenditionId, SessionId,
};

use super::*;
use crate::MemoryStore;

fn event() -> EventId {
    EventId::parse("ev").unwrap()
}

fn session() -> SessionId {
    SessionId::parse("s1").unwrap()
}

/// A playlist whose last part is `msn.part`, hinting the next one (or nothing).
fn update(msn: u64, part: u32, hint: bool) -> Artifact {
    Artifact::MediaPlaylist {
        rendition: RenditionId::SOURCE,
        playlist: PlaylistUpdate {
            full: Bytes::from(format!("#EXTM3U\n# {msn}.{part}\n")),
            delta: Some(Bytes::from(format!("#EXTM3U\n# delta {msn}.{part}\n"))),
            target_duration: Duration::from_secs(2),
            part_target: Some(Duration::from_millis(500)),
            last_msn: Some(MediaSequence(msn - 1)),
            last_part: Some((MediaSequence(msn), PartIndex(part))),
            preload_hint: hint.then(|| PartRef {
                session: session(),
                msn: MediaSequence(msn),
                part: PartIndex(part + 1),
            }),
            ended: false,
        },
    }
}

fn part(msn: u64, part: u32) -> Artifact {
    Artifact::Part {
        rendition: RenditionId::SOURCE,
        session: session(),
        msn: MediaSequence(msn),
        part: PartIndex(part),
        data: Bytes::from(format!("part {msn}.{part}")),
    }
}

async fn body(r: Response) -> (StatusCode, String) {
    let status = r.status();
    let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

async fn playlist(store: &MemoryStore, query: &str) -> Result<(StatusCode, String), OriginError> {
    let d = Directives::parse(Some(query)).map_err(OriginError::BadRequest)?;
    let watch = store.playlist(&event(), &RenditionId::SOURCE).unwrap();
    Ok(body(media_playlist(watch, d, false).await?).await)
}

async fn hinted(
    store: &MemoryStore,
    msn: u64,
    p: u32,
) -> Result<(StatusCode, String), OriginError> {
    let wanted = PartRef {
        session: session(),
        msn: MediaSequence(msn),
        part: PartIndex(p),
    };
    let route = Route::Part(
        event(),
        RenditionId::SOURCE,
        session(),
        wanted.msn,
        wanted.part,
    );
    let r = hinted_part(store, &route, &event(), &RenditionId::SOURCE, wanted, false).await?;
    Ok(body(r).await)
}

#[tokio::test(start_paused = true)]
async fn a_blocking_reload_is_answered_when_the_part_is_listed() {
    let store = std::sync::Arc::new(MemoryStore::new());
    store.apply(&event(), update(10, 2, true));
    // Already listed: at once; a delta when asked for one.
    assert_eq!(
        playlist(&store, "_HLS_msn=10&_HLS_part=2").await.unwrap().1,
        "#EXTM3U\n# 10.2\n"
    );
    let (_, delta) = playlist(&store, "_HLS_msn=10&_HLS_part=1&_HLS_skip=YES")
        .await
        .unwrap();
    assert!(delta.contains("delta"));
    // The next part: held until the packager lists it.
    let waiting = tokio::spawn({
        let store = store.clone();
        async move { playlist(&store, "_HLS_msn=10&_HLS_part=3").await }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!waiting.is_finished(), "answered before the part existed");
    store.apply(&event(), update(10, 3, true));
    let (status, text) = waiting.await.unwrap().unwrap();
    assert_eq!(
        (status, text.as_str()),
        (StatusCode::OK, "#EXTM3U\n# 10.3\n")
    );
}

#[tokio::test(start_paused = true)]
async fn blocking_reload_errors() {
    let store = MemoryStore::new();
    store.apply(&event(), update(10, 2, true));
    let started = Instant::now();
    // Nothing new for three target durations: 503, after exactly that long.
    let e = playlist(&store, "_HLS_msn=11").await.unwrap_err();
    assert!(matches!(e, OriginError::Unavailable), "{e:?}");
    assert_eq!(started.elapsed(), Duration::from_secs(6));
    for (query, e) in [
        ("_HLS_msn=13", DirectiveError::TooFarAhead),
        ("_HLS_msn=10&_HLS_part=9", DirectiveError::TooFarAhead),
        ("_HLS_part=3", DirectiveError::PartWithoutMsn),
    ] {
        let got = playlist(&store, query).await.unwrap_err();
        assert!(
            matches!(got, OriginError::BadRequest(x) if x == e),
            "{query}: {got:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn the_hinted_part_is_held_until_complete_and_others_are_404() {
    let store = std::sync::Arc::new(MemoryStore::new());
    store.apply(&event(), part(10, 2));
    store.apply(&event(), update(10, 2, true));
    assert_eq!(hinted(&store, 10, 2).await.unwrap().1, "part 10.2");
    // Neither listed nor hinted: 404 at once.
    assert!(matches!(
        hinted(&store, 10, 4).await,
        Err(OriginError::NotFound)
    ));
    // The hinted part: held, then answered with its bytes.
    let waiting = tokio::spawn({
        let store = store.clone();
        async move { hinted(&store, 10, 3).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished());
    store.apply(&event(), part(10, 3));
    store.apply(&event(), update(10, 3, true));
    assert_eq!(waiting.await.unwrap().unwrap().1, "part 10.3");
    // A hint the publisher abandons (it left): 404 once the playlist says so.
    let waiting = tokio::spawn({
        let store = store.clone();
        async move { hinted(&store, 10, 4).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    store.apply(&event(), update(10, 3, false));
    assert!(matches!(waiting.await.unwrap(), Err(OriginError::NotFound)));
}
