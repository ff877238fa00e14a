//! weir's `cbcs` against shaka-packager's (assets/testdata/shaka-cbcs): for every sample of
//! shaka's encrypted fragments, weir's subsample map of the clear sample is shaka's `senc`
//! entry, and weir's cipher turns the clear sample into shaka's bytes exactly.

use bytes::Bytes;
use weir_media::{AvcConfig, CodecConfig, HevcConfig, ProtectedRanges, Subsample};

const KEY: [u8; 16] = [
    0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
];
const IV: [u8; 16] = [15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0];

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../assets/testdata/shaka-cbcs/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The boxes of `data` as (type, body).
fn boxes(data: &[u8]) -> Vec<([u8; 4], &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= data.len() {
        let size = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        assert!(size >= 8 && at + size <= data.len(), "a box overruns");
        out.push((
            data[at + 4..at + 8].try_into().unwrap(),
            &data[at + 8..at + size],
        ));
        at += size;
    }
    out
}

fn child<'a>(data: &'a [u8], fourcc: &[u8; 4]) -> &'a [u8] {
    boxes(data)
        .into_iter()
        .find(|(t, _)| t == fourcc)
        .map(|(_, b)| b)
        .unwrap_or_else(|| panic!("no {}", String::from_utf8_lossy(fourcc)))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

/// The body of the first `fourcc` box (an `avcC` or `hvcC` record) in a video init segment.
fn record(init: &[u8], fourcc: &[u8; 4]) -> Bytes {
    let at = init.windows(4).position(|w| w == fourcc).unwrap();
    let size = u32_at(init, at - 4) as usize;
    Bytes::copy_from_slice(&init[at + 4..at - 4 + size])
}

/// Every sample of a one-`moof` segment (styp, sidx, moof, mdat): its bytes and its `senc`
/// subsample map.
fn samples(segment: &[u8]) -> Vec<(Vec<u8>, Vec<Subsample>)> {
    let top = boxes(segment);
    let moof_at = {
        let mut at = 0;
        for (t, b) in &top {
            if t == b"moof" {
                break;
            }
            at += b.len() + 8;
        }
        at
    };
    let moof = child(segment, b"moof");
    let traf = child(moof, b"traf");
    let trun = child(traf, b"trun");
    let flags = u32_at(trun, 0) & 0x00ff_ffff;
    let count = u32_at(trun, 4) as usize;
    let mut at = 8;
    let data_offset = u32_at(trun, at) as usize;
    at += 4;
    if flags & 0x4 != 0 {
        at += 4;
    }
    let mut sizes = Vec::new();
    for _ in 0..count {
        if flags & 0x100 != 0 {
            at += 4;
        }
        sizes.push(u32_at(trun, at) as usize);
        at += 4;
        at += 4 * ((flags & 0x400 != 0) as usize + (flags & 0x800 != 0) as usize);
    }
    let senc = child(traf, b"senc");
    let senc_flags = u32_at(senc, 0) & 0x00ff_ffff;
    assert_eq!(u32_at(senc, 4) as usize, count);
    let mut at = 8;
    let mut sample_at = moof_at + data_offset;
    let mut out = Vec::new();
    for size in sizes {
        let mut map = Vec::new();
        if senc_flags & 0x2 != 0 {
            let n = u16::from_be_bytes(senc[at..at + 2].try_into().unwrap());
            at += 2;
            for _ in 0..n {
                map.push(Subsample {
                    clear: u16::from_be_bytes(senc[at..at + 2].try_into().unwrap()),
                    protected: u32_at(senc, at + 2),
                });
                at += 6;
            }
        }
        out.push((segment[sample_at..sample_at + size].to_vec(), map));
        sample_at += size;
    }
    out
}

fn check_video(name: &str) {
    let init = fixture(&format!("{name}_init.mp4"));
    let segment = fixture(&format!("{name}_1.m4s"));
    let codec = if name == "hevc" {
        CodecConfig::H265(HevcConfig::parse(record(&init, b"hvcC")).unwrap())
    } else {
        CodecConfig::H264(AvcConfig::parse(record(&init, b"avcC")).unwrap())
    };
    let mut ranges = ProtectedRanges::new(&codec).unwrap();
    let samples = samples(&segment);
    assert_eq!(samples.len(), 25, "one second at 25 fps");
    let mut map = Vec::new();
    let mut protected_bytes = 0;
    for (i, (encrypted, shaka_map)) in samples.iter().enumerate() {
        let mut clear = encrypted.clone();
        weir_drm::decrypt_sample(&KEY, &IV, &mut clear, shaka_map, (1, 9));
        ranges.map(&clear, &mut map).unwrap();
        assert_eq!(&map, shaka_map, "{name}: sample {i}'s subsample map");
        let mut ours = clear.clone();
        weir_drm::encrypt_sample(&KEY, &IV, &mut ours, &map, (1, 9));
        assert_eq!(&ours, encrypted, "{name}: sample {i}'s bytes");
        protected_bytes += map.iter().map(|s| s.protected).sum::<u32>();
    }
    assert!(protected_bytes > 1000, "{name}: slices are protected");
}

#[test]
fn hevc_slice_segments_map_and_encrypt_as_shaka_packager_does() {
    check_video("hevc");
}

#[test]
fn cabac_slices_map_and_encrypt_as_shaka_packager_does() {
    check_video("cabac");
}

#[test]
fn cavlc_slices_with_parameter_sets_in_band_map_and_encrypt_as_shaka_packager_does() {
    check_video("cavlc");
}

#[test]
fn aac_samples_encrypt_whole_as_shaka_packager_does() {
    let segment = fixture("aac_1.m4s");
    let samples = samples(&segment);
    assert!(samples.len() > 40);
    for (i, (encrypted, shaka_map)) in samples.iter().enumerate() {
        assert!(shaka_map.is_empty(), "whole samples");
        let mut clear = encrypted.clone();
        weir_drm::decrypt_sample(&KEY, &IV, &mut clear, &[], (0, 0));
        assert_ne!(&clear, encrypted);
        let mut ours = clear.clone();
        weir_drm::encrypt_sample(&KEY, &IV, &mut ours, &[], (0, 0));
        assert_eq!(&ours, encrypted, "sample {i}");
    }
}
