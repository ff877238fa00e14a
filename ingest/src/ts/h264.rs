//! H.264 and HEVC access units in Annex B byte-stream form (ITU-T H.264 Annex B, H.265
//! Annex B), as MPEG-TS carries them, turned into `avc1`/`hvc1` samples (4-byte NAL unit
//! lengths) and an `avcC`/`hvcC` configuration taken from the in-band parameter sets.

use bytes::{BufMut, Bytes, BytesMut};
use weir_media::{AvcConfig, CodecConfig, HevcConfig, MediaError};

use crate::nal::annex_b_units;

/// Which video coding an elementary stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VideoCoding {
    /// H.264 (stream type 0x1b).
    H264,
    /// HEVC (stream type 0x24).
    H265,
}

/// What a NAL unit is, for packaging.
enum Unit {
    /// A parameter set (index 0 VPS, 1 SPS, 2 PPS).
    ParameterSet(usize),
    /// Access unit delimiter or filler: left out of samples.
    Dropped,
    /// Picture data or SEI; `true` for a random access point (H.264 IDR, HEVC IRAP).
    Sample(bool),
}

fn classify(coding: VideoCoding, nal: &[u8]) -> Unit {
    match coding {
        VideoCoding::H264 => match nal[0] & 0x1f {
            7 => Unit::ParameterSet(1),
            8 => Unit::ParameterSet(2),
            9 | 12 => Unit::Dropped,
            kind => Unit::Sample(kind == 5),
        },
        VideoCoding::H265 => match (nal[0] >> 1) & 0x3f {
            32 => Unit::ParameterSet(0),
            33 => Unit::ParameterSet(1),
            34 => Unit::ParameterSet(2),
            35 | 38 => Unit::Dropped,
            kind => Unit::Sample((16..=23).contains(&kind)),
        },
    }
}

/// One access unit as an `avc1`/`hvc1` sample.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AccessUnit {
    /// The NAL units with 4-byte big-endian lengths; parameter sets, access unit delimiters
    /// and filler data left out (the parameter sets go into the configuration record).
    pub(crate) sample: Bytes,
    /// Whether it is a random access point (H.264 IDR, HEVC IRAP picture).
    pub(crate) keyframe: bool,
    /// A configuration built from parameter sets sent in this access unit, if they differ
    /// from `current`.
    pub(crate) config: Option<CodecConfig>,
}

/// Converts one Annex B access unit. `current` is the configuration in use, so unchanged
/// parameter sets repeated before every keyframe (as encoders do for TS) make no new one.
///
/// # Errors
/// [`MediaError::InvalidAvcConfig`] if the access unit carries parameter sets that do not
/// form a valid configuration.
pub(crate) fn access_unit(
    coding: VideoCoding,
    data: &[u8],
    current: Option<&CodecConfig>,
) -> Result<AccessUnit, MediaError> {
    let mut sample = BytesMut::with_capacity(data.len() + 16);
    let mut sets: [Option<&[u8]>; 3] = [None; 3];
    let mut keyframe = false;
    for nal in annex_b_units(data) {
        match classify(coding, nal) {
            Unit::ParameterSet(i) => sets[i] = sets[i].or(Some(nal)),
            Unit::Dropped => {}
            Unit::Sample(random_access) => {
                keyframe |= random_access;
                sample.put_u32(nal.len() as u32);
                sample.put_slice(nal);
            }
        }
    }
    let in_use: Vec<&[u8]> = match current {
        Some(CodecConfig::H264(c)) => c.parameter_sets(),
        Some(CodecConfig::H265(c)) => c.parameter_sets(),
        _ => Vec::new(),
    };
    let config = match (coding, sets) {
        (VideoCoding::H264, [_, Some(sps), Some(pps)]) if in_use != [sps, pps] => {
            Some(CodecConfig::H264(AvcConfig::from_parameter_sets(sps, pps)?))
        }
        (VideoCoding::H265, [Some(vps), Some(sps), Some(pps)]) if in_use != [vps, sps, pps] => {
            Some(CodecConfig::H265(HevcConfig::from_parameter_sets(
                vps, sps, pps,
            )?))
        }
        _ => None,
    };
    Ok(AccessUnit {
        sample: sample.freeze(),
        keyframe,
        config,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The SPS and PPS of the bundled Big Buck Bunny clip: 1280x720 Main@3.1 (x264).
    pub(crate) const SPS: &[u8] = &[
        0x67, 0x4d, 0x40, 0x1f, 0xda, 0x01, 0x40, 0x16, 0xec, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00,
        0x40, 0x00, 0x00, 0x0c, 0x83, 0xc6, 0x0c, 0xa8,
    ];
    pub(crate) const PPS: &[u8] = &[0x68, 0xef, 0x3c, 0x80];

    fn annex_b(nals: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for (i, n) in nals.iter().enumerate() {
            v.extend_from_slice(if i == 0 { &[0, 0, 0, 1] } else { &[0, 0, 1] });
            v.extend_from_slice(n);
        }
        v
    }

    #[test]
    fn an_idr_access_unit_gives_a_config_once_and_a_length_prefixed_sample() {
        let idr = annex_b(&[&[9, 0x10], SPS, PPS, &[0x06, 5, 0x80], &[0x65, 0x88, 0x84]]);
        let au = access_unit(VideoCoding::H264, &idr, None).unwrap();
        assert!(au.keyframe);
        let Some(CodecConfig::H264(avc)) = au.config.clone() else {
            panic!("a new configuration");
        };
        assert_eq!((avc.width, avc.height), (1280, 720));
        let config = au.config.unwrap();
        assert_eq!(config.codec_string(), "avc1.4d401f");
        assert_eq!(
            &au.sample[..],
            &[0, 0, 0, 3, 0x06, 5, 0x80, 0, 0, 0, 3, 0x65, 0x88, 0x84]
        );
        // The same parameter sets again make no new configuration.
        assert_eq!(
            access_unit(VideoCoding::H264, &idr, Some(&config))
                .unwrap()
                .config,
            None
        );
        let p = access_unit(VideoCoding::H264, &annex_b(&[&[0x41, 0x9a]]), Some(&config)).unwrap();
        assert!(!p.keyframe && p.config.is_none());
    }
}
