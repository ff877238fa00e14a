//! Phase 7, the response: the cached (or just fetched) upstream answer with its
//! `Content-Type` and `Cache-Control`, `Age` (the upstream's plus the time cached), `X-Cache`
//! (`HIT`, or `MISS` for a fetched or coalesced answer), and, for a playlist of an event
//! that requires tokens, the viewer's token in every URI ([`crate::rewrite`]); a strong
//! `ETag` with `If-None-Match` answered `304`, and `Range` on media objects
//! ([`crate::conditional`]); a playlist in the coding the viewer prefers
//! ([`crate::encoding`]).

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::header::{
    HeaderName, HeaderValue, ACCEPT_ENCODING, ACCEPT_RANGES, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, AGE, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH,
    CONTENT_RANGE, CONTENT_TYPE, ETAG, IF_NONE_MATCH, RANGE, VARY,
};
use http::{HeaderMap, StatusCode};

use std::sync::Arc;
use std::time::Instant;

use crate::coalesce::Cached;
use crate::conditional::{etag_of, none_match, range, Ranged};
use crate::encoding::{self, Coding};
use crate::filling::Filling;
use crate::rewrite::with_token;
use crate::upstream::Fetched;

/// How one answer is shaped besides the cached object.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape<'a> {
    /// `HEAD`: headers only.
    pub(crate) head: bool,
    /// Added to every URI of a playlist.
    pub(crate) token: Option<&'a str>,
    /// The viewer's request headers, for `If-None-Match` and `Range`; `None`: unconditional.
    pub(crate) request: Option<&'a HeaderMap>,
    /// A media object (segment, part, init): `Range` is honoured.
    pub(crate) media: bool,
    /// A playlist: sent in the coding the viewer's `Accept-Encoding` prefers
    /// ([`crate::encoding`]).
    pub(crate) compress: bool,
    /// The viewer's CORS headers ([`add_cors`]) with this `Access-Control-Allow-Origin`,
    /// made part of the cached head.
    pub(crate) cors: Option<&'a HeaderValue>,
    /// Answered over HTTP/2: a body longer than a frame is handed over in slices
    /// ([`crate::slices`]).
    pub(crate) http2: bool,
}

impl Shape<'_> {
    /// The object as it is: no conditions, ranges or token.
    pub(crate) fn plain() -> Shape<'static> {
        Shape {
            head: false,
            token: None,
            request: None,
            media: false,
            compress: false,
            cors: None,
            http2: false,
        }
    }
}

