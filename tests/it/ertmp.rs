//! Enhanced RTMP: HEVC published by FFmpeg 9 (which sends `hvc1` FourCC video tags; Debian's
//! FFmpeg 5.1 cannot), packaged in passthrough as `hvc1` CMAF with the exact `CODECS` value.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use crate::support::*;

/// The static FFmpeg 9 that scripts/setup.sh installs from PyPI's imageio-ffmpeg.
pub(crate) fn ffmpeg9() -> PathBuf {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/.tools/imageio-ffmpeg/imageio_ffmpeg/binaries"
    ));
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup.sh)", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("ffmpeg-linux"))
        })
        .expect("FFmpeg 9 from imageio-ffmpeg (run scripts/setup.sh)")
}

fn ffprobe_field(file: &str, entry: &str) -> String {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .arg(format!("stream={entry}"))
        .args(["-of", "default=nw=1:nk=1", file])
        .output()
        .expect("ffprobe");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The bundled clip (`loops` plays) encoded by FFmpeg 9 with `video` codec arguments, audio
/// copied, as an enhanced FLV in the scratch directory; returns its path.
fn encode_with_ffmpeg9(name: &str, loops: u32, video: &[&str]) -> String {
    let flv = scratch_dir().join(name).display().to_string();
    let clip = media(BBB).display().to_string();
    let loops = (loops - 1).to_string();
    let mut args = vec!["-v", "error", "-y", "-stream_loop", &loops, "-i", &clip];
    args.extend_from_slice(video);
    args.extend_from_slice(&["-c:a", "copy", "-f", "flv", &flv]);
    let ff9 = ffmpeg9();
    let (ok, err) = run(ff9.to_str().unwrap(), &args);
    assert!(ok, "making {name}: {err}");
    flv
}

/// Two plays of the clip in HEVC with 2 s GOPs (libx265); made once per run.
pub(crate) fn hevc_flv() -> String {
    static MADE: OnceLock<String> = OnceLock::new();
    MADE.get_or_init(|| encode_with_ffmpeg9("hevc.flv", 2, &X265_2S_GOP))
        .clone()
}

/// Publishes the HEVC clip to `weir` with FFmpeg 9 and waits for the session to end.
fn publish_hevc(weir: &Weir) {
    publish_with_ffmpeg9(weir, &hevc_flv());
}

#[test]
fn hevc_over_enhanced_rtmp_is_packaged_as_hvc1() {
    let dir = scratch_dir();
    let weir = Weir::serve("");
    publish_hevc(&weir);
    let master = master_playlist(&weir.edge_url("/live/it/master.m3u8"));
    let codecs = master.variants[0].codecs.clone().unwrap();
    // libx265 Main, level 3.1, progressive-source constraint flag: hvc1.1.6.L93.90.
    assert!(codecs.starts_with("hvc1.1.6.L93.90"), "{codecs}");
    assert!(codecs.contains("mp4a.40.2"), "{codecs}");
    assert_eq!(
        master.variants[0].resolution.map(|r| (r.width, r.height)),
        Some((1280, 720))
    );

    let video = media_playlist(&weir.edge_url("/live/it/source/index.m3u8"));
    let listed: f64 = video.segments.iter().map(|s| f64::from(s.duration)).sum();
    assert!(listed > 10.0, "{listed} s listed");
    let mut body = get(&weir.edge_url(&format!("/live/it/source/{}", map_uri(&video, 0)))).body;
    for s in &video.segments {
        let seg = get(&weir.edge_url(&format!("/live/it/source/{}", s.uri)));
        assert_eq!(seg.status, 200);
        body.extend_from_slice(&seg.body);
    }
    let file = dir.join("hevc-source.mp4");
    std::fs::write(&file, &body).unwrap();
    let path = file.display().to_string();
    assert_eq!(ffprobe_field(&path, "codec_tag_string"), "hvc1");
    assert_eq!(ffprobe_field(&path, "codec_name"), "hevc");
    assert_eq!(ffprobe_field(&path, "width"), "1280");
    assert_decodes(&file, "the HEVC rendition");
}

/// Publishes `flv` (`secs` of media) to the default ladder and checks the H.264 rungs it
/// becomes.
fn check_ladder_from(flv: &str, what: &str, secs: f64) {
    let _slot = transcode_slot();
    let weir = Weir::serve_ladder("[packager]\nwindow_segments = 60\n", "default");
    publish_with_ffmpeg9(&weir, flv);
    let master = master_playlist(&weir.edge_url("/live/it/master.m3u8"));
    let mut heights: Vec<u64> = master
        .variants
        .iter()
        .map(|v| {
            let codecs = v.codecs.clone().unwrap();
            assert!(
                codecs.starts_with("avc1."),
                "H.264 rungs from HEVC: {codecs}"
            );
            v.resolution.unwrap().height
        })
        .collect();
    heights.sort_unstable();
    assert_eq!(heights, vec![360, 480, 720]);
    let p = media_playlist(&weir.edge_url("/live/it/360p/index.m3u8"));
    let listed: f64 = p.segments.iter().map(|s| f64::from(s.duration)).sum();
    assert!(listed > secs - 0.5, "{listed} s listed of {secs}");
    let mut body = get(&weir.edge_url(&format!("/live/it/360p/{}", map_uri(&p, 0)))).body;
    for s in &p.segments {
        body.extend_from_slice(&get(&weir.edge_url(&format!("/live/it/360p/{}", s.uri))).body);
    }
    let file = scratch_dir().join(format!("{what}-360p.mp4"));
    std::fs::write(&file, &body).unwrap();
    assert_decodes(&file, &format!("the 360p rendition transcoded from {what}"));
}

#[test]
fn hevc_goes_through_the_default_ladder() {
    check_ladder_from(&hevc_flv(), "hevc", 10.6);
}

#[test]
fn av1_goes_through_the_default_ladder() {
    check_ladder_from(&av1_flv(), "av1", 5.3);
}

/// The clip in AV1 (libsvtav1, 2 s GOPs); made once per run.
fn av1_flv() -> String {
    static MADE: OnceLock<String> = OnceLock::new();
    let video = ["-c:v", "libsvtav1", "-preset", "11", "-g", "50"];
    MADE.get_or_init(|| encode_with_ffmpeg9("av1.flv", 1, &video))
        .clone()
}

/// Publishes `flv` to `weir` with FFmpeg 9 and waits for the session to end.
pub(crate) fn publish_with_ffmpeg9(weir: &Weir, flv: &str) {
    let ff9 = ffmpeg9();
    let url = weir.publish_url(STREAM_KEY);
    let args = ["-v", "error", "-i", flv, "-c", "copy", "-f", "flv", &url];
    let (ok, err) = run(ff9.to_str().unwrap(), &args);
    assert!(ok, "FFmpeg 9 could not publish {flv}: {err}");
    wait_for("the session to end", Duration::from_secs(60), || {
        weir.log().contains("publisher session ended").then_some(())
    });
}

#[test]
fn av1_over_enhanced_rtmp_is_packaged_as_av01() {
    let dir = scratch_dir();
    let weir = Weir::serve("");
    publish_with_ffmpeg9(&weir, &av1_flv());
    let master = master_playlist(&weir.edge_url("/live/it/master.m3u8"));
    let codecs = master.variants[0].codecs.clone().unwrap();
    // libsvtav1 picks Main profile, 8 bits, Main tier and the level for 720p25 (3.1: 05).
    assert!(codecs.starts_with("av01.0.05M.08"), "{codecs}");
    let video = media_playlist(&weir.edge_url("/live/it/source/index.m3u8"));
    let mut body = get(&weir.edge_url(&format!("/live/it/source/{}", map_uri(&video, 0)))).body;
    for s in &video.segments {
        body.extend_from_slice(&get(&weir.edge_url(&format!("/live/it/source/{}", s.uri))).body);
    }
    let file = dir.join("av1-source.mp4");
    std::fs::write(&file, &body).unwrap();
    let path = file.display().to_string();
    assert_eq!(ffprobe_field(&path, "codec_tag_string"), "av01");
    assert_eq!(ffprobe_field(&path, "width"), "1280");
    assert_decodes(&file, "the AV1 rendition");
}
