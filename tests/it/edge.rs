//! A separate edge process in front of an origin: coalescing, hits, upstream failure.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::support::*;

fn origin_segment_requests(origin: &Weir) -> u64 {
    get(&origin.origin_url("/metrics"))
        .text()
        .lines()
        .filter(|l| {
            l.starts_with("weir_origin_requests_total{")
                && l.contains("kind=\"segment\"")
                && l.contains("status=\"200\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[test]
fn edge_coalesces_misses_serves_hits_and_fails_fast_without_origin() {
    let mut origin = Weir::serve("[packager]\nwindow_segments = 60\n");
    let timeout_ms = 1_000;
    let edge = Weir::edge(&origin.origin_url(""), timeout_ms);
    let (ok, err) = finish(
        publish(&flv(BBB, 3, true), &origin.publish_url(STREAM_KEY), false),
        Duration::from_secs(60),
    );
    assert!(ok, "{err}");
    let playlist = wait_for("segments at the edge", Duration::from_secs(10), || {
        let p = media_playlist(&edge.edge_url("/live/it/source/index.m3u8"));
        (p.segments.len() >= 3).then_some(p)
    });
    let url = edge.edge_url(&format!("/live/it/source/{}", playlist.segments[1].uri));

    // 200 viewers ask for one uncached segment at once: one origin request.
    let before = origin_segment_requests(&origin);
    let barrier = Arc::new(Barrier::new(200));
    let viewers: Vec<_> = (0..200)
        .map(|_| {
            let (barrier, url) = (barrier.clone(), url.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let f = get(&url);
                (f.status, f.body.len())
            })
        })
        .collect();
    let answers: Vec<(u16, usize)> = viewers.into_iter().map(|v| v.join().unwrap()).collect();
    assert!(
        answers
            .iter()
            .all(|a| a.0 == 200 && a.1 == answers[0].1 && a.1 > 0),
        "{:?}",
        &answers[..3]
    );
    assert_eq!(
        origin_segment_requests(&origin) - before,
        1,
        "coalescing: one origin request for 200 viewers"
    );

    let again = get(&url);
    assert_eq!(again.header("x-cache"), Some("HIT"));
    assert!(again.header("age").is_some());
    assert_eq!(again.body.len(), answers[0].1);

    // The origin goes away: an uncached object is a 502/504 within the timeout, not a hang.
    origin.kill();
    let uncached = edge.edge_url(&format!("/live/it/source/{}", playlist.segments[2].uri));
    let started = Instant::now();
    let f = get(&uncached);
    assert!(f.status == 502 || f.status == 504, "status {}", f.status);
    assert!(
        !f.body.is_empty() && f.body.len() < 200,
        "a short, clear body"
    );
    assert!(
        started.elapsed() < Duration::from_millis(timeout_ms + 2_000),
        "answered after {:?}",
        started.elapsed()
    );
    // What was cached is still served.
    assert_eq!(get(&url).status, 200);
}
