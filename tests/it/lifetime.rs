//! Live objects leave the edge when they are no longer useful (issue 13): the origin gives
//! segments, parts and init segments a CDN lifetime (`CDN-Cache-Control`, RFC 9213) from the
//! window and the target duration, while players keep the long immutable `Cache-Control`;
//! the edge drops them when it runs out, counted by `weir_edge_cache_objects{kind}`, and
//! fetches them again if asked. And `weir serve` runs without transparent huge pages, whose
//! flag x264 leaves on the address ranges it freed.

use std::time::Duration;

use crate::support::*;

#[test]
fn live_segments_leave_the_edge_when_no_playlist_can_list_them() {
    let weir = Weir::serve("[packager]\nwindow_segments = 3\n");
    let first = publish_once_first_segment(&weir);
    let playlist = media_playlist(&weir.edge_url("/live/it/source/index.m3u8"));
    let target = playlist.target_duration;
    // Every segment listed, through the edge: cached there.
    for s in &playlist.segments {
        let r = get(&weir.edge_url(&format!("/live/it/source/{}", s.uri)));
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("cache-control"),
            Some("public, max-age=604800, immutable"),
            "players keep segments as long as they like"
        );
        // A 3-segment window counts as 4 target durations listed: 2 x 4 + 1.
        let lifetime = 9 * target;
        assert_eq!(
            r.header("cdn-cache-control"),
            Some(format!("max-age={lifetime}").as_str()),
            "the edge keeps them while they can be listed plus their availability"
        );
    }
    let segments = || metric(&weir, "weir_edge_cache_objects", "kind=\"segment\"");
    let again = get(&first);
    assert_eq!(again.header("x-cache"), Some("HIT"));
    wait_for(
        "segments counted in the edge cache",
        Duration::from_secs(10),
        || (segments() >= playlist.segments.len() as f64).then_some(()),
    );
    assert!(metric(&weir, "weir_edge_cache_bytes", "kind=\"segment\"") > 100_000.0);
    // The publisher is gone: nothing refreshes them, and they leave the edge at their
    // lifetime (the cache is 128 MiB, far from full).
    wait_for(
        "the edge to drop expired segments",
        Duration::from_secs(9 * target + 30),
        || (segments() == 0.0).then_some(()),
    );
    // The origin still holds its window (nothing new pushed it out): asked again, the edge
    // fetches the segment anew.
    let refetched = get(&first);
    assert_eq!(refetched.status, 200);
    assert_eq!(refetched.header("x-cache"), Some("MISS"));
    assert!(metric(&weir, "weir_origin_store_objects", "kind=\"segment\"") >= 3.0);
    assert!(metric(&weir, "weir_runtime_alive_tasks", "") > 0.0);
}

/// Twenty publisher sessions one after another: what each leaves behind goes. The publisher
/// sessions return to none; the Tokio tasks after the twentieth session are no more than
/// after the tenth (a task left per session would add ten); and once the availability time
/// of what left the window has passed, the origin's store holds what it held after two
/// sessions (a window reaching into the session before): the window's segments and parts
/// and their init segments, not one init per session ever published.
#[test]
fn twenty_reconnects_leave_sessions_tasks_and_store_entries_bounded() {
    let weir = Weir::serve("[packager]\nwindow_segments = 3\n");
    let file = flv(BBB, 1, true);
    let sessions = || metric(&weir, "weir_ingest_publisher_sessions", "");
    let tasks = || metric(&weir, "weir_runtime_alive_tasks", "");
    let store = || {
        ["segment", "part", "init"]
            .map(|k| metric(&weir, "weir_origin_store_objects", &format!("kind=\"{k}\"")))
    };
    let session = |n: usize| {
        let (ok, err) = finish(
            publish(&file, &weir.publish_url(STREAM_KEY), false),
            Duration::from_secs(60),
        );
        assert!(ok, "session {n}: {err}");
        wait_for(
            &format!("session {n} to end"),
            Duration::from_secs(20),
            || (sessions() == 0.0).then_some(()),
        );
    };
    // The in-process edge's first report (every 5 s) opens the keep-alive connection it
    // reuses after: two tasks (client and server side) that stay, whatever is published.
    wait_for("the edge's first report", Duration::from_secs(20), || {
        (metric(&weir, "weir_control_edge_reports_total", "") >= 1.0).then_some(())
    });
    session(1);
    session(2);
    // Two sessions, settled: each rendition's (video and audio) window of at least 3 target
    // durations, which reaches back into session 1 (a session ends with a short segment),
    // and the init segments of the two sessions the window lists.
    let two = wait_for("two sessions' expiries", Duration::from_secs(40), || {
        let s = store();
        (s[0] <= 8.0 && s[2] <= 4.0).then_some(s)
    });
    for n in 3..=10 {
        session(n);
    }
    let after_ten = tasks();
    for n in 11..=20 {
        session(n);
    }
    let settled = wait_for(
        "the store and the tasks to return to one session's",
        Duration::from_secs(60),
        || {
            let s = store();
            (s == two && tasks() <= after_ten).then_some(s)
        },
    );
    assert!(
        settled[2] <= 4.0,
        "init segments of the sessions listed only"
    );
    let playlist = media_playlist(&weir.edge_url("/live/it/source/index.m3u8"));
    assert!((3..=4).contains(&playlist.segments.len()));
}

#[test]
fn weir_serve_runs_without_transparent_huge_pages() {
    // x264 asks for huge pages on its buffers and the flag outlives them (see
    // allocator::disable_transparent_huge_pages): the process turns them off at start.
    let weir = Weir::serve("");
    let status = std::fs::read_to_string(format!("/proc/{}/status", weir.pid())).unwrap();
    let thp = status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .expect("the kernel reports THP_enabled (Linux 5.0+)");
    assert_eq!(thp.trim(), "0", "{status}");
}
