//! Which bytes of a sample Common Encryption may encrypt: the subsample map of a `cbcs`
//! sample (ISO/IEC 23001-7 §9.5 and §10.4; CMAF, ISO/IEC 23000-19 §8.2.2.1).
//!
//! - H.264 video: every NAL unit's length prefix, NAL header and slice header stay in the
//!   clear; a slice's protected range starts at the first byte after its slice header (the
//!   byte holding its last bit rounded up: CABAC's alignment bits, CAVLC's first
//!   macroblock bits, stay clear). NAL units that are not slices (SEI, AUD, parameter sets)
//!   are clear. Parameter sets sent in band update the map's context.
//! - HEVC video: the same with slice segments (VCL NAL units, types 0-31): the NAL header
//!   (2 bytes) and the slice segment header through its byte alignment stay clear
//!   (`hevc_slice`).
//! - Audio (AAC): the whole sample is protected (no subsamples).
//!
//! Consecutive clear runs are merged into the next protected range's clear bytes, and a clear
//! run longer than `BytesOfClearData` can hold (16 bits) is split, as `senc` needs.

use std::borrow::Cow;

use h264_reader::nal::pps::PicParameterSet;
use h264_reader::nal::slice::SliceHeader;
use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::nal::NalHeader;
use h264_reader::rbsp::{decode_nal, BitRead, BitReader, BitReaderError, Primitive};
use h264_reader::Context;

use crate::hevc_slice::HevcParameterSets;
use crate::{CodecConfig, MediaError};

/// One subsample of a protected sample (ISO/IEC 23001-7 §7.2.2 `senc`): `clear` bytes in the
/// clear, then `protected` bytes the scheme encrypts (for `cbcs`, by pattern and whole
/// 16-byte blocks only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subsample {
    /// `BytesOfClearData`.
    pub clear: u16,
    /// `BytesOfProtectedData`.
    pub protected: u32,
}

/// Slice header bytes read to find where slice data starts; a header that does not fit is
/// read again from the whole NAL unit.
const HEADER_PREFIX: usize = 256;

/// The subsample maps of one track's samples: H.264 needs the parameter sets to read slice
/// headers, so a map keeps them (from the decoder configuration record, then in band).
pub struct ProtectedRanges {
    kind: Kind,
}

enum Kind {
    /// Whole-sample protection: no subsamples.
    Whole,
    H264 {
        ctx: Box<Context>,
        nal_length_size: usize,
    },
    H265 {
        sets: Box<HevcParameterSets>,
        nal_length_size: usize,
    },
}

impl std::fmt::Debug for ProtectedRanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.kind {
            Kind::Whole => "ProtectedRanges(whole samples)",
            Kind::H264 { .. } => "ProtectedRanges(H.264 slices)",
            Kind::H265 { .. } => "ProtectedRanges(HEVC slice segments)",
        })
    }
}

impl ProtectedRanges {
    /// The maps for a track of codec `codec`.
    ///
    /// # Errors
    /// [`MediaError::Unsupported`] for AV1 video (its tile headers are not read yet);
    /// [`MediaError::InvalidAvcConfig`] when the record's parameter sets do not parse (an
    /// `hvcC`'s too, as `HevcConfig` reports them).
    pub fn new(codec: &CodecConfig) -> Result<ProtectedRanges, MediaError> {
        let kind = match codec {
            CodecConfig::Aac(_) => Kind::Whole,
            CodecConfig::H264(avc) => {
                let mut ctx = Box::new(Context::new());
                for nal in avc.parameter_sets() {
                    put_parameter_set(&mut ctx, nal)?;
                }
                Kind::H264 {
                    ctx,
                    nal_length_size: usize::from(avc.nal_length_size),
                }
            }
            CodecConfig::H265(hevc) => {
                let mut sets = Box::<HevcParameterSets>::default();
                for nal in hevc.parameter_sets() {
                    sets.put(nal).ok_or_else(|| {
                        MediaError::InvalidAvcConfig(
                            "hvcC: a parameter set that does not parse".into(),
                        )
                    })?;
                }
                Kind::H265 {
                    sets,
                    nal_length_size: usize::from(hevc.nal_length_size),
                }
            }
            CodecConfig::Av1(_) => {
                return Err(MediaError::Unsupported("cbcs encryption of AV1 video"))
            }
        };
        Ok(ProtectedRanges { kind })
    }

    /// Whether samples are protected whole (audio): then [`ProtectedRanges::map`] is empty.
    pub fn whole_samples(&self) -> bool {
        matches!(self.kind, Kind::Whole)
    }

