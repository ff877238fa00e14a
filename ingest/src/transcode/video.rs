//! Video: decode the source once, scale and encode every rung with libx264.

use std::time::Duration;

use bytes::Bytes;
use ffmpeg::codec::threading;
use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg::{picture, Dictionary, Rational};
use ffmpeg_next as ffmpeg;
use weir_config::VideoEncoding;
use weir_media::{AvcConfig, CodecConfig, Frame, Timescale, Timestamp, TrackInfo, TrackKind};

/// What the decoder needs to know of the source video: H.264, HEVC or AV1.
struct SourceVideo {
    /// Parameter sets (SPS/PPS, or VPS/SPS/PPS), put before every keyframe in Annex B; for
    /// AV1, the sequence header OBU put before every key frame's OBUs.
    parameter_sets: Vec<Vec<u8>>,
    /// NAL unit length size of the samples; `None` for AV1 (OBUs, passed as they are).
    nal_length_size: Option<u8>,
    /// From the H.264 SPS VUI, when written.
    frame_rate: Option<f64>,
}

use super::{ff, Pace, RenditionSink, TranscodeError, TranscoderConfig};
use crate::nal::{self, NAL_PPS, NAL_SPS};

/// Frame rate assumed when neither the SPS nor the decoder states one (x264 needs a rate for
/// its rate control; timestamps stay the source's).
const FALLBACK_FRAME_RATE: Rational = Rational(30, 1);

/// The size a rung of box `box_w`x`box_h` gives a `src_w`x`src_h` source: the source fitted
/// into the box with its aspect ratio kept, both sides even (H.264 4:2:0 needs even sizes),
/// or `None` if that would scale the source up.
///
/// ```
/// use weir_ingest::fit_rendition;
/// assert_eq!(fit_rendition(1280, 720, 854, 480), Some((854, 480)));
/// assert_eq!(fit_rendition(640, 272, 640, 360), Some((640, 272)));
/// assert_eq!(fit_rendition(1280, 720, 1920, 1080), None);
/// assert_eq!(fit_rendition(641, 273, 640, 360), Some((640, 272)));
/// ```
pub fn fit_rendition(src_w: u32, src_h: u32, box_w: u32, box_h: u32) -> Option<(u32, u32)> {
    if src_w == 0 || src_h == 0 {
        return None;
    }
    let scale = (f64::from(box_w) / f64::from(src_w)).min(f64::from(box_h) / f64::from(src_h));
    if scale > 1.0 + 1e-9 {
        return None;
    }
    let even =
        |v: f64, limit: u32| ((2.0 * (v / 2.0).round()) as u32).clamp(2, (limit & !1).max(2));
    Some((
        even(f64::from(src_w) * scale, src_w),
        even(f64::from(src_h) * scale, src_h),
    ))
}

/// The source fitted into the box, keeping its aspect ratio, even if that scales it up.
fn fit_scaled_up(src_w: u32, src_h: u32, box_w: u32, box_h: u32) -> (u32, u32) {
    let scale = (f64::from(box_w) / f64::from(src_w.max(1)))
        .min(f64::from(box_h) / f64::from(src_h.max(1)));
    let even = |v: f64| ((2.0 * (v / 2.0).round()) as u32).max(2);
    (
        even(f64::from(src_w) * scale),
        even(f64::from(src_h) * scale),
    )
}

/// The libx264 options (FFmpeg option names, as `ffmpeg -h encoder=libx264` lists them) a
/// rung is encoded with: rate control from the rung, closed GOPs, no scene-cut keyframes,
/// forced keyframes as IDR pictures. `gop_frames` is the longest GOP x264 may make on its
/// own, longer than the forced keyframe interval so that only forced keyframes occur.
/// The benchmark in `benches/transcode/` passes the same options to the ffmpeg CLI.
pub fn x264_options(rung: &VideoEncoding, gop_frames: u32) -> Vec<(&'static str, String)> {
    vec![
        ("preset", rung.preset.clone()),
        ("profile", rung.profile.clone()),
        ("b", rung.bitrate_bps.to_string()),
        ("maxrate", rung.max_rate_bps.to_string()),
        ("bufsize", rung.buffer_size_bits.to_string()),
        ("g", gop_frames.to_string()),
        ("sc_threshold", "0".into()),
        ("forced-idr", "1".into()),
        ("x264-params", "open-gop=0:sync-lookahead=0".into()),
    ]
}

