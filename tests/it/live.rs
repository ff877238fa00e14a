//! RTMP in, CMAF HLS out through the edge: the BBB clip copied (one 5.28 s GOP) and
//! re-encoded with a 2 s GOP, and bikes.mp4 (video only, irregular GOP).

use std::collections::BTreeSet;
use std::time::Duration;

use crate::support::*;

fn extinf_sum(p: &m3u8_rs::MediaPlaylist) -> f64 {
    p.segments.iter().map(|s| f64::from(s.duration)).sum()
}

fn check_live(clip: &str, loops: u32, reencode: bool, has_audio: bool) {
    let weir = Weir::serve("[packager]\nwindow_segments = 60\n");
    let file = flv(clip, loops, reencode);
    let ts = flv_video_timestamps(&file);
    let frame = f64::from(ts[ts.len() - 1] - ts[ts.len() - 2]) / 1000.0;
    let published = f64::from(ts[ts.len() - 1] - ts[0]) / 1000.0 + frame;
    let video_url = weir.origin_url("/live/it/source/index.m3u8");

    let mut publisher = publish(&file, &weir.publish_url(STREAM_KEY), false);
    // Watch EXT-X-TARGETDURATION while the stream is live.
    let mut target_durations = BTreeSet::new();
    while publisher.try_wait().unwrap().is_none() {
        if let Ok(f) = try_get(&video_url) {
            if let Ok(m3u8_rs::Playlist::MediaPlaylist(p)) = m3u8_rs::parse_playlist_res(&f.body) {
                target_durations.insert(p.target_duration);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (ok, err) = finish(publisher, Duration::from_secs(60));
    assert!(ok, "ffmpeg failed to publish: {err}");

    // After the publisher leaves, the partial GOP becomes the final segment: the listed
    // durations add up to the media published, within one frame (plus EXTINF rounding).
    let video = wait_for("the final segment", Duration::from_secs(15), || {
        let p = media_playlist(&video_url);
        let tolerance = frame + 0.0005 * p.segments.len() as f64;
        ((extinf_sum(&p) - published).abs() <= tolerance).then_some(p)
    });
    target_durations.insert(video.target_duration);
    assert_eq!(
        target_durations.len(),
        1,
        "EXT-X-TARGETDURATION changed: {target_durations:?}"
    );

    let master = master_playlist(&weir.edge_url("/live/it/master.m3u8"));
    assert_eq!(master.variants.len(), 1);
    let variant = &master.variants[0];
    let codecs = variant.codecs.clone().unwrap();
    assert!(codecs.starts_with("avc1."), "{codecs}");
    assert_eq!(codecs.contains("mp4a.40.2"), has_audio, "{codecs}");
    assert!(variant.resolution.is_some() && variant.frame_rate.is_some());
    assert!(
        variant.average_bandwidth.unwrap() > 0
            && variant.bandwidth >= variant.average_bandwidth.unwrap()
    );
    assert_eq!(master.alternatives.len(), usize::from(has_audio));

    let mut renditions = vec![("source", video)];
    if has_audio {
        let audio = media_playlist(&weir.edge_url("/live/it/audio/index.m3u8"));
        assert_eq!(
            audio.target_duration, renditions[0].1.target_duration,
            "renditions share one target duration"
        );
        assert_eq!(audio.media_sequence, renditions[0].1.media_sequence);
        renditions.push(("audio", audio));
    }
    let dir = scratch_dir();
    let mut starts = Vec::new();
    for (name, playlist) in &renditions {
        let td = playlist.target_duration;
        let base = format!("/live/it/{name}/");
        let map = map_uri(playlist, 0);
        let init = get(&weir.edge_url(&format!("{base}{map}")));
        assert_eq!(
            (init.status, init.header("content-type")),
            (200, Some("video/mp4"))
        );
        let timescale = init_timescale(&init.body);
        let mut next_tfdt = None;
        for (i, seg) in playlist.segments.iter().enumerate() {
            assert!(
                seg.duration.round() as u64 <= td,
                "{name} EXTINF {} rounds above {td}",
                seg.duration
            );
            assert!(seg.program_date_time.is_some(), "PDT on every segment");
            let f = get(&weir.edge_url(&format!("{base}{}", seg.uri)));
            assert_eq!(f.status, 200, "{name} {}", seg.uri);
            assert_eq!(f.header("content-type"), Some("video/iso.segment"));
            assert!(f.header("cache-control").unwrap().contains("immutable"));
            let t = segment_timing(&f.body);
            if let Some(expected) = next_tfdt {
                assert_eq!(t.tfdt, expected, "{name} tfdt jumps at segment {i}");
            } else {
                starts.push(t.tfdt as f64 / f64::from(timescale));
            }
            next_tfdt = Some(t.tfdt + t.duration);
            let listed = (f64::from(seg.duration) - t.duration as f64 / f64::from(timescale)).abs();
            assert!(
                listed < 0.001,
                "{name} EXTINF {} vs media {}",
                seg.duration,
                t.duration
            );
            if *name == "source" {
                assert_eq!(
                    t.first_sample_flags & 0x0001_0000,
                    0,
                    "segment {i} starts with a non-sync sample"
                );
                // Independent check: ffprobe decodes the segment's first frame as a keyframe.
                let file = dir.join(format!("{i}.mp4"));
                std::fs::write(&file, [init.body.as_slice(), &f.body].concat()).unwrap();
                let out = std::process::Command::new("ffprobe")
                    .args([
                        "-v",
                        "error",
                        "-select_streams",
                        "v:0",
                        "-read_intervals",
                        "%+#1",
                        "-show_entries",
                        "frame=key_frame,pict_type",
                        "-of",
                        "csv=p=0",
                    ])
                    .arg(&file)
                    .output()
                    .unwrap();
                let first = String::from_utf8_lossy(&out.stdout);
                assert!(
                    first.lines().next().unwrap_or("").starts_with("1,I"),
                    "segment {i} first frame: {first:?}"
                );
            }
        }
    }
    if has_audio {
        assert!(
            (starts[0] - starts[1]).abs() < 0.1,
            "A/V start apart: video {} audio {}",
            starts[0],
            starts[1]
        );
    }

    // A real player reads the whole thing through the edge.
    let master_url = weir.edge_url("/live/it/master.m3u8");
    let (ok, stderr) = play_live(&master_url, 8.0);
    assert!(
        ok && stderr.trim().is_empty(),
        "ffmpeg playback through the edge: {stderr}"
    );
}

#[test]
fn bbb_copy_one_long_gop() {
    check_live(BBB, 3, false, true);
}

#[test]
fn bbb_reencoded_two_second_gop() {
    check_live(BBB, 3, true, true);
}

#[test]
fn bikes_video_only_irregular_gop() {
    check_live(BIKES, 2, false, false);
}