    /// The subsample map of `sample` (length-prefixed NAL units for video), appended to
    /// `out` (cleared first). Empty for whole-sample protection. The sizes add up to
    /// `sample.len()`.
    ///
    /// # Errors
    /// [`MediaError::InvalidSample`] when a NAL length overruns the sample or a slice header
    /// does not parse (its parameter set is unknown, or it is cut short).
    pub fn map(&mut self, sample: &[u8], out: &mut Vec<Subsample>) -> Result<(), MediaError> {
        out.clear();
        let n = match &self.kind {
            Kind::Whole => return Ok(()),
            Kind::H264 {
                nal_length_size, ..
            }
            | Kind::H265 {
                nal_length_size, ..
            } => *nal_length_size,
        };
        let mut clear = 0usize;
        let mut at = 0usize;
        while at < sample.len() {
            if sample.len() - at < n {
                return Err(MediaError::InvalidSample("a NAL length prefix cut short"));
            }
            let len = sample[at..at + n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            let nal = sample
                .get(at + n..at + n + len)
                .ok_or(MediaError::InvalidSample("a NAL unit overruns its sample"))?;
            at += n + len;
            // The clear bytes of the NAL unit: all of it, or its headers before a slice's data.
            let header = match &mut self.kind {
                Kind::H264 { ctx, .. } => h264_clear(ctx, nal)?,
                Kind::H265 { sets, .. } => hevc_clear(sets, nal)?,
                Kind::Whole => None,
            };
            match header {
                Some(header) => {
                    clear += n + header;
                    push(out, &mut clear, nal.len() - header);
                }
                None => clear += n + nal.len(),
            }
        }
        if clear > 0 {
            push(out, &mut clear, 0);
        }
        Ok(())
    }
}

/// For an H.264 NAL unit: the bytes of its NAL and slice headers if it is a slice (`None`:
/// all clear), taking in parameter sets.
fn h264_clear(ctx: &mut Context, nal: &[u8]) -> Result<Option<usize>, MediaError> {
    let Some(&first) = nal.first() else {
        return Ok(None);
    };
    match first & 0x1f {
        1 | 5 => Ok(Some(1 + slice_header_len(ctx, nal)?)),
        7 | 8 => {
            put_parameter_set(ctx, nal)?;
            Ok(None)
        }
        _ => Ok(None),
    }
}

/// For an HEVC NAL unit: the bytes of its NAL and slice segment headers if it is a VCL NAL
/// unit (types 0-31; `None`: all clear), taking in parameter sets.
fn hevc_clear(sets: &mut HevcParameterSets, nal: &[u8]) -> Result<Option<usize>, MediaError> {
    let Some(&first) = nal.first() else {
        return Ok(None);
    };
    match (first >> 1) & 0x3f {
        0..=31 => {
            let header = sets
                .slice_header_bytes(&nal[..nal.len().min(HEADER_PREFIX)])
                .or_else(|| {
                    (nal.len() > HEADER_PREFIX)
                        .then(|| sets.slice_header_bytes(nal))
                        .flatten()
                })
                .ok_or(MediaError::InvalidSample(
                    "a slice segment header that does not parse",
                ))?;
            Ok(Some(2 + raw_len(&nal[2..], header)))
        }
        32..=34 => {
            sets.put(nal).ok_or(MediaError::InvalidSample(
                "a parameter set that does not parse",
            ))?;
            Ok(None)
        }
        _ => Ok(None),
    }
}

/// Appends `clear` (split at 16 bits) and `protected` bytes; a protected count of 0 is only
/// pushed for the final clear run.
fn push(out: &mut Vec<Subsample>, clear: &mut usize, protected: usize) {
    while *clear > usize::from(u16::MAX) {
        out.push(Subsample {
            clear: u16::MAX,
            protected: 0,
        });
        *clear -= usize::from(u16::MAX);
    }
    out.push(Subsample {
        clear: *clear as u16,
        protected: protected as u32,
    });
    *clear = 0;
}

fn put_parameter_set(ctx: &mut Context, nal: &[u8]) -> Result<(), MediaError> {
    let bad = |what: &dyn std::fmt::Debug| MediaError::InvalidAvcConfig(format!("{what:?}"));
    if nal.len() < 2 {
        return Err(MediaError::InvalidAvcConfig(
            "an empty parameter set".into(),
        ));
    }
    let rbsp = decode_nal(nal).map_err(|e| bad(&e))?;
    match nal[0] & 0x1f {
        7 => ctx.put_seq_param_set(
            SeqParameterSet::from_bits(BitReader::new(&rbsp[..])).map_err(|e| bad(&e))?,
        ),
        8 => {
            let pps =
                PicParameterSet::from_bits(ctx, BitReader::new(&rbsp[..])).map_err(|e| bad(&e))?;
            ctx.put_pic_param_set(pps);
        }
        _ => {}
    }
    Ok(())
}

/// The slice header's length in bytes of `nal` after its one-byte NAL header (emulation
/// prevention bytes counted, the last partial byte rounded up).
fn slice_header_len(ctx: &Context, nal: &[u8]) -> Result<usize, MediaError> {
    let header = NalHeader::new(nal[0])
        .map_err(|_| MediaError::InvalidSample("a NAL header with its forbidden bit set"))?;
    let parse = |raw: &[u8]| -> Result<u64, MediaError> {
        let rbsp: Cow<'_, [u8]> =
            decode_nal(raw).map_err(|_| MediaError::InvalidSample("a slice NAL unit"))?;
        let mut r = Counting {
            inner: BitReader::new(&rbsp[..]),
            bits: 0,
        };
        SliceHeader::from_bits(ctx, &mut r, header, None)
            .map_err(|_| MediaError::InvalidSample("a slice header that does not parse"))?;
        Ok(r.bits)
    };
    let bits = match parse(&nal[..nal.len().min(HEADER_PREFIX)]) {
        Ok(bits) => bits,
        Err(_) if nal.len() > HEADER_PREFIX => parse(nal)?,
        Err(e) => return Err(e),
    };
    let rbsp_bytes = bits.div_ceil(8) as usize;
    Ok(raw_len(&nal[1..], rbsp_bytes))
}

/// How many bytes of `raw` (a NAL unit's payload, with emulation prevention bytes) hold its
/// first `rbsp_bytes` RBSP bytes.
fn raw_len(raw: &[u8], rbsp_bytes: usize) -> usize {
    let (mut zeros, mut rbsp) = (0usize, 0usize);
    for (i, b) in raw.iter().enumerate() {
        if rbsp == rbsp_bytes {
            return i;
        }
        if zeros >= 2 && *b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if *b == 0 { zeros + 1 } else { 0 };
        rbsp += 1;
    }
    raw.len()
}

/// A bit reader that counts the bits the slice header parser consumes.
struct Counting<R: BitRead> {
    inner: R,
    bits: u64,
}

fn ue_bits(v: u32) -> u64 {
    // 2 * floor(log2(v + 1)) + 1
    let lead = 63 - u64::from(v).saturating_add(1).leading_zeros() as u64;
    2 * lead + 1
}

impl<R: BitRead> BitRead for Counting<R> {
    fn read_ue(&mut self, name: &'static str) -> Result<u32, BitReaderError> {
        let v = self.inner.read_ue(name)?;
        self.bits += ue_bits(v);
        Ok(v)
    }