/// The video side of a transcoder: the source decoder and one encoder per rung.
pub(super) struct VideoPath {
    event: String,
    decoder: ffmpeg::decoder::Video,
    source: SourceVideo,
    target_ms: i64,
    /// Force keyframes only where the source has one (a passthrough rung is in the ladder).
    follow_source_keyframes: bool,
    rungs: Vec<Rung>,
    /// Whether the rungs have been set up (on the first decoded picture).
    rungs_ready: bool,
    last_forced: Option<i64>,
    /// Whether every rung announced its configuration to the sink yet.
    announced: bool,
    skip_toggle: bool,
    annex_b: Vec<u8>,
    keep: Option<Vec<String>>,
}

struct Rung {
    name: String,
    encoding: VideoEncoding,
    size: (u32, u32),
    scaler: Option<scaling::Context>,
    encoder: Option<ffmpeg::encoder::Video>,
    info: Option<TrackInfo>,
    /// Output held until every rung has announced itself, so the sink sees all
    /// configurations (the top rung first) before any frame.
    held: Vec<Frame>,
    last_kept: Option<i64>,
}

impl VideoPath {
    pub(super) fn new(config: &TranscoderConfig, info: &TrackInfo) -> Result<Self, TranscodeError> {
        let (id, name, source) = match &info.codec {
            CodecConfig::H264(avc) => (
                ffmpeg::codec::Id::H264,
                "h264",
                SourceVideo {
                    parameter_sets: avc
                        .parameter_sets()
                        .into_iter()
                        .map(<[u8]>::to_vec)
                        .collect(),
                    nal_length_size: Some(avc.nal_length_size),
                    frame_rate: avc.frame_rate,
                },
            ),
            CodecConfig::H265(hevc) => (
                ffmpeg::codec::Id::HEVC,
                "hevc",
                SourceVideo {
                    parameter_sets: hevc
                        .parameter_sets()
                        .into_iter()
                        .map(<[u8]>::to_vec)
                        .collect(),
                    nal_length_size: Some(hevc.nal_length_size),
                    frame_rate: None,
                },
            ),
            CodecConfig::Av1(av1) => (
                ffmpeg::codec::Id::AV1,
                "av1",
                SourceVideo {
                    parameter_sets: vec![av1.config_obus().to_vec()],
                    nal_length_size: None,
                    frame_rate: None,
                },
            ),
            CodecConfig::Aac(_) => return Err(TranscodeError::MissingCodec("video")),
        };
        let codec = ffmpeg::decoder::find(id).ok_or(TranscodeError::MissingCodec(name))?;
        let mut context = ffmpeg::codec::context::Context::new_with_codec(codec);
        // As the ffmpeg CLI does: frame threads, as many as FFmpeg picks for the machine.
        // (Slice threads would save about 100 ms of latency, but the decoder then runs
        // serially with the encoders' feeding: 7% more CPU per media second, measured.)
        context.set_threading(threading::Config {
            kind: threading::Type::Frame,
            count: 0,
            ..Default::default()
        });
        let decoder = context
            .decoder()
            .video()
            .map_err(ff("open the video decoder"))?;
        Ok(VideoPath {
            event: config.event.clone(),
            decoder,
            source,
            target_ms: config.segment_target.as_millis() as i64,
            follow_source_keyframes: config.ladder.video.iter().any(|v| v.encoding.is_none()),
            rungs: config
                .ladder
                .video
                .iter()
                .filter_map(|v| {
                    Some(Rung {
                        name: v.name.clone(),
                        encoding: v.encoding.clone()?,
                        size: (0, 0),
                        scaler: None,
                        encoder: None,
                        info: None,
                        held: Vec::new(),
                        last_kept: None,
                    })
                })
                .collect(),
            rungs_ready: false,
            last_forced: None,
            announced: false,
            skip_toggle: false,
            annex_b: Vec::new(),
            keep: config.keep_renditions.clone(),
        })
    }

