//! Shared helpers: start real `weir` processes on ephemeral loopback ports, publish with the
//! `ffmpeg` CLI, fetch over HTTP, read CMAF boxes. Every wait has a deadline.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub(crate) const BBB: &str = "bigbuckbunny.mp4";
pub(crate) const BIKES: &str = "bikes.mp4";
pub(crate) const STREAM_KEY: &str = "it-stream-key-0001";
/// ffmpeg video arguments for HEVC with 2 s GOPs at 25 fps (libx265, fast and quiet).
pub(crate) const X265_2S_GOP: [&str; 6] = [
    "-c:v",
    "libx265",
    "-preset",
    "ultrafast",
    "-x265-params",
    "log-level=error:keyint=50:min-keyint=50:scenecut=0",
];

pub(crate) fn media(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/media")
        .join(name)
}

/// A new, empty directory under this test process's scratch root (`$TMPDIR/weir-it-PID/N`).
///
/// Test binaries have no teardown, so the root outlives the run: the first call in a process
/// removes the roots of test processes that are no longer running (each run cleans up after
/// the previous one, and at most one run's files stay on disk).
pub(crate) fn scratch_dir() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    let root = ROOT.get_or_init(|| {
        remove_dead_scratch_roots();
        std::env::temp_dir().join(format!("weir-it-{}", std::process::id()))
    });
    let dir = root.join(N.fetch_add(1, Ordering::Relaxed).to_string());
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Removes `$TMPDIR/weir-it-PID` (and the older `weir-it-PID-N`) of processes that have exited.
fn remove_dead_scratch_roots() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("weir-it-")) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or_default();
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Waits for `f` to give `Some`, polling every 50 ms, for at most `limit`.
pub(crate) fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running `weir` process; killed on drop.
pub(crate) struct Weir {
    child: Child,
    args: Vec<String>,
    pub(crate) rtmp: Option<SocketAddr>,
    pub(crate) srt: Option<SocketAddr>,
    pub(crate) origin: Option<SocketAddr>,
    pub(crate) edge: SocketAddr,
    /// `/metrics` of a standalone edge started with `--metrics-listen`.
    pub(crate) metrics: Option<SocketAddr>,
    log: Arc<Mutex<String>>,
}

/// Starts `weir` with `args` and waits for its ready line.
pub(crate) fn spawn(args: &[String]) -> Weir {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start weir");
    let log = Arc::new(Mutex::new(String::new()));
    let stderr = child.stderr.take().unwrap();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut l = sink.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read weir's ready line");
    assert!(
        line.starts_with("weir ready"),
        "weir did not start: {line:?} {}",
        log.lock().unwrap()
    );
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let addrs: HashMap<&str, SocketAddr> = line
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
        .collect();
    Weir {
        child,
        args: args.to_vec(),
        rtmp: addrs.get("rtmp").copied(),
        srt: addrs.get("srt").copied(),
        origin: addrs.get("origin").copied(),
        edge: addrs["edge"],
        metrics: addrs.get("metrics").copied(),
        log,
    }
}

impl Weir {
    /// `weir serve` with one passthrough event `it` (stream key [`STREAM_KEY`]) and `extra`
    /// TOML.
    pub(crate) fn serve(extra: &str) -> Weir {
        Weir::serve_ladder(extra, "passthrough")
    }

    /// `weir serve` with one event `it` (stream key [`STREAM_KEY`]) published in `ladder`,
    /// and `extra` TOML.
    pub(crate) fn serve_ladder(extra: &str, ladder: &str) -> Weir {
        Weir::serve_event(extra, ladder, "")
    }

