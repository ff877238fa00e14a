//! LL-HLS end to end: parts, preload hints, blocking playlist reload and delta updates at the
//! origin, checked by an independent parser (Python `m3u8`); the 400/404/503 rules; one
//! origin request per part through the edge (and a shield edge) however many viewers wait.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

/// Waits until the origin's playlist of `rendition` lists parts; returns its text.
fn live_playlist(weir: &Weir, rendition: &str) -> String {
    let url = weir.origin_url(&format!("/live/it/{rendition}/index.m3u8"));
    wait_for("a playlist with parts", Duration::from_secs(30), || {
        let f = try_get(&url).ok().filter(|f| f.status == 200)?;
        let text = f.text();
        last_part(&text).map(|_| text)
    })
}

/// The next part after the last listed one, as directives.
fn next_part(text: &str) -> (u64, u32) {
    let (msn, part, _) = last_part(text).expect("parts listed");
    (msn, part + 1)
}

#[test]
fn ll_playlists_pass_an_independent_parser_and_keep_the_directive_rules() {
    let weir = Weir::serve("[packager]\nwindow_segments = 12\n");
    let mut publisher = publish(&flv(BBB, 4, true), &weir.publish_url(STREAM_KEY), true);
    let dir = scratch_dir();
    let base = weir.origin_url("/live/it/source/index.m3u8");
    let mut text = live_playlist(&weir, "source");

    // The hinted part is requestable before it exists and answered once it is complete.
    let (_, _, hint) = last_part(&text).unwrap();
    let held = get(&weir.origin_url(&format!("/live/it/source/{hint}")));
    assert_eq!(held.status, 200, "the hinted part");
    assert_eq!(&held.body[4..8], b"moof");
    assert!(held.header("cache-control").unwrap().contains("immutable"));

    // Follow the live edge part by part with blocking reloads, as an LL-HLS player does.
    let mut deltas = 0;
    let mut n = 0;
    while n < 60 || deltas == 0 {
        let (msn, part) = next_part(&text);
        let f = get(&format!("{base}?_HLS_msn={msn}&_HLS_part={part}&player=x"));
        assert_eq!(f.status, 200, "blocking reload {msn}.{part}");
        assert!(f.header("cache-control").unwrap().contains("max-age="));
        assert_eq!(f.header("access-control-expose-headers"), Some("Age"));
        text = f.text();
        let (now_msn, now_part, _) = last_part(&text).unwrap();
        assert!(
            (now_msn, now_part) >= (msn, part) || now_msn > msn,
            "answered before {msn}.{part} was listed: {now_msn}.{now_part}"
        );
        std::fs::write(dir.join(format!("source.{n}.m3u8")), &text).unwrap();
        if n % 5 == 0 {
            let audio = get(&weir.origin_url("/live/it/audio/index.m3u8")).text();
            std::fs::write(dir.join(format!("audio.{n}.m3u8")), audio).unwrap();
            let delta = get(&format!("{base}?_HLS_skip=YES"));
            assert_eq!(delta.status, 200);
            if delta.text().contains("#EXT-X-SKIP:") {
                std::fs::write(dir.join(format!("source.{n}.delta.m3u8")), delta.body).unwrap();
                deltas += 1;
            }
        }
        n += 1;
        assert!(n < 400, "no delta update after {n} parts");
    }
    let out = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ll/check_ll.py"))
        .arg(&dir)
        .args(["source", "audio"])
        .output()
        .expect("python3 (scripts/setup.sh installs it with the m3u8 package)");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(report.trim()).unwrap();
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    assert!(report["checked"].as_u64().unwrap() >= 70, "{report}");
    // A short part comes only from a source frame longer than the room left in a part: the
    // clip's loop points (one 80 ms frame each) in the ~25 s followed.
    assert!(
        report["short_parts"].as_array().unwrap().len() <= 5,
        "{report}"
    );

    // 400: _HLS_part without _HLS_msn; _HLS_msn beyond the last + 2; _HLS_part beyond the
    // advance part limit; malformed values.
    let (msn, part) = next_part(&text);
    for bad in [
        format!("_HLS_part={part}"),
        format!("_HLS_msn={}", msn + 3),
        format!("_HLS_msn={msn}&_HLS_part={}", part + 40),
        "_HLS_msn=abc".to_string(),
    ] {
        let f = get(&format!("{base}?{bad}"));
        assert_eq!(f.status, 400, "{bad}");
        assert_eq!(f.header("cache-control"), Some("no-store"));
    }
    // 404: a part neither listed nor hinted (from the playlist as it is now).
    let (_, _, hint) = last_part(&get(&base).text()).unwrap();
    let (session, file) = hint.split_once('/').unwrap();
    let (m, p) = file.trim_end_matches(".m4s").split_once('.').unwrap();
    let beyond = format!(
        "/live/it/source/{session}/{m}.{}.m4s",
        p.parse::<u32>().unwrap() + 2
    );
    assert_eq!(get(&weir.origin_url(&beyond)).status, 404);

    // 503: the publisher is gone, so the next segment never comes; the origin answers after
    // blocking for three target durations.
    publisher.kill().unwrap();
    publisher.wait().unwrap();
    wait_for("the session to end", Duration::from_secs(10), || {
        weir.log().contains("publisher session ended").then_some(())
    });
    let ended = get(&base).text();
    assert!(
        !ended.contains("#EXT-X-PRELOAD-HINT"),
        "nothing hinted once the publisher left"
    );
    let last_msn = ended
        .lines()
        .rfind(|l| l.ends_with(".m4s") && !l.starts_with('#'))
        .and_then(|l| {
            l.rsplit('/')
                .next()?
                .trim_end_matches(".m4s")
                .parse::<u64>()
                .ok()
        })
        .unwrap();
    let started = Instant::now();
    let f = get(&format!("{base}?_HLS_msn={}", last_msn + 1));
    assert_eq!(f.status, 503, "{}", f.text());
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "held for 3 x TD first"
    );
    assert_eq!(get(&format!("{base}?_HLS_msn={last_msn}")).status, 200);
}