    /// Decodes one source frame and encodes what it yields.
    pub(super) fn push<S: RenditionSink>(
        &mut self,
        frame: Frame,
        pace: &mut Pace,
        lag: Duration,
        sink: &mut S,
    ) {
        self.annex_b.clear();
        match self.source.nal_length_size {
            Some(length_size) => {
                if frame.keyframe {
                    for set in &self.source.parameter_sets {
                        self.annex_b.extend_from_slice(&[0, 0, 0, 1]);
                        self.annex_b.extend_from_slice(set);
                    }
                }
                if !nal::to_annex_b(&frame.data, usize::from(length_size), &mut self.annex_b) {
                    tracing::debug!(event = %self.event, "malformed video sample; decoding what it holds");
                }
            }
            None => {
                if frame.keyframe {
                    self.source
                        .parameter_sets
                        .iter()
                        .for_each(|s| self.annex_b.extend_from_slice(s));
                }
                self.annex_b.extend_from_slice(&frame.data);
            }
        }
        let dts = frame.dts.rescale(Timescale::MILLIS);
        let pts = Timestamp::new(
            frame.dts.ticks + frame.composition_offset,
            frame.dts.timescale,
        )
        .rescale(Timescale::MILLIS);
        let mut packet = ffmpeg::Packet::copy(&self.annex_b);
        packet.set_pts(Some(pts));
        packet.set_dts(Some(dts));
        if let Err(e) = self.decoder.send_packet(&packet) {
            tracing::debug!(event = %self.event, error = %e, "the decoder refused a frame");
        }
        self.drain_decoder(pace, lag, sink);
    }

    fn drain_decoder<S: RenditionSink>(&mut self, pace: &mut Pace, lag: Duration, sink: &mut S) {
        let mut decoded = ffmpeg::frame::Video::empty();
        while self.decoder.receive_frame(&mut decoded).is_ok() {
            let Some(pts) = decoded.pts().or(decoded.timestamp()) else {
                continue;
            };
            self.encode(&mut decoded, pts, pace, lag, sink);
        }
    }

    /// Whether every rung has announced its configuration to the sink.
    pub(super) fn announced(&self) -> bool {
        self.announced
    }

    /// The encoded renditions, by name, once the first picture chose them.
    pub(super) fn renditions(&self) -> Option<Vec<String>> {
        self.rungs_ready
            .then(|| self.rungs.iter().map(|r| r.name.clone()).collect())
    }

    fn setup_rungs(&mut self, width: u32, height: u32) {
        self.rungs_ready = true;
        if let Some(keep) = &self.keep {
            self.rungs.retain(|r| keep.contains(&r.name));
            for rung in &mut self.rungs {
                rung.size = fit_rendition(width, height, rung.encoding.width, rung.encoding.height)
                    .unwrap_or_else(|| {
                        tracing::warn!(event = %self.event, rendition = %rung.name, "the source is smaller than this rendition, which continues from an earlier session: scaled up");
                        fit_scaled_up(width, height, rung.encoding.width, rung.encoding.height)
                    });
            }
            if !self.rungs.is_empty() {
                tracing::info!(event = %self.event, source = format!("{width}x{height}"),
                    renditions = ?self.rungs.iter().map(|r| format!("{} {}x{}", r.name, r.size.0, r.size.1)).collect::<Vec<_>>(),
                    "transcoding ladder (the event's renditions so far)");
                return;
            }
        }
        let mut chosen: Vec<(u32, u32)> = Vec::new();
        for rung in &mut self.rungs {
            match fit_rendition(width, height, rung.encoding.width, rung.encoding.height) {
                Some(size) if !chosen.contains(&size) => {
                    rung.size = size;
                    chosen.push(size);
                }
                _ => rung.size = (0, 0),
            }
        }
        if chosen.is_empty() {
            // A source smaller than every rung: the lowest rung, at the source's size.
            if let Some(last) = self.rungs.last_mut() {
                last.size = ((width & !1).max(2), (height & !1).max(2));
            }
        }
        let skipped: Vec<String> = self
            .rungs
            .iter()
            .filter(|r| r.size == (0, 0))
            .map(|r| r.name.clone())
            .collect();
        self.rungs.retain(|r| r.size != (0, 0));
        tracing::info!(event = %self.event, source = format!("{width}x{height}"),
            renditions = ?self.rungs.iter().map(|r| format!("{} {}x{}", r.name, r.size.0, r.size.1)).collect::<Vec<_>>(),
            ?skipped, "transcoding ladder");
    }

