//! The demuxer against a small test multiplexer: table-driven cases for loss, garbage, wrap
//! and unsupported streams, and properties over generated streams and arbitrary splits.

use std::collections::HashMap;

use bytes::Bytes;
use proptest::prelude::*;
use weir_media::{AacConfig, CodecConfig, Frame, Timescale, TrackKind};

use super::h264::tests::{PPS, SPS};
use super::packet::{PACKET_SIZE, SYNC_BYTE};
use super::{pes, psi, TsDemuxer, TsEvent, TsProblem};

const VIDEO_PID: u16 = 0x100;
const AUDIO_PID: u16 = 0x101;
const PMT_PID: u16 = 0x1000;

/// One frame to multiplex: video (keyframe or not) or an AAC frame, with 90 kHz times.
#[derive(Debug, Clone)]
struct In {
    video: bool,
    keyframe: bool,
    dts: u64,
    cto: u64,
    payload: Vec<u8>,
}

#[derive(Default)]
struct Mux {
    cc: HashMap<u16, u8>,
    out: Vec<u8>,
}

impl Mux {
    fn packets(&mut self, pid: u16, mut payload: &[u8], psi: bool) {
        let mut first = true;
        while !payload.is_empty() || first {
            let cc = self.cc.entry(pid).or_insert(15);
            *cc = (*cc + 1) & 0x0f;
            let take = payload.len().min(184);
            let mut p = vec![SYNC_BYTE, (first as u8) << 6 | (pid >> 8) as u8, pid as u8];
            if take == 184 || psi {
                p.push(0x10 | *cc);
            } else {
                // Adaptation field stuffing so the payload ends the packet exactly.
                p.push(0x30 | *cc);
                let af = 184 - take - 1;
                p.push(af as u8);
                if af > 0 {
                    p.push(0);
                    p.extend(std::iter::repeat_n(0xff, af - 1));
                }
            }
            p.extend_from_slice(&payload[..take]);
            p.resize(PACKET_SIZE, 0xff);
            self.out.extend_from_slice(&p);
            payload = &payload[take..];
            first = false;
        }
    }

    fn tables(&mut self, extra_stream: Option<u8>) {
        let pat = psi::section(0x00, 1, &[0, 1, 0xe0 | (PMT_PID >> 8) as u8, PMT_PID as u8]);
        let mut body = vec![0xe1, 0x00, 0xf0, 0x00];
        let mut es = vec![(0x1b, VIDEO_PID), (0x0f, AUDIO_PID)];
        if let Some(t) = extra_stream {
            es.push((t, 0x102));
        }
        for (t, pid) in es {
            body.extend_from_slice(&[t, 0xe0 | (pid >> 8) as u8, pid as u8, 0xf0, 0x00]);
        }
        let pmt = psi::section(0x02, 1, &body);
        for (pid, s) in [(0, pat), (PMT_PID, pmt)] {
            let mut payload = vec![0];
            payload.extend_from_slice(&s);
            self.packets(pid, &payload, true);
        }
    }

    fn frame(&mut self, f: &In) {
        let modulo = |t: u64| t % (1 << 33);
        if f.video {
            let mut es = vec![0, 0, 0, 1, 9, 0xf0];
            if f.keyframe {
                for set in [SPS, PPS] {
                    es.extend_from_slice(&[0, 0, 1]);
                    es.extend_from_slice(set);
                }
            }
            es.extend_from_slice(&[0, 0, 1, if f.keyframe { 0x65 } else { 0x41 }]);
            es.extend_from_slice(&f.payload);
            let pts = modulo(f.dts + f.cto);
            let p = pes::encode(0xe0, pts, Some(modulo(f.dts)), &es, false);
            self.packets(VIDEO_PID, &p, false);
        } else {
            let mut es = aac().adts_header(f.payload.len()).unwrap().to_vec();
            es.extend_from_slice(&f.payload);
            let p = pes::encode(0xc0, modulo(f.dts), None, &es, true);
            self.packets(AUDIO_PID, &p, false);
        }
    }
}

fn aac() -> AacConfig {
    AacConfig::parse(Bytes::from_static(&[0x11, 0x90])).unwrap() // LC, 48 kHz, stereo
}

