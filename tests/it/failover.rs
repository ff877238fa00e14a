//! Redundant ingest: a primary and a backup encoder publish the same programme; weir
//! packages one and switches to the other when it fails, and back when it returns.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

const BACKUP_KEY: &str = "it-backup-key-0002";

/// The event's TOML: a backup key, failover after 1 s, failback after 3 s of health.
fn redundant_event() -> String {
    format!("backup_stream_key = \"{BACKUP_KEY}\"\nfailover_after_ms = 1000\nfailback_after_ms = 3000\n")
}

/// The media sequence number in a segment URI (`{session}/{msn}.m4s`).
fn msn_of(uri: &str) -> u64 {
    uri.rsplit('/')
        .next()
        .unwrap()
        .trim_end_matches(".m4s")
        .parse()
        .unwrap()
}

/// Reads a media playlist repeatedly and checks, every time, that what it lists only moves
/// forward: the newest media sequence number never goes back and nothing listed is renamed.
struct Watch {
    url: String,
    newest: u64,
    seen: Vec<(u64, String)>,
}

impl Watch {
    fn new(url: String) -> Watch {
        Watch {
            url,
            newest: 0,
            seen: Vec::new(),
        }
    }

    fn poll(&mut self) -> Option<m3u8_rs::MediaPlaylist> {
        let f = try_get(&self.url).ok()?;
        if f.status != 200 {
            return None;
        }
        let p = m3u8_rs::parse_media_playlist_res(&f.body).ok()?;
        for s in &p.segments {
            let msn = msn_of(&s.uri);
            match self.seen.iter().find(|(m, _)| *m == msn) {
                Some((_, uri)) => assert_eq!(uri, &s.uri, "segment {msn} was renamed"),
                None => self.seen.push((msn, s.uri.clone())),
            }
        }
        if let Some(last) = p.segments.last() {
            let msn = msn_of(&last.uri);
            assert!(
                msn >= self.newest,
                "the newest MSN went back from {} to {msn}",
                self.newest
            );
            self.newest = msn;
        }
        Some(p)
    }

    /// Waits until `f(playlist)` holds, polling.
    fn until(
        &mut self,
        what: &str,
        limit: Duration,
        f: impl Fn(&m3u8_rs::MediaPlaylist) -> bool,
    ) -> m3u8_rs::MediaPlaylist {
        wait_for(what, limit, || self.poll().filter(|p| f(p)))
    }
}

fn discontinuities(p: &m3u8_rs::MediaPlaylist) -> usize {
    p.segments.iter().filter(|s| s.discontinuity).count()
}

fn switches(weir: &Weir, to: &str, reason: &str) -> f64 {
    metric(
        weir,
        "weir_ingest_input_switches_total",
        &format!("event=\"it\",to=\"{to}\",reason=\"{reason}\""),
    )
}

/// Whether a segment is marked `EXT-X-GAP` (no media for its span; players skip it).
fn is_gap(s: &m3u8_rs::MediaSegment) -> bool {
    s.unknown_tags.iter().any(|t| t.tag == "X-GAP")
}

/// Asserts consecutive media sequence numbers and that every listed segment of both
/// renditions is fetchable through the edge (`EXT-X-GAP` segments are not loaded, RFC 8216bis
/// §4.4.4.7, and must not be marked in the video rendition, which leads).
fn assert_complete(weir: &Weir, video: &m3u8_rs::MediaPlaylist, discontinuities: usize) {
    assert_renditions_complete(weir, video, &["source", "audio"], discontinuities);
}