    fn read_se(&mut self, name: &'static str) -> Result<i32, BitReaderError> {
        let v = self.inner.read_se(name)?;
        let code = if v > 0 {
            (v as i64) * 2 - 1
        } else {
            -(v as i64) * 2
        };
        self.bits += ue_bits(code as u32);
        Ok(v)
    }

    fn read_bit(&mut self, name: &'static str) -> Result<bool, BitReaderError> {
        let v = self.inner.read_bit(name)?;
        self.bits += 1;
        Ok(v)
    }

    fn read<const BITS: u32, I: h264_reader::rbsp::Integer>(
        &mut self,
        name: &'static str,
    ) -> Result<I, BitReaderError> {
        let v = self.inner.read::<BITS, I>(name)?;
        self.bits += u64::from(BITS);
        Ok(v)
    }

    fn read_var<I: h264_reader::rbsp::Integer>(
        &mut self,
        bit_count: u32,
        name: &'static str,
    ) -> Result<I, BitReaderError> {
        let v = self.inner.read_var(bit_count, name)?;
        self.bits += u64::from(bit_count);
        Ok(v)
    }

    fn read_to<V: Primitive>(&mut self, name: &'static str) -> Result<V, BitReaderError> {
        let v = self.inner.read_to(name)?;
        self.bits += 8 * std::mem::size_of::<V>() as u64;
        Ok(v)
    }

    fn skip(&mut self, bit_count: u32, name: &'static str) -> Result<(), BitReaderError> {
        self.inner.skip(bit_count, name)?;
        self.bits += u64::from(bit_count);
        Ok(())
    }

    fn byte_aligned(&self) -> bool {
        self.inner.byte_aligned()
    }

    fn has_more_rbsp_data(&mut self, name: &'static str) -> Result<bool, BitReaderError> {
        self.inner.has_more_rbsp_data(name)
    }

    fn finish_rbsp(self) -> Result<(), BitReaderError> {
        self.inner.finish_rbsp()
    }

    fn finish_sei_payload(self) -> Result<(), BitReaderError> {
        self.inner.finish_sei_payload()
    }
}

/// Appends to `runs` the protected byte ranges of a sample of `len` bytes that starts at
/// `base` (in the buffer the ranges index) and has the subsample map `subsamples`: one range
/// per subsample's protected bytes, clipped to the sample, or the whole sample when the map
/// is empty (audio). Each range is one CBC chain of the `cbcs` cipher (ISO/IEC 23001-7
/// §10.4.2: the chain restarts at every subsample).
pub fn protected_runs(
    len: usize,
    subsamples: &[Subsample],
    base: usize,
    runs: &mut Vec<std::ops::Range<usize>>,
) {
    if subsamples.is_empty() {
        runs.push(base..base + len);
        return;
    }
    let mut at = 0usize;
    for s in subsamples {
        at = at.saturating_add(usize::from(s.clear));
        if at >= len {
            return;
        }
        let end = at.saturating_add(s.protected as usize).min(len);
        runs.push(base + at..base + end);
        at = end;
    }
}

#[cfg(test)]
#[path = "protected_tests.rs"]
mod tests;
