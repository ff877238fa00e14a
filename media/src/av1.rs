//! AV1 decoder configuration: the `AV1CodecConfigurationRecord` (AV1 Codec ISO Media File
//! Format Binding §2.3), with the maximum frame size read from its sequence header OBU (AV1
//! §5.5) and the RFC 6381 `CODECS` value (binding §5, e.g. `av01.0.08M.08`).

use bytes::Bytes;

use crate::MediaError;

/// An `av1C` record and the facts a packager and a playlist need from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Av1Config {
    record: Bytes,
    /// `seq_profile` (0 Main, 1 High, 2 Professional).
    pub profile: u8,
    /// `seq_level_idx_0` (8 = level 4.0).
    pub level: u8,
    /// `seq_tier_0`: false Main tier, true High tier.
    pub high_tier: bool,
    /// Bits per sample: 8, 10 or 12.
    pub bit_depth: u8,
    /// Width in pixels (`max_frame_width_minus_1` + 1 of the sequence header).
    pub width: u32,
    /// Height in pixels (`max_frame_height_minus_1` + 1).
    pub height: u32,
}

fn invalid(what: &str) -> MediaError {
    MediaError::InvalidAvcConfig(format!("av1C: {what}"))
}

impl Av1Config {
    /// Parses an `AV1CodecConfigurationRecord` (an `av1C` box body, or an Enhanced RTMP
    /// `av01` sequence start).
    ///
    /// # Errors
    /// [`MediaError::InvalidAvcConfig`] (naming av1C) if it is truncated, not version 1, or
    /// holds no sequence header OBU that parses.
    pub fn parse(record: Bytes) -> Result<Av1Config, MediaError> {
        let r = &record[..];
        if r.len() < 4 || r[0] != 0x81 {
            return Err(invalid("truncated or not marker 1, version 1"));
        }
        let high_bitdepth = r[2] & 0x40 != 0;
        let twelve_bit = r[2] & 0x20 != 0;
        let bit_depth = match (high_bitdepth, twelve_bit) {
            (true, true) => 12,
            (true, false) => 10,
            _ => 8,
        };
        let (width, height) = sequence_header(&r[4..])
            .and_then(frame_size)
            .ok_or_else(|| invalid("no sequence header OBU that parses"))?;
        Ok(Av1Config {
            profile: r[1] >> 5,
            level: r[1] & 0x1f,
            high_tier: r[2] & 0x80 != 0,
            bit_depth,
            width,
            height,
            record,
        })
    }

    /// The record's bytes, as they go into an `av1C` box.
    pub fn record(&self) -> &Bytes {
        &self.record
    }

    /// The record's `configOBUs` (the sequence header, with its size field): what a decoder
    /// needs before the first key frame when the samples do not repeat it.
    pub fn config_obus(&self) -> &[u8] {
        &self.record[4..]
    }

    /// The RFC 6381 codec string: `av01.{profile}.{level:02}{M|H}.{bit depth:02}`.
    pub fn codec_string(&self) -> String {
        let tier = if self.high_tier { 'H' } else { 'M' };
        format!(
            "av01.{}.{:02}{tier}.{:02}",
            self.profile, self.level, self.bit_depth
        )
    }
}

/// The payload of the first sequence header OBU (type 1) in a run of OBUs with size fields.
fn sequence_header(mut obus: &[u8]) -> Option<&[u8]> {
    while let Some(&header) = obus.first() {
        let kind = (header >> 3) & 0x0f;
        let extension = header & 0x04 != 0;
        let has_size = header & 0x02 != 0;
        let mut at = 1 + usize::from(extension);
        let size = if has_size {
            let (size, len) = leb128(obus.get(at..)?)?;
            at += len;
            size
        } else {
            obus.len().checked_sub(at)?
        };
        let payload = obus.get(at..at.checked_add(size)?)?;
        if kind == 1 {
            return Some(payload);
        }
        obus = &obus[at + size..];
    }
    None
}

