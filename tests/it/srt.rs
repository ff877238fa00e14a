//! SRT in, CMAF HLS out: three independent SRT implementations publish (ffmpeg's libsrt,
//! Debian's srt-live-transmit, GStreamer's srtsink), with and without a passphrase, through a
//! lossy link, and the callers weir must refuse are refused during the handshake.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::support::*;

const PASSPHRASE: &str = "it-srt-passphrase-01";

/// Three more passthrough events besides `it`: `ff` and `gst` need [`PASSPHRASE`].
fn events() -> String {
    let event = |id: &str, pass: bool| {
        let pass = if pass {
            format!("srt_passphrase = \"{PASSPHRASE}\"\n")
        } else {
            String::new()
        };
        format!("[[events]]\nid = \"{id}\"\nstream_key = \"{id}-srt-key-0001\"\nladder = \"passthrough\"\n{pass}")
    };
    format!(
        "{}{}{}",
        event("ff", true),
        event("slt", false),
        event("gst", true)
    )
}

/// The 2 s GOP clip (two plays, 10.6 s) as MPEG-TS, made once per run.
fn ts_file() -> PathBuf {
    static MADE: OnceLock<PathBuf> = OnceLock::new();
    MADE.get_or_init(|| {
        let out = scratch_dir().join("bbb-gop2.ts");
        let flv = flv(BBB, 2, true).display().to_string();
        let path = out.display().to_string();
        let (ok, err) = run(
            "ffmpeg",
            &[
                "-v", "error", "-y", "-i", &flv, "-c", "copy", "-f", "mpegts", &path,
            ],
        );
        assert!(ok, "making the TS: {err}");
        out
    })
    .clone()
}

fn srt_addr(weir: &Weir) -> SocketAddr {
    weir.srt.expect("weir serve reports its srt address")
}

