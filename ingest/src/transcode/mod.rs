//! The transcoder: one publisher's source frames in, an ABR ladder of renditions out.
//!
//! ```text
//!                      +--> passthrough rung (source frames, untouched)
//! Frame --> decoder ---+--> swscale --> libx264 (rung 1) --\
//! (H.264)  (once)      +--> swscale --> libx264 (rung 2) ---+--> RenditionSink::{track, frame}
//!                      +--> ...                            /
//! Frame --> AAC decoder --> swresample --> AAC encoder ---/   (audio shared by all variants)
//! (AAC)
//! ```
//!
//! Everything runs on one thread of its own per publisher, outside the async runtime; libx264
//! adds its own worker threads. The input queue is bounded: when it is full,
//! [`Transcoder::frame`] blocks, which holds the publisher's TCP connection back instead of
//! buffering without limit.
//!
//! Keyframes are forced at the same source presentation times in every rung (the first
//! frame at or after one segment target since the last forced keyframe; with a passthrough
//! rung in the ladder, only on the source's own keyframes), libx264 scene-cut detection is
//! off and GOPs are closed, so that segments line up across renditions. Output timestamps
//! are the source's (video: milliseconds; audio: counted in samples from the first source
//! timestamp, so that nothing drifts over hours).
//!
//! When the source is paced in real time and the transcoder falls more than a second behind,
//! it encodes every other frame (keyframes always) until it has caught up, says so in the
//! log, and counts the skipped frames in `weir_transcode_frames_skipped_total`. Its speed, as
//! a multiple of real time, is the gauge `weir_transcode_speed`.

mod audio;
mod video;

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ffmpeg_next as ffmpeg;
use weir_config::LadderSettings;
use weir_media::{Frame, TrackInfo, TrackKind};

use audio::AudioPath;
use video::VideoPath;

pub use video::{fit_rendition, x264_options};

/// Inputs the queue to the transcoder thread holds; about 8 s of 25 fps video and 48 kHz
/// AAC audio.
const QUEUE_INPUTS: usize = 600;

/// Receives what the transcoder produces, on the transcoder's thread.
pub trait RenditionSink: Send + 'static {
    /// A rendition's decoder configuration: announced for every video rung (in ladder order)
    /// before its first frame, and again after a [`discontinuity`](Self::discontinuity).
    fn track(&mut self, rendition: &str, info: TrackInfo);
    /// One coded frame of a rendition. H.264: length-prefixed NAL units (4-byte lengths),
    /// timestamps in milliseconds. AAC: one raw access unit, timestamps in samples.
    fn frame(&mut self, rendition: &str, frame: Frame);
    /// The source's configuration changed mid-session: what follows is a new timeline (new
    /// encoders, new parameter sets) and belongs after a discontinuity.
    fn discontinuity(&mut self);
}

