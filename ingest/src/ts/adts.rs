//! AAC in ADTS framing (ISO/IEC 13818-7 §6.2 / ISO/IEC 14496-3 §1.A.2), as MPEG-TS carries it
//! (stream type 0x0f): split into raw access units, with an `AudioSpecificConfig` built from
//! the header.

use bytes::Bytes;
use weir_media::AacConfig;

/// One raw AAC access unit from an ADTS stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AdtsFrame {
    /// The configuration its header describes.
    pub(crate) config: AacConfig,
    /// The raw access unit, without the ADTS header (and CRC).
    pub(crate) data: Bytes,
}

/// Why ADTS bytes could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AdtsError {
    /// No syncword where a frame should start, or a frame longer than what is left.
    Malformed,
    /// More than one raw data block in a frame, or a reserved sampling frequency index.
    Unsupported,
}

/// Splits a PES payload into its ADTS frames. A malformed frame ends the split: the frames
/// before it are kept.
pub(crate) fn frames(data: &Bytes) -> (Vec<AdtsFrame>, Option<AdtsError>) {
    let mut out: Vec<AdtsFrame> = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let h = &data[at..];
        if h.len() < 7 || h[0] != 0xff || h[1] & 0xf6 != 0xf0 {
            return (out, Some(AdtsError::Malformed));
        }
        let protection_absent = h[1] & 0x01 != 0;
        let profile = h[2] >> 6;
        let rate_index = (h[2] >> 2) & 0x0f;
        let channels = (h[2] & 0x01) << 2 | h[3] >> 6;
        let length =
            usize::from(h[3] & 0x03) << 11 | usize::from(h[4]) << 3 | usize::from(h[5] >> 5);
        let blocks = h[6] & 0x03;
        let header = if protection_absent { 7 } else { 9 };
        if length < header || length > h.len() {
            return (out, Some(AdtsError::Malformed));
        }
        if blocks != 0 || rate_index > 12 {
            return (out, Some(AdtsError::Unsupported));
        }
        // AudioSpecificConfig: audioObjectType (profile + 1), samplingFrequencyIndex,
        // channelConfiguration, then frameLengthFlag, dependsOnCoreCoder, extensionFlag = 0.
        let object_type = profile + 1;
        let asc = [
            object_type << 3 | rate_index >> 1,
            (rate_index & 1) << 7 | channels << 3,
        ];
        let config = match out.last() {
            Some(prev) if prev.config.config()[..] == asc => prev.config.clone(),
            _ => match AacConfig::parse(Bytes::copy_from_slice(&asc)) {
                Ok(c) => c,
                Err(_) => return (out, Some(AdtsError::Unsupported)),
            },
        };
        out.push(AdtsFrame {
            config,
            data: data.slice(at + header..at + length),
        });
        at += length;
    }
    (out, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adts(config: &AacConfig, payload: &[u8]) -> Vec<u8> {
        let mut v = config.adts_header(payload.len()).unwrap().to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn splits_frames_and_rebuilds_the_audio_specific_config() {
        // AAC-LC, 48 kHz, stereo.
        let config = AacConfig::parse(Bytes::from_static(&[0x11, 0x90])).unwrap();
        let mut data = adts(&config, &[1; 10]);
        data.extend(adts(&config, &[2; 20]));
        let (frames, error) = frames(&Bytes::from(data));
        assert_eq!(error, None);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].config, config);
        assert_eq!(&frames[0].data[..], &[1; 10]);
        assert_eq!(&frames[1].data[..], &[2; 20]);
    }

    #[test]
    fn keeps_frames_before_garbage() {
        let config = AacConfig::parse(Bytes::from_static(&[0x12, 0x10])).unwrap();
        let mut data = adts(&config, &[1; 10]);
        data.extend_from_slice(&[0x12, 0x34, 0x56, 0, 0, 0, 0, 0]);
        let (found, error) = frames(&Bytes::from(data));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].config.sample_rate, 44_100);
        assert_eq!(error, Some(AdtsError::Malformed));
        let (found, error) = frames(&Bytes::from_static(&[0xff, 0xf1, 0x50]));
        assert!(found.is_empty() && error == Some(AdtsError::Malformed));
    }
}
