use bytes::Bytes;
use h264_reader::avcc::AvcDecoderConfigurationRecord;
use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::rbsp::{decode_nal, BitReader};

use crate::{MediaError, Timescale};

/// Samples in one AAC-LC / HE-AAC core access unit (ISO/IEC 14496-3 §4.5.1.1, frameLengthFlag 0).
pub const AAC_SAMPLES_PER_FRAME: u32 = 1_024;

/// A track's decoder configuration.
#[derive(Clone, Debug, PartialEq)]
pub enum CodecConfig {
    /// H.264 / AVC.
    H264(AvcConfig),
    /// H.265 / HEVC (packaged as `hvc1`).
    H265(crate::HevcConfig),
    /// AV1 (packaged as `av01`).
    Av1(crate::Av1Config),
    /// AAC (any object type carried in an MPEG-4 AudioSpecificConfig).
    Aac(AacConfig),
}

impl CodecConfig {
    /// The RFC 6381 `CODECS` value, e.g. `avc1.64001f` or `mp4a.40.2`.
    pub fn codec_string(&self) -> String {
        match self {
            CodecConfig::H264(c) => c.codec_string(),
            CodecConfig::H265(c) => c.codec_string(),
            CodecConfig::Av1(c) => c.codec_string(),
            CodecConfig::Aac(c) => c.codec_string(),
        }
    }

    /// A video codec's displayed size in pixels (`None` for audio).
    pub fn picture_size(&self) -> Option<(u32, u32)> {
        match self {
            CodecConfig::H264(c) => Some((c.width, c.height)),
            CodecConfig::H265(c) => Some((c.width, c.height)),
            CodecConfig::Av1(c) => Some((c.width, c.height)),
            CodecConfig::Aac(_) => None,
        }
    }

    /// The frame rate the parameter sets declare, when they do (H.264 VUI timing).
    pub fn declared_frame_rate(&self) -> Option<f64> {
        match self {
            CodecConfig::H264(c) => c.frame_rate,
            CodecConfig::H265(_) | CodecConfig::Av1(_) | CodecConfig::Aac(_) => None,
        }
    }

    /// The media timescale a packager should use for this codec: 90 kHz for video, the sample
    /// rate for audio (so that one AAC frame is exactly 1 024 ticks).
    pub fn timescale(&self) -> Timescale {
        match self {
            CodecConfig::H264(_) | CodecConfig::H265(_) | CodecConfig::Av1(_) => {
                Timescale::MPEG_90K
            }
            CodecConfig::Aac(c) => c.timescale(),
        }
    }
}

/// An H.264 `AVCDecoderConfigurationRecord` (ISO/IEC 14496-15 §5.3.3.1) with the facts a
/// packager and a playlist need, read from its first sequence parameter set.
#[derive(Clone, Debug, PartialEq)]
pub struct AvcConfig {
    record: Bytes,
    /// `profile_idc`, e.g. 100 for High.
    pub profile: u8,
    /// The constraint flags byte (`profile_compatibility`).
    pub compatibility: u8,
    /// `level_idc`, e.g. 31 for level 3.1.
    pub level: u8,
    /// Displayed width in pixels, after SPS cropping.
    pub width: u32,
    /// Displayed height in pixels, after SPS cropping.
    pub height: u32,
    /// Bytes in each NAL unit length prefix of a sample (1, 2 or 4).
    pub nal_length_size: u8,
    /// Frames per second from the SPS VUI timing info, when the encoder wrote it.
    pub frame_rate: Option<f64>,
}

