//! Audio: decode the source AAC once, resample, encode AAC-LC once for every variant.

use bytes::Bytes;
use ffmpeg::format::{sample::Type as SampleType, Sample};
use ffmpeg::software::resampling;
use ffmpeg::{ChannelLayout, Rational};
use ffmpeg_next as ffmpeg;
use weir_config::AudioEncoding;
use weir_media::{AacConfig, CodecConfig, Frame, Timescale, Timestamp, TrackInfo, TrackKind};

use super::{ff, TranscodeError};

/// A gap or overlap in the source's audio timestamps beyond this much (ms) restarts the
/// output's sample count at the source's time; smaller differences (RTMP's millisecond
/// rounding) are absorbed, so output timestamps never drift from the sample count.
const RESYNC_MS: i64 = 200;

const SAMPLE_RATES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

pub(super) struct AudioPath {
    source: AacConfig,
    decoder: ffmpeg::decoder::Audio,
    resampler: Option<resampling::Context>,
    encoder: ffmpeg::encoder::Audio,
    output: TrackInfo,
    rate: u32,
    layout: ChannelLayout,
    frame_size: usize,
    /// Resampled samples not encoded yet, one vector per channel.
    fifo: Vec<Vec<f32>>,
    /// Output sample position of `fifo[..][0]`.
    fifo_pts: Option<i64>,
    adts: Vec<u8>,
}

impl AudioPath {
    pub(super) fn new(
        encoding: &AudioEncoding,
        source: &TrackInfo,
    ) -> Result<Self, TranscodeError> {
        let CodecConfig::Aac(aac) = &source.codec else {
            return Err(TranscodeError::MissingCodec("audio other than AAC"));
        };
        let decoder_codec = ffmpeg::decoder::find(ffmpeg::codec::Id::AAC)
            .ok_or(TranscodeError::MissingCodec("aac decoder"))?;
        let decoder = ffmpeg::codec::context::Context::new_with_codec(decoder_codec)
            .decoder()
            .audio()
            .map_err(ff("open the AAC decoder"))?;
        let codec = ffmpeg::encoder::find(ffmpeg::codec::Id::AAC)
            .ok_or(TranscodeError::MissingCodec("aac"))?;
        let mut encoder = ffmpeg::codec::context::Context::new_with_codec(codec)
            .encoder()
            .audio()
            .map_err(ff("create the AAC encoder"))?;
        let layout = if encoding.channels == 1 {
            ChannelLayout::MONO
        } else {
            ChannelLayout::STEREO
        };
        let rate = encoding.sample_rate;
        encoder.set_rate(rate as i32);
        encoder.set_channel_layout(layout);
        encoder.set_format(Sample::F32(SampleType::Planar));
        encoder.set_bit_rate(encoding.bitrate_bps as usize);
        encoder.set_time_base(Rational(1, rate as i32));
        let encoder = encoder.open_as(codec).map_err(ff("open the AAC encoder"))?;
        let frame_size = (encoder.frame_size() as usize).max(1);
        Ok(AudioPath {
            source: aac.clone(),
            decoder,
            resampler: None,
            encoder,
            output: TrackInfo {
                kind: TrackKind::Audio,
                codec: CodecConfig::Aac(output_config(rate, encoding.channels)?),
            },
            rate,
            layout,
            frame_size,
            fifo: vec![Vec::new(); usize::from(encoding.channels.max(1))],
            fifo_pts: None,
            adts: Vec::new(),
        })
    }

    /// The encoded rendition's configuration (AAC-LC `AudioSpecificConfig`).
    pub(super) fn output_info(&self) -> TrackInfo {
        self.output.clone()
    }

    /// Decodes one source frame; appends the encoded frames it completes to `out`.
    pub(super) fn push(&mut self, frame: &Frame, out: &mut Vec<Frame>) {
        let Some(header) = self.source.adts_header(frame.data.len()) else {
            return;
        };
        self.adts.clear();
        self.adts.extend_from_slice(&header);
        self.adts.extend_from_slice(&frame.data);
        let mut packet = ffmpeg::Packet::copy(&self.adts);
        let ms = frame.dts.rescale(Timescale::MILLIS);
        packet.set_pts(Some(ms));
        packet.set_dts(Some(ms));
        if self.decoder.send_packet(&packet).is_err() {
            tracing::debug!("the AAC decoder refused a frame");
            return;
        }
        let mut decoded = ffmpeg::frame::Audio::empty();
        while self.decoder.receive_frame(&mut decoded).is_ok() {
            let at = decoded.pts().unwrap_or(ms);
            self.resample(&decoded, at);
            self.encode_ready(out, false);
        }
    }

