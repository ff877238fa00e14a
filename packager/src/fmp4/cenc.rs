//! The Common Encryption boxes (ISO/IEC 23001-7) of a `cbcs` track: the `sinf` of its
//! sample entry and the `pssh` of its init segment; the `senc`, `saiz`, `saio` of each
//! fragment. A fragment's key is always its init segment's (`tenc`): keys rotate with init
//! segments.

use std::ops::Range;

use bytes::{BufMut, BytesMut};
use weir_media::{protected_runs, Subsample};

use super::{begin, begin_full, end};
use crate::Pattern;

/// Encrypts an `mdat` payload in place, given its protected runs.
pub(crate) type PayloadCipher<'a> = dyn Fn(&mut [u8], &[Range<usize>]) + 'a;

/// What an encrypted track's init segment declares: the default key ID and constant IV
/// (`tenc`), the pattern, and the key systems' `pssh` boxes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct InitProtection<'a> {
    pub(crate) kid: [u8; 16],
    pub(crate) iv: [u8; 16],
    pub(crate) pattern: Pattern,
    /// Whole `pssh` boxes, concatenated.
    pub(crate) pssh: &'a [u8],
}

/// How one fragment's samples are encrypted.
pub(crate) struct FragmentProtection<'a> {
    /// Every sample's subsample map, concatenated; empty when samples are protected whole.
    pub(crate) maps: &'a [Subsample],
    /// How many entries of `maps` each sample has (one count per sample, or none).
    pub(crate) counts: &'a [u16],
    /// Encrypts the `mdat` payload in place, given its protected runs (byte ranges of the
    /// payload, one CBC chain each: a subsample's protected bytes, or a whole sample).
    pub(crate) encrypt: &'a PayloadCipher<'a>,
}

/// `sinf` (ISO/IEC 14496-12 §8.12, 23001-7 §8.1-8.2) for a sample entry whose original
/// format is `original` (`avc1`, `mp4a`): `frma`, `schm` (`cbcs` version 1.0), `schi` with a
/// version-1 `tenc` (pattern, constant IV, no per-sample IV).
pub(crate) fn sinf(buf: &mut BytesMut, original: &[u8; 4], p: &InitProtection<'_>) {
    let sinf = begin(buf, b"sinf");
    let b = begin(buf, b"frma");
    buf.put_slice(original);
    end(buf, b);
    let b = begin_full(buf, b"schm", 0, 0);
    buf.put_slice(b"cbcs");
    buf.put_u32(0x0001_0000);
    end(buf, b);
    let schi = begin(buf, b"schi");
    let b = begin_full(buf, b"tenc", 1, 0);
    buf.put_u8(0); // reserved
    put_entry(buf, p.pattern, &p.kid, &p.iv);
    end(buf, b);
    end(buf, schi);
    end(buf, sinf);
}

/// The part of `tenc` after its first reserved byte: pattern, `isProtected`,
/// `Per_Sample_IV_Size` 0, the KID and the 16-byte constant IV.
fn put_entry(buf: &mut BytesMut, pattern: Pattern, kid: &[u8; 16], iv: &[u8; 16]) {
    buf.put_u8(((pattern.crypt & 0x0f) << 4) | (pattern.skip & 0x0f));
    buf.put_u8(1); // isProtected
    buf.put_u8(0); // Per_Sample_IV_Size: a constant IV
    buf.put_slice(kid);
    buf.put_u8(16);
    buf.put_slice(iv);
}

/// The encryption boxes of a `traf`, after its `trun`, for `samples` samples. `moof_start`
/// is where the `moof` begins in `buf` (the base of `saio`'s offset: default-base-is-moof).
pub(crate) fn traf_boxes(
    buf: &mut BytesMut,
    moof_start: usize,
    samples: usize,
    p: &FragmentProtection<'_>,
) {
    let subsampled = !p.counts.is_empty();
    if subsampled {
        // saiz: each sample's auxiliary information is its subsample count and map.
        let size = |n: u16| 2 + 6 * usize::from(n);
        let uniform = p.counts.windows(2).all(|w| w[0] == w[1]);
        let b = begin_full(buf, b"saiz", 0, 0);
        match (uniform, p.counts.first()) {
            (true, Some(n)) if size(*n) <= 255 => {
                buf.put_u8(size(*n) as u8);
                buf.put_u32(samples as u32);
            }
            _ => {
                buf.put_u8(0);
                buf.put_u32(samples as u32);
                for n in p.counts {
                    buf.put_u8(size(*n).min(255) as u8);
                }
            }
        }
        end(buf, b);
    }
    let saio_offset_at = subsampled.then(|| {
        let b = begin_full(buf, b"saio", 0, 0);
        buf.put_u32(1);
        let at = buf.len();
        buf.put_u32(0);
        end(buf, b);
        at
    });
    let b = begin_full(buf, b"senc", 0, if subsampled { 0x2 } else { 0 });
    buf.put_u32(samples as u32);
    if let Some(at) = saio_offset_at {
        let offset = (buf.len() - moof_start) as u32;
        buf[at..at + 4].copy_from_slice(&offset.to_be_bytes());
    }
    let mut maps = p.maps;
    for n in p.counts {
        let (mine, rest) = maps.split_at(usize::from(*n).min(maps.len()));
        buf.put_u16(*n);
        for s in mine {
            buf.put_u16(s.clear);
            buf.put_u32(s.protected);
        }
        maps = rest;
    }
    end(buf, b);
}

/// Encrypts the samples of the `mdat` payload that starts at `buf[at..]`, of the given sizes:
/// every sample's protected runs in one call, so the cipher can interleave their chains.
pub(crate) fn encrypt_payload(
    buf: &mut BytesMut,
    at: usize,
    sizes: impl Iterator<Item = usize>,
    p: &FragmentProtection<'_>,
) {
    let mut maps = p.maps;
    let mut counts = p.counts.iter();
    let mut runs = Vec::with_capacity(p.maps.len().max(p.counts.len()) + 1);
    let mut base = 0;
    for size in sizes {
        let n = counts.next().map_or(0, |n| usize::from(*n));
        let (mine, rest) = maps.split_at(n.min(maps.len()));
        maps = rest;
        protected_runs(size, mine, base, &mut runs);
        base += size;
    }
    (p.encrypt)(&mut buf[at..at + base], &runs);
}

#[cfg(test)]
#[path = "cenc_tests.rs"]
mod tests;