    /// `weir serve` with one event `it` (stream key [`STREAM_KEY`]) published in `ladder`,
    /// with `event` TOML added to its `[[events]]` table and `extra` TOML before it.
    pub(crate) fn serve_event(extra: &str, ladder: &str, event: &str) -> Weir {
        let dir = scratch_dir();
        let config = dir.join("weir.toml");
        std::fs::write(
            &config,
            format!(
                "{extra}\n[[events]]\nid = \"it\"\nstream_key = \"{STREAM_KEY}\"\nladder = \"{ladder}\"\n{event}\n"
            ),
        )
        .unwrap();
        let any = "127.0.0.1:0".to_string();
        spawn(&[
            "serve".into(),
            "--config".into(),
            config.display().to_string(),
            "--rtmp-listen".into(),
            any.clone(),
            "--origin-listen".into(),
            any.clone(),
            "--edge-listen".into(),
            any.clone(),
            "--srt-listen".into(),
            any,
        ])
    }

    /// `weir edge` in front of `upstream`.
    pub(crate) fn edge(upstream: &str, timeout_ms: u64) -> Weir {
        spawn(&[
            "edge".into(),
            "--upstream".into(),
            upstream.into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--upstream-timeout-ms".into(),
            timeout_ms.to_string(),
        ])
    }

    pub(crate) fn publish_url(&self, key: &str) -> String {
        format!("rtmp://{}/live/{key}", self.rtmp.unwrap())
    }

