//! The edge's upstream fetches against a scripted upstream that holds answers on the test's
//! word: a miss streamed to every waiter as it arrives (and not cancelled by a viewer who
//! leaves), the bound on waiters, stale-while-revalidate for a slow playlist refresh, and
//! failover between upstreams with health checks, a shield tier (two edges, one shield
//! edge, one origin) with keys passed through it, and an HTTPS upstream.

use std::io::Read;
use std::sync::mpsc;
use std::time::Duration;

use crate::fake_upstream::{edge_with, edge_with_sections, FakeUpstream, Hold};
use crate::support::*;

const SEGMENT: &str = "/live/it/source/abc1/7.m4s";

fn segment_bytes() -> Vec<u8> {
    (0..1usize << 20).map(|i| (i * 7 % 251) as u8).collect()
}

/// A scripted upstream serving [`SEGMENT`] (1 MiB, cacheable for an hour) as `hold` says,
/// and the segment's bytes.
fn upstream_with_segment(hold: Hold) -> (FakeUpstream, Vec<u8>) {
    let up = FakeUpstream::start();
    let body = segment_bytes();
    up.put(
        SEGMENT,
        body.clone(),
        "video/iso.segment",
        "public, max-age=3600",
        hold,
    );
    (up, body)
}

#[test]
fn a_miss_is_streamed_to_every_waiter_as_it_arrives_and_a_viewer_leaving_cancels_nothing() {
    let (up, body) = upstream_with_segment(Hold::HalfBody);
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
    // The event's access policy cached first: the waiters below wait on the segment only.
    assert_eq!(get(&edge.edge_url("/live/it/master.m3u8")).status, 404);
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
    // The one fetch reaches the upstream (it may still be on its way).
    wait_for("the fetch at the upstream", Duration::from_secs(30), || {
        (up.held() == 1).then_some(())
    });
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
    // The refresh is held until the release below, so the STALE answer came before it.
    wait_for(
        "the refresh at the upstream",
        Duration::from_secs(30),
        || (up.held() >= 1).then_some(()),
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

#[test]
fn an_edge_fails_over_to_the_next_upstream_and_takes_the_first_back_when_it_returns() {
    // The preferred upstream: a socket that takes connections and never answers (a hung
    // or black-holed origin). Kept open, so no other test can be given its port.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let primary_url = format!("http://{}", hung.local_addr().unwrap());
    let backup = FakeUpstream::start();
    let body = segment_bytes();
    let put = |up: &FakeUpstream, path: &str, hold| {
        up.put(
            path,
            body.clone(),
            "video/iso.segment",
            "public, max-age=3600",
            hold,
        )
    };
    put(&backup, SEGMENT, Hold::None);
    let edge = edge_with(
        &format!("{primary_url},{}", backup.url),
        "upstream_timeout_ms = 4000",
    );
    let up = format!("upstream=\"{primary_url}\"");

    // The preferred upstream does not answer: after its share of the timeout (half) the
    // backup answers, and the preferred one is marked down.
    let first = get(&edge.edge_url(SEGMENT));
    assert_eq!(first.status, 200, "{}", first.text());
    assert!(first.body == body);
    assert_eq!(backup.requests(SEGMENT), 1);
    assert!(metric(&edge, "weir_edge_upstream_failovers_total", "") >= 1.0);
    assert_eq!(metric(&edge, "weir_edge_upstream_up", &up), 0.0);

    // It comes back: the probes take it back, and new objects come from it.
    let primary = FakeUpstream::start_with(hung);
    let next = "/live/it/source/abc1/8.m4s";
    put(&primary, next, Hold::None);
    put(&backup, next, Hold::None);
    wait_for(
        "the preferred upstream taken back",
        Duration::from_secs(30),
        || (metric(&edge, "weir_edge_upstream_up", &up) == 1.0).then_some(()),
    );
    assert_eq!(get(&edge.edge_url(next)).status, 200);
    assert_eq!((primary.requests(next), backup.requests(next)), (1, 0));

    // It hangs: after its share of the timeout the backup answers.
    let failovers = metric(&edge, "weir_edge_upstream_failovers_total", "");
    let third = "/live/it/source/abc1/9.m4s";
    put(&primary, third, Hold::BeforeHead);
    put(&backup, third, Hold::None);
    let answered = get(&edge.edge_url(third));
    assert_eq!(answered.status, 200, "{}", answered.text());
    assert!(answered.body == body);
    assert_eq!((primary.requests(third), backup.requests(third)), (1, 1));
    assert!(metric(&edge, "weir_edge_upstream_failovers_total", "") > failovers);
    primary.release();
}

#[test]
fn a_shield_tier_makes_one_origin_request_per_object_for_every_viewer_of_two_edges() {
    const CLUSTER: &str = "shield-tier-test-cluster-secret-42";
    const VIEWERS_PER_EDGE: usize = 200;
    let (origin, body) = upstream_with_segment(Hold::BeforeHead);
    let key_path = "/internal/v1/keys/it/0a1b2c3d4e5f6789";
    let key: Vec<u8> = (1..=16).collect();
    origin.put(
        key_path,
        key.clone(),
        "application/octet-stream",
        "private, no-store",
        Hold::None,
    );
    let access = format!("[access]\ncluster_secret = \"{CLUSTER}\"");
    let settings = "upstream_timeout_ms = 60000";
    let shield = edge_with_sections(&origin.url, settings, &access);
    let shield_url = format!("http://{}", shield.edge);
    let edges = [
        edge_with_sections(&shield_url, settings, &access),
        edge_with_sections(&shield_url, settings, &access),
    ];

    // 200 viewers at each edge ask while the origin has not answered yet.
    let viewers: Vec<_> = edges
        .iter()
        .flat_map(|e| std::iter::repeat_n(e.edge_url(SEGMENT), VIEWERS_PER_EDGE))
        .map(|url| std::thread::spawn(move || get(&url)))
        .collect();
    wait_for("every viewer waiting", Duration::from_secs(60), || {
        let waiting: f64 = edges
            .iter()
            .map(|e| metric(e, "weir_edge_waiting_requests", ""))
            .sum();
        (waiting >= (2 * VIEWERS_PER_EDGE) as f64).then_some(())
    });
    origin.release();
    for v in viewers {
        let f = v.join().unwrap();
        assert_eq!(f.status, 200, "{}", f.text());
        assert!(f.body == body, "{} bytes", f.body.len());
    }
    assert_eq!(
        origin.requests(SEGMENT),
        1,
        "one origin request for {} viewers",
        2 * VIEWERS_PER_EDGE
    );

    // Content keys pass through the shield and are kept by neither tier.
    for e in &edges {
        let k = get(&e.edge_url("/keys/it/0a1b2c3d4e5f6789"));
        assert_eq!(k.status, 200, "{}", k.text());
        assert_eq!(k.body, key);
        assert_eq!(k.header("cache-control"), Some("private, no-store"));
    }
    assert_eq!(origin.requests(key_path), 2, "never from a cache");
    // Without the cluster secret the shield hands out no key.
    assert_eq!(get(&shield.edge_url(key_path)).status, 404);
    assert_eq!(origin.requests(key_path), 2);
}

#[test]
fn an_edge_fetches_from_an_https_upstream_it_trusts_and_refuses_one_it_does_not() {
    let (origin, body) = upstream_with_segment(Hold::None);
    // A shield edge on HTTPS with a self-signed certificate for 127.0.0.1.
    let (cert, key) = certificate(&scratch_dir(), "shield.test");
    let tls = format!(
        "[edge.http]\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"",
        cert.display(),
        key.display()
    );
    let shield = edge_with_sections(&origin.url, "", &tls);
    let shield_url = format!("https://{}", shield.edge);

    // An edge that trusts the certificate fetches through it.
    let trusting = edge_with(
        &shield_url,
        &format!("upstream_ca_file = \"{}\"", cert.display()),
    );
    let got = get(&trusting.edge_url(SEGMENT));
    assert_eq!(got.status, 200, "{}", got.text());
    assert!(got.body == body);
    assert_eq!(origin.requests(SEGMENT), 1);

    // One that does not (system roots only) refuses the handshake: 502, nothing fetched.
    let wary = edge_with(&shield_url, "");
    let refused = get(&wary.edge_url("/live/it/source/abc1/8.m4s"));
    assert_eq!(refused.status, 502, "{}", refused.text());
    wait_for(
        "the handshake failure in the log",
        Duration::from_secs(10),
        || wary.log().contains("upstream request failed").then_some(()),
    );
}