    fn frame_rate(&self) -> Rational {
        if let Some(r) = self
            .decoder
            .frame_rate()
            .filter(|r| r.numerator() > 0 && r.denominator() > 0)
        {
            return r;
        }
        match self.source.frame_rate {
            Some(fps) if fps > 0.0 => Rational((fps * 1000.0).round() as i32, 1000),
            _ => FALLBACK_FRAME_RATE,
        }
    }

    fn encode<S: RenditionSink>(
        &mut self,
        decoded: &mut ffmpeg::frame::Video,
        pts: i64,
        pace: &mut Pace,
        lag: Duration,
        sink: &mut S,
    ) {
        if !self.rungs_ready {
            self.setup_rungs(decoded.width(), decoded.height());
        }
        let due = self
            .last_forced
            .is_none_or(|last| pts - last >= self.target_ms);
        let force = due && (!self.follow_source_keyframes || decoded.is_key());
        if force {
            self.last_forced = Some(pts);
        }
        let behind = pace.frame(pts, lag);
        if behind && !force {
            self.skip_toggle = !self.skip_toggle;
            if self.skip_toggle {
                pace.skipped_frame();
                return;
            }
        }
        // Source picture types must not reach x264 as hints: only forced keyframes are set.
        decoded.set_kind(if force {
            picture::Type::I
        } else {
            picture::Type::None
        });
        let frame_rate = self.frame_rate();
        for i in 0..self.rungs.len() {
            let rung = &mut self.rungs[i];
            let cap_ms = 1000.0 / rung.encoding.max_frame_rate;
            if let Some(last) = rung.last_kept {
                if !force && ((pts - last) as f64) < cap_ms * 0.9 {
                    continue;
                }
            }
            rung.last_kept = Some(pts);
            if let Err(e) = rung.send(decoded, pts, force, frame_rate) {
                tracing::error!(event = %self.event, rendition = %rung.name, error = %e, "encoding failed; the rendition stops");
                rung.encoder = None;
                rung.size = (0, 0);
                continue;
            }
            rung.drain(&self.event);
        }
        self.rungs.retain(|r| r.size != (0, 0));
        self.release(sink);
    }

    /// Hands encoded frames to the sink once every rung has announced its configuration.
    fn release<S: RenditionSink>(&mut self, sink: &mut S) {
        if !self.announced {
            if self.rungs.is_empty() || self.rungs.iter().any(|r| r.info.is_none()) {
                return;
            }
            for rung in &self.rungs {
                if let Some(info) = &rung.info {
                    sink.track(&rung.name, info.clone());
                }
            }
            self.announced = true;
        }
        for rung in &mut self.rungs {
            for frame in rung.held.drain(..) {
                sink.frame(&rung.name, frame);
            }
        }
    }

    /// Drains the decoder and the encoders: the last partial GOP reaches the sink.
    pub(super) fn flush<S: RenditionSink>(&mut self, pace: &mut Pace, sink: &mut S) {
        if self.decoder.send_eof().is_ok() {
            self.drain_decoder(pace, Duration::ZERO, sink);
        }
        for rung in &mut self.rungs {
            if let Some(encoder) = rung.encoder.as_mut() {
                if encoder.send_eof().is_ok() {
                    rung.drain(&self.event);
                }
            }
        }
        // A rung that never produced a configuration holds nothing worth sending.
        self.rungs.retain(|r| r.info.is_some());
        self.release(sink);
    }
}

impl Rung {
    fn open(&mut self, frame_rate: Rational) -> Result<(), TranscodeError> {
        let (width, height) = self.size;
        let codec = ffmpeg::encoder::find_by_name("libx264")
            .ok_or(TranscodeError::MissingCodec("libx264"))?;
        let context = ffmpeg::codec::context::Context::new_with_codec(codec);
        let mut encoder = context
            .encoder()
            .video()
            .map_err(ff("create a libx264 encoder"))?;
        let fps = {
            let source = f64::from(frame_rate.numerator()) / f64::from(frame_rate.denominator());
            if source > self.encoding.max_frame_rate {
                Rational((self.encoding.max_frame_rate * 1000.0).round() as i32, 1000)
            } else {
                frame_rate
            }
        };
        encoder.set_width(width);
        encoder.set_height(height);
        encoder.set_format(Pixel::YUV420P);
        encoder.set_time_base(Rational(1, 1000));
        encoder.set_frame_rate(Some(fps));
        let mut options = Dictionary::new();
        let fps_f = f64::from(fps.numerator()) / f64::from(fps.denominator().max(1));
        // Ten segments' worth: x264 never places a keyframe of its own before a forced one.
        let gop = (fps_f * 20.0).ceil().max(60.0) as u32;
        for (k, v) in x264_options(&self.encoding, gop) {
            options.set(k, &v);
        }
        let encoder = encoder
            .open_with(options)
            .map_err(ff("open a libx264 encoder"))?;
        self.encoder = Some(encoder);
        Ok(())
    }

