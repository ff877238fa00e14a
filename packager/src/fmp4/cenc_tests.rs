//! The encryption boxes against shaka-packager's (assets/testdata/shaka-cbcs), and the
//! layout of an encrypted fragment.

use super::*;
use crate::fmp4::{fragment, init_segment, Sample};
use bytes::Bytes;
use weir_media::{AacConfig, AvcConfig, CodecConfig, TrackInfo, TrackKind};

const KID: [u8; 16] = [
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
];
const IV: [u8; 16] = [15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0];

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../assets/testdata/shaka-cbcs/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The whole box (header included) of the first `fourcc` box found anywhere in `data`.
fn find_box<'a>(data: &'a [u8], fourcc: &[u8; 4]) -> &'a [u8] {
    let at = data
        .windows(4)
        .position(|w| w == fourcc)
        .unwrap_or_else(|| panic!("no {}", String::from_utf8_lossy(fourcc)))
        - 4;
    let size = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
    &data[at..at + size]
}

fn protection(pattern: Pattern, pssh: &[u8]) -> InitProtection<'_> {
    InitProtection {
        kid: KID,
        iv: IV,
        pattern,
        pssh,
    }
}

#[test]
fn init_segments_declare_cbcs_as_shaka_packager_does() {
    let shaka = fixture("cabac_init.mp4");
    let pssh = find_box(&shaka, b"pssh");
    let record = &find_box(&shaka, b"avcC")[8..];
    let video = TrackInfo {
        kind: TrackKind::Video,
        codec: CodecConfig::H264(AvcConfig::parse(Bytes::copy_from_slice(record)).unwrap()),
    };
    let ours = init_segment(&video, Some(&protection(Pattern::VIDEO, pssh)));
    // frma avc1, schm cbcs 1.0, tenc v1: pattern 1:9, protected, constant IV.
    assert_eq!(find_box(&ours, b"sinf"), find_box(&shaka, b"sinf"));
    assert_eq!(find_box(&ours, b"pssh"), pssh);
    // The sample entry is encv (its original format only in frma).
    assert_eq!(&find_box(&ours, b"stsd")[20..24], b"encv");
    assert_eq!(&ours[ours.len() - pssh.len()..], pssh, "pssh ends the moov");

    let shaka = fixture("aac_init.mp4");
    let audio = TrackInfo {
        kind: TrackKind::Audio,
        codec: CodecConfig::Aac(AacConfig::parse(Bytes::from_static(&[0x11, 0x88])).unwrap()),
    };
    let ours = init_segment(&audio, Some(&protection(Pattern::AUDIO, pssh)));
    // frma mp4a, tenc pattern 0:0 (every whole block).
    assert_eq!(find_box(&ours, b"sinf"), find_box(&shaka, b"sinf"));
    assert_eq!(&find_box(&ours, b"stsd")[20..24], b"enca");
    // Unencrypted, nothing of it.
    let clear = init_segment(&audio, None);
    assert!(!clear
        .windows(4)
        .any(|w| w == b"sinf" || w == b"pssh" || w == b"enca"));
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

#[test]
fn an_encrypted_fragment_points_at_its_sample_information_and_encrypts_only_protected_bytes() {
    let samples: Vec<Sample> = [40usize, 70, 25]
        .iter()
        .enumerate()
        .map(|(i, n)| Sample {
            duration: 3600,
            composition_offset: 0,
            keyframe: i == 0,
            data: Bytes::from(vec![0x11u8; *n]),
        })
        .collect();
    // Sample 0: 5 clear + 35 protected; sample 1: 10 + 40, then 20 clear; sample 2 all clear.
    let maps = [
        Subsample {
            clear: 5,
            protected: 35,
        },
        Subsample {
            clear: 10,
            protected: 40,
        },
        Subsample {
            clear: 20,
            protected: 0,
        },
        Subsample {
            clear: 25,
            protected: 0,
        },
    ];
    let counts = [1u16, 2, 1];
    // A fake cipher: flips every protected byte.
    let flip = |s: &mut [u8], runs: &[std::ops::Range<usize>]| {
        for run in runs {
            s[run.clone()].iter_mut().for_each(|b| *b ^= 0xff);
        }
    };
    let p = FragmentProtection {
        maps: &maps,
        counts: &counts,
        encrypt: &flip,
    };
    let f = fragment(3, 0, &samples, Some(&p));
    // trun's data offset lands on the first sample, whose bytes are flipped where protected.
    let trun = f.windows(4).position(|w| w == b"trun").unwrap() - 4;
    let data = u32_at(&f, trun + 16) as usize;
    assert_eq!(&f[data - 4..data], b"mdat");
    assert_eq!(&f[data..data + 5], &[0x11; 5]);
    assert_eq!(&f[data + 5..data + 40], &[0xee; 35]);
    assert_eq!(&f[data + 40..data + 50], &[0x11; 10]);
    assert_eq!(&f[data + 50..data + 90], &[0xee; 40]);
    assert_eq!(&f[data + 90..], &[0x11; 45]);
    // saio points at the first sample's entry in senc: subsample count 1, clear 5, 35.
    let saio = find_box(&f, b"saio");
    let offset = u32_at(saio, 16) as usize;
    assert_eq!(&f[offset..offset + 8], &[0, 1, 0, 5, 0, 0, 0, 35]);
    // saiz: sizes 8, 14, 8 (2 + 6 per subsample), not uniform.
    let saiz = find_box(&f, b"saiz");
    assert_eq!(&saiz[12..], &[0, 0, 0, 0, 3, 8, 14, 8]);
    // senc: subsamples flag, 3 samples.
    let senc = find_box(&f, b"senc");
    assert_eq!(u32_at(senc, 8), 2);
    assert_eq!(u32_at(senc, 12), 3);
    // No sample group: a fragment's key is its init segment's.
    assert!(!f.windows(4).any(|w| w == b"sbgp" || w == b"sgpd"));
}