/// Why a transcoder could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TranscodeError {
    /// The linked FFmpeg lacks a codec the ladder needs (`libx264`, `aac`, `h264`).
    #[error("FFmpeg has no {0} codec")]
    MissingCodec(&'static str),
    /// FFmpeg failed.
    #[error("{what}: {source}")]
    Ffmpeg {
        /// What weir asked of FFmpeg.
        what: &'static str,
        /// FFmpeg's error.
        source: ffmpeg::Error,
    },
    /// The thread could not be started.
    #[error("transcoder thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// What a transcoder runs with.
#[derive(Clone, Debug)]
pub struct TranscoderConfig {
    /// The event, for logs and metric labels.
    pub event: String,
    /// The renditions to make.
    pub ladder: LadderSettings,
    /// The segment target: keyframes are forced at this interval (ms precision).
    pub segment_target: Duration,
    /// The encoded video renditions to make, by name, whatever the source's size: those an
    /// earlier session of the event made, so that every rendition continues (after a
    /// discontinuity) when a publisher returns with another resolution. `None`: the rungs
    /// that fit the source (never scaled up).
    pub keep_renditions: Option<Vec<String>>,
}

/// Audio output waiting for the video rungs.
enum Held {
    Track(TrackInfo),
    Frame(Frame),
}

/// Audio held while waiting for the video rungs: about 10 s of 48 kHz AAC. Beyond that the
/// video is taken to have failed and the audio goes on alone.
const MAX_HELD_AUDIO: usize = 480;

enum Input {
    Track(TrackInfo),
    Frame(Frame, Instant),
}

/// One publisher's transcoder: feed it the source's tracks and frames; it feeds the
/// [`RenditionSink`] from its own thread. Dropping it (or [`finish`](Self::finish)) flushes
/// the decoders and encoders, so the last partial GOP reaches the sink, and waits for the
/// thread.
#[derive(Debug)]
pub struct Transcoder {
    input: Option<SyncSender<Input>>,
    thread: Option<JoinHandle<()>>,
}

/// Checks once that FFmpeg has what a ladder needs, and quiets FFmpeg's own logging (errors
/// only; weir logs what matters).
///
/// # Errors
/// [`TranscodeError::MissingCodec`] naming the first codec that is missing.
pub fn check_ffmpeg() -> Result<(), TranscodeError> {
    ffmpeg::init().map_err(|source| TranscodeError::Ffmpeg {
        what: "initialize FFmpeg",
        source,
    })?;
    ffmpeg::log::set_level(ffmpeg::log::Level::Error);
    if ffmpeg::encoder::find_by_name("libx264").is_none() {
        return Err(TranscodeError::MissingCodec("libx264"));
    }
    if ffmpeg::encoder::find(ffmpeg::codec::Id::AAC).is_none() {
        return Err(TranscodeError::MissingCodec("aac"));
    }
    if ffmpeg::decoder::find(ffmpeg::codec::Id::H264).is_none() {
        return Err(TranscodeError::MissingCodec("h264"));
    }
    Ok(())
}

impl Transcoder {
    /// Starts the transcoder thread for one publisher session.
    ///
    /// # Errors
    /// [`TranscodeError`] if FFmpeg lacks a codec or the thread cannot start.
    pub fn start<S: RenditionSink>(
        config: TranscoderConfig,
        sink: S,
    ) -> Result<Transcoder, TranscodeError> {
        check_ffmpeg()?;
        let (tx, rx) = mpsc::sync_channel(QUEUE_INPUTS);
        let thread = std::thread::Builder::new()
            .name(format!("transcode-{}", config.event))
            .spawn(move || run(config, rx, sink))?;
        Ok(Transcoder {
            input: Some(tx),
            thread: Some(thread),
        })
    }

    /// A source track's configuration (AVC or AAC sequence header). Blocks while the queue is
    /// full, as [`frame`](Self::frame) does.
    pub fn track(&self, info: TrackInfo) {
        let Some(tx) = &self.input else { return };
        if let Err(mpsc::TrySendError::Full(item)) = tx.try_send(Input::Track(info)) {
            blocking(|| {
                let _ = tx.send(item);
            });
        }
    }

    /// A source frame. Blocks while the queue is full (backpressure on the publisher); on a
    /// multi-threaded tokio runtime it blocks through `block_in_place`, so other tasks move
    /// to other workers meanwhile.
    pub fn frame(&self, frame: Frame) {
        let Some(tx) = &self.input else { return };
        if let Err(mpsc::TrySendError::Full(item)) =
            tx.try_send(Input::Frame(frame, Instant::now()))
        {
            blocking(|| {
                let _ = tx.send(item);
            });
        }
    }

    /// Ends the session: everything queued is transcoded, the encoders are flushed into the
    /// sink, and the thread is joined.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.input = None;
        if let Some(thread) = self.thread.take() {
            if blocking(|| thread.join()).is_err() {
                tracing::error!("the transcoder thread panicked");
            }
        }
    }
}

impl Drop for Transcoder {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `f`, which blocks, without stalling a multi-threaded tokio runtime's worker.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

fn run<S: RenditionSink>(config: TranscoderConfig, input: Receiver<Input>, sink: S) {
    let mut pipeline = Pipeline::new(config, sink);
    while let Ok(item) = input.recv() {
        let started = Instant::now();
        match item {
            Input::Track(info) => pipeline.track(info),
            Input::Frame(frame, arrived) => pipeline.frame(frame, arrived),
        }
        pipeline.pace.busy += started.elapsed();
    }
    pipeline.finish();
}

/// The transcoder's state on its thread.
struct Pipeline<S> {
    config: TranscoderConfig,
    sink: S,
    video: Option<VideoPath>,
    audio: Option<AudioPath>,
    /// The source's video configuration, for the passthrough rung and change detection.
    video_source: Option<TrackInfo>,
    audio_source: Option<TrackInfo>,
    /// The encoded video renditions the session's first source configuration chose: kept
    /// when the source changes mid-session.
    chosen: Option<Vec<String>>,
    /// Audio frames held until the video rungs have announced themselves: libx264's first
    /// output can take longer than the packager waits before starting a session audio-only.
    held_audio: Vec<Held>,
    /// The ladder's passthrough video rendition, if it has one.
    passthrough_name: Option<String>,
    pace: Pace,
}

impl<S: RenditionSink> Pipeline<S> {
    fn new(config: TranscoderConfig, sink: S) -> Self {
        let pace = Pace::new(&config.event);
        let passthrough_name = config
            .ladder
            .video
            .iter()
            .find(|v| v.encoding.is_none())
            .map(|v| v.name.clone());
        Pipeline {
            passthrough_name,
            config,
            sink,
            video: None,
            audio: None,
            video_source: None,
            audio_source: None,
            chosen: None,
            held_audio: Vec::new(),
            pace,
        }
    }