impl AvcConfig {
    /// Parses an `AVCDecoderConfigurationRecord` (the body of an `avcC` box, or of an FLV AVC
    /// sequence header).
    ///
    /// # Errors
    /// [`MediaError::InvalidAvcConfig`] if the record is truncated, has no SPS, or its SPS does
    /// not parse.
    pub fn parse(record: Bytes) -> Result<AvcConfig, MediaError> {
        let invalid =
            |what: &dyn std::fmt::Debug| MediaError::InvalidAvcConfig(format!("{what:?}"));
        let parsed =
            AvcDecoderConfigurationRecord::try_from(&record[..]).map_err(|e| invalid(&e))?;
        let sps_nal = parsed
            .sequence_parameter_sets()
            .next()
            .ok_or_else(|| MediaError::InvalidAvcConfig("no sequence parameter set".into()))?
            .map_err(|e| invalid(&e))?;
        // A NAL header, profile, constraints and level at least. h264-reader 0.9's decode_nal
        // panics on an empty NAL (capacity overflow; found by cargo fuzz, codec_configs).
        if sps_nal.len() < 4 {
            return Err(MediaError::InvalidAvcConfig(format!(
                "a sequence parameter set of {} bytes",
                sps_nal.len()
            )));
        }
        let rbsp = decode_nal(sps_nal).map_err(|e| invalid(&e))?;
        let sps = SeqParameterSet::from_bits(BitReader::new(&rbsp[..])).map_err(|e| invalid(&e))?;
        let (width, height) = sps.pixel_dimensions().map_err(|e| invalid(&e))?;
        let nal_length_size = parsed.length_size_minus_one() + 1;
        if nal_length_size == 3 {
            return Err(MediaError::InvalidAvcConfig("NAL length size 3".into()));
        }
        Ok(AvcConfig {
            profile: record[1],
            compatibility: record[2],
            level: record[3],
            width,
            height,
            nal_length_size,
            frame_rate: sps.fps().filter(|f| f.is_finite() && *f > 0.0),
            record,
        })
    }

    /// The record's bytes, as they go into an `avcC` box.
    pub fn record(&self) -> &Bytes {
        &self.record
    }

    /// Builds the record (4-byte NAL lengths) for one SPS and one PPS NAL unit, each without
    /// start code, e.g. from an encoder's Annex B headers (ISO/IEC 14496-15 §5.3.3.1.2).
    ///
    /// # Errors
    /// [`MediaError::InvalidAvcConfig`] if the SPS is shorter than 4 bytes, either set is
    /// longer than 65 535 bytes, or the SPS does not parse.
    pub fn from_parameter_sets(sps: &[u8], pps: &[u8]) -> Result<AvcConfig, MediaError> {
        if sps.len() < 4 || sps.len() > 0xffff || pps.len() > 0xffff {
            return Err(MediaError::InvalidAvcConfig(format!(
                "parameter set sizes {} and {}",
                sps.len(),
                pps.len()
            )));
        }
        let mut record = Vec::with_capacity(11 + sps.len() + pps.len());
        // version 1, profile, compatibility, level, 0b111111 + lengthSizeMinusOne 3,
        // 0b111 + one SPS.
        record.extend_from_slice(&[1, sps[1], sps[2], sps[3], 0xff, 0xe1]);
        record.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        record.extend_from_slice(sps);
        record.push(1);
        record.extend_from_slice(&(pps.len() as u16).to_be_bytes());
        record.extend_from_slice(pps);
        AvcConfig::parse(Bytes::from(record))
    }

    /// The record's SPS and PPS NAL units (without length prefix), in order: what a decoder
    /// fed Annex B needs before the first IDR picture.
    pub fn parameter_sets(&self) -> Vec<&[u8]> {
        let Ok(parsed) = AvcDecoderConfigurationRecord::try_from(&self.record[..]) else {
            return Vec::new();
        };
        let sps = parsed.sequence_parameter_sets().filter_map(Result::ok);
        let pps = parsed.picture_parameter_sets().filter_map(Result::ok);
        sps.chain(pps).collect()
    }

    /// The RFC 6381 codec string, `avc1.PPCCLL` in hex (e.g. `avc1.64001f`).
    pub fn codec_string(&self) -> String {
        format!(
            "avc1.{:02x}{:02x}{:02x}",
            self.profile, self.compatibility, self.level
        )
    }
}

