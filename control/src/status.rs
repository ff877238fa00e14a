//! What an event's status reports about its publishers: measured as their media arrives.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use utoipa::ToSchema;
use weir_media::{Frame, TrackInfo, TrackKind};

/// The window over which bit rate and frame rate are measured.
const WINDOW: Duration = Duration::from_secs(5);

/// One publisher's measurements, updated as its media arrives.
#[derive(Debug)]
pub(crate) struct InputMeter {
    /// `weir_ingest_bytes_total` and `weir_ingest_frames_total{kind="video"|"audio"}` of its
    /// event and input (media bytes, after the protocol's framing).
    bytes: metrics::Counter,
    video_frames: metrics::Counter,
    audio_frames: metrics::Counter,
    peer: SocketAddr,
    connected_at: SystemTime,
    connected: Instant,
    video: Option<TrackInfo>,
    audio: Option<TrackInfo>,
    /// The window being counted: its start, bytes and video frames so far.
    window: (Instant, u64, u64),
    /// The last complete window's bit rate and frame rate.
    rates: Option<(u64, f64)>,
    last_frame: Option<SystemTime>,
}

impl InputMeter {
    pub(crate) fn new(event: &str, input: &'static str, peer: SocketAddr) -> InputMeter {
        let now = Instant::now();
        let labels = [("event", event.to_string()), ("input", input.to_string())];
        let frames = |kind: &'static str| {
            let mut l = labels.to_vec();
            l.push(("kind", kind.to_string()));
            metrics::counter!("weir_ingest_frames_total", &l)
        };
        InputMeter {
            bytes: metrics::counter!("weir_ingest_bytes_total", &labels),
            video_frames: frames("video"),
            audio_frames: frames("audio"),
            peer,
            connected_at: SystemTime::now(),
            connected: now,
            video: None,
            audio: None,
            window: (now, 0, 0),
            rates: None,
            last_frame: None,
        }
    }

    pub(crate) fn track(&mut self, info: &TrackInfo) {
        match info.kind {
            TrackKind::Video => self.video = Some(info.clone()),
            TrackKind::Audio => self.audio = Some(info.clone()),
        }
    }

    pub(crate) fn frame(&mut self, frame: &Frame) {
        self.bytes.increment(frame.data.len() as u64);
        match frame.track {
            TrackKind::Video => self.video_frames.increment(1),
            TrackKind::Audio => self.audio_frames.increment(1),
        }
        let now = Instant::now();
        let (start, bytes, frames) = &mut self.window;
        *bytes += frame.data.len() as u64;
        if frame.track == TrackKind::Video {
            *frames += 1;
        }
        let elapsed = now.saturating_duration_since(*start);
        if elapsed >= WINDOW {
            let secs = elapsed.as_secs_f64();
            self.rates = Some(((*bytes as f64 * 8.0 / secs) as u64, *frames as f64 / secs));
            self.window = (now, 0, 0);
        }
        self.last_frame = Some(SystemTime::now());
    }

    pub(crate) fn report(&self, role: &str, packaged: bool) -> InputStatus {
        let codec = |t: &Option<TrackInfo>| t.as_ref().map(|t| t.codec.codec_string());
        let resolution = self
            .video
            .as_ref()
            .and_then(|v| v.codec.picture_size())
            .map(|(w, h)| format!("{w}x{h}"));
        InputStatus {
            role: role.to_string(),
            packaged,
            peer: self.peer.to_string(),
            connected_at_ms: unix_ms(self.connected_at),
            uptime_s: self.connected.elapsed().as_secs(),
            video_codec: codec(&self.video),
            audio_codec: codec(&self.audio),
            resolution,
            ingest_kbps: self.rates.map(|(bps, _)| bps / 1_000),
            frame_rate: self.rates.map(|(_, fps)| (fps * 100.0).round() / 100.0),
            last_frame_at_ms: self.last_frame.map(unix_ms),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One connected publisher of an event, as the admin API reports it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct InputStatus {
    /// `primary` or `backup`: the stream key it published with.
    pub role: String,
    /// Whether it is the input being packaged (the other waits on standby).
    pub packaged: bool,
    /// The publisher's address, `ip:port`.
    pub peer: String,
    /// When it connected, ms since the Unix epoch.
    pub connected_at_ms: u64,
    /// Seconds since it connected.
    pub uptime_s: u64,
    /// RFC 6381 codec of its video, e.g. `avc1.64001f`.
    pub video_codec: Option<String>,
    /// RFC 6381 codec of its audio, e.g. `mp4a.40.2`.
    pub audio_codec: Option<String>,
    /// Its video's coded size, `WIDTHxHEIGHT`.
    pub resolution: Option<String>,
    /// Media bit rate over the last 5 s window, kbit/s (after its first 5 s).
    pub ingest_kbps: Option<u64>,
    /// Video frames per second over the last 5 s window.
    pub frame_rate: Option<f64>,
    /// When its newest frame arrived, ms since the Unix epoch.
    pub last_frame_at_ms: Option<u64>,
}

/// One rendition of an event.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RenditionStatus {
    /// Its name in URLs (`/live/{event}/{name}/index.m3u8`).
    pub name: String,
    /// Average bit rate over the segments it has listed, kbit/s.
    pub average_kbps: u64,
}

/// An event's live status.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct EventStatus {
    /// Whether a publisher is being packaged.
    pub live: bool,
    /// Whether the master playlist exists (players can start).
    pub playable: bool,
    /// Connected publishers (at most a primary and a backup).
    pub inputs: Vec<InputStatus>,
    /// The renditions the event has published (video and audio) with their measured bit
    /// rates.
    pub renditions: Vec<RenditionStatus>,
    /// When the newest segment was published, ms since the Unix epoch.
    pub last_segment_at_ms: Option<u64>,
    /// Viewers at each edge that reported in the last 15 s.
    pub viewers: Vec<crate::EdgeViewers>,
    /// Total viewers over those edges.
    pub viewers_total: u64,
    /// Requests answered from the edges' caches (hits and coalesced waits) over all requests,
    /// in their last reports; none without requests.
    pub cache_hit_ratio: Option<f64>,
}
