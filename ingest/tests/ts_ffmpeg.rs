//! The MPEG-TS demuxer on what a real multiplexer writes: the bundled clip remuxed to TS by
//! the ffmpeg CLI (which the test setup installs), fed in SRT-sized pieces.

use std::path::Path;
use std::process::Command;

use weir_ingest::{TsDemuxer, TsEvent};
use weir_media::{CodecConfig, TrackKind};

fn remux(seconds: &str) -> Vec<u8> {
    let clip = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/media/bigbuckbunny.mp4");
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&clip)
        .args(["-t", seconds, "-c", "copy"])
        .args(["-f", "mpegts", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Frames ffprobe counts in the TS (video, audio).
fn ffprobe_counts(ts: &[u8]) -> (usize, usize) {
    let path = std::env::temp_dir().join(format!("weir-ts-{}.ts", std::process::id()));
    std::fs::write(&path, ts).unwrap();
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_packets", "-show_entries"])
        .args(["stream=codec_type,nb_read_packets", "-of", "csv=p=0"])
        .arg(&path)
        .output()
        .expect("ffprobe runs");
    let _ = std::fs::remove_file(&path);
    let text = String::from_utf8_lossy(&out.stdout);
    let count = |kind: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(kind)?.strip_prefix(',')?.trim().parse().ok())
            .unwrap_or(0)
    };
    (count("video"), count("audio"))
}

fn demux(ts: &[u8]) -> Vec<TsEvent> {
    let mut d = TsDemuxer::new();
    let mut events = Vec::new();
    // 1 316 bytes: seven packets, the usual SRT payload.
    for chunk in ts.chunks(1_316) {
        d.push(chunk, &mut events);
    }
    d.finish(&mut events);
    events
}

#[test]
fn demuxes_every_frame_ffmpeg_writes() {
    let ts = remux("6");
    let events = demux(&ts);
    let problems: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, TsEvent::Problem(_)))
        .collect();
    assert!(problems.is_empty(), "{problems:?}");
    let count = |kind| {
        events
            .iter()
            .filter(|e| matches!(e, TsEvent::Frame(f) if f.track == kind))
            .count()
    };
    let (video, audio) = ffprobe_counts(&ts);
    assert!(video > 100 && audio > 100, "{video} {audio}");
    assert_eq!(count(TrackKind::Video), video);
    assert_eq!(count(TrackKind::Audio), audio);
    let configs: Vec<&CodecConfig> = events
        .iter()
        .filter_map(|e| match e {
            TsEvent::Track(t) => Some(&t.codec),
            _ => None,
        })
        .collect();
    assert_eq!(configs.len(), 2, "{configs:?}");
    for c in configs {
        match c {
            CodecConfig::H264(v) => assert_eq!((v.width, v.height), (1280, 720)),
            CodecConfig::Aac(a) => assert_eq!(a.codec_string(), "mp4a.40.2"),
            other => panic!("unexpected {other:?}"),
        }
    }
}