    fn passthrough_video(&self) -> Option<&str> {
        self.passthrough_name.as_deref()
    }

    fn track(&mut self, info: TrackInfo) {
        match info.kind {
            TrackKind::Video => {
                if self.video_source.as_ref() == Some(&info) {
                    return;
                }
                if self.video_source.is_some() {
                    tracing::info!(event = %self.config.event, "source video changed: new encoders after a discontinuity");
                    self.flush_video();
                    self.sink.discontinuity();
                    if let Some(a) = &self.audio_source {
                        if self.config.ladder.audio.encoding.is_none() {
                            self.sink.track(&self.config.ladder.audio.name, a.clone());
                        } else if let Some(audio) = &self.audio {
                            self.sink
                                .track(&self.config.ladder.audio.name, audio.output_info());
                        }
                    }
                }
                if let Some(name) = self.passthrough_video() {
                    let name = name.to_string();
                    self.sink.track(&name, info.clone());
                }
                let encoded = self
                    .config
                    .ladder
                    .video
                    .iter()
                    .any(|v| v.encoding.is_some());
                self.video = None;
                if encoded {
                    let mut config = self.config.clone();
                    if let Some(kept) = self.chosen.clone() {
                        config.keep_renditions = Some(kept);
                    }
                    match VideoPath::new(&config, &info) {
                        Ok(v) => self.video = Some(v),
                        Err(e) => {
                            tracing::error!(event = %self.config.event, error = %e, "cannot decode the source video; only passthrough renditions continue");
                        }
                    }
                }
                self.video_source = Some(info);
            }
            TrackKind::Audio => {
                if self.audio_source.as_ref() == Some(&info) {
                    return;
                }
                match self.config.ladder.audio.encoding.clone() {
                    None => self.emit_audio(Held::Track(info.clone())),
                    Some(encoding) => {
                        if let Some(mut old) = self.audio.take() {
                            let mut out = Vec::new();
                            old.flush(&mut out);
                            out.into_iter()
                                .for_each(|f| self.emit_audio(Held::Frame(f)));
                        }
                        match AudioPath::new(&encoding, &info) {
                            Ok(a) => {
                                // The output's configuration does not depend on the source's:
                                // announced once.
                                if self.audio_source.is_none() {
                                    self.emit_audio(Held::Track(a.output_info()));
                                }
                                self.audio = Some(a);
                            }
                            Err(e) => {
                                tracing::error!(event = %self.config.event, error = %e, "cannot transcode the source audio; the event goes on without it");
                            }
                        }
                    }
                }
                self.audio_source = Some(info);
            }
        }
    }

    fn frame(&mut self, frame: Frame, arrived: Instant) {
        match frame.track {
            TrackKind::Video => {
                if self.video_source.is_none() {
                    return;
                }
                if let Some(name) = &self.passthrough_name {
                    self.sink.frame(name, frame.clone());
                }
                if let Some(video) = self.video.as_mut() {
                    let lag = arrived.elapsed();
                    video.push(frame, &mut self.pace, lag, &mut self.sink);
                }
                self.release_audio();
            }
            TrackKind::Audio => {
                if self.config.ladder.audio.encoding.is_none() {
                    if self.audio_source.is_some() {
                        self.emit_audio(Held::Frame(frame));
                    }
                } else if let Some(audio) = self.audio.as_mut() {
                    let mut out = Vec::new();
                    audio.push(&frame, &mut out);
                    out.into_iter()
                        .for_each(|f| self.emit_audio(Held::Frame(f)));
                }
            }
        }
    }

    /// Whether audio must wait: encoded video rungs exist and have not announced themselves,
    /// and no passthrough video leads the session meanwhile.
    fn audio_waits(&self) -> bool {
        self.passthrough_video().is_none() && self.video.as_ref().is_some_and(|v| !v.announced())
    }

    fn emit_audio(&mut self, item: Held) {
        // The configuration goes at once: the packager then knows the session has audio,
        // and with no audio frames yet it cannot start the session audio-only.
        let is_frame = matches!(item, Held::Frame(_));
        if is_frame && self.audio_waits() && self.held_audio.len() < MAX_HELD_AUDIO {
            self.held_audio.push(item);
            return;
        }
        self.release_audio_all();
        self.send_audio(item);
    }