/// `ffmpeg -re` sending the TS to `url` over SRT.
fn ffmpeg_srt(url: &str) -> Child {
    Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-re", "-i"])
        .arg(ts_file())
        .args(["-c", "copy", "-f", "mpegts", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ffmpeg")
}

/// srt-live-transmit fed the TS in real time by ffmpeg on its stdin.
fn srt_live_transmit(url: &str) -> (Child, Child) {
    let mut feeder = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-re", "-i"])
        .arg(ts_file())
        .args(["-c", "copy", "-f", "mpegts", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run ffmpeg");
    let stdin = feeder.stdout.take().unwrap();
    let slt = Command::new("srt-live-transmit")
        .args(["-q", "file://con", url])
        .stdin(stdin)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run srt-live-transmit (scripts/setup.sh installs srt-tools)");
    (feeder, slt)
}

/// GStreamer's srtsink sending the TS, paced by its PCR (tsparse set-timestamps).
fn gstreamer(addr: SocketAddr, stream_id: &str, passphrase: &str) -> Child {
    Command::new("gst-launch-1.0")
        .arg("-q")
        .arg("filesrc")
        .arg(format!("location={}", ts_file().display()))
        .args([
            "!",
            "tsparse",
            "set-timestamps=true",
            "alignment=7",
            "!",
            "srtsink",
        ])
        .arg(format!("uri=srt://{addr}"))
        .arg(format!("streamid={stream_id}"))
        .arg(format!("passphrase={passphrase}"))
        .arg("pbkeylen=32")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run gst-launch-1.0 (scripts/setup.sh installs GStreamer)")
}

/// Waits for the whole published TS to be listed for `event` (a final segment after the
/// publisher left), then fetches every object through the edge and decodes each rendition
/// with ffmpeg; returns the video playlist.
fn check_event(weir: &Weir, event: &str) -> m3u8_rs::MediaPlaylist {
    let url = weir.origin_url(&format!("/live/{event}/source/index.m3u8"));
    let published = 10.0; // two plays of the 5.3 s clip, less a GOP-boundary margin
    let video = wait_for(
        &format!("{event}: all segments"),
        Duration::from_secs(60),
        || {
            let p = try_get(&url).ok()?;
            let p = m3u8_rs::parse_media_playlist_res(&p.body).ok()?;
            let listed: f64 = p.segments.iter().map(|s| f64::from(s.duration)).sum();
            (listed >= published
                && weir
                    .log()
                    .contains(&format!("publisher session ended event={event}")))
            .then_some(p)
        },
    );
    let master = master_playlist(&weir.edge_url(&format!("/live/{event}/master.m3u8")));
    let codecs = master.variants[0].codecs.clone().unwrap();
    assert!(
        codecs.starts_with("avc1.64") && codecs.contains("mp4a.40.2"),
        "{codecs}"
    );
    let dir = scratch_dir();
    for rendition in ["source", "audio"] {
        let p = media_playlist(&weir.edge_url(&format!("/live/{event}/{rendition}/index.m3u8")));
        assert_eq!(p.media_sequence, video.media_sequence, "one MSN per cut");
        assert!(p
            .segments
            .iter()
            .all(|s| f64::from(s.duration) <= p.target_duration as f64 + 0.5));
        let base = format!("/live/{event}/{rendition}/");
        let mut body = get(&weir.edge_url(&format!("{base}{}", map_uri(&p, 0)))).body;
        for s in &p.segments {
            let seg = get(&weir.edge_url(&format!("{base}{}", s.uri)));
            assert_eq!(seg.status, 200, "{event} {rendition} {}", s.uri);
            body.extend_from_slice(&seg.body);
        }
        let file = dir.join(format!("{event}-{rendition}.mp4"));
        std::fs::write(&file, &body).unwrap();
        assert_decodes(&file, &format!("{event} {rendition} over SRT"));
    }
    // Whatever SRT lost, it recovered: the demuxer saw no continuity gap.
    let gaps = "reason=\"packets_lost\"";
    assert_eq!(metric(weir, "weir_ingest_ts_problems_total", gaps), 0.0);
    video
}

/// Waits (bounded) for a publisher to exit; returns (success, stderr).
fn wait_exit(mut child: Child, what: &str) -> (bool, String) {
    let status = wait_for(what, Duration::from_secs(60), || child.try_wait().unwrap());
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    (status.success(), err)
}

#[test]
fn three_srt_implementations_publish_with_and_without_passphrase() {
    let weir = Weir::serve(&events());
    let addr = srt_addr(&weir);
    let ff = ffmpeg_srt(&format!(
        "srt://{addr}?streamid=#!::r=live/ff-srt-key-0001,m=publish&passphrase={PASSPHRASE}"
    ));
    let (feeder, mut slt) = srt_live_transmit(&format!("srt://{addr}?streamid=slt-srt-key-0001"));
    let gst = gstreamer(addr, "#!::r=live/gst-srt-key-0001,m=publish", PASSPHRASE);
    for (child, what) in [
        (ff, "ffmpeg"),
        (feeder, "the TS feeder"),
        (gst, "gstreamer"),
    ] {
        let (ok, err) = wait_exit(child, what);
        assert!(ok, "{what} failed to publish over SRT: {err}");
    }
    // srt-live-transmit keeps its connection open after its input ends: once its last
    // complete GOP is listed, it is stopped.
    let slt_url = weir.origin_url("/live/slt/source/index.m3u8");
    wait_for(
        "srt-live-transmit's stream",
        Duration::from_secs(30),
        || {
            let p = m3u8_rs::parse_media_playlist_res(&try_get(&slt_url).ok()?.body).ok()?;
            (p.segments
                .iter()
                .map(|s| f64::from(s.duration))
                .sum::<f64>()
                >= 9.9)
                .then_some(())
        },
    );
    let _ = slt.kill();
    let _ = slt.wait();
    for event in ["ff", "slt", "gst"] {
        check_event(&weir, event);
        let received = metric(
            &weir,
            "weir_srt_packets_received_total",
            &format!("event=\"{event}\""),
        );
        assert!(
            received > 1_000.0,
            "{event}: {received} SRT packets counted"
        );
    }
}

#[test]
fn refused_callers_are_refused_during_the_handshake() {
    let weir = Weir::serve(&events());
    let addr = srt_addr(&weir);
    // (url, the reason weir counts); None: libsrt refuses it in the handshake's encryption
    // step (UNSECURE or BADSECRET), after weir's admission.
    let cases = [
        (
            format!("srt://{addr}?streamid=#!::r=live/no-such-key-0001,m=publish"),
            Some("unknown stream key"),
        ),
        (
            format!("srt://{addr}?streamid=#!::r=live/{STREAM_KEY},m=request"),
            Some("not a publisher"),
        ),
        (
            format!("srt://{addr}?streamid=#!::r=nope/{STREAM_KEY}"),
            Some("app"),
        ),
        (
            format!("srt://{addr}?streamid=#!::m=publish"),
            Some("bad streamid"),
        ),
        // No passphrase for an event that requires one; one for an event that has none
        // (with and without announcing its key length); a wrong one.
        (format!("srt://{addr}?streamid=ff-srt-key-0001"), None),
        (
            format!("srt://{addr}?streamid={STREAM_KEY}&passphrase={PASSPHRASE}"),
            None,
        ),
        (
            format!("srt://{addr}?streamid={STREAM_KEY}&passphrase={PASSPHRASE}&pbkeylen=32"),
            None,
        ),
        (
            format!("srt://{addr}?streamid=ff-srt-key-0001&passphrase=not-the-passphrase"),
            None,
        ),
    ];
    for (url, reason) in &cases {
        let (ok, _) = wait_exit(ffmpeg_srt(url), "a refused ffmpeg");
        assert!(!ok, "{url}: ffmpeg published");
        if let Some(reason) = reason {
            let counted = metric(
                &weir,
                "weir_ingest_rejected_total",
                &format!("reason=\"{reason}\""),
            );
            assert!(counted >= 1.0, "{reason} not counted\n{}", weir.log());
        }
    }
    assert!(!weir.log().contains("publisher accepted"), "{}", weir.log());
    // Garbage datagrams are ignored.
    let garbage = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..200u32 {
        let datagram: Vec<u8> = (0..(i % 90) * 16).map(|b| (b * 31 + i) as u8).collect();
        garbage.send_to(&datagram, addr).unwrap();
    }
    // The listener still takes a good publisher afterwards.
    let (ok, err) = wait_exit(
        ffmpeg_srt(&format!(
            "srt://{addr}?streamid=#!::r=live/{STREAM_KEY},m=publish"
        )),
        "ffmpeg",
    );
    assert!(ok, "{err}");
    check_event(&weir, "it");
}

/// A UDP relay between an SRT caller and weir that drops `loss` of the caller's packets
/// (after the first 20, so the handshake is not slowed); weir's answers all pass.
struct LossyRelay {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl LossyRelay {
    fn start(to: SocketAddr, loss: f64) -> LossyRelay {
        let outside = UdpSocket::bind("127.0.0.1:0").unwrap();
        let inside = UdpSocket::bind("127.0.0.1:0").unwrap();
        inside.connect(to).unwrap();
        let addr = outside.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let caller: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        for forward in [true, false] {
            let (outside, inside) = (outside.try_clone().unwrap(), inside.try_clone().unwrap());
            let (stop, caller) = (stop.clone(), caller.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
                let mut n = 0u64;
                let timeout = Some(Duration::from_millis(100));
                outside.set_read_timeout(timeout).unwrap();
                inside.set_read_timeout(timeout).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    if forward {
                        let Ok((len, from)) = outside.recv_from(&mut buf) else {
                            continue;
                        };
                        *caller.lock().unwrap() = Some(from);
                        n += 1;
                        // xorshift: a fixed pseudo-random loss pattern.
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        if n > 20 && (seed % 10_000) as f64 / 10_000.0 < loss {
                            continue;
                        }
                        let _ = inside.send(&buf[..len]);
                    } else {
                        let Ok(len) = inside.recv(&mut buf) else {
                            continue;
                        };
                        if let Some(c) = *caller.lock().unwrap() {
                            let _ = outside.send_to(&buf[..len], c);
                        }
                    }
                }
            });
        }
        LossyRelay { addr, stop }
    }
}

impl Drop for LossyRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn five_percent_loss_is_recovered_at_200_ms_latency() {
    // Loss recovery runs against the clock (200 ms of latency): not beside a CPU-heavy test.
    let _slot = transcode_slot();
    let weir = Weir::serve("[srt]\nlatency_ms = 200\n");
    let relay = LossyRelay::start(srt_addr(&weir), 0.05);
    let url = format!(
        "srt://{}?streamid=#!::r=live/{STREAM_KEY},m=publish&latency=200000",
        relay.addr
    );
    let (ok, err) = wait_exit(ffmpeg_srt(&url), "ffmpeg through the lossy relay");
    assert!(ok, "{err}");
    let video = check_event(&weir, "it");
    let label = "event=\"it\"";
    let lost = metric(&weir, "weir_srt_packets_lost_total", label);
    let retransmitted = metric(&weir, "weir_srt_packets_retransmitted_total", label);
    let dropped = metric(&weir, "weir_srt_packets_dropped_total", label);
    assert!(
        lost > 0.0 && retransmitted > 0.0,
        "lost {lost}, retransmitted {retransmitted}"
    );
    assert_eq!(dropped, 0.0, "packets came too late to play");
    // No gap: one session, segments back to back from the first keyframe on.
    assert!(video.segments.iter().skip(1).all(|s| !s.discontinuity));
    drop(relay);
}

#[test]
fn hevc_over_srt_is_packaged_as_hvc1() {
    // Debian's ffmpeg encodes HEVC (libx265, 2 s GOPs) into MPEG-TS and sends it over SRT.
    // `linger`: libsrt's live-mode default (0) drops what the sender still holds when it
    // closes, e.g. the frames x265 flushes at the end; with it, every frame must arrive.
    let weir = Weir::serve("");
    let url = format!(
        "srt://{}?streamid=#!::r=live/{STREAM_KEY},m=publish&linger=5",
        srt_addr(&weir)
    );
    let clip = media(BBB).display().to_string();
    let mut args = vec!["-v", "error", "-re", "-i", &clip];
    args.extend_from_slice(&X265_2S_GOP);
    args.extend_from_slice(&["-c:a", "copy", "-f", "mpegts", &url]);
    let (ok, err) = run("ffmpeg", &args);
    assert!(ok, "ffmpeg could not publish HEVC over SRT: {err}");
    wait_for("the session to end", Duration::from_secs(30), || {
        weir.log().contains("publisher session ended").then_some(())
    });
    let master = master_playlist(&weir.edge_url("/live/it/master.m3u8"));
    let codecs = master.variants[0].codecs.clone().unwrap();
    assert!(codecs.starts_with("hvc1.1.6.L93"), "{codecs}");
    let video = media_playlist(&weir.edge_url("/live/it/source/index.m3u8"));
    let listed: f64 = video.segments.iter().map(|s| f64::from(s.duration)).sum();
    // The clip is 5.28 s of video at 25 fps; every frame is listed.
    assert!((listed - 5.28).abs() < 0.001, "{listed} s listed");
    let mut body = get(&weir.edge_url(&format!("/live/it/source/{}", map_uri(&video, 0)))).body;
    for s in &video.segments {
        body.extend_from_slice(&get(&weir.edge_url(&format!("/live/it/source/{}", s.uri))).body);
    }
    let file = scratch_dir().join("srt-hevc.mp4");
    std::fs::write(&file, &body).unwrap();
    assert_decodes(&file, "HEVC received over SRT");
    let (ok, probe) = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_entries",
            "stream=codec_tag_string",
            &file.display().to_string(),
        ],
    );
    assert!(ok && probe.is_empty(), "{probe}");
}
