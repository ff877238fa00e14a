//! H.264 access units in Annex B byte-stream form (ITU-T H.264 Annex B), as MPEG-TS carries
//! them, turned into `avc1` samples (4-byte NAL unit lengths) and an `avcC` configuration
//! taken from the in-band SPS and PPS.

use bytes::{BufMut, Bytes, BytesMut};
use weir_media::{AvcConfig, MediaError};

use crate::nal::{annex_b_units, unit_type, NAL_PPS, NAL_SPS};

const NAL_IDR: u8 = 5;
const NAL_AUD: u8 = 9;
const NAL_FILLER: u8 = 12;

/// One access unit as an `avc1` sample.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AccessUnit {
    /// The NAL units with 4-byte big-endian lengths; parameter sets, access unit delimiters
    /// and filler data left out (the parameter sets go into the `avcC`).
    pub(crate) sample: Bytes,
    /// Whether it holds an IDR picture.
    pub(crate) keyframe: bool,
    /// A configuration built from SPS and PPS sent in this access unit, if they differ from
    /// `current`.
    pub(crate) config: Option<AvcConfig>,
}

/// Converts one Annex B access unit. `current` is the configuration in use, so unchanged
/// parameter sets repeated before every IDR picture (as encoders do for TS) make no new one.
///
/// # Errors
/// [`MediaError::InvalidAvcConfig`] if the access unit carries an SPS and PPS that do not
/// form a valid configuration.
pub(crate) fn access_unit(
    data: &[u8],
    current: Option<&AvcConfig>,
) -> Result<AccessUnit, MediaError> {
    let mut sample = BytesMut::with_capacity(data.len() + 16);
    let (mut sps, mut pps, mut keyframe) = (None, None, false);
    for nal in annex_b_units(data) {
        match unit_type(nal) {
            NAL_SPS => sps = sps.or(Some(nal)),
            NAL_PPS => pps = pps.or(Some(nal)),
            NAL_AUD | NAL_FILLER => {}
            kind => {
                keyframe |= kind == NAL_IDR;
                sample.put_u32(nal.len() as u32);
                sample.put_slice(nal);
            }
        }
    }
    let config = match (sps, pps) {
        (Some(sps), Some(pps)) => {
            let same = current.is_some_and(|c| {
                let sets = c.parameter_sets();
                sets.len() == 2 && sets[0] == sps && sets[1] == pps
            });
            if same {
                None
            } else {
                Some(AvcConfig::from_parameter_sets(sps, pps)?)
            }
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
        let au = access_unit(&idr, None).unwrap();
        assert!(au.keyframe);
        let config = au.config.expect("a new configuration");
        assert_eq!((config.width, config.height), (1280, 720));
        assert_eq!(config.codec_string(), "avc1.4d401f");
        assert_eq!(
            &au.sample[..],
            &[0, 0, 0, 3, 0x06, 5, 0x80, 0, 0, 0, 3, 0x65, 0x88, 0x84]
        );
        // The same parameter sets again make no new configuration.
        assert_eq!(access_unit(&idr, Some(&config)).unwrap().config, None);
        let p = access_unit(&annex_b(&[&[0x41, 0x9a]]), Some(&config)).unwrap();
        assert!(!p.keyframe && p.config.is_none());
    }
}
