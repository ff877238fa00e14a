//! A sans-I/O MPEG-2 transport stream demuxer (ISO/IEC 13818-1) for contribution feeds (SRT
//! carries TS): bytes in, the same [`TrackInfo`]s and [`Frame`]s the RTMP path produces out.
//!
//! It follows the first program of the PAT and takes the first H.264 (stream type 0x1b) or
//! HEVC (0x24) and the first AAC-in-ADTS (0x0f) stream of its PMT. Timestamps are 90 kHz, unwrapped from 33
//! bits to a continuous 64-bit timeline ([`clock`]); a timestamp jump (a restarted encoder, a
//! `discontinuity_indicator`) is passed on as it is, for the packager to turn into a
//! discontinuity. Lost packets (a continuity counter gap) drop the damaged PES packet, and on
//! the video stream everything up to the next IDR picture, so no frame with missing
//! references is packaged. Problems are reported as [`TsEvent::Problem`]; the demuxer never
//! fails and recovers at the next sync byte, section or PES start.

mod adts;
mod h264;
mod packet;
mod pes;
mod psi;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use weir_media::{
    AacConfig, CodecConfig, Frame, Timescale, Timestamp, TrackInfo, TrackKind,
    AAC_SAMPLES_PER_FRAME,
};

use crate::clock::{Unwrapper, WRAP_33};
use h264::VideoCoding;
use packet::{Continuity, Packet, NULL_PID, PACKET_SIZE, PAT_PID, SYNC_BYTE};
use pes::{Pes, PesAssembler};
use psi::SectionBuffer;

/// `stream_type` of H.264 video (ISO/IEC 13818-1 Table 2-34).
const STREAM_H264: u8 = 0x1b;
/// `stream_type` of HEVC video.
const STREAM_H265: u8 = 0x24;
/// `stream_type` of AAC audio with ADTS framing.
const STREAM_AAC_ADTS: u8 = 0x0f;

/// What the demuxer produced from the bytes pushed.
#[derive(Debug, Clone, PartialEq)]
pub enum TsEvent {
    /// A track's decoder configuration, the first time or when it changes (new SPS/PPS, a
    /// different ADTS header). Comes before the frames that use it.
    Track(TrackInfo),
    /// A coded frame: video `dts` in 90 kHz ticks, audio in ticks of its sample rate.
    Frame(Frame),
    /// Something in the stream was wrong or unusable; the demuxer carried on.
    Problem(TsProblem),
}

/// Why part of a transport stream was not used. Each has a short, stable
/// [`TsProblem::reason`] for logs and metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TsProblem {
    /// Bytes that are not 188-byte packets starting with 0x47 were skipped.
    LostSync,
    /// A packet with an impossible adaptation field, or flagged `transport_error_indicator`.
    BadPacket,
    /// Packets of a stream were lost (continuity counter gap); its partial PES was dropped.
    PacketsLost,
    /// A PSI section with a bad CRC or length.
    BadSection,
    /// A PES packet that does not parse, has no PTS, or is larger than 8 MiB.
    BadPes,
    /// The PMT lists a stream weir cannot package (`stream_type` given), ignored.
    UnsupportedStream(u8),
    /// An H.264 access unit whose parameter sets do not parse.
    BadVideo,
    /// AAC bytes that are not well-formed ADTS frames.
    BadAudio,
    /// The multiplexer signalled a discontinuity (`discontinuity_indicator`).
    Discontinuity,
}