/// `X-Cache`: `HIT`, `MISS` (fetched or coalesced) or `STALE` (a last good copy).
pub(crate) const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// The answer to a viewer from `cached` at `now` (for `Age`).
///
/// The head of the common answer (200, the whole object, no token) is built once per cached
/// object and coding and cloned for every viewer after ([`Cached::head`]), with `Age: 0` and
/// `X-Cache: HIT` in it: a request replaces what differs in place (a clone has no room to
/// grow without a reallocation).
pub(crate) fn response(
    cached: &Cached,
    cache_status: &'static str,
    shape: Shape<'_>,
    now: Instant,
) -> Response {
    let f = &cached.fetched;
    let ok = f.head.status == StatusCode::OK;
    // Only a playlist with a token is read as text (a segment's body is never scanned).
    let rewritten = match shape.token {
        Some(t) if f.head.status.is_success() => std::str::from_utf8(&f.body)
            .ok()
            .map(|text| Bytes::from(with_token(text, t))),
        _ => None,
    };
    // The representation: coded for a playlist when the viewer accepts it.
    let coding = match shape.request {
        Some(request) if shape.compress && ok => {
            let len = rewritten.as_ref().map_or(f.body.len(), Bytes::len);
            if len >= encoding::MIN_BYTES {
                encoding::negotiate(request.get(ACCEPT_ENCODING))
            } else {
                Coding::Identity
            }
        }
        _ => Coding::Identity,
    };
    let (mut body, etag) = match (&rewritten, coding) {
        (None, coding) => {
            let e = cached.encoded(coding);
            (e.body, e.etag)
        }
        (Some(b), Coding::Identity) => (b.clone(), etag_of(b)),
        (Some(b), coding) => (
            encoding::encode(coding, b),
            encoding::tag_for(&etag_of(b), coding),
        ),
    };
    let tagged = ok && shape.request.is_some();
    let look = Look {
        coding,
        tagged,
        media: shape.media,
        compress: shape.compress && ok,
        cors: shape.cors.is_some(),
    };
    let build = || head(f, look, &etag, body.len(), shape.cors);
    let mut h = match rewritten {
        None => cached.head(look, build),
        Some(_) => build(),
    };
    let mut status = f.head.status;
    if let (true, Some(request)) = (ok, shape.request) {
        if none_match(request.get(IF_NONE_MATCH), &etag) {
            status = StatusCode::NOT_MODIFIED;
            body = Bytes::new();
            for name in [CONTENT_LENGTH, ACCEPT_RANGES, CONTENT_ENCODING] {
                h.remove(name);
            }
        } else if shape.media {
            let len = body.len() as u64;
            let content_range = match range(request.get(RANGE), len) {
                Ranged::Whole => None,
                Ranged::Part { start, end } => {
                    status = StatusCode::PARTIAL_CONTENT;
                    body = body.slice(start as usize..=end as usize);
                    Some(format!("bytes {start}-{end}/{len}"))
                }
                Ranged::Unsatisfiable => {
                    status = StatusCode::RANGE_NOT_SATISFIABLE;
                    body = Bytes::new();
                    Some(format!("bytes */{len}"))
                }
            };
            if let Some(v) = content_range {
                h.insert(
                    CONTENT_RANGE,
                    HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static("bytes */0")),
                );
                h.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
            }
        }
    }
    let age = f.head.age + now.saturating_duration_since(cached.fetched_at).as_secs();
    if age > 0 {
        h.insert(AGE, age_value(age));
    }
    let x_cache = match (cached.stale, cache_status) {
        (true, _) => "STALE",
        (false, "HIT") => "HIT",
        _ => "MISS",
    };
    if x_cache != "HIT" {
        h.insert(X_CACHE, HeaderValue::from_static(x_cache));
    }
    let mut r = Response::new(if shape.head || status == StatusCode::NOT_MODIFIED {
        Body::empty()
    } else if shape.http2 && body.len() > crate::slices::HTTP2_SLICE {
        crate::slices::sliced(body)
    } else {
        Body::from(body)
    });
    *r.status_mut() = status;
    *r.headers_mut() = h;
    r
}

/// Which head an answer from a cached object gets (besides its status-dependent changes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Look {
    /// The body's coding.
    pub(crate) coding: Coding,
    /// `ETag` (a 200 answer to a viewer).
    pub(crate) tagged: bool,
    /// A media object: `Accept-Ranges` (when tagged).
    pub(crate) media: bool,
    /// A playlist answered 200: `Vary: accept-encoding` and its `Content-Encoding`.
    pub(crate) compress: bool,
    /// The viewer's CORS headers.
    pub(crate) cors: bool,
}

/// The head of the whole object's answer in `look`: `Content-Type`, `Cache-Control`,
/// `CDN-Cache-Control` as the upstream sent them, `Content-Length` (`length` bytes), as
/// `look` says `ETag`, `Accept-Ranges`, `Vary`, `Content-Encoding` and the CORS headers
/// (with `cors`), and `Age: 0`, `X-Cache: HIT` for [`response`] to replace.
fn head(
    f: &Fetched,
    look: Look,
    etag: &HeaderValue,
    length: usize,
    cors: Option<&HeaderValue>,
) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(16);
    if let Some(v) = &f.head.content_type {
        h.insert(CONTENT_TYPE, v.clone());
    }
    if let Some(v) = &f.head.cache_control {
        h.insert(CACHE_CONTROL, v.clone());
    }
    if let Some(v) = &f.head.cdn_cache_control {
        h.insert(weir_http::CDN_CACHE_CONTROL, v.clone());
    }
    h.insert(CONTENT_LENGTH, HeaderValue::from(length));
    if look.tagged {
        h.insert(ETAG, etag.clone());
        if look.media {
            h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        }
    }
    if look.compress {
        // The answer depends on Accept-Encoding, whichever coding this one got.
        h.insert(VARY, HeaderValue::from_static("accept-encoding"));
        if let Some(v) = look.coding.header() {
            h.insert(CONTENT_ENCODING, v);
        }
    }
    if let Some(origin) = cors {
        add_cors(&mut h, origin);
    }
    h.insert(AGE, HeaderValue::from_static("0"));
    h.insert(X_CACHE, HeaderValue::from_static("HIT"));
    h
}

