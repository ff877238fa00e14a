//! Playlist compression (content codings, RFC 9110 §8.4; `Accept-Encoding`, §12.5.3): `br`
//! or `gzip` as the viewer prefers, for playlists of [`MIN_BYTES`] or more. Media objects are
//! sent as they are: compressing video gains nothing.
//!
//! A cached playlist is compressed once per coding and the result kept with it
//! ([`crate::coalesce::Derived`]): every viewer of one playlist version shares one
//! compression, where a compression layer would redo it per request. A playlist rewritten
//! for one viewer's token is compressed per request. Each coding has its own strong `ETag`
//! (the identity tag with `-gz`/`-br` inside the quotes), as RFC 9110 §8.8.3 asks of
//! representations that differ.

use bytes::Bytes;
use http::HeaderValue;
use std::io::Write;

/// Playlists smaller than this are sent uncompressed (the coding's framing eats the gain).
pub(crate) const MIN_BYTES: usize = 256;

/// gzip level: the default (6); playlists are a few KiB, compressed once per version.
const GZIP_LEVEL: u32 = 6;
/// Brotli quality: 5 (of 11) compresses playlists close to the best at a fraction of the cost.
const BROTLI_QUALITY: u32 = 5;
/// Brotli window, log2 bytes: 2^20 covers any playlist.
const BROTLI_WINDOW: u32 = 20;

/// A content coding the edge sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Coding {
    /// As the upstream sent it.
    Identity,
    /// `gzip` (RFC 1952).
    Gzip,
    /// `br` (RFC 7932).
    Br,
}

impl Coding {
    /// The `Content-Encoding` value; `None` for identity.
    pub(crate) fn header(self) -> Option<HeaderValue> {
        match self {
            Coding::Identity => None,
            Coding::Gzip => Some(HeaderValue::from_static("gzip")),
            Coding::Br => Some(HeaderValue::from_static("br")),
        }
    }

    /// Index among the compressed codings (for per-coding storage); `None` for identity.
    pub(crate) fn slot(self) -> Option<usize> {
        match self {
            Coding::Identity => None,
            Coding::Gzip => Some(0),
            Coding::Br => Some(1),
        }
    }

    fn tag_suffix(self) -> &'static str {
        match self {
            Coding::Identity => "",
            Coding::Gzip => "-gz",
            Coding::Br => "-br",
        }
    }
}

/// The coding to answer a request whose `Accept-Encoding` is `accept` with: the one with
/// the highest `q` among `br` and `gzip` (`br` on a tie), `*` standing for both; identity
/// when neither is acceptable or the header is absent or unreadable.
pub(crate) fn negotiate(accept: Option<&HeaderValue>) -> Coding {
    let Some(v) = accept.and_then(|v| v.to_str().ok()) else {
        return Coding::Identity;
    };
    let (mut br, mut gzip, mut star) = (None::<u16>, None::<u16>, None::<u16>);
    for item in v.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim();
        let q = parts
            .find_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim().eq_ignore_ascii_case("q").then(|| qvalue(v.trim()))
            })
            .unwrap_or(Some(1000));
        let Some(q) = q else { continue };
        let slot = if name.eq_ignore_ascii_case("br") {
            &mut br
        } else if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
            &mut gzip
        } else if name == "*" {
            &mut star
        } else {
            continue;
        };
        *slot = Some(q);
    }
    let br = br.or(star).unwrap_or(0);
    let gzip = gzip.or(star).unwrap_or(0);
    match (br, gzip) {
        (0, 0) => Coding::Identity,
        (b, g) if b >= g => Coding::Br,
        _ => Coding::Gzip,
    }
}

/// A `qvalue` (RFC 9110 §12.4.2) in thousandths; `None` if malformed.
fn qvalue(s: &str) -> Option<u16> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || !frac.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    // Thousandths: "5" is 500, "05" is 50, "005" is 5.
    let frac_val = frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    match int {
        "0" => Some(frac_val),
        "1" if frac_val == 0 => Some(1000),
        _ => None,
    }
}

/// `body` in `coding` (identity: as it is).
pub(crate) fn encode(coding: Coding, body: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(body.len() / 3 + 64);
    match coding {
        Coding::Identity => return Bytes::copy_from_slice(body),
        Coding::Gzip => {
            let mut w =
                flate2::write::GzEncoder::new(&mut out, flate2::Compression::new(GZIP_LEVEL));
            // Writing to a Vec cannot fail.
            let _ = w.write_all(body);
            let _ = w.finish();
        }
        Coding::Br => {
            let mut w =
                brotli::CompressorWriter::new(&mut out, 4096, BROTLI_QUALITY, BROTLI_WINDOW);
            let _ = w.write_all(body);
            let _ = w.flush();
            drop(w);
        }
    }
    Bytes::from(out)
}

/// The strong `ETag` of `coding`'s representation, from the identity one's.
pub(crate) fn tag_for(identity: &HeaderValue, coding: Coding) -> HeaderValue {
    let s = identity.to_str().unwrap_or("\"0\"");
    let inner = s.trim_start_matches("W/").trim_matches('"');
    HeaderValue::from_str(&format!("\"{inner}{}\"", coding.tag_suffix()))
        .unwrap_or_else(|_| identity.clone())
}

/// A compressed representation with its tag.
#[derive(Clone, Debug)]
pub(crate) struct Encoded {
    pub(crate) body: Bytes,
    pub(crate) etag: HeaderValue,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Read;

    fn neg(s: &str) -> Coding {
        negotiate(Some(&HeaderValue::from_str(s).unwrap()))
    }

    #[test]
    fn negotiation_table() {
        let cases = [
            ("gzip, deflate, br, zstd", Coding::Br),
            ("gzip, deflate", Coding::Gzip),
            ("br;q=0.5, gzip", Coding::Gzip),
            ("br;q=0, gzip;q=0", Coding::Identity),
            ("identity", Coding::Identity),
            ("*", Coding::Br),
            ("*;q=0.1, br;q=0", Coding::Gzip),
            ("GZIP", Coding::Gzip),
            ("x-gzip", Coding::Gzip),
            ("br;q=2", Coding::Identity),
            ("br;q=0.0001, gzip;q=0.001", Coding::Gzip),
            ("br; q=1.000", Coding::Br),
            ("", Coding::Identity),
            (",,;;", Coding::Identity),
        ];
        for (header, want) in cases {
            assert_eq!(neg(header), want, "Accept-Encoding: {header}");
        }
        assert_eq!(negotiate(None), Coding::Identity);
    }

    #[test]
    fn coded_tags_differ_from_the_identity_tag() {
        let id = HeaderValue::from_static("\"0123456789abcdef\"");
        assert_eq!(tag_for(&id, Coding::Br), "\"0123456789abcdef-br\"");
        assert_eq!(tag_for(&id, Coding::Gzip), "\"0123456789abcdef-gz\"");
    }

    proptest! {
        #[test]
        fn every_coding_round_trips(body in proptest::collection::vec(any::<u8>(), 0..20_000)) {
            let gz = encode(Coding::Gzip, &body);
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut back).unwrap();
            prop_assert_eq!(&back, &body);
            let br = encode(Coding::Br, &body);
            let mut back = Vec::new();
            brotli::Decompressor::new(&br[..], 4096).read_to_end(&mut back).unwrap();
            prop_assert_eq!(&back, &body);
        }

        #[test]
        fn negotiation_never_panics(s in "[ -~]{0,80}") {
            if let Ok(v) = HeaderValue::from_str(&s) {
                let _ = negotiate(Some(&v));
            }
        }
    }
}
