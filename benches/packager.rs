//! Packager throughput: frames of the Big Buck Bunny clip (10 loops, 52.8 s of 720p H.264 +
//! 5.1 AAC, passthrough) in, CMAF segments and playlists out: in the clear, and with `cbcs`
//! encryption (a new key every 10 segments). Then, for the same media in the same run,
//! shaka-packager's CPU time to package it in the clear and with `cbcs` (issue 12's target:
//! weir's `cbcs` packaging at most 1.5x its clear packaging and at most shaka-packager's CPU).
//!
//! Throughput is reported in elements of one millisecond of media: `1 Kelem/s` is one second
//! of media packaged per second of CPU (the packager is single-threaded and does no I/O).
//! Run: `cargo bench --bench packager` (shaka-packager from `scripts/setup.sh`'s npm install;
//! skipped when it is absent).

use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::num::NonZeroU32;
use std::sync::Arc;
use weir_drm::{EventEncryption, KeyStore, RotationSchedule};
use weir_ingest::{file_tags, parse_audio, parse_video, Tag};
use weir_packager::{Packager, PackagerConfig, SegmentEncryption, SessionId};

fn looped(ext: &str) -> std::path::PathBuf {
    let clip = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/media/bigbuckbunny.mp4");
    let out = std::env::temp_dir().join(format!("weir-bench-{}.{ext}", std::process::id()));
    let status = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-stream_loop",
            "9",
            "-i",
            clip,
            "-c",
            "copy",
        ])
        .arg(&out)
        .status()
        .expect("the benchmark needs the ffmpeg CLI (scripts/setup.sh installs it)");
    assert!(status.success());
    out
}

fn load() -> (Vec<(u32, Tag)>, u64) {
    let out = looped("flv");
    let file = bytes::Bytes::from(std::fs::read(&out).expect("read the FLV"));
    let _ = std::fs::remove_file(&out);
    let mut tags = Vec::new();
    let mut last_ts = 0;
    for (kind, ts, body) in file_tags(&file) {
        let tag = match kind {
            8 => parse_audio(i64::from(ts), body),
            9 => parse_video(i64::from(ts), body),
            _ => continue,
        };
        last_ts = last_ts.max(ts);
        tags.push((ts, tag.expect("the clip's tags parse")));
    }
    (tags, u64::from(last_ts))
}

fn package(tags: &[(u32, Tag)], encryption: Option<Arc<dyn SegmentEncryption>>) -> usize {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut packager = Packager::new(PackagerConfig {
        encryption,
        ..PackagerConfig::default()
    });
    let mut out = Vec::with_capacity(16);
    let mut produced = 0;
    packager.begin_session(SessionId::from_unix_millis(1, 0), t0, &mut out);
    for (ts, tag) in tags {
        let now = t0 + Duration::from_millis(u64::from(*ts));
        match tag {
            Tag::Config(info) => packager.track(
                weir_packager::passthrough_rendition(info.kind),
                info.clone(),
                now,
                &mut out,
            ),
            Tag::Frame(frame) => {
                let rendition = weir_packager::passthrough_rendition(frame.track);
                packager.frame(&rendition, frame.clone(), now, &mut out)
            }
            _ => {}
        }
        produced += out.len();
        out.clear();
    }
    packager.end_session(t0, &mut out);
    produced + out.len()
}

fn bench(c: &mut Criterion) {
    let (tags, media_ms) = load();
    let mut group = c.benchmark_group("packager");
    group.throughput(Throughput::Elements(media_ms));
    group.sample_size(20);
    group.bench_function("bbb_720p_passthrough", |b| {
        b.iter(|| black_box(package(black_box(&tags), None)))
    });
    let keys = Arc::new(KeyStore::in_memory());
    group.bench_function("bbb_720p_passthrough_cbcs", |b| {
        b.iter(|| {
            let cbcs = EventEncryption::cbcs(
                "bench",
                RotationSchedule::new(0, NonZeroU32::new(10)),
                keys.clone(),
            );
            black_box(package(black_box(&tags), Some(Arc::new(cbcs))))
        })
    });
    group.finish();
    shaka(media_ms);
}

/// shaka-packager's CPU time (user + system, as bash's `time` reports for the child) to
/// package the same 10 loops of the clip (an MP4 of the same samples) into 2 s CMAF
/// segments, in the clear and with `cbcs`; the best of three runs each.
fn shaka(media_ms: u64) {
    let bin = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/player/node_modules/shaka-packager/bin/packager-linux-x64"
    );
    if !std::path::Path::new(bin).exists() {
        eprintln!("shaka-packager not installed (scripts/setup.sh): comparison skipped");
        return;
    }
    let mp4 = looped("mp4");
    let dir = std::env::temp_dir().join(format!("weir-bench-shaka-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let streams = |d: &std::path::Path| {
        format!(
            "'in={m},stream=video,init_segment={d}/v.mp4,segment_template={d}/v_$Number$.m4s' \
             'in={m},stream=audio,init_segment={d}/a.mp4,segment_template={d}/a_$Number$.m4s'",
            m = mp4.display(),
            d = d.display()
        )
    };
    let cbcs = "--enable_raw_key_encryption --keys \
        label=:key_id=00112233445566778899aabbccddeeff:key=0123456789abcdef0123456789abcdef \
        --protection_scheme cbcs --protection_systems CommonSystem --clear_lead 0";
    let cpu = |extra: &str| -> f64 {
        (0..3)
            .map(|_| {
                let script = format!(
                    "TIMEFORMAT='%3U %3S'; time {bin} {} --segment_duration 2 {extra} >/dev/null 2>&1",
                    streams(&dir)
                );
                let out = Command::new("bash").args(["-c", &script]).output().unwrap();
                assert!(out.status.success(), "shaka-packager failed: {script}");
                let text = String::from_utf8_lossy(&out.stderr);
                let t: Vec<f64> = text
                    .split_whitespace()
                    .filter_map(|v| v.parse().ok())
                    .collect();
                t.iter().sum::<f64>()
            })
            .fold(f64::INFINITY, f64::min)
    };
    let (clear, encrypted) = (cpu(""), cpu(cbcs));
    let media_s = media_ms as f64 / 1000.0;
    println!(
        "shaka-packager 3.4.2, {media_s:.1} s of media: clear {clear:.3} s CPU \
         ({:.1} Kelem/s), cbcs {encrypted:.3} s CPU ({:.1} Kelem/s)",
        media_s / clear,
        media_s / encrypted
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&mp4);
}

criterion_group!(benches, bench);
criterion_main!(benches);