fn leb128(data: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for (i, b) in data.iter().take(8).enumerate() {
        value |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn bits(&mut self, n: u32) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = self.data.get(self.pos / 8)?;
            v = v << 1 | u32::from((byte >> (7 - self.pos % 8)) & 1);
            self.pos += 1;
        }
        Some(v)
    }

    fn uvlc(&mut self) -> Option<()> {
        let mut zeros = 0;
        while self.bits(1)? == 0 {
            zeros += 1;
            if zeros >= 32 {
                return None;
            }
        }
        self.bits(zeros).map(|_| ())
    }
}

/// `max_frame_width_minus_1 + 1`, `max_frame_height_minus_1 + 1` of a sequence header OBU
/// (AV1 §5.5.1).
fn frame_size(header: &[u8]) -> Option<(u32, u32)> {
    let mut b = Bits {
        data: header,
        pos: 0,
    };
    b.bits(3)?; // seq_profile
    b.bits(1)?; // still_picture
    let reduced = b.bits(1)? == 1;
    if reduced {
        b.bits(5)?; // seq_level_idx[0]
    } else {
        let mut buffer_delay_length = 0;
        let timing_info = b.bits(1)? == 1;
        let mut decoder_model_info = false;
        if timing_info {
            b.bits(32)?; // num_units_in_display_tick
            b.bits(32)?; // time_scale
            if b.bits(1)? == 1 {
                b.uvlc()?; // num_ticks_per_picture_minus_1
            }
            decoder_model_info = b.bits(1)? == 1;
            if decoder_model_info {
                buffer_delay_length = b.bits(5)? + 1;
                b.bits(32)?; // num_units_in_decoding_tick
                b.bits(5)?; // buffer_removal_time_length_minus_1
                b.bits(5)?; // frame_presentation_time_length_minus_1
            }
        }
        let initial_display_delay = b.bits(1)? == 1;
        let operating_points = b.bits(5)? + 1;
        for _ in 0..operating_points {
            b.bits(12)?; // operating_point_idc
            if b.bits(5)? > 7 {
                b.bits(1)?; // seq_tier
            }
            if decoder_model_info && b.bits(1)? == 1 {
                b.bits(buffer_delay_length)?; // decoder_buffer_delay
                b.bits(buffer_delay_length)?; // encoder_buffer_delay
                b.bits(1)?; // low_delay_mode_flag
            }
            if initial_display_delay && b.bits(1)? == 1 {
                b.bits(4)?;
            }
        }
    }
    let width_bits = b.bits(4)? + 1;
    let height_bits = b.bits(4)? + 1;
    let width = b.bits(width_bits)? + 1;
    let height = b.bits(height_bits)? + 1;
    Some((width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `av1C` FFmpeg 9 wrote (enhanced FLV) for the bundled clip encoded by libsvtav1:
    /// 1280x720 8-bit, Main profile, level 3.1 (index 5), Main tier, with its sequence header.
    const SVT_720P: &[u8] = &[
        0x81, 0x05, 0x0d, 0x00, 0x0a, 0x0c, 0x02, 0x00, 0x00, 0x2d, 0x2a, 0x67, 0xfd, 0x9e, 0x01,
        0x7c, 0x01, 0x20,
    ];

    #[test]
    fn svt_record_gives_size_and_codec_string() {
        let c = Av1Config::parse(Bytes::from_static(SVT_720P)).unwrap();
        assert_eq!((c.width, c.height), (1280, 720));
        assert_eq!(c.codec_string(), "av01.0.05M.08");
        assert!(Av1Config::parse(Bytes::from_static(&SVT_720P[..6])).is_err());
        let mut ten = Av1Config::parse(Bytes::from_static(SVT_720P)).unwrap();
        ten.bit_depth = 10;
        ten.high_tier = true;
        ten.level = 13;
        assert_eq!(ten.codec_string(), "av01.0.13H.10");
    }
}
