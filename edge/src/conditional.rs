//! Conditional and partial requests on cached objects (RFC 9110 §13, §14): a strong `ETag`
//! (a 64-bit hash of the body as served), `If-None-Match` answered `304`, and one `Range`
//! (`bytes=a-b`, `a-`, `-n`) on media objects answered `206` (or `416`). Several ranges in one
//! request are answered with the whole object (allowed: a server may ignore `Range`).

use std::hash::{Hash, Hasher};

use http::HeaderValue;

/// The strong ETag of `body`: the same bytes give the same tag at every edge and after a
/// restart (SipHash with fixed keys).
pub(crate) fn etag_of(body: &[u8]) -> HeaderValue {
    #[allow(deprecated)] // SipHasher: fixed keys, so tags agree across edges.
    let mut h = std::hash::SipHasher::new();
    body.hash(&mut h);
    HeaderValue::from_str(&format!("\"{:016x}\"", h.finish()))
        .unwrap_or(HeaderValue::from_static("\"0\""))
}

/// Whether `If-None-Match` (a list of tags, or `*`) matches `etag`, weakly (RFC 9110 §13.1.2).
pub(crate) fn none_match(if_none_match: Option<&HeaderValue>, etag: &HeaderValue) -> bool {
    let Some(v) = if_none_match.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let ours = etag.to_str().unwrap_or("");
    v.split(',').map(str::trim).any(|t| {
        t == "*" || t.strip_prefix("W/").unwrap_or(t) == ours.strip_prefix("W/").unwrap_or(ours)
    })
}

/// What a `Range` header asks of an object of `len` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ranged {
    /// No range, or one the answer ignores: the whole object, `200`.
    Whole,
    /// Bytes `start..=end`: `206`.
    Part { start: u64, end: u64 },
    /// Nothing of the object: `416`.
    Unsatisfiable,
}

/// Reads one `bytes=` range.
pub(crate) fn range(header: Option<&HeaderValue>, len: u64) -> Ranged {
    let Some(spec) = header
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return Ranged::Whole;
    };
    if spec.contains(',') {
        return Ranged::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Ranged::Whole;
    };
    let num = |s: &str| {
        (!s.is_empty() && s.len() <= 19 && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    match (a.trim(), b.trim()) {
        ("", n) => match num(n) {
            Some(0) => Ranged::Unsatisfiable,
            Some(n) if len > 0 => Ranged::Part {
                start: len.saturating_sub(n),
                end: len - 1,
            },
            Some(_) => Ranged::Unsatisfiable,
            None => Ranged::Whole,
        },
        (a, b) => {
            let Some(start) = num(a) else {
                return Ranged::Whole;
            };
            if start >= len && (b.is_empty() || num(b).is_some_and(|e| e >= start)) {
                return Ranged::Unsatisfiable;
            }
            let end = if b.is_empty() { Some(len - 1) } else { num(b) };
            match end {
                Some(end) if end >= start => Ranged::Part {
                    start,
                    end: end.min(len - 1),
                },
                _ => Ranged::Whole,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn ranges_of_a_table() {
        let cases: &[(Option<&str>, u64, Ranged)] = &[
            (None, 100, Ranged::Whole),
            (Some("bytes=0-9"), 100, Ranged::Part { start: 0, end: 9 }),
            (Some("bytes=90-"), 100, Ranged::Part { start: 90, end: 99 }),
            (
                Some("bytes=90-500"),
                100,
                Ranged::Part { start: 90, end: 99 },
            ),
            (Some("bytes=-10"), 100, Ranged::Part { start: 90, end: 99 }),
            (Some("bytes=-500"), 100, Ranged::Part { start: 0, end: 99 }),
            (Some("bytes=100-"), 100, Ranged::Unsatisfiable),
            (Some("bytes=150-200"), 100, Ranged::Unsatisfiable),
            (Some("bytes=-0"), 100, Ranged::Unsatisfiable),
            (Some("bytes=0-1,5-6"), 100, Ranged::Whole),
            (Some("bytes=9-1"), 100, Ranged::Whole),
            (Some("items=0-1"), 100, Ranged::Whole),
            (Some("bytes=x-1"), 100, Ranged::Whole),
            (Some("bytes=0-"), 0, Ranged::Unsatisfiable),
        ];
        for (h, len, want) in cases {
            assert_eq!(range(h.map(hv).as_ref(), *len), *want, "{h:?} {len}");
        }
    }

    #[test]
    fn etags_match_as_rfc_9110_says() {
        let tag = etag_of(b"segment");
        assert_eq!(tag, etag_of(b"segment"));
        assert_ne!(tag, etag_of(b"segment2"));
        let t = tag.to_str().unwrap().to_string();
        assert!(none_match(Some(&hv(&t)), &tag));
        assert!(none_match(Some(&hv(&format!("\"x\", W/{t}"))), &tag));
        assert!(none_match(Some(&hv("*")), &tag));
        assert!(!none_match(Some(&hv("\"x\"")), &tag));
        assert!(!none_match(None, &tag));
    }
}