    pub(crate) fn edge_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.edge)
    }

    pub(crate) fn origin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.origin.unwrap())
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (a graceful stop).
    pub(crate) fn terminate(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -TERM");
    }

    /// Waits for weir to exit by itself: its exit status, or None if it is still running
    /// after `limit`.
    pub(crate) fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for weir") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The `--config` file weir was started with.
    pub(crate) fn config_path(&self) -> PathBuf {
        let at = self
            .args
            .iter()
            .position(|a| a == "--config")
            .expect("started with --config");
        PathBuf::from(&self.args[at + 1])
    }

    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Stops weir and starts it again with the same arguments (new ephemeral ports, the
    /// same configuration file and data directory).
    pub(crate) fn restart(&mut self) {
        self.kill();
        let args = self.args.clone();
        *self = spawn(&args);
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Weir {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Held by tests that transcode, run a browser or otherwise keep a core busy for long
/// (schemathesis, a PostgreSQL server), so that two of them do not share the 2 cores at once
/// (a low-latency player has about a second of buffer).
pub(crate) fn transcode_slot() -> std::sync::MutexGuard<'static, ()> {
    static SLOT: Mutex<()> = Mutex::new(());
    SLOT.lock().unwrap_or_else(|e| e.into_inner())
}

/// An FLV made once per test run from a bundled clip: `loops` plays, copied or re-encoded
/// with a 2 s GOP (as OBS sends by default).
pub(crate) fn flv(clip: &str, loops: u32, reencode: bool) -> PathBuf {
    static MADE: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let key = format!("{clip}-{loops}-{reencode}");
    let mut made = MADE.get_or_init(Default::default).lock().unwrap();
    if let Some(p) = made.get(&key) {
        return p.clone();
    }
    let out = scratch_dir().join(format!("{key}.flv"));
    let mut args: Vec<String> = vec![
        "-v".into(),
        "error".into(),
        "-y".into(),
        "-stream_loop".into(),
        (loops - 1).to_string(),
    ];
    args.extend(["-i".into(), media(clip).display().to_string()]);
    if reencode {
        args.extend("-c:v libx264 -preset veryfast -g 50 -keyint_min 50 -sc_threshold 0 -b:v 2500k -c:a aac -b:a 128k".split(' ').map(String::from));
    } else {
        args.extend(["-c".into(), "copy".into()]);
    }
    args.extend(["-f".into(), "flv".into(), out.display().to_string()]);
    let status = Command::new("ffmpeg")
        .args(&args)
        .status()
        .expect("run ffmpeg");
    assert!(status.success(), "ffmpeg could not make {key}");
    made.insert(key, out.clone());
    out
}

/// Publishes `file` over RTMP with `ffmpeg -c copy`, as fast as it reads (`realtime`: `-re`).
pub(crate) fn publish(file: &Path, url: &str, realtime: bool) -> Child {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error", "-nostdin"]);
    if realtime {
        cmd.arg("-re");
    }
    cmd.arg("-i")
        .arg(file)
        .args(["-c", "copy", "-f", "flv", url]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ffmpeg")
}

/// Waits for a publishing ffmpeg to exit; returns (success, stderr).
pub(crate) fn finish(mut child: Child, limit: Duration) -> (bool, String) {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            return (status.success(), err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ffmpeg did not finish in {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) struct Fetched {
    pub(crate) status: u16,
    pub(crate) headers: HashMap<String, String>,
    pub(crate) body: Vec<u8>,
}

impl Fetched {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// The body of `r` decoded from its `Content-Encoding` (gzip, br, or none).
pub(crate) fn decoded(r: &Fetched) -> Vec<u8> {
    let mut out = Vec::new();
    match r.header("content-encoding") {
        None => out.clone_from(&r.body),
        Some("gzip") => {
            flate2::read::GzDecoder::new(&r.body[..])
                .read_to_end(&mut out)
                .expect("gzip body decodes");
        }
        Some("br") => {
            brotli::Decompressor::new(&r.body[..], 4096)
                .read_to_end(&mut out)
                .expect("br body decodes");
        }
        Some(other) => panic!("unexpected content-encoding {other}"),
    }
    out
}

pub(crate) fn agent() -> ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT
        .get_or_init(|| {
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(20)))
                .build()
                .into()
        })
        .clone()
}

pub(crate) fn get(url: &str) -> Fetched {
    try_get(url).unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

pub(crate) fn try_get(url: &str) -> Result<Fetched, ureq::Error> {
    try_get_with(url, &[])
}

/// A GET of `url` with extra request `headers`.
pub(crate) fn get_with(url: &str, headers: &[(&str, &str)]) -> Fetched {
    try_get_with(url, headers).unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

fn try_get_with(url: &str, headers: &[(&str, &str)]) -> Result<Fetched, ureq::Error> {
    let mut request = agent().get(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let mut r = request.call()?;
    let headers = r
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let status = r.status().as_u16();
    let body = r
        .body_mut()
        .with_config()
        .limit(256 * 1024 * 1024)
        .read_to_vec()?;
    Ok(Fetched {
        status,
        headers,
        body,
    })
}

/// Publishes the BBB clip once (as fast as it goes) to `weir`'s event `it` and returns the
/// edge URL of its first segment.
pub(crate) fn publish_once_first_segment(weir: &Weir) -> String {
    let (ok, err) = finish(
        publish(&flv(BBB, 1, true), &weir.publish_url(STREAM_KEY), false),
        Duration::from_secs(60),
    );
    assert!(ok, "{err}");
    let playlist = media_playlist(&weir.edge_url("/live/it/source/index.m3u8"));
    weir.edge_url(&format!("/live/it/source/{}", playlist.segments[0].uri))
}

/// The media playlist at `url`, parsed with m3u8-rs.
pub(crate) fn media_playlist(url: &str) -> m3u8_rs::MediaPlaylist {
    let f = get(url);
    assert_eq!(f.status, 200, "GET {url}");
    match m3u8_rs::parse_playlist_res(&f.body) {
        Ok(m3u8_rs::Playlist::MediaPlaylist(p)) => p,
        other => panic!("not a media playlist at {url}: {other:?}"),
    }
}

pub(crate) fn master_playlist(url: &str) -> m3u8_rs::MasterPlaylist {
    let f = get(url);
    assert_eq!(f.status, 200, "GET {url}");
    match m3u8_rs::parse_playlist_res(&f.body) {
        Ok(m3u8_rs::Playlist::MasterPlaylist(p)) => p,
        other => panic!("not a master playlist at {url}: {other:?}"),
    }
}

/// What a CMAF segment's first `traf` says: `tfdt`, the sum of its samples' durations over
/// all fragments, and the first sample's flags.
#[derive(Debug)]
pub(crate) struct SegmentTiming {
    pub(crate) tfdt: u64,
    pub(crate) duration: u64,
    pub(crate) first_sample_flags: u32,
    /// The first sample's composition offset (`trun` v1, signed), ticks.
    pub(crate) first_composition_offset: i64,
}

fn boxes(data: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= data.len() {
        let size = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        assert!(
            size >= 8 && at + size <= data.len(),
            "malformed box at {at}"
        );
        out.push((&data[at + 4..at + 8], &data[at + 8..at + size]));
        at += size;
    }
    out
}

pub(crate) fn segment_timing(segment: &[u8]) -> SegmentTiming {
    let mut tfdt = None;
    let mut duration = 0u64;
    let mut first_flags = None;
    let mut first_cts = None;
    for (kind, moof) in boxes(segment) {
        if kind != b"moof" {
            continue;
        }
        for (kind, traf) in boxes(moof) {
            if kind != b"traf" {
                continue;
            }
            for (kind, body) in boxes(traf) {
                match kind {
                    b"tfdt" => {
                        let v = if body[0] == 1 {
                            u64::from_be_bytes(body[4..12].try_into().unwrap())
                        } else {
                            u64::from(u32::from_be_bytes(body[4..8].try_into().unwrap()))
                        };
                        tfdt.get_or_insert(v);
                    }
                    b"trun" => {
                        let flags = u32::from_be_bytes(body[0..4].try_into().unwrap()) & 0xff_ffff;
                        let count = u32::from_be_bytes(body[4..8].try_into().unwrap()) as usize;
                        let mut at = 8
                            + if flags & 1 != 0 { 4 } else { 0 }
                            + if flags & 4 != 0 { 4 } else { 0 };
                        for i in 0..count {
                            let mut field = |bit: u32| {
                                if flags & bit != 0 {
                                    let v =
                                        u32::from_be_bytes(body[at..at + 4].try_into().unwrap());
                                    at += 4;
                                    Some(v)
                                } else {
                                    None
                                }
                            };
                            let d = field(0x100);
                            let _size = field(0x200);
                            let f = field(0x400);
                            let cts = field(0x800);
                            duration += u64::from(d.expect("weir writes per-sample durations"));
                            if i == 0 && first_flags.is_none() {
                                first_flags = f;
                                first_cts = cts.map(|c| i64::from(c as i32));
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    SegmentTiming {
        tfdt: tfdt.expect("segment has a tfdt"),
        duration,
        first_sample_flags: first_flags.unwrap_or(0),
        first_composition_offset: first_cts.unwrap_or(0),
    }
}

/// The `timescale` of the `mdhd` in an init segment.
pub(crate) fn init_timescale(init: &[u8]) -> u32 {
    let at = init.windows(4).position(|w| w == b"mdhd").expect("mdhd");
    u32::from_be_bytes(init[at + 16..at + 20].try_into().unwrap())
}

/// Runs ffmpeg/ffprobe with `args`; returns (success, stderr).
pub(crate) fn run(tool: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run tool");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `EXT-X-MAP` URI in force at segment `index` of `playlist` (weir writes one at the
/// first segment and at every new session).
pub(crate) fn map_uri(playlist: &m3u8_rs::MediaPlaylist, index: usize) -> String {
    let map = playlist.segments[index].map.as_ref();
    map.unwrap_or_else(|| panic!("no EXT-X-MAP at segment {index}"))
        .uri
        .clone()
}

/// Plays `url` (a live master playlist) from its first listed segment for `seconds` of media
/// with the ffmpeg CLI, as a player would; returns (success, stderr at `-v error`).
pub(crate) fn play_live(url: &str, seconds: f64) -> (bool, String) {
    let duration = format!("{seconds:.1}");
    run(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-nostdin",
            "-live_start_index",
            "0",
            "-i",
            url,
            "-t",
            &duration,
            "-f",
            "null",
            "-",
        ],
    )
}

/// Asserts that ffmpeg decodes `file` from start to end without a single error message.
pub(crate) fn assert_decodes(file: &Path, what: &str) {
    let path = file.display().to_string();
    let (ok, err) = run(
        "ffmpeg",
        &["-nostdin", "-v", "error", "-i", &path, "-f", "null", "-"],
    );
    assert!(
        ok && err.trim().is_empty(),
        "{what} does not decode cleanly: {err}"
    );
}

/// Video frame timestamps (ms) of an FLV file, in file order.
pub(crate) fn flv_video_timestamps(file: &Path) -> Vec<u32> {
    let data = bytes::Bytes::from(std::fs::read(file).unwrap());
    weir_ingest::file_tags(&data)
        .filter(|(kind, _, body)| *kind == 9 && body.len() > 5 && body[1] == 1)
        .map(|(_, ts, _)| ts)
        .collect()
}

/// Writes an FLV file of `tags` (kind, timestamp ms, body), as `file_tags` reads them.
pub(crate) fn write_flv(path: &Path, tags: &[(u8, u32, bytes::Bytes)]) {
    let mut out = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
    for (kind, ts, body) in tags {
        let size = body.len() as u32;
        out.push(*kind);
        out.extend_from_slice(&size.to_be_bytes()[1..]);
        out.extend_from_slice(&ts.to_be_bytes()[1..]);
        out.push((ts >> 24) as u8);
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(body);
        out.extend_from_slice(&(size + 11).to_be_bytes());
    }
    std::fs::write(path, out).unwrap();
}

/// The value of the Prometheus sample `name{labels}` in `weir`'s `/metrics` (0 if absent).
/// `labels` is the exact label text, e.g. `kind="playlist",status="200"`.
pub(crate) fn metric(weir: &Weir, name: &str, labels: &str) -> f64 {
    // A standalone edge serves them on its metrics listener, `weir serve` on the origin's.
    let addr = weir.metrics.or(weir.origin).expect("a /metrics listener");
    let text = get(&format!("http://{addr}/metrics")).text();
    let series = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    text.lines()
        .filter_map(|l| l.strip_prefix(&series))
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .sum()
}

/// `n` concurrent GETs of `url` with the curl CLI (HTTP/1.1, one connection each); the
/// status of each, in order. `max_secs` bounds every transfer.
pub(crate) fn curl_many(url: &str, n: usize, max_secs: f64) -> Vec<u16> {
    let mut children = Vec::new();
    // curl runs at most 300 transfers in parallel: split into processes of 250.
    for chunk in (0..n).collect::<Vec<_>>().chunks(250) {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "--no-progress-meter", "-Z", "--parallel-immediate"]);
        cmd.args(["--parallel-max", "250"]).stderr(Stdio::null());
        cmd.args(["-m", &format!("{max_secs}"), "-w", "%{http_code}\n"]);
        for _ in chunk {
            cmd.args(["-o", "/dev/null", url]);
        }
        children.push(cmd.stdout(Stdio::piped()).spawn().expect("run curl"));
    }
    children
        .into_iter()
        .flat_map(|c| {
            let out = c.wait_with_output().unwrap();
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| l.trim().parse::<u16>().unwrap_or(0))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The live edge of an LL-HLS media playlist: the last listed part (msn, part) and the
/// preload hint URI.
pub(crate) fn last_part(text: &str) -> Option<(u64, u32, String)> {
    let hint = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\""))?
        .trim_end_matches('"')
        .to_string();
    let uri = text
        .lines()
        .filter_map(|l| l.strip_prefix("#EXT-X-PART:"))
        .next_back()?;
    let uri = uri.split("URI=\"").nth(1)?.split('"').next()?;
    let file = uri.rsplit('/').next()?.trim_end_matches(".m4s");
    let (msn, part) = file.split_once('.')?;
    Some((msn.parse().ok()?, part.parse().ok()?, hint))
}

/// Publishes FLV `tags` (kind 8/9, RTMP timestamp in ms, body) to weir's RTMP listener at
/// `addr` with rml_rtmp's client session, as fast as the socket takes them, with exactly the
/// timestamps given (ffmpeg's FLV muxer cannot send timestamps past 2^31 ms).
/// Whether the peer (weir) closed `s` within 20 s: EOF or a reset, reading and discarding
/// what it sends meanwhile.
pub(crate) fn closed_by_peer(s: &mut std::net::TcpStream) -> bool {
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )
            }
        }
    }
}

/// Connects to weir's RTMP listener at `addr` and completes the RTMP handshake (as a
/// client, with rml_rtmp); the stream and any bytes read past the handshake.
pub(crate) fn rtmp_handshake(addr: SocketAddr) -> (std::net::TcpStream, Vec<u8>) {
    use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
    use std::io::Write;

    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut handshake = Handshake::new(PeerType::Client);
    stream
        .write_all(&handshake.generate_outbound_p0_and_p1().unwrap())
        .unwrap();
    let mut buf = vec![0u8; 16 * 1024];
    let leftover = loop {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "weir closed the connection during the handshake");
        match handshake.process_bytes(&buf[..n]).unwrap() {
            HandshakeProcessResult::InProgress { response_bytes } => {
                stream.write_all(&response_bytes).unwrap()
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                stream.write_all(&response_bytes).unwrap();
                break remaining_bytes;
            }
        }
    };
    (stream, leftover)
}

pub(crate) fn rtmp_publish_tags(addr: SocketAddr, key: &str, tags: &[(u8, u32, bytes::Bytes)]) {
    use rml_rtmp::sessions::{
        ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult,
        PublishRequestType,
    };
    use rml_rtmp::time::RtmpTimestamp;
    use std::io::Write;

    let (mut stream, leftover) = rtmp_handshake(addr);
    let mut buf = vec![0u8; 16 * 1024];
    let (mut session, initial) = ClientSession::new(ClientSessionConfig::new()).unwrap();
    let send = |stream: &mut std::net::TcpStream, results: Vec<ClientSessionResult>| {
        let mut events = Vec::new();
        for r in results {
            match r {
                ClientSessionResult::OutboundResponse(p) => stream.write_all(&p.bytes).unwrap(),
                ClientSessionResult::RaisedEvent(e) => events.push(e),
                ClientSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        events
    };
    send(&mut stream, initial);
    let mut pending = leftover;
    let mut wait = |stream: &mut std::net::TcpStream,
                    session: &mut ClientSession,
                    want: fn(&ClientSessionEvent) -> bool| loop {
        let input = if pending.is_empty() {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "weir closed the RTMP connection");
            buf[..n].to_vec()
        } else {
            std::mem::take(&mut pending)
        };
        let results = session.handle_input(&input).unwrap();
        if send(stream, results).iter().any(want) {
            return;
        }
    };
    let r = session.request_connection("live".into()).unwrap();
    send(&mut stream, vec![r]);
    wait(&mut stream, &mut session, |e| {
        matches!(e, ClientSessionEvent::ConnectionRequestAccepted)
    });
    let r = session
        .request_publishing(key.into(), PublishRequestType::Live)
        .unwrap();
    send(&mut stream, vec![r]);
    wait(&mut stream, &mut session, |e| {
        matches!(e, ClientSessionEvent::PublishRequestAccepted)
    });
    for (kind, ts, body) in tags {
        let at = RtmpTimestamp::new(*ts);
        let r = match kind {
            9 => session.publish_video_data(body.clone(), at, false),
            8 => session.publish_audio_data(body.clone(), at, false),
            _ => continue,
        };
        send(&mut stream, vec![r.unwrap()]);
    }
    let r = session.stop_publishing().unwrap();
    send(&mut stream, r);
    stream.flush().unwrap();
    // Close gracefully: closing with weir's acknowledgements unread would reset the
    // connection, and weir could lose the end of the stream still in its socket buffer.
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
}

/// A self-signed certificate for `name` (and 127.0.0.1) in `dir`: (cert, key) paths.
pub(crate) fn certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let mut params =
        rcgen::CertificateParams::new(vec![name.to_string(), "127.0.0.1".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let signing_key = rcgen::KeyPair::generate().unwrap();
    let c = params.self_signed(&signing_key).unwrap();
    let (cert, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert, c.pem()).unwrap();
    std::fs::write(&key, signing_key.serialize_pem()).unwrap();
    (cert, key)
}