/// Adds the headers a viewer's player reads across origins: `Access-Control-Allow-Origin`
/// and `Timing-Allow-Origin` (W3C Resource Timing: players' QoE analytics, and the tests,
/// read resource timing, HTTP version included) with `origin`, and
/// `Access-Control-Expose-Headers: Age` (hls.js reads `Age` to tune in to a low-latency
/// stream behind a CDN).
pub(crate) fn add_cors(h: &mut HeaderMap, origin: &HeaderValue) {
    h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    h.insert(TIMING_ALLOW_ORIGIN, origin.clone());
    h.insert(
        ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Age"),
    );
}

/// `Timing-Allow-Origin` (W3C Resource Timing).
const TIMING_ALLOW_ORIGIN: HeaderName = HeaderName::from_static("timing-allow-origin");

/// `Age` in seconds; no allocation for the ages a live object has (under a minute).
fn age_value(secs: u64) -> HeaderValue {
    const SMALL: [&str; 60] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
        "17", "18", "19", "20", "21", "22", "23", "24", "25", "26", "27", "28", "29", "30", "31",
        "32", "33", "34", "35", "36", "37", "38", "39", "40", "41", "42", "43", "44", "45", "46",
        "47", "48", "49", "50", "51", "52", "53", "54", "55", "56", "57", "58", "59",
    ];
    match SMALL.get(secs as usize) {
        Some(s) => HeaderValue::from_static(s),
        None => HeaderValue::from(secs),
    }
}

