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

#[test]
fn a_standalone_edge_serves_metrics_and_logs_json() {
    let origin = Weir::serve("");
    let file = flv(BBB, 1, true);
    let (ok, err) = finish(
        publish(&file, &origin.publish_url(STREAM_KEY), false),
        Duration::from_secs(60),
    );
    assert!(ok, "{err}");
    let upstream = format!("http://{}", origin.origin.unwrap());
    let args: Vec<String> = [
        "--log-format",
        "json",
        "edge",
        "--upstream",
        &upstream,
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let edge = spawn(&args);
    let playlist = media_playlist(&edge.edge_url("/live/it/source/index.m3u8"));
    let segment = get(&edge.edge_url(&format!("/live/it/source/{}", playlist.segments[0].uri)));
    assert_eq!(segment.status, 200);
    assert_eq!(get(&edge.edge_url("/live/it/nope/x.txt")).status, 404);
    let text = get(&format!("http://{}/metrics", edge.metrics.unwrap())).text();
    let sample = |name: &str| {
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    assert!(sample("weir_edge_requests_total") >= 2.0, "{text}");
    assert!(
        sample("weir_edge_bytes_sent_total") >= segment.body.len() as f64,
        "{text}"
    );
    assert!(sample("weir_edge_upstream_requests_total") >= 2.0, "{text}");
    // The origin goes away: the edge answers 502 and logs it, as one JSON object per line.
    let mut origin = origin;
    origin.kill();
    assert_eq!(get(&edge.edge_url("/live/it/master.m3u8")).status, 502);
    let log = wait_for("a log line", Duration::from_secs(10), || {
        let log = edge.log();
        log.contains("upstream").then_some(log)
    });
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
}

#[test]
fn etags_ranges_and_compressed_playlists() {
    let weir = Weir::serve("");
    let url = publish_once_first_segment(&weir);
    // A miss is streamed as it arrives: ranges are offered, the ETag (a hash of the whole
    // body) comes with the answers from the cache.
    let first = get(&url);
    assert_eq!(first.header("accept-ranges"), Some("bytes"));
    let whole = get(&url);
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    assert!(first.body == whole.body);
    let etag = whole.header("etag").expect("an ETag").to_string();
    // Revalidation: 304, no body; another tag: the object.
    let again = get_with(&url, &[("if-none-match", &etag)]);
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    assert_eq!(
        get_with(&url, &[("if-none-match", "\"other\"")]).status,
        200
    );
    // Ranges: the first 100 bytes, the last 10, and one past the end.
    let len = whole.body.len();
    let first = get_with(&url, &[("range", "bytes=0-99")]);
    assert_eq!(first.status, 206);
    assert_eq!(first.body, whole.body[..100]);
    assert_eq!(
        first.header("content-range"),
        Some(format!("bytes 0-99/{len}").as_str())
    );
    let last = get_with(&url, &[("range", "bytes=-10")]);
    assert_eq!(
        (last.status, &last.body[..]),
        (206, &whole.body[len - 10..])
    );
    let past = get_with(&url, &[("range", &format!("bytes={len}-"))]);
    assert_eq!(past.status, 416);
    assert_eq!(
        past.header("content-range"),
        Some(format!("bytes */{len}").as_str())
    );
    // Playlists are compressed for viewers that accept it; segments never are.
    for path in ["/live/it/master.m3u8", "/live/it/source/index.m3u8"] {
        let plain = get(&weir.edge_url(path));
        let gz = get_with(&weir.edge_url(path), &[("accept-encoding", "gzip")]);
        if plain.body.len() >= 256 {
            assert_eq!(gz.header("content-encoding"), Some("gzip"), "{path}");
            assert!(gz.body.len() < plain.body.len(), "{path}");
        }
        let br = get_with(&weir.edge_url(path), &[("accept-encoding", "br")]);
        if plain.body.len() >= 256 {
            assert_eq!(br.header("content-encoding"), Some("br"), "{path}");
            assert_eq!(br.header("vary"), Some("accept-encoding"), "{path}");
            let text = decoded(&br);
            assert!(text.starts_with(b"#EXTM3U"), "{path}");
            assert!(decoded(&gz).starts_with(b"#EXTM3U"), "{path}");
            if path.ends_with("master.m3u8") {
                // The master does not change: each coding decodes to the same bytes, each
                // has its own tag, and a conditional request for the coded tag is a 304.
                assert_eq!(text, plain.body, "{path}");
                assert_eq!(decoded(&gz), plain.body, "{path}");
                let tags = [&plain, &gz, &br].map(|r| r.header("etag").unwrap().to_string());
                assert!(tags[0] != tags[1] && tags[1] != tags[2] && tags[0] != tags[2]);
                let again = get_with(
                    &weir.edge_url(path),
                    &[("accept-encoding", "gzip, br"), ("if-none-match", &tags[2])],
                );
                assert_eq!(again.status, 304, "{path}");
                let plain_again = get_with(&weir.edge_url(path), &[("if-none-match", &tags[2])]);
                assert_eq!(plain_again.status, 200, "a br tag does not match identity");
            }
        }
    }
    // A playlist that does not exist (yet): 404, kept by the edge for a second (the origin
    // says max-age=1), so the next request does not reach the origin.
    let nope = weir.edge_url("/live/it/1440p/index.m3u8");
    assert_eq!(get(&nope).status, 404);
    let again = get(&nope);
    assert_eq!((again.status, again.header("x-cache")), (404, Some("HIT")));
    let seg = get_with(&url, &[("accept-encoding", "gzip, br")]);
    assert_eq!(seg.header("content-encoding"), None);
    assert_eq!(seg.body.len(), len);
}