    fn send(
        &mut self,
        decoded: &ffmpeg::frame::Video,
        pts: i64,
        force: bool,
        frame_rate: Rational,
    ) -> Result<(), TranscodeError> {
        let (width, height) = self.size;
        let same = decoded.width() == width
            && decoded.height() == height
            && decoded.format() == Pixel::YUV420P;
        if self.encoder.is_none() {
            self.open(frame_rate)?;
        }
        let scaled;
        let picture = if same {
            decoded
        } else {
            let input = (decoded.format(), decoded.width(), decoded.height());
            let stale = self.scaler.as_ref().is_none_or(|s| {
                let i = s.input();
                (i.format, i.width, i.height) != input
            });
            if stale {
                self.scaler = Some(
                    scaling::Context::get(
                        input.0,
                        input.1,
                        input.2,
                        Pixel::YUV420P,
                        width,
                        height,
                        scaling::Flags::BICUBIC,
                    )
                    .map_err(ff("create a scaler"))?,
                );
            }
            let mut out = ffmpeg::frame::Video::new(Pixel::YUV420P, width, height);
            if let Some(scaler) = self.scaler.as_mut() {
                scaler
                    .run(decoded, &mut out)
                    .map_err(ff("scale a picture"))?;
            }
            out.set_pts(Some(pts));
            out.set_kind(if force {
                picture::Type::I
            } else {
                picture::Type::None
            });
            scaled = out;
            &scaled
        };
        if let Some(encoder) = self.encoder.as_mut() {
            encoder
                .send_frame(picture)
                .map_err(ff("send a picture to libx264"))?;
        }
        Ok(())
    }

    /// Moves what libx264 has finished into `held`, converted to length-prefixed samples.
    fn drain(&mut self, event: &str) {
        let Some(encoder) = self.encoder.as_mut() else {
            return;
        };
        let mut packet = ffmpeg::Packet::empty();
        while encoder.receive_packet(&mut packet).is_ok() {
            let (Some(data), Some(pts)) = (packet.data(), packet.pts()) else {
                continue;
            };
            let dts = packet.dts().unwrap_or(pts);
            let keyframe = packet.is_key();
            if keyframe {
                let mut sps = None;
                let mut pps = None;
                for unit in nal::annex_b_units(data) {
                    match nal::unit_type(unit) {
                        NAL_SPS => sps = Some(unit),
                        NAL_PPS => pps = Some(unit),
                        _ => {}
                    }
                }
                if let (Some(sps), Some(pps)) = (sps, pps) {
                    match AvcConfig::from_parameter_sets(sps, pps) {
                        Ok(avc) => {
                            let info = TrackInfo {
                                kind: TrackKind::Video,
                                codec: CodecConfig::H264(avc),
                            };
                            if self.info.as_ref() != Some(&info) {
                                self.info = Some(info);
                            }
                        }
                        Err(e) => {
                            tracing::error!(event, rendition = %self.name, error = %e, "libx264 wrote parameter sets weir cannot read");
                        }
                    }
                }
            }
            if self.info.is_none() {
                continue;
            }
            let mut sample = Vec::with_capacity(data.len() + 16);
            nal::to_length_prefixed(
                nal::annex_b_units(data)
                    .filter(|u| !matches!(nal::unit_type(u), NAL_SPS | NAL_PPS | 9)),
                &mut sample,
            );
            self.held.push(Frame {
                track: TrackKind::Video,
                dts: Timestamp::new(dts, Timescale::MILLIS),
                composition_offset: pts - dts,
                keyframe,
                data: Bytes::from(sample),
            });
        }
    }
}
