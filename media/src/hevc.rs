//! HEVC decoder configuration: the `HEVCDecoderConfigurationRecord` (ISO/IEC 14496-15
//! §8.3.3.1), with the picture size read from its SPS (ITU-T H.265 §7.3.2.2) and the RFC 6381
//! `CODECS` value (ISO/IEC 14496-15 Annex E.3).

use bytes::Bytes;

use crate::MediaError;

/// An `hvcC` record and the facts a packager and a playlist need from it.
#[derive(Clone, Debug, PartialEq)]
pub struct HevcConfig {
    record: Bytes,
    /// `general_profile_space` (0-3).
    pub profile_space: u8,
    /// `general_tier_flag`: false Main tier, true High tier.
    pub high_tier: bool,
    /// `general_profile_idc`, e.g. 1 for Main, 2 for Main 10.
    pub profile: u8,
    /// `general_profile_compatibility_flags`, as stored (flag 0 in the top bit).
    pub compatibility: u32,
    /// `general_constraint_indicator_flags`, the 6 bytes as stored.
    pub constraints: [u8; 6],
    /// `general_level_idc`: 30 x the level (93 = level 3.1).
    pub level: u8,
    /// Bytes in each NAL unit length prefix of a sample (1, 2 or 4).
    pub nal_length_size: u8,
    /// Displayed width in pixels, after the SPS conformance window.
    pub width: u32,
    /// Displayed height in pixels, after the SPS conformance window.
    pub height: u32,
}

fn invalid(what: &str) -> MediaError {
    MediaError::InvalidAvcConfig(format!("hvcC: {what}"))
}

impl HevcConfig {
    /// Parses an `HEVCDecoderConfigurationRecord` (an `hvcC` box body, or an Enhanced RTMP
    /// `hvc1` sequence start).
    ///
    /// # Errors
    /// [`MediaError::InvalidAvcConfig`] (naming hvcC) if it is truncated, has no SPS, or its
    /// SPS does not parse.
    pub fn parse(record: Bytes) -> Result<HevcConfig, MediaError> {
        let r = &record[..];
        if r.len() < 23 || r[0] != 1 {
            return Err(invalid("truncated or not version 1"));
        }
        let mut constraints = [0u8; 6];
        constraints.copy_from_slice(&r[6..12]);
        let nal_length_size = (r[21] & 0x03) + 1;
        if nal_length_size == 3 {
            return Err(invalid("NAL length size 3"));
        }
        let sps = nal_arrays(r)?
            .into_iter()
            .find(|n| n.first().map(|b| (b >> 1) & 0x3f) == Some(33))
            .ok_or_else(|| invalid("no sequence parameter set"))?;
        let info = sps_info(sps).ok_or_else(|| invalid("SPS does not parse"))?;
        let (width, height) = (info.width, info.height);
        Ok(HevcConfig {
            profile_space: r[1] >> 6,
            high_tier: r[1] & 0x20 != 0,
            profile: r[1] & 0x1f,
            compatibility: u32::from_be_bytes([r[2], r[3], r[4], r[5]]),
            constraints,
            level: r[12],
            nal_length_size,
            width,
            height,
            record,
        })
    }

    /// Builds the record (4-byte NAL lengths) for one VPS, SPS and PPS, each without start
    /// code, e.g. from an MPEG-TS stream's in-band parameter sets (ISO/IEC 14496-15
    /// §8.3.3.1.2).
    ///
    /// # Errors
    /// [`MediaError::InvalidAvcConfig`] (naming hvcC) if the SPS does not parse or a set is
    /// longer than 65 535 bytes.
    pub fn from_parameter_sets(
        vps: &[u8],
        sps: &[u8],
        pps: &[u8],
    ) -> Result<HevcConfig, MediaError> {
        let info = sps_info(sps).ok_or_else(|| invalid("SPS does not parse"))?;
        if [vps, sps, pps]
            .iter()
            .any(|n| n.len() > 0xffff || n.len() < 2)
        {
            return Err(invalid("parameter set size"));
        }
        let mut r = vec![1];
        r.extend_from_slice(&info.profile_tier_level);
        r.extend_from_slice(&[
            0xf0, // reserved, min_spatial_segmentation_idc 0
            0x00,
            0xfc, // reserved, parallelismType 0 (unknown)
            0xfc | info.chroma_format as u8,
            0xf8 | info.bit_depth_luma_minus8 as u8,
            0xf8 | info.bit_depth_chroma_minus8 as u8,
            0x00, // avgFrameRate 0 (unspecified)
            0x00,
            // constantFrameRate 0, numTemporalLayers, temporalIdNested, lengthSizeMinusOne 3
            ((info.sub_layers as u8 + 1) << 3) | (u8::from(info.temporal_id_nesting) << 2) | 3,
            3, // numOfArrays
        ]);
        for (kind, nal) in [(32u8, vps), (33, sps), (34, pps)] {
            r.push(0x80 | kind); // array_completeness 1
            r.extend_from_slice(&1u16.to_be_bytes());
            r.extend_from_slice(&(nal.len() as u16).to_be_bytes());
            r.extend_from_slice(nal);
        }
        HevcConfig::parse(Bytes::from(r))
    }