/// [`assert_complete`] for the named renditions (the first is the lead), each with
/// `discontinuities`.
fn assert_renditions_complete(
    weir: &Weir,
    lead: &m3u8_rs::MediaPlaylist,
    names: &[&str],
    discontinuities: usize,
) {
    let msns: Vec<u64> = lead.segments.iter().map(|s| msn_of(&s.uri)).collect();
    assert!(
        msns.windows(2).all(|w| w[1] == w[0] + 1),
        "media sequence numbers {msns:?}"
    );
    for name in names {
        let p = media_playlist(&weir.edge_url(&format!("/live/it/{name}/index.m3u8")));
        assert_eq!(
            p.segments.iter().filter(|s| s.discontinuity).count(),
            discontinuities,
            "{name}"
        );
        for s in &p.segments {
            if is_gap(s) {
                assert_eq!(*name, "audio", "{}", s.uri);
                continue;
            }
            let url = weir.edge_url(&format!("/live/it/{name}/{}", s.uri));
            let status = get(&url).status;
            if status != 200 {
                let text = get(&weir.origin_url(&format!("/live/it/{name}/index.m3u8"))).text();
                panic!("{url}: {status}\n{text}\n{}", weir.log());
            }
        }
    }
}

/// A running event with both encoders publishing, the primary packaged.
struct Redundant {
    weir: Weir,
    watch: Watch,
    file: std::path::PathBuf,
    primary: std::process::Child,
    backup: std::process::Child,
}

impl Redundant {
    /// Starts weir with `extra` TOML and the event in `ladder`, the primary encoder (RTMP),
    /// waits for two segments of `lead`, then starts the backup encoder (over SRT if
    /// `backup_srt`, else RTMP) and waits for it on standby.
    fn start(extra: &str, ladder: &str, lead: &str, backup_srt: bool) -> Redundant {
        let weir = Weir::serve_event(
            &format!("[packager]\nwindow_segments = 60\n{extra}"),
            ladder,
            &redundant_event(),
        );
        let file = flv(BBB, 9, true);
        let mut watch = Watch::new(weir.origin_url(&format!("/live/it/{lead}/index.m3u8")));
        let primary = publish(&file, &weir.publish_url(STREAM_KEY), true);
        watch.until(
            "two segments from the primary",
            Duration::from_secs(40),
            |p| p.segments.len() >= 2,
        );
        let backup = if backup_srt {
            let url = format!("srt://{}?streamid={BACKUP_KEY}", weir.srt.unwrap());
            Command::new("ffmpeg")
                .args(["-v", "error", "-nostdin", "-re", "-i"])
                .arg(&file)
                .args(["-c", "copy", "-f", "mpegts", &url])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("run ffmpeg")
        } else {
            publish(&file, &weir.publish_url(BACKUP_KEY), true)
        };
        wait_for("the backup on standby", Duration::from_secs(10), || {
            weir.log().contains("input=backup").then_some(())
        });
        Redundant {
            weir,
            watch,
            file,
            primary,
            backup,
        }
    }

    /// Waits for `n` more segments than are listed now; returns the playlist.
    fn more_segments(&mut self, n: usize) -> m3u8_rs::MediaPlaylist {
        let before = self.watch.poll().unwrap().segments.len();
        self.watch
            .until("more segments", Duration::from_secs(40), |p| {
                p.segments.len() >= before + n
            })
    }
}

