//! CMAF box writing (ISO/IEC 14496-12 ISOBMFF, ISO/IEC 23000-19 CMAF): the init segment of a
//! single-track file and the `moof`+`mdat` fragment of one part.
//!
//! weir writes these boxes itself rather than through a general MP4 library: the packager is
//! the hot path weir exists for, and writing straight into one buffer with back-patched sizes
//! makes one allocation per fragment and no intermediate box tree.

use bytes::{BufMut, Bytes, BytesMut};
use weir_media::{CodecConfig, TrackInfo};

mod cenc;

pub(crate) use cenc::{FragmentProtection, InitProtection};

/// The track ID of the single track in every weir init segment and fragment.
pub(crate) const TRACK_ID: u32 = 1;

/// `sample_flags` (ISO/IEC 14496-12 §8.8.3.1) of a sync sample: `sample_depends_on = 2`.
const SYNC_SAMPLE: u32 = 0x0200_0000;
/// `sample_flags` of a non-sync sample: `sample_depends_on = 1`, `sample_is_non_sync_sample`.
const NON_SYNC_SAMPLE: u32 = 0x0101_0000;

/// One sample of a fragment, in the track's timescale.
#[derive(Clone, Debug)]
pub(crate) struct Sample {
    /// Duration in track ticks.
    pub(crate) duration: u32,
    /// Presentation minus decode time, in track ticks.
    pub(crate) composition_offset: i32,
    /// Whether this is a sync sample (IDR / audio frame).
    pub(crate) keyframe: bool,
    /// The sample's bytes.
    pub(crate) data: Bytes,
}

/// A box whose 32-bit size is patched in when it ends.
struct BoxStart(usize);

fn begin(buf: &mut BytesMut, fourcc: &[u8; 4]) -> BoxStart {
    let at = buf.len();
    buf.put_u32(0);
    buf.put_slice(fourcc);
    BoxStart(at)
}

fn begin_full(buf: &mut BytesMut, fourcc: &[u8; 4], version: u8, flags: u32) -> BoxStart {
    let b = begin(buf, fourcc);
    buf.put_u32((u32::from(version) << 24) | (flags & 0x00ff_ffff));
    b
}

fn end(buf: &mut BytesMut, b: BoxStart) {
    let size = (buf.len() - b.0) as u32;
    buf[b.0..b.0 + 4].copy_from_slice(&size.to_be_bytes());
}

