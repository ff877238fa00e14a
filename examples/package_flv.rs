//! Packages an FLV file the way a live publisher would send it, and writes what the origin
//! would hold into a directory: `weir-package-flv IN.flv OUT_DIR`.

use std::time::{Duration, SystemTime};

use weir_ingest::{file_tags, parse_audio, parse_video, Tag};
use weir_packager::{Artifact, Packager, PackagerConfig, SessionId};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(input), Some(out_dir)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: package_flv IN.flv OUT_DIR");
    };
    let file = bytes::Bytes::from(std::fs::read(&input)?);
    let t0 = SystemTime::now();
    let mut packager = Packager::new(PackagerConfig::default());
    let mut out = Vec::new();
    packager.begin_session(SessionId::from_unix_millis(1, 0), t0, &mut out);
    for (kind, ts, body) in file_tags(&file) {
        let now = t0 + Duration::from_millis(u64::from(ts));
        let tag = match kind {
            8 => parse_audio(i64::from(ts), body),
            9 => parse_video(i64::from(ts), body),
            _ => continue,
        };
        match tag? {
            Tag::Config(info) => packager.track(
                weir_packager::passthrough_rendition(info.kind),
                info,
                now,
                &mut out,
            ),
            Tag::Frame(f) => packager.frame(
                &weir_packager::passthrough_rendition(f.track),
                f,
                now,
                &mut out,
            ),
            _ => {}
        }
    }
    packager.end_session(t0, &mut out);
    for a in out {
        let (path, data) = match a {
            Artifact::InitSegment {
                rendition,
                session,
                data,
            } => (format!("{rendition}/{session}/init.mp4"), data),
            Artifact::Segment {
                rendition,
                session,
                msn,
                data,
            } => (format!("{rendition}/{session}/{msn}.m4s"), data),
            Artifact::Part {
                rendition,
                session,
                msn,
                part,
                data,
            } => (format!("{rendition}/{session}/{msn}.{part}.m4s"), data),
            Artifact::MediaPlaylist {
                rendition,
                playlist,
            } => (format!("{rendition}/index.m3u8"), playlist.full),
            Artifact::MasterPlaylist { data } => ("master.m3u8".to_string(), data),
            _ => continue,
        };
        let path = std::path::Path::new(&out_dir).join(path);
        std::fs::create_dir_all(path.parent().unwrap_or(std::path::Path::new(".")))?;
        std::fs::write(path, data)?;
    }
    Ok(())
}