#[test]
fn blocking_requests_through_the_edge_make_one_origin_request_per_part() {
    let weir = Weir::serve("");
    let mut publisher = publish(&flv(BBB, 4, true), &weir.publish_url(STREAM_KEY), true);
    let text = live_playlist(&weir, "source");
    let path = "/live/it/source/index.m3u8";
    let blocking = r#"directives="blocking""#;
    let (msn, part) = next_part(&text);

    // 500 viewers wait at the edge for the next part: the origin sees one request.
    let before = metric(&weir, "weir_origin_playlist_requests_total", blocking);
    let url = weir.edge_url(&format!("{path}?_HLS_msn={msn}&_HLS_part={part}"));
    let statuses = curl_many(&url, 500, 20.0);
    assert_eq!(statuses.len(), 500);
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let after = metric(&weir, "weir_origin_playlist_requests_total", blocking);
    assert_eq!(after - before, 1.0, "origin requests for one part");

    // The viewer that started a fetch leaves; the fetch goes on and the others get it.
    let (msn, part) = next_part(&get(&weir.origin_url(path)).text());
    let next = format!("{path}?_HLS_msn={msn}&_HLS_part={}", part + 1);
    let before = metric(&weir, "weir_origin_playlist_requests_total", blocking);
    let quitter = curl_many(&weir.edge_url(&next), 1, 0.05);
    assert_eq!(quitter, vec![0], "the first viewer gave up");
    let statuses = curl_many(&weir.edge_url(&next), 20, 20.0);
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let after = metric(&weir, "weir_origin_playlist_requests_total", blocking);
    assert_eq!(
        after - before,
        1.0,
        "the first fetch was neither cancelled nor repeated"
    );

    // A second edge in front of the first (a shield): still one origin request per part.
    let shield = Weir::edge(&format!("http://{}", weir.edge), 5_000);
    let (msn, part) = next_part(&get(&weir.origin_url(path)).text());
    let url = shield.edge_url(&format!("{path}?_HLS_msn={msn}&_HLS_part={part}&cb=1"));
    let before = metric(&weir, "weir_origin_playlist_requests_total", blocking);
    let statuses = curl_many(&url, 200, 20.0);
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let after = metric(&weir, "weir_origin_playlist_requests_total", blocking);
    assert_eq!(after - before, 1.0, "through the shield");
    // The hinted part through both edges.
    let (_, _, hint) = last_part(&get(&shield.edge_url(path)).text()).unwrap();
    let f = get(&shield.edge_url(&format!("/live/it/source/{hint}")));
    assert_eq!(f.status, 200);

    // Plain playlist requests at the edge are kept fresh by one follower: new parts show up
    // while the origin sees no plain requests after the first.
    let plain_before = metric(
        &weir,
        "weir_origin_playlist_requests_total",
        r#"directives="plain""#,
    );
    let mut versions = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline {
        let f = get(&weir.edge_url(path));
        assert_eq!(f.status, 200);
        // Served from the follower's copy, with the origin's plain Cache-Control.
        assert_eq!(f.header("cache-control"), Some("public, max-age=1"));
        versions.insert(last_part(&f.text()).map(|(m, p, _)| (m, p)));
        std::thread::sleep(Duration::from_millis(50));
    }
    let plain_after = metric(
        &weir,
        "weir_origin_playlist_requests_total",
        r#"directives="plain""#,
    );
    assert!(
        versions.len() >= 5,
        "the edge's copy moved with the live edge: {versions:?}"
    );
    assert!(
        plain_after - plain_before <= 2.0,
        "plain requests reached the origin {} times",
        plain_after - plain_before
    );
    publisher.kill().unwrap();
    publisher.wait().unwrap();
}