const UNITY_MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// The init segment (`ftyp` + `moov`) of a single-track CMAF file for `track`, whose media
/// timescale is `track.codec.timescale()`; with `protection`, an encrypted track (`encv` or
/// `enca` with its `sinf`, and the `pssh` boxes at the end of the `moov`).
pub(crate) fn init_segment(track: &TrackInfo, protection: Option<&InitProtection<'_>>) -> Bytes {
    let timescale = track.codec.timescale().get();
    let mut buf = BytesMut::with_capacity(1024);
    let b = begin(&mut buf, b"ftyp");
    buf.put_slice(b"iso6");
    buf.put_u32(0);
    for brand in [b"iso6", b"cmfc", b"mp41"] {
        buf.put_slice(brand);
    }
    end(&mut buf, b);

    let moov = begin(&mut buf, b"moov");
    let b = begin_full(&mut buf, b"mvhd", 0, 0);
    buf.put_u32(0); // creation_time
    buf.put_u32(0); // modification_time
    buf.put_u32(1_000); // timescale
    buf.put_u32(0); // duration: unknown (fragmented)
    buf.put_u32(0x0001_0000); // rate 1.0
    buf.put_u16(0x0100); // volume 1.0
    buf.put_bytes(0, 10);
    UNITY_MATRIX.iter().for_each(|v| buf.put_u32(*v));
    buf.put_bytes(0, 24); // pre_defined
    buf.put_u32(TRACK_ID + 1); // next_track_ID
    end(&mut buf, b);

    let trak = begin(&mut buf, b"trak");
    let (width, height) = track.codec.picture_size().unwrap_or((0, 0));
    let is_audio = matches!(track.codec, CodecConfig::Aac(_));
    let b = begin_full(&mut buf, b"tkhd", 0, 0x3); // enabled | in_movie
    buf.put_u32(0);
    buf.put_u32(0);
    buf.put_u32(TRACK_ID);
    buf.put_u32(0); // reserved
    buf.put_u32(0); // duration
    buf.put_bytes(0, 8);
    buf.put_u16(0); // layer
    buf.put_u16(0); // alternate_group
    buf.put_u16(if is_audio { 0x0100 } else { 0 });
    buf.put_u16(0);
    UNITY_MATRIX.iter().for_each(|v| buf.put_u32(*v));
    buf.put_u32(width << 16);
    buf.put_u32(height << 16);
    end(&mut buf, b);

    let mdia = begin(&mut buf, b"mdia");
    let b = begin_full(&mut buf, b"mdhd", 0, 0);
    buf.put_u32(0);
    buf.put_u32(0);
    buf.put_u32(timescale);
    buf.put_u32(0);
    buf.put_u16(0x55c4); // language "und"
    buf.put_u16(0);
    end(&mut buf, b);
    let b = begin_full(&mut buf, b"hdlr", 0, 0);
    buf.put_u32(0);
    buf.put_slice(if is_audio { b"soun" } else { b"vide" });
    buf.put_bytes(0, 12);
    buf.put_slice(if is_audio {
        b"weir audio\0"
    } else {
        b"weir video\0"
    });
    end(&mut buf, b);

    let minf = begin(&mut buf, b"minf");
    if is_audio {
        let b = begin_full(&mut buf, b"smhd", 0, 0);
        buf.put_u32(0);
        end(&mut buf, b);
    } else {
        let b = begin_full(&mut buf, b"vmhd", 0, 1);
        buf.put_bytes(0, 8);
        end(&mut buf, b);
    }
    let dinf = begin(&mut buf, b"dinf");
    let dref = begin_full(&mut buf, b"dref", 0, 0);
    buf.put_u32(1);
    let b = begin_full(&mut buf, b"url ", 0, 1); // self-contained
    end(&mut buf, b);
    end(&mut buf, dref);
    end(&mut buf, dinf);

    let stbl = begin(&mut buf, b"stbl");
    let stsd = begin_full(&mut buf, b"stsd", 0, 0);
    buf.put_u32(1);
    let visual = |buf: &mut BytesMut, entry: &[u8; 4], config: &[u8; 4], record: &[u8]| {
        let entry_type = if protection.is_some() { b"encv" } else { entry };
        let at = visual_sample_entry(buf, entry_type, config, record, width, height);
        if let Some(p) = protection {
            cenc::sinf(buf, entry, p);
        }
        end(buf, at);
    };
    match &track.codec {
        CodecConfig::H264(avc) => visual(&mut buf, b"avc1", b"avcC", avc.record()),
        CodecConfig::H265(hevc) => visual(&mut buf, b"hvc1", b"hvcC", hevc.record()),
        CodecConfig::Av1(av1) => visual(&mut buf, b"av01", b"av1C", av1.record()),
        CodecConfig::Aac(aac) => {
            let entry = begin(
                &mut buf,
                if protection.is_some() {
                    b"enca"
                } else {
                    b"mp4a"
                },
            );
            buf.put_bytes(0, 6);
            buf.put_u16(1);
            buf.put_bytes(0, 8);
            buf.put_u16(u16::from(aac.channels.max(1)));
            buf.put_u16(16); // samplesize
            buf.put_u32(0);
            buf.put_u32(aac.sample_rate.min(0xffff) << 16);
            write_esds(&mut buf, aac.config());
            if let Some(p) = protection {
                cenc::sinf(&mut buf, b"mp4a", p);
            }
            end(&mut buf, entry);
        }
    }
    end(&mut buf, stsd);
    for fourcc in [b"stts", b"stsc", b"stco"] {
        let b = begin_full(&mut buf, fourcc, 0, 0);
        buf.put_u32(0);
        end(&mut buf, b);
    }
    let b = begin_full(&mut buf, b"stsz", 0, 0);
    buf.put_u32(0);
    buf.put_u32(0);
    end(&mut buf, b);
    end(&mut buf, stbl);
    end(&mut buf, minf);
    end(&mut buf, mdia);
    end(&mut buf, trak);

    let mvex = begin(&mut buf, b"mvex");
    let b = begin_full(&mut buf, b"trex", 0, 0);
    buf.put_u32(TRACK_ID);
    buf.put_u32(1); // default_sample_description_index
    buf.put_u32(0);
    buf.put_u32(0);
    buf.put_u32(if is_audio {
        SYNC_SAMPLE
    } else {
        NON_SYNC_SAMPLE
    });
    end(&mut buf, b);
    end(&mut buf, mvex);
    if let Some(p) = protection {
        buf.put_slice(p.pssh);
    }
    end(&mut buf, moov);
    buf.freeze()
}