/// Two GOPs of 25 fps video (IBP order: cto 2 frames on every other picture) with 48 kHz
/// audio interleaved, starting at `start` (90 kHz ticks).
fn stream(start: u64, frames: usize) -> Vec<In> {
    let mut v = Vec::new();
    for i in 0..frames as u64 {
        v.push(In {
            video: true,
            keyframe: i % 25 == 0,
            dts: start + i * 3_600,
            cto: if i % 2 == 0 { 7_200 } else { 0 },
            payload: vec![(i % 200) as u8 + 1; 50 + (i as usize * 37) % 600],
        });
        // 1 024 samples at 48 kHz = 1 920 ticks; about two audio frames per video frame.
        for a in 0..2u64 {
            let n = i * 2 + a;
            v.push(In {
                video: false,
                keyframe: true,
                dts: start + n * 1_920,
                cto: 0,
                payload: vec![(n % 100) as u8 + 1; 20 + (n as usize * 13) % 300],
            });
        }
    }
    v
}

fn mux(frames: &[In], extra_stream: Option<u8>) -> Vec<u8> {
    let mut m = Mux::default();
    m.tables(extra_stream);
    for (i, f) in frames.iter().enumerate() {
        // Tables again before every IDR picture but the first, as multiplexers repeat them.
        if i > 0 && f.video && f.keyframe {
            m.tables(extra_stream);
        }
        m.frame(f);
    }
    m.out
}

fn demux_all(bytes: &[u8], splits: &[usize]) -> Vec<TsEvent> {
    let mut d = TsDemuxer::new();
    let mut out = Vec::new();
    let mut at = 0;
    for &s in splits {
        let s = s.clamp(at, bytes.len());
        d.push(&bytes[at..s], &mut out);
        at = s;
    }
    d.push(&bytes[at..], &mut out);
    d.finish(&mut out);
    out
}

fn frames_of(events: &[TsEvent], kind: TrackKind) -> Vec<&Frame> {
    events
        .iter()
        .filter_map(|e| match e {
            TsEvent::Frame(f) if f.track == kind => Some(f),
            _ => None,
        })
        .collect()
}

fn problems(events: &[TsEvent]) -> Vec<TsProblem> {
    events
        .iter()
        .filter_map(|e| match e {
            TsEvent::Problem(p) => Some(*p),
            _ => None,
        })
        .collect()
}

fn check_frames(events: &[TsEvent], input: &[In]) {
    let video: Vec<&In> = input.iter().filter(|f| f.video).collect();
    let audio: Vec<&In> = input.iter().filter(|f| !f.video).collect();
    let got_v = frames_of(events, TrackKind::Video);
    let got_a = frames_of(events, TrackKind::Audio);
    assert_eq!(got_v.len(), video.len());
    assert_eq!(got_a.len(), audio.len());
    for (g, w) in got_v.iter().zip(&video) {
        assert_eq!(g.dts.timescale, Timescale::MPEG_90K);
        assert_eq!(g.dts.ticks, w.dts as i64);
        assert_eq!(g.composition_offset, w.cto as i64);
        assert_eq!(g.keyframe, w.keyframe);
        let mut sample = ((w.payload.len() + 1) as u32).to_be_bytes().to_vec();
        sample.push(if w.keyframe { 0x65 } else { 0x41 });
        sample.extend_from_slice(&w.payload);
        assert_eq!(&g.data[..], &sample[..]);
    }
    for (g, w) in got_a.iter().zip(&audio) {
        assert_eq!(g.dts.timescale.get(), 48_000);
        assert_eq!(g.dts.ticks, w.dts as i64 * 48_000 / 90_000);
        assert_eq!(&g.data[..], &w.payload[..]);
    }
}

#[test]
fn demuxes_video_and_audio_exactly() {
    let input = stream(900_000, 50);
    let events = demux_all(&mux(&input, None), &[]);
    assert_eq!(problems(&events), vec![]);
    let tracks: Vec<&CodecConfig> = events
        .iter()
        .filter_map(|e| match e {
            TsEvent::Track(t) => Some(&t.codec),
            _ => None,
        })
        .collect();
    assert_eq!(tracks.len(), 2, "one configuration per track: {tracks:?}");
    // Audio PES packets carry their length and complete first; video waits for the next.
    assert_eq!(tracks[0], &CodecConfig::Aac(aac()));
    assert!(matches!(tracks[1], CodecConfig::H264(c) if c.width == 1280 && c.height == 720));
    check_frames(&events, &input);
}

#[test]
fn every_track_is_announced_before_the_first_frame() {
    // Audio only after three video frames: the video frames wait for its configuration.
    let mut input: Vec<In> = stream(0, 25).into_iter().filter(|f| f.video).collect();
    let audio: Vec<In> = stream(0, 25).into_iter().filter(|f| !f.video).collect();
    input.splice(3..3, audio);
    let events = demux_all(&mux(&input, None), &[]);
    let first_frame = events
        .iter()
        .position(|e| matches!(e, TsEvent::Frame(_)))
        .unwrap();
    let tracks = events
        .iter()
        .filter(|e| matches!(e, TsEvent::Track(_)))
        .count();
    assert_eq!(tracks, 2);
    assert!(
        events[..first_frame]
            .iter()
            .filter(|e| matches!(e, TsEvent::Track(_)))
            .count()
            == 2
    );
    assert_eq!(frames_of(&events, TrackKind::Video).len(), 25);
}