    fn send_audio(&mut self, item: Held) {
        let name = &self.config.ladder.audio.name;
        match item {
            Held::Track(info) => self.sink.track(name, info),
            Held::Frame(frame) => self.sink.frame(name, frame),
        }
    }

    fn release_audio(&mut self) {
        if !self.held_audio.is_empty() && !self.audio_waits() {
            self.release_audio_all();
        }
    }

    fn release_audio_all(&mut self) {
        for item in std::mem::take(&mut self.held_audio) {
            self.send_audio(item);
        }
    }

    fn flush_video(&mut self) {
        if let Some(mut video) = self.video.take() {
            if let Some(names) = video.renditions() {
                self.chosen = Some(names);
            }
            video.flush(&mut self.pace, &mut self.sink);
        }
    }

    fn finish(&mut self) {
        self.flush_video();
        self.release_audio_all();
        if let Some(mut audio) = self.audio.take() {
            let mut out = Vec::new();
            audio.flush(&mut out);
            out.into_iter()
                .for_each(|f| self.send_audio(Held::Frame(f)));
        }
        self.pace.report(true);
    }
}

/// How fast the transcoder runs compared with real time, and whether it must skip frames.
struct Pace {
    event: String,
    /// Time spent working (not waiting for input) since the window began.
    busy: Duration,
    window_start: Instant,
    /// Source presentation time (ms) at the window's start and the newest seen.
    window_media: Option<(i64, i64)>,
    /// Wall time and media time of the first decoded frame.
    origin: Option<(Instant, i64)>,
    skipping: bool,
    skipped: u64,
}

impl Pace {
    fn new(event: &str) -> Pace {
        Pace {
            event: event.to_string(),
            busy: Duration::ZERO,
            window_start: Instant::now(),
            window_media: None,
            origin: None,
            skipping: false,
            skipped: 0,
        }
    }

    /// Records a decoded frame at `pts_ms` that waited `lag` in the queue; says whether the
    /// transcoder is behind a real-time source (and should skip frames).
    fn frame(&mut self, pts_ms: i64, lag: Duration) -> bool {
        let (wall0, media0) = *self.origin.get_or_insert((Instant::now(), pts_ms));
        match &mut self.window_media {
            Some((_, newest)) => *newest = (*newest).max(pts_ms),
            None => self.window_media = Some((pts_ms, pts_ms)),
        }
        // Behind: frames wait in the queue, and the source is not ahead of the wall clock
        // (a publisher sending faster than real time is held back, not skipped).
        let media_elapsed = pts_ms - media0;
        let wall_elapsed = wall0.elapsed().as_millis() as i64;
        let live_paced = media_elapsed <= wall_elapsed + 500;
        let lag_ms = lag.as_millis() as i64;
        if !self.skipping && live_paced && lag_ms > 1_000 {
            tracing::warn!(event = %self.event, lag_ms, "transcoding slower than real time: encoding every other frame until it catches up");
            self.skipping = true;
        } else if self.skipping && (lag_ms < 300 || !live_paced) {
            tracing::info!(event = %self.event, skipped = self.skipped, "transcoding caught up: every frame encoded again");
            self.skipping = false;
        }
        if self.window_start.elapsed() >= Duration::from_secs(5) {
            self.report(false);
        }
        self.skipping
    }

    fn skipped_frame(&mut self) {
        self.skipped += 1;
        metrics::counter!("weir_transcode_frames_skipped_total", "event" => self.event.clone())
            .increment(1);
    }

    /// Publishes the speed over the window that ends now.
    fn report(&mut self, last: bool) {
        if let Some((first, newest)) = self.window_media {
            let busy = self.busy.as_secs_f64();
            let media = (newest - first) as f64 / 1000.0;
            if busy > 0.0 && media > 0.0 {
                let speed = media / busy;
                metrics::gauge!("weir_transcode_speed", "event" => self.event.clone()).set(speed);
                if speed < 1.0 && !last {
                    tracing::warn!(event = %self.event, speed = format!("{speed:.2}x"), "transcoding slower than real time");
                } else {
                    tracing::debug!(event = %self.event, speed = format!("{speed:.2}x"), "transcoding speed");
                }
            }
            self.window_media = Some((newest, newest));
        }
        self.busy = Duration::ZERO;
        self.window_start = Instant::now();
    }
}

fn ff(what: &'static str) -> impl FnOnce(ffmpeg::Error) -> TranscodeError {
    move |source| TranscodeError::Ffmpeg { what, source }
}