/// An MPEG-4 `AudioSpecificConfig` (ISO/IEC 14496-3 §1.6.2.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AacConfig {
    config: Bytes,
    /// `audioObjectType`: 2 for AAC-LC, 5 for HE-AAC (SBR), 29 for HE-AACv2 (PS).
    pub object_type: u8,
    /// The core sampling frequency in Hz (the rate of the 1 024-sample frames).
    pub sample_rate: u32,
    /// `channelConfiguration` (1 mono, 2 stereo, ... 7 = 7.1); 0 means "in the bitstream".
    pub channels: u8,
}

const AAC_SAMPLE_RATES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

impl AacConfig {
    /// Parses an `AudioSpecificConfig` (the body of an FLV AAC sequence header).
    ///
    /// # Errors
    /// [`MediaError::InvalidAacConfig`] if it is shorter than its fields, or names a reserved
    /// sampling frequency index.
    pub fn parse(config: Bytes) -> Result<AacConfig, MediaError> {
        let mut bits = Bits {
            data: &config,
            pos: 0,
        };
        let mut object_type = bits
            .read(5)
            .ok_or(MediaError::InvalidAacConfig("truncated"))?;
        if object_type == 31 {
            object_type = 32
                + bits
                    .read(6)
                    .ok_or(MediaError::InvalidAacConfig("truncated"))?;
        }
        let index = bits
            .read(4)
            .ok_or(MediaError::InvalidAacConfig("truncated"))?;
        let sample_rate = if index == 15 {
            bits.read(24)
                .ok_or(MediaError::InvalidAacConfig("truncated"))?
        } else {
            *AAC_SAMPLE_RATES
                .get(index as usize)
                .ok_or(MediaError::InvalidAacConfig(
                    "reserved sampling frequency index",
                ))?
        };
        if sample_rate == 0 {
            return Err(MediaError::InvalidAacConfig("sampling frequency 0"));
        }
        let channels = bits
            .read(4)
            .ok_or(MediaError::InvalidAacConfig("truncated"))?;
        Ok(AacConfig {
            config,
            object_type: object_type as u8,
            sample_rate,
            channels: channels as u8,
        })
    }

    /// The config's bytes, as they go into the `DecoderSpecificInfo` of an `esds` box.
    pub fn config(&self) -> &Bytes {
        &self.config
    }

    /// The RFC 6381 codec string, `mp4a.40.<audioObjectType>` (e.g. `mp4a.40.2`).
    pub fn codec_string(&self) -> String {
        format!("mp4a.40.{}", self.object_type)
    }

    /// The 7-byte ADTS header (ISO/IEC 13818-7 §6.2, no CRC) that makes one raw access unit
    /// of `payload_len` bytes a self-describing frame, for decoders without the
    /// `AudioSpecificConfig`. `None` for what ADTS cannot describe: object types above 4,
    /// explicit sampling rates, channel configuration 0, frames over 8 184 bytes.
    pub fn adts_header(&self, payload_len: usize) -> Option<[u8; 7]> {
        let index = AAC_SAMPLE_RATES
            .iter()
            .position(|r| *r == self.sample_rate)? as u8;
        let profile = self.object_type.checked_sub(1).filter(|p| *p < 4)?;
        let channels = self.channels;
        let len = payload_len + 7;
        if channels == 0 || channels > 7 || len > 0x1fff {
            return None;
        }
        Some([
            0xff,
            0xf1, // MPEG-4, layer 0, no CRC
            (profile << 6) | (index << 2) | (channels >> 2),
            ((channels & 3) << 6) | (len >> 11) as u8,
            (len >> 3) as u8,
            ((len & 7) << 5) as u8 | 0x1f, // buffer fullness 0x7ff: variable rate
            0xfc,
        ])
    }

    /// The sample rate as a timescale.
    pub fn timescale(&self) -> Timescale {
        Timescale::new(self.sample_rate).unwrap_or(Timescale::MILLIS)
    }
}

struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn read(&mut self, n: usize) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = *self.data.get(self.pos / 8)?;
            let bit = (byte >> (7 - self.pos % 8)) & 1;
            v = (v << 1) | u32::from(bit);
            self.pos += 1;
        }
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aac_lc_stereo_44k1() {
        let c = AacConfig::parse(Bytes::from_static(&[0x12, 0x10])).unwrap();
        assert_eq!((c.object_type, c.sample_rate, c.channels), (2, 44_100, 2));
        // The bundled clip's audio: AAC-LC, 48 kHz, 5.1.
        let c = AacConfig::parse(Bytes::from_static(&[0x11, 0xb0])).unwrap();
        assert_eq!((c.object_type, c.sample_rate, c.channels), (2, 48_000, 6));
        assert_eq!(c.codec_string(), "mp4a.40.2");
        assert!(AacConfig::parse(Bytes::from_static(&[0x12])).is_err());
        assert!(AacConfig::parse(Bytes::from_static(&[0x16, 0x90])).is_err());
    }

    #[test]
    fn an_empty_sequence_parameter_set_is_refused() {
        // Found by cargo fuzz (codec_configs): one SPS of 0 bytes.
        let record = [0x01, 0x64, 0x00, 0x0a, 0xff, 0xe1, 0x00, 0x00, 0x00];
        for len in 0..4u8 {
            let mut r = record[..6].to_vec();
            r.extend_from_slice(&[0, len]);
            r.extend(std::iter::repeat_n(0x67, usize::from(len)));
            r.push(0);
            assert!(
                matches!(
                    AvcConfig::parse(Bytes::from(r)),
                    Err(MediaError::InvalidAvcConfig(_))
                ),
                "{len}"
            );
        }
        assert!(AvcConfig::parse(Bytes::copy_from_slice(&record)).is_err());
    }

    #[test]
    fn avc_record_from_x264() {
        // avcC of the bundled Big Buck Bunny clip: 1280x720 Main@3.1.
        let record: &[u8] = &[
            0x01, 0x4d, 0x40, 0x1f, 0xff, 0xe1, 0x00, 0x17, 0x67, 0x4d, 0x40, 0x1f, 0xda, 0x01,
            0x40, 0x16, 0xec, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40, 0x00, 0x00, 0x0c, 0x83,
            0xc6, 0x0c, 0xa8, 0x01, 0x00, 0x04, 0x68, 0xef, 0x3c, 0x80,
        ];
        let c = AvcConfig::parse(Bytes::copy_from_slice(record)).unwrap();
        assert_eq!(c.codec_string(), "avc1.4d401f");
        assert_eq!((c.width, c.height, c.nal_length_size), (1280, 720, 4));
        assert!(AvcConfig::parse(Bytes::copy_from_slice(&record[..10])).is_err());
        let sets = c.parameter_sets();
        assert_eq!(sets.len(), 2);
        assert_eq!((sets[0][0] & 0x1f, sets[1][0] & 0x1f), (7, 8));
        let rebuilt = AvcConfig::from_parameter_sets(sets[0], sets[1]).unwrap();
        assert_eq!(&rebuilt.record()[..], record);
    }

    #[test]
    fn adts_header_of_aac_lc_5_1() {
        let c = AacConfig::parse(Bytes::from_static(&[0x11, 0xb0])).unwrap();
        let h = c.adts_header(100).unwrap();
        // syncword, MPEG-4, no CRC; LC (1), 48 kHz (3), 6 channels, 107 bytes in all.
        assert_eq!(h[0..2], [0xff, 0xf1]);
        assert_eq!(h[2], (1 << 6) | (3 << 2) | (6 >> 2));
        let len =
            ((usize::from(h[3]) & 3) << 11) | (usize::from(h[4]) << 3) | (usize::from(h[5]) >> 5);
        assert_eq!(len, 107);
        assert_eq!(h[3] >> 6, 6 & 3);
    }
}