/// `esds` (ISO/IEC 14496-14 §5.6) with an ES_Descriptor for AAC (objectTypeIndication 0x40).
fn write_esds(buf: &mut BytesMut, asc: &[u8]) {
    // Descriptor lengths use the 1-byte form: every size here is below 128.
    let asc_len = asc.len().min(100) as u8;
    let b = begin_full(buf, b"esds", 0, 0);
    buf.put_u8(0x03); // ES_DescrTag
    buf.put_u8(3 + 2 + 13 + 2 + asc_len + 3);
    buf.put_u16(0); // ES_ID
    buf.put_u8(0); // flags
    buf.put_u8(0x04); // DecoderConfigDescrTag
    buf.put_u8(13 + 2 + asc_len);
    buf.put_u8(0x40); // Audio ISO/IEC 14496-3
    buf.put_u8(0x15); // streamType audio (5) << 2 | upStream 0 | reserved 1
    buf.put_uint(0, 3); // bufferSizeDB
    buf.put_u32(0); // maxBitrate
    buf.put_u32(0); // avgBitrate
    buf.put_u8(0x05); // DecSpecificInfoTag
    buf.put_u8(asc_len);
    buf.put_slice(&asc[..asc_len as usize]);
    buf.put_u8(0x06); // SLConfigDescrTag
    buf.put_u8(1);
    buf.put_u8(0x02);
    end(buf, b);
}

/// One CMAF chunk: `moof` + `mdat` holding `samples`, the first of which decodes at
/// `base_decode_time` (track ticks, the `tfdt`). `sequence_number` is the `mfhd` sequence
/// number; it must grow from fragment to fragment of a track. With `protection`, the samples
/// are encrypted in the `mdat` and the `traf` carries their encryption boxes.
pub(crate) fn fragment(
    sequence_number: u32,
    base_decode_time: u64,
    samples: &[Sample],
    protection: Option<&FragmentProtection<'_>>,
) -> Bytes {
    let payload: usize = samples.iter().map(|s| s.data.len()).sum();
    let mut buf = BytesMut::with_capacity(128 + samples.len() * 16 + payload);
    let moof = begin(&mut buf, b"moof");
    let b = begin_full(&mut buf, b"mfhd", 0, 0);
    buf.put_u32(sequence_number);
    end(&mut buf, b);
    let traf = begin(&mut buf, b"traf");
    let b = begin_full(&mut buf, b"tfhd", 0, 0x02_0000); // default-base-is-moof
    buf.put_u32(TRACK_ID);
    end(&mut buf, b);
    let b = begin_full(&mut buf, b"tfdt", 1, 0);
    buf.put_u64(base_decode_time);
    end(&mut buf, b);
    // data-offset, sample-duration, sample-size, sample-flags, sample-composition-time-offset;
    // version 1: signed composition offsets.
    let trun = begin_full(
        &mut buf,
        b"trun",
        1,
        0x0001 | 0x0100 | 0x0200 | 0x0400 | 0x0800,
    );
    buf.put_u32(samples.len() as u32);
    let data_offset_at = buf.len();
    buf.put_u32(0);
    for s in samples {
        buf.put_u32(s.duration);
        buf.put_u32(s.data.len() as u32);
        buf.put_u32(if s.keyframe {
            SYNC_SAMPLE
        } else {
            NON_SYNC_SAMPLE
        });
        buf.put_i32(s.composition_offset);
    }
    end(&mut buf, trun);
    let moof_start = moof.0;
    if let Some(p) = protection {
        cenc::traf_boxes(&mut buf, moof_start, samples.len(), p);
    }
    end(&mut buf, traf);
    end(&mut buf, moof);
    let data_offset = (buf.len() - moof_start + 8) as u32;
    buf[data_offset_at..data_offset_at + 4].copy_from_slice(&data_offset.to_be_bytes());
    buf.put_u32((8 + payload) as u32);
    buf.put_slice(b"mdat");
    let payload_at = buf.len();
    for s in samples {
        buf.put_slice(&s.data);
    }
    if let Some(p) = protection {
        cenc::encrypt_payload(
            &mut buf,
            payload_at,
            samples.iter().map(|s| s.data.len()),
            p,
        );
    }
    buf.freeze()
}

