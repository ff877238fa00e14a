//! The default transcoding ladder end to end: BBB copied (720p, one 5.28 s GOP) comes out as
//! 720p/480p/360p with 2 s segments aligned across renditions; bikes.mp4 (640x272, video
//! only) as one even-sized rendition without audio.

use std::path::PathBuf;
use std::time::Duration;

use crate::support::*;

/// Published media (5 plays of the 5.3 s clip): more than the 20 s the bit rates are
/// measured over.
const BBB_LOOPS: u32 = 5;

struct Rendition {
    name: String,
    width: u64,
    height: u64,
    playlist: m3u8_rs::MediaPlaylist,
    init: Vec<u8>,
    segments: Vec<Vec<u8>>,
}

impl Rendition {
    fn fetch(weir: &Weir, name: &str, width: u64, height: u64) -> Rendition {
        let playlist = media_playlist(&weir.edge_url(&format!("/live/it/{name}/index.m3u8")));
        let map = map_uri(&playlist, 0);
        let init = get(&weir.edge_url(&format!("/live/it/{name}/{map}"))).body;
        let segments = playlist
            .segments
            .iter()
            .map(|s| {
                let f = get(&weir.edge_url(&format!("/live/it/{name}/{}", s.uri)));
                assert_eq!(f.status, 200, "{name}/{}", s.uri);
                f.body
            })
            .collect();
        Rendition {
            name: name.into(),
            width,
            height,
            playlist,
            init,
            segments,
        }
    }

    /// The init segment and the first `n` segments as one fragmented MP4 file.
    fn file(&self, n: usize) -> PathBuf {
        let path = scratch_dir().join(format!("{}-{n}.mp4", self.name));
        let mut data = self.init.clone();
        for s in self.segments.iter().take(n) {
            data.extend_from_slice(s);
        }
        std::fs::write(&path, data).unwrap();
        path
    }

    fn bits_per_second(&self) -> f64 {
        let bytes: usize = self.segments.iter().map(Vec::len).sum();
        let secs: f64 = self
            .playlist
            .segments
            .iter()
            .map(|s| f64::from(s.duration))
            .sum();
        bytes as f64 * 8.0 / secs
    }
}

/// Waits until the publisher is done and the final segment of `rendition` is listed: the
/// listed durations add up to the media published, within 0.2 s.
fn wait_for_final(weir: &Weir, rendition: &str, published: f64) {
    let url = weir.origin_url(&format!("/live/it/{rendition}/index.m3u8"));
    wait_for("the final segment", Duration::from_secs(60), || {
        let p = try_get(&url).ok().filter(|f| f.status == 200)?;
        let Ok(m3u8_rs::Playlist::MediaPlaylist(p)) = m3u8_rs::parse_playlist_res(&p.body) else {
            return None;
        };
        let sum: f64 = p.segments.iter().map(|s| f64::from(s.duration)).sum();
        ((sum - published).abs() <= 0.2).then_some(())
    });
}

fn published_secs(file: &std::path::Path) -> f64 {
    let ts = flv_video_timestamps(file);
    let frame = f64::from(ts[ts.len() - 1] - ts[ts.len() - 2]) / 1000.0;
    f64::from(ts[ts.len() - 1] - ts[0]) / 1000.0 + frame
}