impl Drop for Redundant {
    fn drop(&mut self) {
        for p in [&mut self.primary, &mut self.backup] {
            if matches!(p.try_wait(), Ok(None)) {
                // A stopped process only dies once it runs again.
                let _ = Command::new("kill")
                    .args(["-CONT", &p.id().to_string()])
                    .status();
            }
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

#[test]
fn a_killed_primary_fails_over_to_the_backup_and_is_taken_back() {
    let mut r = Redundant::start("", "passthrough", "source", false);
    let log = r.weir.log();
    assert!(
        log.contains("packaging input event=it input=primary"),
        "{log}"
    );

    // A second backup encoder with the same key is refused; the first keeps its place.
    let second = publish(&r.file, &r.weir.publish_url(BACKUP_KEY), true);
    let (ok, _) = finish(second, Duration::from_secs(20));
    assert!(!ok, "a second publisher on the backup key must be refused");

    // The primary dies: the backup takes over at once, after one discontinuity.
    r.primary.kill().unwrap();
    r.primary.wait().unwrap();
    wait_for("the failover", Duration::from_secs(10), || {
        (switches(&r.weir, "backup", "disconnected") == 1.0).then_some(())
    });
    let after = r.more_segments(3);
    assert_eq!(
        discontinuities(&after),
        1,
        "one discontinuity at the switch"
    );
    assert_complete(&r.weir, &after, 1);

    // The primary returns; after 3 s of health it is packaged again, at its keyframe.
    r.primary = publish(&r.file, &r.weir.publish_url(STREAM_KEY), true);
    wait_for("the failback", Duration::from_secs(30), || {
        (switches(&r.weir, "primary", "failback") == 1.0).then_some(())
    });
    assert!(r.weir.log().contains("input failback"));
    let back = r.more_segments(2);
    assert_eq!(
        discontinuities(&back),
        2,
        "one more discontinuity at the failback"
    );
    assert_complete(&r.weir, &back, 2);
    let active = |input: &str| {
        let labels = format!("event=\"it\",input=\"{input}\"");
        metric(&r.weir, "weir_ingest_active_input", &labels)
    };
    assert_eq!((active("primary"), active("backup")), (1.0, 0.0));

    // A player decodes the whole window, through both switches.
    let listed: f64 = back.segments.iter().map(|s| f64::from(s.duration)).sum();
    let (ok, stderr) = play_live(&r.weir.edge_url("/live/it/master.m3u8"), listed - 1.0);
    assert!(ok, "ffmpeg through the switches: {stderr}");
}

#[test]
fn a_stalled_primary_fails_over_to_an_srt_backup_after_failover_after_ms() {
    // The backup encoder sends over SRT: the switch crosses protocols (and timescales).
    let mut r = Redundant::start("", "passthrough", "source", true);

    // The primary's encoder freezes with its connection open (a hung encoder, a black-holed
    // route): weir notices the silence, not a disconnection.
    let pid = r.primary.id().to_string();
    let signal = |sig: &str| {
        let ok = Command::new("kill")
            .args([sig, pid.as_str()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    };
    signal("-STOP");
    wait_for("the failover", Duration::from_secs(10), || {
        (switches(&r.weir, "backup", "stalled") == 1.0).then_some(())
    });
    let log = r.weir.log();
    let line = log
        .lines()
        .find(|l| l.contains("the packaged encoder stalled"))
        .unwrap();
    let silent: u64 = line
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("silent_ms="))
        .unwrap()
        .parse()
        .unwrap();
    assert!((1_000..3_000).contains(&silent), "{line}");
    let after = r.more_segments(2);
    assert_eq!(discontinuities(&after), 1);
    assert_complete(&r.weir, &after, 1);

    // The frozen encoder wakes up (with a burst of stale media): it is on standby now, and
    // is only taken back after 3 s of health.
    signal("-CONT");
    wait_for("the failback", Duration::from_secs(30), || {
        (switches(&r.weir, "primary", "failback") == 1.0).then_some(())
    });
    let back = r.more_segments(2);
    assert_eq!(discontinuities(&back), 2);
    assert_complete(&r.weir, &back, 2);
}

#[test]
fn the_ladder_continues_through_a_failover() {
    let _slot = transcode_slot();
    let ladder = "[ladders.small]\n\
                  [[ladders.small.video]]\nname = \"360p\"\nwidth = 640\nheight = 360\nbitrate_kbps = 600\npreset = \"ultrafast\"\n\
                  [[ladders.small.video]]\nname = \"240p\"\nwidth = 426\nheight = 240\nbitrate_kbps = 300\npreset = \"ultrafast\"\n";
    let mut r = Redundant::start(ladder, "small", "360p", false);
    r.primary.kill().unwrap();
    r.primary.wait().unwrap();
    wait_for("the failover", Duration::from_secs(10), || {
        (switches(&r.weir, "backup", "disconnected") == 1.0).then_some(())
    });
    let after = r.more_segments(3);
    // Every rung and the audio continue after one discontinuity, with the same numbers.
    assert_renditions_complete(&r.weir, &after, &["360p", "240p", "audio"], 1);
    let listed: f64 = after.segments.iter().map(|s| f64::from(s.duration)).sum();
    let (ok, stderr) = play_live(&r.weir.edge_url("/live/it/master.m3u8"), listed - 1.0);
    assert!(ok, "ffmpeg through the switch: {stderr}");
}