    fn resample(&mut self, decoded: &ffmpeg::frame::Audio, pts_ms: i64) {
        let mut input_layout = decoded.channel_layout();
        if input_layout.is_empty() {
            input_layout = ChannelLayout::default(i32::from(decoded.channels()));
        }
        let stale = self.resampler.as_ref().is_none_or(|r| {
            let i = r.input();
            (i.format, i.channel_layout, i.rate) != (decoded.format(), input_layout, decoded.rate())
        });
        if stale {
            match resampling::Context::get(
                decoded.format(),
                input_layout,
                decoded.rate(),
                Sample::F32(SampleType::Planar),
                self.layout,
                self.rate,
            ) {
                Ok(r) => self.resampler = Some(r),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot resample the source audio");
                    return;
                }
            }
        }
        let Some(resampler) = self.resampler.as_mut() else {
            return;
        };
        // The decoder leaves the layout empty for some streams; only then is a copy needed.
        let relabelled;
        let input = if decoded.channel_layout() == input_layout {
            decoded
        } else {
            let mut copy = decoded.clone();
            copy.set_channel_layout(input_layout);
            relabelled = copy;
            &relabelled
        };
        let capacity =
            decoded.samples() * self.rate as usize / decoded.rate().max(1) as usize + 256;
        let mut out =
            ffmpeg::frame::Audio::new(Sample::F32(SampleType::Planar), capacity, self.layout);
        if resampler.run(input, &mut out).is_err() {
            return;
        }
        let expected = pts_ms * i64::from(self.rate) / 1000;
        let queued = self.fifo.first().map_or(0, Vec::len) as i64;
        match self.fifo_pts {
            Some(p)
                if ((p + queued) - expected).abs() * 1000 <= RESYNC_MS * i64::from(self.rate) => {}
            Some(_) => {
                tracing::info!("source audio timestamps jumped; resynchronizing");
                for c in &mut self.fifo {
                    c.clear();
                }
                self.fifo_pts = Some(expected);
            }
            None => self.fifo_pts = Some(expected),
        }
        for (c, channel) in self.fifo.iter_mut().enumerate() {
            channel.extend_from_slice(&out.plane::<f32>(c)[..out.samples()]);
        }
    }

    fn encode_ready(&mut self, out: &mut Vec<Frame>, last: bool) {
        loop {
            let queued = self.fifo.first().map_or(0, Vec::len);
            let n = if queued >= self.frame_size {
                self.frame_size
            } else if last && queued > 0 {
                queued
            } else {
                break;
            };
            let Some(pts) = self.fifo_pts else { break };
            let mut frame =
                ffmpeg::frame::Audio::new(Sample::F32(SampleType::Planar), n, self.layout);
            frame.set_rate(self.rate);
            for (c, channel) in self.fifo.iter_mut().enumerate() {
                frame.plane_mut::<f32>(c)[..n].copy_from_slice(&channel[..n]);
                channel.drain(..n);
            }
            frame.set_pts(Some(pts));
            self.fifo_pts = Some(pts + n as i64);
            if self.encoder.send_frame(&frame).is_err() {
                tracing::warn!("the AAC encoder refused a frame");
            }
            self.drain(out);
        }
    }

    fn drain(&mut self, out: &mut Vec<Frame>) {
        let timescale = Timescale::new(self.rate).unwrap_or(Timescale::MILLIS);
        let mut packet = ffmpeg::Packet::empty();
        while self.encoder.receive_packet(&mut packet).is_ok() {
            let (Some(data), Some(pts)) = (packet.data(), packet.pts()) else {
                continue;
            };
            out.push(Frame {
                track: TrackKind::Audio,
                dts: Timestamp::new(pts, timescale),
                composition_offset: 0,
                keyframe: true,
                data: Bytes::copy_from_slice(data),
            });
        }
    }

    /// Encodes what is left (a short last frame) and drains the encoder.
    pub(super) fn flush(&mut self, out: &mut Vec<Frame>) {
        self.encode_ready(out, true);
        if self.encoder.send_eof().is_ok() {
            self.drain(out);
        }
    }
}

/// The `AudioSpecificConfig` of AAC-LC at `rate` Hz with `channels` channels (ISO/IEC
/// 14496-3 §1.6.2.1): object type 2, the rate's index, the channel configuration.
fn output_config(rate: u32, channels: u8) -> Result<AacConfig, TranscodeError> {
    let index = SAMPLE_RATES
        .iter()
        .position(|r| *r == rate)
        .ok_or(TranscodeError::MissingCodec("AAC at this sample rate"))? as u16;
    let asc = (2u16 << 11) | (index << 7) | (u16::from(channels) << 3);
    AacConfig::parse(Bytes::copy_from_slice(&asc.to_be_bytes()))
        .map_err(|_| TranscodeError::MissingCodec("AAC with this configuration"))
}
