//! The packager's timeline with real publishers: target duration from a 29.97 fps source,
//! media sequence numbers across a restart of weir, and an audio gap that resyncs.

use std::time::Duration;

use crate::support::*;

/// The segments of `rendition`'s playlist at the origin: (msn, session, duration, date).
fn listed(weir: &Weir, rendition: &str) -> (m3u8_rs::MediaPlaylist, Vec<(u64, String)>) {
    let p = media_playlist(&weir.origin_url(&format!("/live/it/{rendition}/index.m3u8")));
    let uris = p
        .segments
        .iter()
        .map(|s| {
            let (session, file) = s.uri.split_once('/').unwrap();
            (
                file.trim_end_matches(".m4s").parse().unwrap(),
                session.to_string(),
            )
        })
        .collect();
    (p, uris)
}

/// Publishes `file` as fast as it reads and waits for the session to end.
fn publish_all(weir: &Weir, file: &std::path::Path, sessions: usize) {
    let (ok, err) = finish(
        publish(file, &weir.publish_url(STREAM_KEY), false),
        Duration::from_secs(60),
    );
    assert!(ok, "publish: {err}");
    wait_for("the session to end", Duration::from_secs(15), || {
        (weir.log().matches("publisher session ended").count() >= sessions).then_some(())
    });
}

#[test]
fn ntsc_two_second_gops_get_target_duration_two_and_one_date_per_msn() {
    let file = scratch_dir().join("ntsc.flv");
    let (ok, err) = run(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x180:rate=30000/1001",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "13",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "60",
            "-keyint_min",
            "60",
            "-sc_threshold",
            "0",
            "-c:a",
            "aac",
            "-f",
            "flv",
            &file.display().to_string(),
        ],
    );
    assert!(ok, "{err}");
    let weir = Weir::serve("[packager]\nwindow_segments = 20\n");
    publish_all(&weir, &file, 1);
    let (video, msns) = listed(&weir, "source");
    let (audio, audio_msns) = listed(&weir, "audio");
    assert_eq!(video.target_duration, 2, "2.002 s segments: TD 2");
    assert_eq!(audio.target_duration, 2);
    assert!(video.segments.len() >= 6);
    for s in &video.segments[..video.segments.len() - 1] {
        assert!((s.duration - 2.002).abs() < 0.002, "EXTINF {}", s.duration);
    }
    for s in video.segments.iter().chain(&audio.segments) {
        assert!(
            s.duration.round() as u64 <= 2,
            "EXTINF {} rounds above 2",
            s.duration
        );
    }
    // One cut, one number, one date: every MSN names the same span in both renditions.
    assert_eq!(msns, audio_msns);
    for (v, a) in video.segments.iter().zip(&audio.segments) {
        assert_eq!(v.program_date_time, a.program_date_time, "{}", v.uri);
    }
}

#[test]
fn a_restarted_weir_continues_media_sequence_numbers_upward() {
    let file = flv(BBB, 1, true);
    let mut first = Weir::serve("");
    publish_all(&first, &file, 1);
    let (_, before) = listed(&first, "source");
    first.kill();
    let second = Weir::serve("");
    publish_all(&second, &file, 1);
    let (p, after) = listed(&second, "source");
    let last_before = before.last().unwrap().0;
    assert!(
        after[0].0 > last_before,
        "restart went back: {} after {last_before}",
        after[0].0
    );
    assert_eq!(p.media_sequence, after[0].0);
}

#[test]
fn an_audio_gap_resyncs_and_keeps_audio_and_video_within_a_frame() {
    // The clip with 500 ms of its audio tags removed from 4 s on (a lossy contribution).
    let source = std::fs::read(flv(BBB, 2, true)).unwrap();
    let tags: Vec<(u8, u32, bytes::Bytes)> = weir_ingest::file_tags(&bytes::Bytes::from(source))
        .filter(|(kind, ts, body)| {
            !(*kind == 8 && body.len() > 2 && body[1] == 1 && (4_000..4_500).contains(ts))
        })
        .collect();
    let file = scratch_dir().join("gap.flv");
    write_flv(&file, &tags);
    let weir = Weir::serve("[packager]\nwindow_segments = 20\n");
    publish_all(&weir, &file, 1);
    let resyncs = metric(&weir, "weir_packager_audio_resyncs_total", r#"event="it""#);
    assert_eq!(resyncs, 1.0, "one gap, one resync");
    let (video, _) = listed(&weir, "source");
    let (audio, _) = listed(&weir, "audio");
    let start = |rendition: &str, uri: &str, map: &str| -> f64 {
        let init = get(&weir.origin_url(&format!("/live/it/{rendition}/{map}"))).body;
        let seg = get(&weir.origin_url(&format!("/live/it/{rendition}/{uri}"))).body;
        let t = segment_timing(&seg);
        (t.tfdt as i64 + t.first_composition_offset) as f64 / f64::from(init_timescale(&init))
    };
    let (vmap, amap) = (map_uri(&video, 0), map_uri(&audio, 0));
    assert_eq!(video.segments.len(), audio.segments.len());
    for (v, a) in video.segments.iter().zip(&audio.segments).skip(1) {
        let (vs, as_) = (
            start("source", &v.uri, &vmap),
            start("audio", &a.uri, &amap),
        );
        assert!(
            (vs - as_).abs() <= 0.04,
            "{}: video starts at {vs}, audio at {as_}",
            v.uri
        );
    }
}

#[test]
fn rtmp_timestamps_continue_across_the_32_bit_wrap() {
    // The re-encoded clip (two plays, 2 s GOPs) with RTMP timestamps starting 4 s before
    // 2^32 ms (49.7 days of publishing): they wrap to 0 mid-stream.
    let file = flv(BBB, 2, true);
    let data = bytes::Bytes::from(std::fs::read(&file).unwrap());
    let base = u32::MAX - 4_000;
    let tags: Vec<(u8, u32, bytes::Bytes)> = weir_ingest::file_tags(&data)
        .filter(|(kind, _, _)| matches!(kind, 8 | 9))
        .map(|(kind, ts, body)| (kind, base.wrapping_add(ts), body))
        .collect();
    assert!(tags.iter().any(|t| t.1 < 10_000) && tags.iter().any(|t| t.1 > base));
    let ts = flv_video_timestamps(&file);
    let published = f64::from(ts[ts.len() - 1] - ts[0] + 40) / 1000.0;
    let weir = Weir::serve("[packager]\nwindow_segments = 20\n");
    rtmp_publish_tags(weir.rtmp.unwrap(), STREAM_KEY, &tags);
    wait_for("the session to end", Duration::from_secs(30), || {
        weir.log().contains("publisher session ended").then_some(())
    });
    let jumps = metric(
        &weir,
        "weir_packager_timestamp_jumps_total",
        r#"event="it""#,
    );
    assert_eq!(jumps, 0.0, "the wrap was taken for a jump\n{}", weir.log());
    let video = media_playlist(&weir.origin_url("/live/it/source/index.m3u8"));
    assert!(video.segments.iter().all(|s| !s.discontinuity));
    let listed: f64 = video.segments.iter().map(|s| f64::from(s.duration)).sum();
    assert!(
        (listed - published).abs() < 0.1,
        "listed {listed} s of {published} s"
    );
    let audio = media_playlist(&weir.origin_url("/live/it/audio/index.m3u8"));
    assert_eq!(audio.segments.len(), video.segments.len());
}