    /// The record's bytes, as they go into an `hvcC` box.
    pub fn record(&self) -> &Bytes {
        &self.record
    }

    /// The record's VPS, SPS and PPS NAL units (without length prefix), in order: what a
    /// decoder fed Annex B needs before the first IRAP picture.
    pub fn parameter_sets(&self) -> Vec<&[u8]> {
        let mut sets: Vec<&[u8]> = nal_arrays(&self.record)
            .unwrap_or_default()
            .into_iter()
            .filter(|n| matches!(n.first().map(|b| (b >> 1) & 0x3f), Some(32..=34)))
            .collect();
        sets.sort_by_key(|n| (n[0] >> 1) & 0x3f);
        sets
    }

    /// The RFC 6381 codec string (ISO/IEC 14496-15 E.3), e.g. `hvc1.1.6.L93.B0`: profile
    /// space letter and profile, compatibility flags bit-reversed in hex, tier and level,
    /// constraint bytes with trailing zero bytes left out.
    pub fn codec_string(&self) -> String {
        let space = ["", "A", "B", "C"][usize::from(self.profile_space & 3)];
        let tier = if self.high_tier { 'H' } else { 'L' };
        let mut s = format!(
            "hvc1.{space}{}.{:X}.{tier}{}",
            self.profile,
            self.compatibility.reverse_bits(),
            self.level
        );
        let used = self
            .constraints
            .iter()
            .rposition(|b| *b != 0)
            .map_or(0, |i| i + 1);
        for b in &self.constraints[..used] {
            s.push_str(&format!(".{b:X}"));
        }
        s
    }
}

/// The NAL units of the record's arrays (VPS, SPS, PPS, SEI...).
fn nal_arrays(r: &[u8]) -> Result<Vec<&[u8]>, MediaError> {
    let mut at = 23;
    let mut out = Vec::new();
    for _ in 0..r[22] {
        let count = usize::from(u16::from_be_bytes([
            *r.get(at + 1).ok_or_else(|| invalid("truncated array"))?,
            *r.get(at + 2).ok_or_else(|| invalid("truncated array"))?,
        ]));
        at += 3;
        for _ in 0..count {
            let len = usize::from(u16::from_be_bytes([
                *r.get(at).ok_or_else(|| invalid("truncated NAL unit"))?,
                *r.get(at + 1).ok_or_else(|| invalid("truncated NAL unit"))?,
            ]));
            let nal = r
                .get(at + 2..at + 2 + len)
                .ok_or_else(|| invalid("truncated NAL unit"))?;
            out.push(nal);
            at += 2 + len;
        }
    }
    Ok(out)
}

/// Exp-Golomb bit reader over an RBSP (emulation prevention bytes removed).
pub(crate) struct Bits {
    data: Vec<u8>,
    pos: usize,
}

impl Bits {
    pub(crate) fn new(nal: &[u8]) -> Bits {
        let mut data = Vec::with_capacity(nal.len());
        let mut zeros = 0;
        for &b in nal {
            if zeros >= 2 && b == 3 {
                zeros = 0;
                continue;
            }
            zeros = if b == 0 { zeros + 1 } else { 0 };
            data.push(b);
        }
        Bits { data, pos: 0 }
    }

    /// Bits read so far.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// A flag (`u(1)`).
    pub(crate) fn flag(&mut self) -> Option<bool> {
        Some(self.bit()? == 1)
    }

    /// A signed Exp-Golomb value (`se(v)`).
    pub(crate) fn se(&mut self) -> Option<i32> {
        let k = self.ue()?;
        let magnitude = k.div_ceil(2) as i32;
        Some(if k % 2 == 1 { magnitude } else { -magnitude })
    }

    pub(crate) fn bit(&mut self) -> Option<u32> {
        let byte = self.data.get(self.pos / 8)?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(u32::from(bit))
    }

    pub(crate) fn bits(&mut self, n: u32) -> Option<u32> {
        (0..n).try_fold(0, |v, _| Some(v << 1 | self.bit()?))
    }

    pub(crate) fn skip(&mut self, n: usize) -> Option<()> {
        self.pos += n;
        (self.pos <= self.data.len() * 8).then_some(())
    }

    pub(crate) fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some((1u32 << zeros) - 1 + self.bits(zeros)?)
    }
}

/// Skips `profile_tier_level(1, sub_layers)` (H.265 §7.3.3): the general part (88 bits and
/// `general_level_idc`), the sub-layer presence flags and what they say is present.
pub(crate) fn skip_profile_tier_level(b: &mut Bits, sub_layers: usize) -> Option<()> {
    b.skip(96)?;
    let mut present = Vec::with_capacity(sub_layers);
    for _ in 0..sub_layers {
        present.push((b.bit()?, b.bit()?));
    }
    if sub_layers > 0 {
        b.skip(2 * (8 - sub_layers))?;
    }
    for (profile, level) in present {
        b.skip(88 * profile as usize + 8 * level as usize)?;
    }
    Some(())
}

