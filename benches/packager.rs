//! Packager throughput: frames of the Big Buck Bunny clip (10 loops, 52.8 s of 720p H.264 +
//! 5.1 AAC, passthrough) in, CMAF segments and playlists out.
//!
//! Throughput is reported in elements of one millisecond of media: `1 Kelem/s` is one second
//! of media packaged per second of CPU (the packager is single-threaded and does no I/O).
//! Run: `cargo bench --bench packager`.

use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use weir_ingest::{file_tags, parse_audio, parse_video, Tag};
use weir_packager::{Packager, PackagerConfig, SessionId};

fn load() -> (Vec<(u32, Tag)>, u64) {
    let clip = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/media/bigbuckbunny.mp4");
    let out = std::env::temp_dir().join(format!("weir-bench-{}.flv", std::process::id()));
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
            "-f",
            "flv",
        ])
        .arg(&out)
        .status()
        .expect("the benchmark needs the ffmpeg CLI (scripts/setup.sh installs it)");
    assert!(status.success());
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

fn package(tags: &[(u32, Tag)]) -> usize {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut packager = Packager::new(PackagerConfig::default());
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
        b.iter(|| black_box(package(black_box(&tags))))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