impl TsProblem {
    /// A short, stable name, e.g. for a metric label.
    pub fn reason(self) -> &'static str {
        match self {
            TsProblem::LostSync => "lost_sync",
            TsProblem::BadPacket => "bad_packet",
            TsProblem::PacketsLost => "packets_lost",
            TsProblem::BadSection => "bad_section",
            TsProblem::BadPes => "bad_pes",
            TsProblem::UnsupportedStream(_) => "unsupported_stream",
            TsProblem::BadVideo => "bad_video",
            TsProblem::BadAudio => "bad_audio",
            TsProblem::Discontinuity => "discontinuity",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Video(VideoCoding),
    Aac,
}

impl Codec {
    /// What weir does with a PMT `stream_type`: H.264, HEVC and AAC in ADTS; `None` for the
    /// rest.
    fn of(stream_type: u8) -> Option<Codec> {
        match stream_type {
            STREAM_H264 => Some(Codec::Video(VideoCoding::H264)),
            STREAM_H265 => Some(Codec::Video(VideoCoding::H265)),
            STREAM_AAC_ADTS => Some(Codec::Aac),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct Stream {
    pid: u16,
    codec: Codec,
    pes: PesAssembler,
}

/// The demuxer: push bytes as they arrive (any split), collect events.
#[derive(Debug)]
pub struct TsDemuxer {
    partial: Vec<u8>,
    skipping: bool,
    continuity: HashMap<u16, u8>,
    pat: SectionBuffer,
    pmt: SectionBuffer,
    pmt_pid: Option<u16>,
    reported: Vec<u8>,
    video: Option<Stream>,
    audio: Option<Stream>,
    clock: Unwrapper,
    /// The video configuration in use (H.264 or HEVC).
    avc: Option<CodecConfig>,
    aac: Option<AacConfig>,
    need_keyframe: bool,
    /// Frames held until every stream of the PMT has its configuration (see `emit`).
    held: Vec<Frame>,
    started: bool,
}

/// Most frames held at the start while a stream's configuration is missing (about 4 s of
/// 25 fps video with 48 kHz audio); past it, the stream starts without that track.
const MAX_HELD: usize = 300;

impl Default for TsDemuxer {
    fn default() -> Self {
        TsDemuxer::new()
    }
}

impl TsDemuxer {
    /// A demuxer that has seen nothing yet.
    pub fn new() -> TsDemuxer {
        TsDemuxer {
            partial: Vec::new(),
            skipping: false,
            continuity: HashMap::new(),
            pat: SectionBuffer::default(),
            pmt: SectionBuffer::default(),
            pmt_pid: None,
            reported: Vec::new(),
            video: None,
            audio: None,
            clock: Unwrapper::new(WRAP_33),
            avc: None,
            aac: None,
            need_keyframe: true,
            held: Vec::new(),
            started: false,
        }
    }

    /// Demuxes `data`, appending what it completes to `out`. Bytes of an unfinished packet
    /// are kept for the next call.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<TsEvent>) {
        if !self.partial.is_empty() {
            let need = PACKET_SIZE - self.partial.len();
            let take = need.min(data.len());
            self.partial.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.partial.len() < PACKET_SIZE {
                return;
            }
            let packet = std::mem::take(&mut self.partial);
            self.packet(&packet, out);
        }
        while !data.is_empty() {
            if data[0] == SYNC_BYTE {
                if data.len() < PACKET_SIZE {
                    self.partial.extend_from_slice(data);
                    return;
                }
                // A 0x47 starts a packet when another follows one packet later (or the
                // bytes end there).
                if data.get(PACKET_SIZE).is_none_or(|&b| b == SYNC_BYTE) {
                    let (packet, rest) = data.split_at(PACKET_SIZE);
                    self.skipping = false;
                    self.packet(packet, out);
                    data = rest;
                    continue;
                }
            }
            if !self.skipping {
                self.skipping = true;
                out.push(TsEvent::Problem(TsProblem::LostSync));
            }
            let skip = data[1..]
                .iter()
                .position(|&b| b == SYNC_BYTE)
                .map_or(data.len(), |p| p + 1);
            data = &data[skip..];
        }
    }

    /// Ends the stream: the PES packets still open (video without a length ends only at the
    /// next one) are complete now.
    pub fn finish(&mut self, out: &mut Vec<TsEvent>) {
        self.finish_streams(out);
        self.started = true;
        out.extend(self.held.drain(..).map(TsEvent::Frame));
    }

    fn finish_streams(&mut self, out: &mut Vec<TsEvent>) {
        let flushed: Vec<_> = [self.video.as_mut(), self.audio.as_mut()]
            .into_iter()
            .flatten()
            .filter_map(|s| Some((s.codec, s.pes.flush()?)))
            .collect();
        for (codec, pes) in flushed {
            self.elementary(codec, pes, out);
        }
    }

    fn packet(&mut self, bytes: &[u8], out: &mut Vec<TsEvent>) {
        let packet = match packet::parse(bytes) {
            Ok(p) if !p.transport_error => p,
            _ => {
                out.push(TsEvent::Problem(TsProblem::BadPacket));
                return;
            }
        };
        if packet.pid == NULL_PID {
            return;
        }
        if packet.discontinuity && packet.has_payload {
            out.push(TsEvent::Problem(TsProblem::Discontinuity));
        }
        match packet::continuity(self.continuity.get(&packet.pid).copied(), &packet) {
            Continuity::Duplicate => return,
            Continuity::Next => {}
            Continuity::Gap => self.lost(packet.pid, out),
        }
        self.continuity.insert(packet.pid, packet.continuity);
        if !packet.has_payload {
            return;
        }
        if packet.pid == PAT_PID {
            self.on_pat(&packet, out);
        } else if Some(packet.pid) == self.pmt_pid {
            self.on_pmt(&packet, out);
        } else {
            self.on_es(&packet, out);
        }
    }

    /// Packets of `pid` were lost: what was being reassembled there is dropped.
    fn lost(&mut self, pid: u16, out: &mut Vec<TsEvent>) {
        if pid == PAT_PID {
            self.pat.reset();
        } else if Some(pid) == self.pmt_pid {
            self.pmt.reset();
        } else if let Some(v) = self.video.as_mut().filter(|s| s.pid == pid) {
            v.pes.reset();
            self.need_keyframe = true;
        } else if let Some(a) = self.audio.as_mut().filter(|s| s.pid == pid) {
            a.pes.reset();
        } else {
            return;
        }
        out.push(TsEvent::Problem(TsProblem::PacketsLost));
    }

    fn on_pat(&mut self, packet: &Packet<'_>, out: &mut Vec<TsEvent>) {
        for section in self.pat.push(packet.unit_start, packet.payload) {
            let Ok(section) = section else {
                out.push(TsEvent::Problem(TsProblem::BadSection));
                continue;
            };
            if let Some(pid) = psi::pat_first_pmt(&section) {
                if self.pmt_pid != Some(pid) {
                    self.pmt_pid = Some(pid);
                    self.pmt.reset();
                }
            }
        }
    }

    fn on_pmt(&mut self, packet: &Packet<'_>, out: &mut Vec<TsEvent>) {
        for section in self.pmt.push(packet.unit_start, packet.payload) {
            let Some(streams) = section.ok().and_then(|s| psi::pmt_streams(&s)) else {
                out.push(TsEvent::Problem(TsProblem::BadSection));
                continue;
            };
            let pick = |video: bool, current: &mut Option<Stream>| {
                let found = streams.iter().find_map(|s| {
                    let codec = Codec::of(s.stream_type)?;
                    (matches!(codec, Codec::Video(_)) == video).then_some((s.pid, codec))
                });
                match (found, current.as_ref()) {
                    (Some((pid, codec)), Some(c)) if c.pid == pid && c.codec == codec => {}
                    (Some((pid, codec)), _) => {
                        *current = Some(Stream {
                            pid,
                            codec,
                            pes: PesAssembler::default(),
                        })
                    }
                    (None, _) => *current = None,
                }
            };
            pick(true, &mut self.video);
            pick(false, &mut self.audio);
            for s in &streams {
                let used = Codec::of(s.stream_type).is_some();
                if !used && !self.reported.contains(&s.stream_type) {
                    self.reported.push(s.stream_type);
                    out.push(TsEvent::Problem(TsProblem::UnsupportedStream(
                        s.stream_type,
                    )));
                }
            }
        }
    }

    fn on_es(&mut self, packet: &Packet<'_>, out: &mut Vec<TsEvent>) {
        let stream = [self.video.as_mut(), self.audio.as_mut()]
            .into_iter()
            .flatten()
            .find(|s| s.pid == packet.pid);
        let Some(stream) = stream else {
            return;
        };
        let codec = stream.codec;
        for pes in stream.pes.push(packet.unit_start, packet.payload) {
            self.elementary(codec, pes, out);
        }
    }

    fn elementary(
        &mut self,
        codec: Codec,
        pes: Result<Pes, pes::PesError>,
        out: &mut Vec<TsEvent>,
    ) {
        let Some((pes, pts)) = pes.ok().and_then(|p| p.pts.map(|t| (p, t))) else {
            out.push(TsEvent::Problem(TsProblem::BadPes));
            return;
        };
        let dts = self.clock.unwrap(pes.dts.unwrap_or(pts));
        let pts = self.clock.near(dts, pts);
        match codec {
            Codec::Video(coding) => self.video_frame(coding, &pes, dts, pts, out),
            Codec::Aac => self.audio_frames(&pes, pts, out),
        }
    }

    fn video_frame(
        &mut self,
        coding: VideoCoding,
        pes: &Pes,
        dts: i64,
        pts: i64,
        out: &mut Vec<TsEvent>,
    ) {
        let au = match h264::access_unit(coding, &pes.data, self.avc.as_ref()) {
            Ok(au) => au,
            Err(_) => {
                out.push(TsEvent::Problem(TsProblem::BadVideo));
                return;
            }
        };
        if let Some(config) = au.config {
            self.avc = Some(config.clone());
            out.push(TsEvent::Track(TrackInfo {
                kind: TrackKind::Video,
                codec: config,
            }));
        }
        if self.avc.is_none() || au.sample.is_empty() || (self.need_keyframe && !au.keyframe) {
            return;
        }
        self.need_keyframe = false;
        self.emit(
            Frame {
                track: TrackKind::Video,
                dts: Timestamp::new(dts, Timescale::MPEG_90K),
                composition_offset: pts - dts,
                keyframe: au.keyframe,
                data: au.sample,
            },
            out,
        );
    }

    fn audio_frames(&mut self, pes: &Pes, pts: i64, out: &mut Vec<TsEvent>) {
        let (frames, error) = adts::frames(&pes.data);
        if error.is_some() {
            out.push(TsEvent::Problem(TsProblem::BadAudio));
        }
        for (i, frame) in frames.into_iter().enumerate() {
            if self.aac.as_ref() != Some(&frame.config) {
                self.aac = Some(frame.config.clone());
                out.push(TsEvent::Track(TrackInfo {
                    kind: TrackKind::Audio,
                    codec: CodecConfig::Aac(frame.config.clone()),
                }));
            }
            let timescale = frame.config.timescale();
            // The PES timestamp is the first frame's; the others follow at 1 024 samples.
            let first = Timestamp::new(pts, Timescale::MPEG_90K).rescale(timescale);
            let ticks = first + i as i64 * i64::from(AAC_SAMPLES_PER_FRAME);
            self.emit(
                Frame {
                    track: TrackKind::Audio,
                    dts: Timestamp::new(ticks, timescale),
                    composition_offset: 0,
                    keyframe: true,
                    data: frame.data,
                },
                out,
            );
        }
    }

    /// Passes a frame on. At the start, frames are held until every stream the PMT lists
    /// has announced its configuration (H.264 sends it with the first IDR picture, AAC with
    /// every frame, and either may come first), so a packager sees all tracks before any
    /// frame, as RTMP's sequence headers give it; held for at most [`MAX_HELD`] frames.
    fn emit(&mut self, frame: Frame, out: &mut Vec<TsEvent>) {
        if !self.started {
            let known = (self.video.is_none() || self.avc.is_some())
                && (self.audio.is_none() || self.aac.is_some());
            if !known && self.held.len() < MAX_HELD {
                self.held.push(frame);
                return;
            }
            self.started = true;
            out.extend(self.held.drain(..).map(TsEvent::Frame));
        }
        out.push(TsEvent::Frame(frame));
    }
}