/// The answer to a viewer from a media object still arriving ([`Filling`]): status,
/// `Content-Type`, `Cache-Control`, `Content-Length` (when the upstream sent one) and
/// `Accept-Ranges` at once, the body as it comes; `X-Cache: MISS`. No `ETag` yet: it is a
/// hash of the whole body (a viewer who sends `If-None-Match` or `Range` waits for the whole
/// object instead, and every later answer carries it).
pub(crate) fn streamed(filling: &Arc<Filling>) -> Response {
    let head = &filling.head;
    let mut r = Response::new(filling.body());
    *r.status_mut() = head.status;
    let h = r.headers_mut();
    if let Some(v) = &head.content_type {
        h.insert(CONTENT_TYPE, v.clone());
    }
    if let Some(v) = &head.cache_control {
        h.insert(CACHE_CONTROL, v.clone());
    }
    if let Some(v) = &head.cdn_cache_control {
        h.insert(weir_http::CDN_CACHE_CONTROL, v.clone());
    }
    if let Some(len) = head.content_length {
        h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    }
    h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(AGE, HeaderValue::from(head.age));
    h.insert(X_CACHE, HeaderValue::from_static("MISS"));
    r
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::header::{ACCEPT_ENCODING, IF_NONE_MATCH, RANGE};

    use super::*;
    use crate::filling::Head;

    fn cached(content_type: &'static str, body: Vec<u8>) -> Cached {
        Cached {
            fetched: Fetched::new(
                Head {
                    status: StatusCode::OK,
                    content_type: Some(HeaderValue::from_static(content_type)),
                    cache_control: Some(HeaderValue::from_static("max-age=6")),
                    cdn_cache_control: None,
                    age: 1,
                    content_length: Some(body.len() as u64),
                },
                Bytes::from(body),
            ),
            fetched_at: Instant::now(),
            ttl: Some(Duration::from_secs(6)),
            derived: Default::default(),
            stale: false,
        }
    }

    fn request(headers: &[(http::HeaderName, &'static str)]) -> HeaderMap {
        headers
            .iter()
            .map(|(k, v)| (k.clone(), HeaderValue::from_static(v)))
            .collect()
    }

    /// (status, Content-Length, Content-Range, Accept-Ranges, Content-Encoding, body length).
    type Seen = (
        u16,
        Option<String>,
        Option<String>,
        bool,
        Option<String>,
        usize,
    );

    fn seen(r: Response) -> Seen {
        let h = r.headers();
        let get = |n| {
            h.get(n)
                .map(|v: &HeaderValue| v.to_str().unwrap().to_owned())
        };
        let len = http_body::Body::size_hint(r.body()).exact().unwrap() as usize;
        (
            r.status().as_u16(),
            get(CONTENT_LENGTH),
            get(CONTENT_RANGE),
            h.contains_key(ACCEPT_RANGES),
            get(CONTENT_ENCODING),
            len,
        )
    }

    /// The head built once per object and coding is cloned, never changed: answers that
    /// alter it (304, 206, 416) leave the next plain answer whole, in any order.
    #[test]
    fn conditional_and_ranged_answers_leave_the_shared_head_whole() {
        let segment = cached("video/iso.segment", vec![7; 1000]);
        let etag = segment.etag().to_str().unwrap().to_owned();
        let etag: &'static str = Box::leak(etag.into_boxed_str());
        let star = HeaderValue::from_static("*");
        let shape = |request| Shape {
            head: false,
            token: None,
            request: Some(request),
            media: true,
            compress: false,
            cors: Some(&star),
            http2: false,
        };
        let plain = request(&[]);
        let revalidate = request(&[(IF_NONE_MATCH, etag)]);
        let first_ten = request(&[(RANGE, "bytes=0-9")]);
        let beyond = request(&[(RANGE, "bytes=5000-")]);
        let whole = (200, Some("1000".into()), None, true, None, 1000);
        let table: [(&HeaderMap, Seen); 7] = [
            (&revalidate, (304, None, None, false, None, 0)),
            (&plain, whole.clone()),
            (
                &first_ten,
                (
                    206,
                    Some("10".into()),
                    Some("bytes 0-9/1000".into()),
                    true,
                    None,
                    10,
                ),
            ),
            (&plain, whole.clone()),
            (
                &beyond,
                (
                    416,
                    Some("0".into()),
                    Some("bytes */1000".into()),
                    true,
                    None,
                    0,
                ),
            ),
            (&revalidate, (304, None, None, false, None, 0)),
            (&plain, whole),
        ];
        for (i, (request, expected)) in table.into_iter().enumerate() {
            let r = response(&segment, "HIT", shape(request), Instant::now());
            assert_eq!(r.headers()[ETAG], etag, "answer {i}");
            assert_eq!(r.headers()[AGE], "1", "answer {i}");
            assert_eq!(r.headers()[X_CACHE], "HIT", "answer {i}");
            assert_eq!(r.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], "*", "answer {i}");
            assert_eq!(
                r.headers().len(),
                10 - usize::from(expected.0 == 304) * 2 + usize::from(expected.2.is_some()),
                "answer {i}: {:?}",
                r.headers()
            );
            assert_eq!(seen(r), expected, "answer {i}");
        }
        // A HEAD: the whole object's length, no body.
        let head = Shape {
            head: true,
            ..shape(&plain)
        };
        let r = response(&segment, "MISS", head, Instant::now());
        assert_eq!(r.headers()[X_CACHE], "MISS");
        assert_eq!(seen(r), (200, Some("1000".into()), None, true, None, 0));
    }

    #[test]
    fn each_coding_of_a_playlist_has_its_own_head_and_a_token_its_own_length() {
        let text = "#EXTM3U\n".to_owned() + &"#EXTINF:2.0,\nsource/s1/1.m4s\n".repeat(20);
        let playlist = cached("application/vnd.apple.mpegurl", text.clone().into_bytes());
        let shape = |request, token| Shape {
            head: false,
            token,
            request: Some(request),
            media: false,
            compress: true,
            cors: None,
            http2: false,
        };
        let identity = request(&[]);
        let gzip = request(&[(ACCEPT_ENCODING, "gzip")]);
        let br = request(&[(ACCEPT_ENCODING, "br, gzip")]);
        for round in 0..2 {
            for (request, coding) in [(&identity, None), (&gzip, Some("gzip")), (&br, Some("br"))] {
                let r = response(&playlist, "HIT", shape(request, None), Instant::now());
                assert_eq!(r.headers()[VARY], "accept-encoding");
                let (status, length, _, ranges, encoding, body) = seen(r);
                assert_eq!((status, ranges), (200, false), "round {round}");
                assert_eq!(encoding.as_deref(), coding, "round {round}");
                assert_eq!(length, Some(body.to_string()), "round {round}");
                if coding.is_none() {
                    assert_eq!(body, text.len(), "round {round}");
                } else {
                    assert!(body < text.len(), "round {round}: {coding:?} {body}");
                }
            }
            // With a token the body is the viewer's own: its length, not the cached one's.
            let r = response(
                &playlist,
                "HIT",
                shape(&identity, Some("t0k")),
                Instant::now(),
            );
            let (_, length, _, _, _, body) = seen(r);
            assert_eq!(body, text.len() + 20 * "?token=t0k".len(), "round {round}");
            assert_eq!(length, Some(body.to_string()));
        }
    }

    /// What differs per request replaces the shared head's placeholders: `Age` as time
    /// passes, `X-Cache` for a miss or a stale copy; an answer without CORS (an edge asking
    /// this one) has its own head, not the viewers'.
    #[test]
    fn age_cache_status_and_cors_per_answer() {
        let mut segment = cached("video/iso.segment", vec![7; 100]);
        let star = HeaderValue::from_static("*");
        let viewer = Shape {
            cors: Some(&star),
            ..Shape::plain()
        };
        let at = segment.fetched_at;
        let table = [
            (viewer, "HIT", 0, "1", "HIT", true),
            (viewer, "MISS", 0, "1", "MISS", true),
            (viewer, "HIT", 75, "76", "HIT", true),
            (Shape::plain(), "HIT", 2, "3", "HIT", false),
            (viewer, "HIT", 0, "1", "HIT", true),
            (Shape::plain(), "MISS", 0, "1", "MISS", false),
        ];
        for (round, stale) in [(0, false), (1, false), (2, true)] {
            segment.stale = stale;
            for (i, (shape, status, secs, age, x_cache, cors)) in table.iter().enumerate() {
                let r = response(&segment, status, *shape, at + Duration::from_secs(*secs));
                let h = r.headers();
                assert_eq!(h[AGE], *age, "round {round} answer {i}");
                let x_cache = if stale { "STALE" } else { *x_cache };
                assert_eq!(h[X_CACHE], x_cache, "round {round} answer {i}");
                assert_eq!(
                    h.contains_key(ACCESS_CONTROL_ALLOW_ORIGIN),
                    *cors,
                    "round {round} answer {i}"
                );
                assert_eq!(h.contains_key(TIMING_ALLOW_ORIGIN), *cors);
                assert_eq!(h.get_all(AGE).iter().count(), 1, "one Age: {h:?}");
            }
        }
    }

    #[test]
    fn age_values_are_the_decimal_seconds() {
        for secs in (0..200).chain([3_600, u64::MAX]) {
            assert_eq!(age_value(secs), HeaderValue::from(secs), "{secs}");
        }
    }

    /// Over HTTP/2 a body longer than a frame comes in record-sized slices, whole or ranged;
    /// over HTTP/1.1 in one piece.
    #[tokio::test]
    async fn http2_answers_come_in_record_sized_slices() {
        use http_body_util::BodyExt;
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let segment = cached("video/iso.segment", bytes.clone());
        let whole = request(&[]);
        let ranged = request(&[(RANGE, "bytes=1000-60999")]);
        let table = [
            (false, &whole, 0..100_000, 1),
            (true, &whole, 0..100_000, 7),
            (true, &ranged, 1_000..61_000, 4),
        ];
        for (http2, request, expected, frames) in table {
            let shape = Shape {
                request: Some(request),
                media: true,
                http2,
                ..Shape::plain()
            };
            let mut body = response(&segment, "HIT", shape, Instant::now()).into_body();
            let len = http_body::Body::size_hint(&body).exact();
            assert_eq!(len, Some(expected.len() as u64), "http2 {http2}");
            let mut got = Vec::new();
            let mut n = 0;
            while let Some(frame) = body.frame().await {
                let data = frame.unwrap().into_data().unwrap();
                assert!(!http2 || data.len() <= crate::slices::HTTP2_SLICE);
                got.extend_from_slice(&data);
                n += 1;
            }
            assert_eq!(got, bytes[expected], "http2 {http2}");
            assert_eq!(n, frames, "http2 {http2}");
        }
    }
}
