//! A publisher that drops mid-stream and comes back continues the same playlists.

use std::time::Duration;

use crate::support::*;

#[test]
fn publisher_drop_and_return_continue_the_playlist() {
    let weir = Weir::serve("[packager]\nwindow_segments = 60\n");
    let file = flv(BBB, 3, true);
    let video_url = weir.edge_url("/live/it/source/index.m3u8");
    let origin_video_url = weir.origin_url("/live/it/source/index.m3u8");

    // First session, in real time: stopped mid-GOP once two segments are out.
    let mut first = publish(&file, &weir.publish_url(STREAM_KEY), true);
    wait_for("two segments", Duration::from_secs(30), || {
        let f = try_get(&origin_video_url).ok()?;
        (f.status == 200 && f.text().matches("#EXTINF").count() >= 2).then_some(())
    });
    std::thread::sleep(Duration::from_millis(700)); // land inside the next GOP
    first.kill().unwrap();
    first.wait().unwrap();
    wait_for("the session to end", Duration::from_secs(10), || {
        weir.log().contains("publisher session ended").then_some(())
    });
    let before = media_playlist(&origin_video_url);
    assert!(!before.segments.iter().any(|s| s.discontinuity));
    let partial = before.segments.last().unwrap();
    assert!(
        partial.duration < 1.99,
        "the partial GOP is a short final segment, got {}",
        partial.duration
    );

    // Second session, same key.
    let (ok, err) = finish(
        publish(&file, &weir.publish_url(STREAM_KEY), false),
        Duration::from_secs(60),
    );
    assert!(ok, "second publish: {err}");
    let after = wait_for(
        "the second session's final segment",
        Duration::from_secs(15),
        || {
            let p = media_playlist(&origin_video_url);
            (weir.log().matches("publisher session ended").count() >= 2
                && p.segments.len() > before.segments.len() + 5)
                .then_some(p)
        },
    );

    // Nothing published disappeared, and media sequence numbers only grow.
    assert_eq!(after.media_sequence, before.media_sequence);
    for (a, b) in before.segments.iter().zip(&after.segments) {
        assert_eq!(a.uri, b.uri);
    }
    let joins: Vec<usize> = after
        .segments
        .iter()
        .enumerate()
        .filter(|(_, s)| s.discontinuity)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        joins,
        vec![before.segments.len()],
        "one discontinuity, where the second session starts"
    );
    let session_of = |uri: &str| uri.split('/').next().unwrap().to_string();
    let joined = &after.segments[before.segments.len()];
    assert_ne!(
        session_of(&joined.uri),
        session_of(&before.segments[0].uri),
        "segment URIs carry the session"
    );
    assert!(
        joined.map.is_some(),
        "a new EXT-X-MAP after the discontinuity"
    );
    let msns: Vec<u64> = after
        .segments
        .iter()
        .map(|s| {
            s.uri
                .rsplit('/')
                .next()
                .unwrap()
                .trim_end_matches(".m4s")
                .parse()
                .unwrap()
        })
        .collect();
    assert!(
        msns.windows(2).all(|w| w[1] == w[0] + 1),
        "media sequence numbers {msns:?}"
    );
    assert_eq!(msns[0], after.media_sequence);

    // Every listed segment (both renditions) is fetchable through the edge.
    let audio = media_playlist(&weir.edge_url("/live/it/audio/index.m3u8"));
    assert_eq!(audio.segments.iter().filter(|s| s.discontinuity).count(), 1);
    for (name, p) in [("source", &after), ("audio", &audio)] {
        for s in &p.segments {
            assert_eq!(
                get(&weir.edge_url(&format!("/live/it/{name}/{}", s.uri))).status,
                200,
                "{}",
                s.uri
            );
        }
    }
    let _ = media_playlist(&video_url);

    // A player decodes across the discontinuity.
    let across: f64 = before
        .segments
        .iter()
        .map(|s| f64::from(s.duration))
        .sum::<f64>()
        + 4.0;
    let (ok, stderr) = play_live(&weir.edge_url("/live/it/master.m3u8"), across);
    assert!(ok, "ffmpeg across the discontinuity: {stderr}");
}
