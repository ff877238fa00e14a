//! The edge's upstream fetches against a scripted upstream that holds answers on the test's
//! word: a miss streamed to every waiter as it arrives (and not cancelled by a viewer who
//! leaves), the bound on waiters, and stale-while-revalidate for a slow playlist refresh.

use std::io::Read;
use std::sync::mpsc;
use std::time::Duration;

use crate::fake_upstream::{edge_with, FakeUpstream, Hold};
use crate::support::*;

const SEGMENT: &str = "/live/it/source/abc1/7.m4s";

fn segment_bytes() -> Vec<u8> {
    (0..1usize << 20).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn a_miss_is_streamed_to_every_waiter_as_it_arrives_and_a_viewer_leaving_cancels_nothing() {
    let up = FakeUpstream::start();
    let body = segment_bytes();
    up.put(
        SEGMENT,
        body.clone(),
        "video/iso.segment",
        "public, max-age=3600",
        Hold::HalfBody,
    );
    let edge = edge_with(&up.url, "upstream_timeout_ms = 60000");
    let url = edge.edge_url(SEGMENT);
    let half = body.len() / 2;
    let (tx, rx) = mpsc::channel();
    let viewers: Vec<_> = (0..8)
        .map(|i| {
            let (url, tx) = (url.clone(), tx.clone());
            std::thread::spawn(move || {
                let mut r = agent().get(&url).call().unwrap();
                assert_eq!(r.status().as_u16(), 200);
                let length = r.headers().get("content-length").cloned();
                let mut reader = r.body_mut().as_reader();
                let mut got = Vec::new();
                let mut buf = vec![0u8; 64 * 1024];
                while got.len() < half {
                    let n = reader.read(&mut buf).unwrap();
                    assert!(n > 0, "the body ended at {} bytes", got.len());
                    got.extend_from_slice(&buf[..n]);
                }
                tx.send(()).unwrap();
                if i == 0 {
                    return None; // this viewer leaves half-way
                }
                reader.read_to_end(&mut got).unwrap();
                Some((got, length))
            })
        })
        .collect();
    // Every viewer has the first half while the upstream still holds the second: the edge
    // streams the miss rather than buffering it whole.
    for n in 0..viewers.len() {
        rx.recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                panic!("viewer {n} did not get the first half while the upstream held the rest")
            });
    }
    assert_eq!(
        up.held(),
        1,
        "the upstream is still holding the second half"
    );
    assert_eq!(up.requests(SEGMENT), 1);
    up.release();
    for v in viewers {
        if let Some((got, length)) = v.join().unwrap() {
            assert!(
                got == body,
                "a viewer got {} bytes, not the segment",
                got.len()
            );
            assert_eq!(
                length.as_ref().and_then(|l| l.to_str().ok()),
                Some("1048576"),
                "the upstream's Content-Length is passed on"
            );
        }
    }
    // Stored whole for everyone after: one upstream request in all.
    let hit = get(&url);
    assert_eq!(hit.header("x-cache"), Some("HIT"));
    assert!(hit.body == body);
    assert_eq!(
        up.requests(SEGMENT),
        1,
        "one upstream request for every viewer"
    );
}

#[test]
fn waiters_on_one_fetch_are_bounded_and_the_rest_told_to_retry() {
    let up = FakeUpstream::start();
    up.put(
        SEGMENT,
        segment_bytes(),
        "video/iso.segment",
        "public, max-age=3600",
        Hold::BeforeHead,
    );
    let edge = edge_with(
        &up.url,
        "upstream_timeout_ms = 60000\nmax_waiters_per_object = 3",
    );
    let url = edge.edge_url(SEGMENT);
    let waiting: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || get(&url).status)
        })
        .collect();
    wait_for("three waiting viewers", Duration::from_secs(30), || {
        (metric(&edge, "weir_edge_waiting_requests", "") >= 3.0).then_some(())
    });
    let refused = get(&url);
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(up.requests(SEGMENT), 1);
    up.release();
    for w in waiting {
        assert_eq!(w.join().unwrap(), 200);
    }
    assert_eq!(get(&url).status, 200, "answered once the fetch is done");
}

#[test]
fn a_slow_playlist_refresh_is_answered_with_the_last_good_copy_and_goes_on() {
    let up = FakeUpstream::start();
    let playlist = "/live/it/source/index.m3u8";
    let version = |n: u64| {
        format!(
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:{n}\n#EXTINF:2.0,\nabc1/{n}.m4s\n"
        )
        .into_bytes()
    };
    let mpegurl = "application/vnd.apple.mpegurl";
    up.put(playlist, version(1), mpegurl, "max-age=1", Hold::None);
    // The upstream timeout is far above what the test waits for an answer: a STALE answer
    // can only come from stale-while-revalidate, not from stale-if-error.
    let edge = edge_with(
        &up.url,
        "upstream_timeout_ms = 120000\nstale_while_revalidate_ms = 200",
    );
    let url = edge.edge_url(playlist);
    assert_eq!(get(&url).body, version(1));
    // The next version is slow to come.
    up.put(playlist, version(2), mpegurl, "max-age=1", Hold::BeforeHead);
    let stale = wait_for(
        "a refresh of the expired playlist",
        Duration::from_secs(30),
        || {
            let f = get(&url);
            (f.header("x-cache") == Some("STALE")).then_some(f)
        },
    );
    assert_eq!(stale.body, version(1), "the last good copy");
    assert!(
        up.held() >= 1,
        "answered while the upstream still held the refresh"
    );
    assert!(metric(&edge, "weir_edge_stale_served_total", "") >= 1.0);
    // The refresh goes on without the viewer and lands in the cache.
    let refreshes = up.requests(playlist);
    up.release();
    let fresh = wait_for("the refreshed playlist", Duration::from_secs(30), || {
        let f = get(&url);
        (f.body == version(2)).then_some(f)
    });
    assert_ne!(fresh.header("x-cache"), Some("STALE"));
    assert!(up.requests(playlist) >= refreshes);
}