#[test]
fn timestamps_continue_across_the_33_bit_wrap() {
    let start = (1u64 << 33) - 90_000; // one second before the wrap
    let input = stream(start, 50);
    let events = demux_all(&mux(&input, None), &[]);
    assert_eq!(problems(&events), vec![]);
    check_frames(&events, &input);
    let last = frames_of(&events, TrackKind::Video)
        .last()
        .unwrap()
        .dts
        .ticks;
    assert!(last > 1 << 33, "the timeline went past the wrap: {last}");
}

#[test]
fn lost_video_packets_drop_frames_until_the_next_idr() {
    let input = stream(0, 50);
    let bytes = mux(&input, None);
    // Drop the 40th video packet (inside the first GOP).
    let mut kept = Vec::new();
    let mut seen = 0;
    for p in bytes.chunks(PACKET_SIZE) {
        let pid = u16::from(p[1] & 0x1f) << 8 | u16::from(p[2]);
        if pid == VIDEO_PID {
            seen += 1;
            if seen == 40 {
                continue;
            }
        }
        kept.extend_from_slice(p);
    }
    let events = demux_all(&kept, &[]);
    assert_eq!(problems(&events), vec![TsProblem::PacketsLost]);
    let video = frames_of(&events, TrackKind::Video);
    assert!(video.len() > 25 && video.len() < 50, "{}", video.len());
    // What survives after the loss starts with the second GOP's IDR, unbroken from there.
    let after: Vec<_> = video
        .iter()
        .skip_while(|f| f.dts.ticks < 25 * 3_600)
        .collect();
    assert_eq!(after.len(), 25);
    assert!(after[0].keyframe);
    assert_eq!(frames_of(&events, TrackKind::Audio).len(), 100);
}

#[test]
fn garbage_before_and_between_packets_is_skipped() {
    let input = stream(0, 30);
    let bytes = mux(&input, None);
    let cut = PACKET_SIZE * 20;
    let mut dirty = b"GET / HTTP/1.1\r\n\x47\x47junk".to_vec();
    dirty.extend_from_slice(&bytes[..cut]);
    dirty.extend_from_slice(&[0x47, 1, 2, 3, 0x47]);
    dirty.extend_from_slice(&bytes[cut..]);
    let events = demux_all(&dirty, &[]);
    assert!(problems(&events).contains(&TsProblem::LostSync));
    check_frames(&events, &input);
}

#[test]
fn an_unsupported_stream_is_reported_once() {
    let input = stream(0, 5);
    let mut bytes = mux(&input, Some(0x81));
    bytes.extend(mux(&[], Some(0x81))); // the tables again
    let events = demux_all(&bytes, &[]);
    assert_eq!(problems(&events), vec![TsProblem::UnsupportedStream(0x81)]);
}

#[test]
fn video_before_the_first_idr_is_not_passed_on() {
    let input: Vec<In> = stream(0, 50).into_iter().skip(3 * 10).collect(); // mid-GOP join
    let events = demux_all(&mux(&input, None), &[]);
    let video = frames_of(&events, TrackKind::Video);
    assert!(video[0].keyframe);
    assert_eq!(video[0].dts.ticks, 25 * 3_600);
}

proptest! {
    /// However the bytes are split into pushes, the events are the same.
    #[test]
    fn any_split_gives_the_same_events(mut splits in prop::collection::vec(0usize..40_000, 0..30)) {
        let input = stream(12_345, 30);
        let bytes = mux(&input, None);
        splits.sort_unstable();
        let whole = demux_all(&bytes, &[]);
        prop_assert_eq!(demux_all(&bytes, &splits), whole);
    }

    /// Arbitrary bytes, alone or spliced into a valid stream, never panic, and the valid
    /// part after them still demuxes.
    #[test]
    fn garbage_never_panics(garbage in prop::collection::vec(any::<u8>(), 0..3_000)) {
        let mut d = TsDemuxer::new();
        let mut out = Vec::new();
        d.push(&garbage, &mut out);
        d.finish(&mut out);
        let input = stream(0, 60);
        let mut bytes = garbage.clone();
        bytes.extend(mux(&input, None));
        let events = demux_all(&bytes, &[]);
        prop_assert!(frames_of(&events, TrackKind::Video).len() >= 35);
    }
}