/// What an `hvcC` needs from an SPS.
struct SpsInfo {
    width: u32,
    height: u32,
    chroma_format: u32,
    bit_depth_luma_minus8: u32,
    bit_depth_chroma_minus8: u32,
    /// `sps_max_sub_layers_minus1`.
    sub_layers: u32,
    temporal_id_nesting: bool,
    /// `general_profile_space` ... `general_level_idc`: 12 bytes, byte-aligned in the SPS.
    profile_tier_level: [u8; 12],
}

/// Reads an SPS (H.265 §7.3.2.2.1): size with the conformance window applied, chroma format,
/// bit depths, sub-layers and the general profile, tier and level.
fn sps_info(nal: &[u8]) -> Option<SpsInfo> {
    let mut b = Bits::new(nal.get(2..)?); // after the 2-byte NAL unit header
    let mut profile_tier_level = [0u8; 12];
    profile_tier_level.copy_from_slice(b.data.get(1..13)?);
    b.skip(4)?; // sps_video_parameter_set_id
    let sub_layers = b.bits(3)? as usize; // sps_max_sub_layers_minus1
    let temporal_id_nesting = b.bit()? == 1;
    skip_profile_tier_level(&mut b, sub_layers)?;
    b.ue()?; // sps_seq_parameter_set_id
    let chroma = b.ue()?;
    if chroma == 3 {
        b.skip(1)?; // separate_colour_plane_flag
    }
    let (mut width, mut height) = (b.ue()?, b.ue()?);
    if b.bit()? == 1 {
        let sub_w = if chroma == 1 || chroma == 2 { 2 } else { 1 };
        let sub_h = if chroma == 1 { 2 } else { 1 };
        let (l, r, t, bo) = (b.ue()?, b.ue()?, b.ue()?, b.ue()?);
        width = width.checked_sub(sub_w * (l + r))?;
        height = height.checked_sub(sub_h * (t + bo))?;
    }
    let bit_depth_luma_minus8 = b.ue()?;
    let bit_depth_chroma_minus8 = b.ue()?;
    (width > 0 && height > 0 && bit_depth_luma_minus8 <= 8 && bit_depth_chroma_minus8 <= 8)
        .then_some(SpsInfo {
            width,
            height,
            chroma_format: chroma,
            bit_depth_luma_minus8,
            bit_depth_chroma_minus8,
            sub_layers: sub_layers as u32,
            temporal_id_nesting,
            profile_tier_level,
        })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The hvcC libx265 (FFmpeg 9) wrote for the bundled clip (Main, 1280x720, level 3.1),
    /// its VPS, SPS and PPS arrays (the SEI array with x265's banner left out).
    pub(crate) const X265_720P: &[u8] = &[
        0x01, 0x01, 0x60, 0x00, 0x00, 0x00, 0x90, 0x00, 0x00, 0x00, 0x00, 0x00, 0x5d, 0xf0, 0x00,
        0xfc, 0xfd, 0xf8, 0xf8, 0x00, 0x00, 0x0f, 0x03, 0x20, 0x00, 0x01, 0x00, 0x18, 0x40, 0x01,
        0x0c, 0x01, 0xff, 0xff, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00,
        0x00, 0x03, 0x00, 0x5d, 0x95, 0x94, 0x09, 0x21, 0x00, 0x01, 0x00, 0x2a, 0x42, 0x01, 0x01,
        0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x5d,
        0xa0, 0x02, 0x80, 0x80, 0x2d, 0x16, 0x59, 0x59, 0x52, 0x93, 0x0b, 0xc0, 0x5a, 0x70, 0x80,
        0x00, 0x00, 0x03, 0x00, 0x80, 0x00, 0x00, 0x0c, 0x84, 0x22, 0x00, 0x01, 0x00, 0x06, 0x44,
        0x01, 0xc0, 0x73, 0xc1, 0x89,
    ];

    #[test]
    fn x265_record_gives_size_and_codec_string() {
        let c = HevcConfig::parse(Bytes::from_static(X265_720P)).unwrap();
        assert_eq!((c.width, c.height), (1280, 720));
        assert_eq!((c.profile, c.level, c.nal_length_size), (1, 93, 4));
        assert_eq!(c.codec_string(), "hvc1.1.6.L93.90");
        assert!(HevcConfig::parse(Bytes::from_static(&X265_720P[..40])).is_err());
        let types: Vec<u8> = c
            .parameter_sets()
            .iter()
            .map(|n| (n[0] >> 1) & 0x3f)
            .collect();
        assert_eq!(types, vec![32, 33, 34]);
    }

    #[test]
    fn codec_string_cases() {
        let mut c = HevcConfig::parse(Bytes::from_static(X265_720P)).unwrap();
        c.profile = 2;
        c.compatibility = 0x2000_0000; // Main 10 compatible
        c.high_tier = true;
        c.level = 120;
        c.constraints = [0xb0, 0, 0, 0, 0, 0];
        assert_eq!(c.codec_string(), "hvc1.2.4.H120.B0");
        c.profile_space = 1;
        c.constraints = [0; 6];
        assert_eq!(c.codec_string(), "hvc1.A2.4.H120");
    }
}
