//! Subsample maps: tables and properties over generated samples. The maps of real H.264 (CABAC
//! and CAVLC, several slices per picture, B-frames, weighted prediction, parameter sets in
//! band) are checked byte for byte against shaka-packager's in `weir-drm`'s tests.

use super::*;
use crate::{AacConfig, AvcConfig, HevcConfig};
use bytes::Bytes;
use proptest::prelude::*;

/// SPS and PPS of x264 (High, 160x96), as in a `-f lavfi testsrc2` encode.
fn avc() -> CodecConfig {
    let sps = hex("6764000bacd9428db011000003000100000300320f142996");
    let pps = hex("68ebe3cb22c0");
    CodecConfig::H264(AvcConfig::from_parameter_sets(&sps, &pps).unwrap())
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn sample(nals: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for n in nals {
        out.extend_from_slice(&(n.len() as u32).to_be_bytes());
        out.extend_from_slice(n);
    }
    out
}

#[test]
fn audio_is_protected_whole_and_hevc_parameter_sets_are_taken() {
    let aac = CodecConfig::Aac(AacConfig::parse(Bytes::from_static(&[0x11, 0x90])).unwrap());
    let mut r = ProtectedRanges::new(&aac).unwrap();
    assert!(r.whole_samples());
    let mut out = vec![Subsample {
        clear: 1,
        protected: 1,
    }];
    r.map(&[1, 2, 3], &mut out).unwrap();
    assert!(out.is_empty());
    // libx265's VPS, SPS and PPS parse; an SEI and an AUD are clear, in one subsample.
    let mut r = ProtectedRanges::new(&hevc()).unwrap();
    assert!(!r.whole_samples());
    r.map(
        &sample(&[&[0x4e, 0x01, 5, 1, 0x80], &[0x46, 0x01, 0x50]]),
        &mut out,
    )
    .unwrap();
    assert_eq!(
        out,
        [Subsample {
            clear: 4 + 5 + 4 + 3,
            protected: 0
        }]
    );
    // A slice segment naming an unknown PPS (id 5) is an error, not a guess.
    let slice = [0x02, 0x01, 0b1000_0110, 0xff];
    assert!(matches!(
        r.map(&sample(&[&slice]), &mut out),
        Err(MediaError::InvalidSample(_))
    ));
}

fn hevc() -> CodecConfig {
    CodecConfig::H265(HevcConfig::parse(Bytes::from_static(crate::hevc::tests::X265_720P)).unwrap())
}

fn hevc_nal() -> impl Strategy<Value = Vec<u8>> {
    // VCL types (TRAIL_R, IDR_W_RADL, CRA), parameter sets, SEI, AUD; random payloads.
    (
        prop_oneof![
            Just(1u8),
            Just(19),
            Just(21),
            Just(33),
            Just(34),
            Just(39),
            Just(35)
        ],
        proptest::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(t, mut body)| {
            body.splice(0..0, [t << 1, 0x01]);
            body
        })
}

#[test]
fn nal_units_that_are_not_slices_stay_clear() {
    let mut r = ProtectedRanges::new(&avc()).unwrap();
    let mut out = Vec::new();
    // An access unit delimiter and an SEI: all clear, one subsample.
    let s = sample(&[&[0x09, 0xf0], &[0x06, 0x05, 0x01, 0xaa, 0x80]]);
    r.map(&s, &mut out).unwrap();
    assert_eq!(
        out,
        [Subsample {
            clear: s.len() as u16,
            protected: 0
        }]
    );
}

#[test]
fn a_clear_run_longer_than_16_bits_is_split() {
    let mut r = ProtectedRanges::new(&avc()).unwrap();
    let mut out = Vec::new();
    let mut sei = vec![0x06u8];
    sei.resize(70_000, 0x55);
    let s = sample(&[&sei]);
    r.map(&s, &mut out).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(
        out[0],
        Subsample {
            clear: u16::MAX,
            protected: 0
        }
    );
    assert_eq!(
        usize::from(out[0].clear) + usize::from(out[1].clear),
        s.len()
    );
}

#[test]
fn bad_samples_are_errors() {
    let mut r = ProtectedRanges::new(&avc()).unwrap();
    let mut out = Vec::new();
    for bad in [
        &[0u8, 0, 0, 9, 0x09][..],             // a length past the end
        &[0u8, 0][..],                         // a cut length prefix
        &[0u8, 0, 0, 2, 0x65, 0xff][..],       // an IDR slice header cut short
        &[0u8, 0, 0, 3, 0x41, 0x9a, 0x00][..], // a P slice naming an unknown PPS
    ] {
        assert!(
            matches!(r.map(bad, &mut out), Err(MediaError::InvalidSample(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn emulation_prevention_bytes_count_in_the_raw_length() {
    // (raw payload, RBSP bytes wanted, raw bytes that hold them)
    for (raw, rbsp, want) in [
        (&[1u8, 2, 3][..], 2, 2),
        (&[0, 0, 3, 1, 2][..], 3, 4),
        (&[0, 0, 3, 0, 0, 3, 1][..], 4, 5),
        (&[0, 0, 3, 0, 0, 3, 1][..], 5, 7),
        (&[5, 0, 0][..], 9, 3),
    ] {
        assert_eq!(raw_len(raw, rbsp), want, "{raw:?} {rbsp}");
    }
    for (v, bits) in [
        (0, 1),
        (1, 3),
        (2, 3),
        (3, 5),
        (6, 5),
        (7, 7),
        (u32::MAX - 1, 63),
    ] {
        assert_eq!(ue_bits(v), bits, "{v}");
    }
}

fn nal() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![
            Just(1u8),
            Just(5),
            Just(6),
            Just(9),
            Just(12),
            Just(0x41),
            Just(0x65)
        ],
        proptest::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(t, mut body)| {
            body.insert(0, t);
            body
        })
}

/// `map` of the sample made of `nals` (of `codec`) covers it exactly, or is an error; only
/// slices (`is_slice`) are protected, never a length prefix and NAL header (`min_clear`).
fn covers(
    codec: &CodecConfig,
    nals: &[Vec<u8>],
    is_slice: fn(&[u8]) -> bool,
    min_clear: u16,
) -> Result<(), TestCaseError> {
    let mut r = ProtectedRanges::new(codec).unwrap();
    let refs: Vec<&[u8]> = nals.iter().map(Vec::as_slice).collect();
    let s = sample(&refs);
    let mut out = Vec::new();
    if r.map(&s, &mut out).is_ok() {
        let total: usize = out
            .iter()
            .map(|x| usize::from(x.clear) + x.protected as usize)
            .sum();
        prop_assert_eq!(total, s.len());
        let slices = nals.iter().filter(|n| is_slice(n)).count();
        prop_assert!(out.iter().filter(|x| x.protected > 0).count() <= slices);
        prop_assert!(out.first().is_none_or(|x| x.clear >= min_clear));
    }
    Ok(())
}

proptest! {
    #[test]
    fn an_hevc_map_covers_its_sample_or_is_an_error(nals in proptest::collection::vec(hevc_nal(), 0..6)) {
        covers(&hevc(), &nals, |n| (n[0] >> 1) < 32, 6)?;
    }

    #[test]
    fn a_map_covers_its_sample_or_is_an_error(nals in proptest::collection::vec(nal(), 0..6)) {
        covers(&avc(), &nals, |n| matches!(n[0] & 0x1f, 1 | 5), 5)?;
    }
}