/// A `VisualSampleEntry` (ISO/IEC 14496-12 §12.1.3) of type `entry_type` (`avc1`, `hvc1`)
/// holding the decoder configuration record in a `config_type` box (`avcC`, `hvcC`), left
/// open for the caller to end (after a `sinf`, if any).
fn visual_sample_entry(
    buf: &mut BytesMut,
    entry_type: &[u8; 4],
    config_type: &[u8; 4],
    record: &[u8],
    width: u32,
    height: u32,
) -> BoxStart {
    let entry = begin(buf, entry_type);
    buf.put_bytes(0, 6);
    buf.put_u16(1); // data_reference_index
    buf.put_bytes(0, 16); // pre_defined, reserved
    buf.put_u16(width as u16);
    buf.put_u16(height as u16);
    buf.put_u32(0x0048_0000); // 72 dpi
    buf.put_u32(0x0048_0000);
    buf.put_u32(0);
    buf.put_u16(1); // frame_count
    buf.put_bytes(0, 32); // compressorname
    buf.put_u16(0x0018); // depth
    buf.put_i16(-1);
    let b = begin(buf, config_type);
    buf.put_slice(record);
    end(buf, b);
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(data: &[u8]) -> Vec<(String, usize)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at + 8 <= data.len() {
            let size = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
            out.push((String::from_utf8_lossy(&data[at + 4..at + 8]).into(), size));
            assert!(
                size >= 8 && at + size <= data.len(),
                "box overruns its parent"
            );
            at += size;
        }
        assert_eq!(at, data.len(), "boxes do not tile the buffer");
        out
    }

    #[test]
    fn fragment_offsets_point_into_mdat() {
        let samples = vec![
            Sample {
                duration: 3600,
                composition_offset: 0,
                keyframe: true,
                data: Bytes::from_static(b"abcd"),
            },
            Sample {
                duration: 3600,
                composition_offset: 7200,
                keyframe: false,
                data: Bytes::from_static(b"ef"),
            },
        ];
        let f = fragment(7, 90_000, &samples, None);
        let boxes = walk(&f);
        assert_eq!(
            boxes.iter().map(|b| b.0.as_str()).collect::<Vec<_>>(),
            ["moof", "mdat"]
        );
        let moof_len = boxes[0].1;
        // trun data_offset is relative to the moof start and must land on the first sample.
        let trun = f.windows(4).position(|w| w == b"trun").unwrap();
        let off = u32::from_be_bytes(f[trun + 12..trun + 16].try_into().unwrap()) as usize;
        assert_eq!(off, moof_len + 8);
        assert_eq!(&f[off..off + 6], b"abcdef");
    }
}