/// SSIM (all planes) of `file` against the source clip scaled to `width`x`height`, frame by
/// frame from the first.
fn ssim(file: &std::path::Path, width: u64, height: u64) -> f64 {
    let graph = format!(
        "[0:v]setpts=PTS-STARTPTS[a];[1:v]scale={width}:{height}:flags=bicubic,setpts=PTS-STARTPTS[b];[a][b]ssim=shortest=1"
    );
    let source = media(BBB);
    let (ok, err) = run(
        "ffmpeg",
        &[
            "-nostdin",
            "-v",
            "info",
            "-i",
            &file.display().to_string(),
            "-i",
            &source.display().to_string(),
            "-lavfi",
            &graph,
            "-f",
            "null",
            "-",
        ],
    );
    assert!(ok, "ffmpeg ssim failed: {err}");
    let all = err
        .lines()
        .filter_map(|l| l.split(" All:").nth(1))
        .next_back()
        .unwrap_or_else(|| panic!("no SSIM line in {err}"));
    all.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn default_ladder_from_a_long_gop_source() {
    let _slot = transcode_slot();
    let weir = Weir::serve_ladder("[packager]\nwindow_segments = 60\n", "default");
    let file = flv(BBB, BBB_LOOPS, false);
    let published = published_secs(&file);
    let publisher = publish(&file, &weir.publish_url(STREAM_KEY), false);
    let (ok, err) = finish(publisher, Duration::from_secs(300));
    assert!(ok, "ffmpeg failed to publish: {err}");
    for name in ["720p", "480p", "360p", "audio"] {
        wait_for_final(&weir, name, published);
    }

    // The master lists the rungs that fit a 720p source, ordered by bandwidth.
    let master = master_playlist(&weir.edge_url("/live/it/master.m3u8"));
    let listed: Vec<(&str, u64, u64)> = master
        .variants
        .iter()
        .map(|v| {
            let r = v.resolution.expect("RESOLUTION");
            (v.uri.as_str(), r.width, r.height)
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("360p/index.m3u8", 640, 360),
            ("480p/index.m3u8", 854, 480),
            ("720p/index.m3u8", 1280, 720)
        ]
    );
    for pair in master.variants.windows(2) {
        assert!(pair[0].bandwidth <= pair[1].bandwidth);
    }
    for v in &master.variants {
        let codecs = v.codecs.as_deref().unwrap();
        assert!(
            codecs.starts_with("avc1.") && codecs.ends_with(",mp4a.40.2"),
            "{codecs}"
        );
        assert_eq!(v.audio.as_deref(), Some("audio"));
        assert!((v.frame_rate.unwrap() - 25.0).abs() < 0.01);
        assert!(v.average_bandwidth.unwrap() <= v.bandwidth);
    }
    assert_eq!(master.alternatives.len(), 1);

    let mut renditions: Vec<Rendition> = listed
        .iter()
        .map(|(uri, w, h)| Rendition::fetch(&weir, uri.trim_end_matches("/index.m3u8"), *w, *h))
        .collect();
    let audio = Rendition::fetch(&weir, "audio", 0, 0);

    // Same media sequence numbers, segment count and target duration everywhere; 2 s
    // segments although the source's GOP is 5.28 s (the last one ends with the publisher).
    let first = &renditions[0].playlist;
    assert_eq!(first.target_duration, 2);
    for r in renditions.iter().chain([&audio]) {
        assert_eq!(
            r.playlist.media_sequence, first.media_sequence,
            "{}",
            r.name
        );
        assert_eq!(
            r.playlist.segments.len(),
            first.segments.len(),
            "{}",
            r.name
        );
        assert_eq!(
            r.playlist.target_duration, first.target_duration,
            "{}",
            r.name
        );
    }
    let count = first.segments.len();
    assert!(count >= 12, "{count} segments for {published} s");
    for r in &renditions {
        for s in &r.playlist.segments[..count - 1] {
            let d = f64::from(s.duration);
            assert!((1.95..=2.05).contains(&d), "{} {}: {d} s", r.name, s.uri);
        }
    }

    // Every segment of every rendition starts with a sync sample at the same decode and
    // presentation time; the audio segment starts within one AAC frame of it.
    let timescale = init_timescale(&renditions[0].init);
    for r in &renditions {
        assert_eq!(init_timescale(&r.init), timescale);
    }
    let audio_rate = f64::from(init_timescale(&audio.init));
    for i in 0..count {
        let top = segment_timing(&renditions[0].segments[i]);
        for r in &renditions {
            let t = segment_timing(&r.segments[i]);
            assert_eq!(
                t.first_sample_flags & 0x1_0000,
                0,
                "{} #{i} starts with a non-sync sample",
                r.name
            );
            assert_eq!(t.tfdt, top.tfdt, "{} #{i} tfdt", r.name);
            assert_eq!(
                t.tfdt as i64 + t.first_composition_offset,
                top.tfdt as i64 + top.first_composition_offset,
                "{} #{i} first presentation time",
                r.name
            );
        }
        let video_start =
            (top.tfdt as i64 + top.first_composition_offset) as f64 / f64::from(timescale);
        let audio_start = segment_timing(&audio.segments[i]).tfdt as f64 / audio_rate;
        assert!(
            (audio_start - video_start).abs() <= 1024.0 / audio_rate + 0.001,
            "#{i}: audio starts at {audio_start}, video at {video_start}"
        );
    }

    for (r, target) in renditions
        .iter_mut()
        .zip([700_000.0, 1_200_000.0, 2_800_000.0])
    {
        // Decodes cleanly.
        assert_decodes(&r.file(count), &r.name);
        // Bit rate within 15% of the rung's target over the whole run (> 20 s).
        let bps = r.bits_per_second();
        assert!(
            (bps / target - 1.0).abs() <= 0.15,
            "{}: {bps:.0} b/s against {target} b/s",
            r.name
        );
        // Looks like the source: SSIM against the source scaled to the rung's size, over
        // the first two segments.
        let score = ssim(&r.file(2), r.width, r.height);
        assert!(score >= 0.90, "{}: SSIM {score}", r.name);
        eprintln!(
            "{}: {bps:.0} b/s (target {target}), SSIM {score:.4}",
            r.name
        );
    }
    assert_decodes(&audio.file(count), "audio");
}

#[test]
fn odd_sized_video_only_source_gets_even_renditions_and_no_audio() {
    let _slot = transcode_slot();
    let weir = Weir::serve_ladder("[packager]\nwindow_segments = 60\n", "default");
    let file = flv(BIKES, 1, false);
    let published = published_secs(&file);
    let publisher = publish(&file, &weir.publish_url(STREAM_KEY), false);
    let (ok, err) = finish(publisher, Duration::from_secs(120));
    assert!(ok, "ffmpeg failed to publish: {err}");
    wait_for_final(&weir, "360p", published);

    let master = master_playlist(&weir.edge_url("/live/it/master.m3u8"));
    assert_eq!(master.variants.len(), 1, "{master:?}");
    let v = &master.variants[0];
    assert_eq!(v.uri, "360p/index.m3u8");
    let r = v.resolution.unwrap();
    assert_eq!((r.width, r.height), (640, 272));
    assert!(r.width % 2 == 0 && r.height % 2 == 0);
    let codecs = v.codecs.as_deref().unwrap();
    assert!(
        codecs.starts_with("avc1.") && !codecs.contains("mp4a"),
        "{codecs}"
    );
    assert!(master.alternatives.is_empty());
    assert_eq!(
        try_get(&weir.edge_url("/live/it/audio/index.m3u8"))
            .map(|f| f.status)
            .ok(),
        Some(404)
    );

    let rendition = Rendition::fetch(&weir, "360p", 640, 272);
    let n = rendition.segments.len();
    assert_decodes(&rendition.file(n), "360p");
}

#[test]
fn a_publisher_returning_with_another_resolution_continues_every_rendition() {
    let _slot = transcode_slot();
    let weir = Weir::serve_ladder("[packager]\nwindow_segments = 60\n", "default");
    let first = flv(BBB, 1, false);
    let second = flv(BIKES, 1, false);
    for (ended, file) in [&first, &second].into_iter().enumerate() {
        let publisher = publish(file, &weir.publish_url(STREAM_KEY), false);
        let (ok, err) = finish(publisher, Duration::from_secs(120));
        assert!(ok, "ffmpeg failed to publish: {err}");
        // The event takes the next publisher once this session has been flushed.
        wait_for("the session to end", Duration::from_secs(30), || {
            let n = weir.log().matches("publisher session ended").count();
            (n > ended).then_some(())
        });
    }
    let total = published_secs(&first) + published_secs(&second);
    for name in ["720p", "480p", "360p"] {
        wait_for_final(&weir, name, total);
    }
    let master = master_playlist(&weir.edge_url("/live/it/master.m3u8"));
    let uris: Vec<&str> = master.variants.iter().map(|v| v.uri.as_str()).collect();
    assert_eq!(
        uris,
        ["360p/index.m3u8", "480p/index.m3u8", "720p/index.m3u8"]
    );
    let mut boundary = None;
    for name in ["720p", "480p", "360p"] {
        let r = Rendition::fetch(&weir, name, 0, 0);
        let at = r
            .playlist
            .segments
            .iter()
            .position(|s| s.discontinuity)
            .unwrap_or_else(|| panic!("{name}: no discontinuity"));
        assert_eq!(
            *boundary.get_or_insert(at),
            at,
            "{name}: discontinuity elsewhere"
        );
        // The second session's segments decode with their own init segment.
        let map = map_uri(&r.playlist, at);
        let mut data = get(&weir.edge_url(&format!("/live/it/{name}/{map}"))).body;
        for s in &r.segments[at..] {
            data.extend_from_slice(s);
        }
        let path = scratch_dir().join(format!("{name}-second.mp4"));
        std::fs::write(&path, data).unwrap();
        assert_decodes(&path, &format!("{name} after the return"));
    }
}

#[test]
fn a_machine_too_slow_for_the_ladder_skips_frames_and_keeps_segments_aligned() {
    let _slot = transcode_slot();
    // libx264 veryslow at 720p runs well below real time on this machine's 2 cores.
    let ladder = "[ladders.slow]\naudio = { passthrough = true }\n\
                  [[ladders.slow.video]]\nname = \"720p\"\nwidth = 1280\nheight = 720\nbitrate_kbps = 2800\npreset = \"veryslow\"\n\
                  [[ladders.slow.video]]\nname = \"360p\"\nwidth = 640\nheight = 360\nbitrate_kbps = 700\npreset = \"veryslow\"\n\
                  [packager]\nwindow_segments = 60\n";
    let weir = Weir::serve_ladder(ladder, "slow");
    let file = flv(BBB, 2, false);
    let published = published_secs(&file);
    let publisher = publish(&file, &weir.publish_url(STREAM_KEY), true);
    let (ok, err) = finish(publisher, Duration::from_secs(240));
    assert!(ok, "ffmpeg failed to publish: {err}");
    for name in ["720p", "360p"] {
        wait_for_final(&weir, name, published);
    }
    assert!(
        weir.log().contains("transcoding slower than real time"),
        "no warning in the log:\n{}",
        weir.log()
    );
    let metrics = get(&weir.origin_url("/metrics")).text();
    let skipped: f64 = metrics
        .lines()
        .find(|l| l.starts_with("weir_transcode_frames_skipped_total{event=\"it\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no skipped-frames counter in\n{metrics}"));
    assert!(skipped > 0.0, "{metrics}");
    let speed: f64 = metrics
        .lines()
        .find(|l| l.starts_with("weir_transcode_speed{event=\"it\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no speed gauge in\n{metrics}"));
    assert!(speed > 0.0 && speed.is_finite(), "{speed}");

    // Skipped frames never include a forced keyframe: 2 s segments, aligned, decodable.
    let top = Rendition::fetch(&weir, "720p", 1280, 720);
    let low = Rendition::fetch(&weir, "360p", 640, 360);
    let count = top.segments.len();
    assert_eq!(low.segments.len(), count);
    for s in &top.playlist.segments[..count - 1] {
        let d = f64::from(s.duration);
        assert!((1.95..=2.05).contains(&d), "720p {}: {d} s", s.uri);
    }
    for i in 0..count {
        let (a, b) = (
            segment_timing(&top.segments[i]),
            segment_timing(&low.segments[i]),
        );
        assert_eq!(a.tfdt, b.tfdt, "#{i}");
        assert_eq!(a.first_sample_flags & 0x1_0000, 0, "#{i}");
    }
    for r in [&top, &low] {
        assert_decodes(&r.file(count), &r.name);
    }
    eprintln!("skipped {skipped} frames at {speed:.2}x real time");
}
