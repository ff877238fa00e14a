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
    HeaderName, HeaderValue, ACCEPT_ENCODING, ACCEPT_RANGES, AGE, CACHE_CONTROL, CONTENT_ENCODING,
    CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, IF_NONE_MATCH, RANGE, VARY,
};
use http::{HeaderMap, StatusCode};

use std::sync::Arc;

use crate::coalesce::Cached;
use crate::conditional::{etag_of, none_match, range, Ranged};
use crate::encoding::{self, Coding};
use crate::filling::Filling;
use crate::rewrite::with_token;

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
        }
    }
}

/// The answer to a viewer from `cached`.
pub(crate) fn response(cached: &Cached, cache_status: &'static str, shape: Shape<'_>) -> Response {
    let f = &cached.fetched;
    let ok = f.head.status == StatusCode::OK;
    let rewritten = match (shape.token, std::str::from_utf8(&f.body)) {
        (Some(t), Ok(text)) if f.head.status.is_success() => Some(Bytes::from(with_token(text, t))),
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
    let mut status = f.head.status;
    let mut extra: Vec<(HeaderName, HeaderValue)> = Vec::new();
    if let (true, Some(request)) = (ok, shape.request) {
        let revalidated = none_match(request.get(IF_NONE_MATCH), &etag);
        extra.push((ETAG, etag));
        if revalidated {
            status = StatusCode::NOT_MODIFIED;
            body = Bytes::new();
        } else if shape.media {
            extra.push((ACCEPT_RANGES, HeaderValue::from_static("bytes")));
            let len = body.len() as u64;
            match range(request.get(RANGE), len) {
                Ranged::Whole => {}
                Ranged::Part { start, end } => {
                    status = StatusCode::PARTIAL_CONTENT;
                    body = body.slice(start as usize..=end as usize);
                    extra.push((
                        CONTENT_RANGE,
                        HeaderValue::from_str(&format!("bytes {start}-{end}/{len}"))
                            .unwrap_or(HeaderValue::from_static("bytes */0")),
                    ));
                }
                Ranged::Unsatisfiable => {
                    status = StatusCode::RANGE_NOT_SATISFIABLE;
                    body = Bytes::new();
                    extra.push((
                        CONTENT_RANGE,
                        HeaderValue::from_str(&format!("bytes */{len}"))
                            .unwrap_or(HeaderValue::from_static("bytes */0")),
                    ));
                }
            }
        }
    }
    if shape.compress && ok {
        // The answer depends on Accept-Encoding, whichever coding this one got.
        extra.push((VARY, HeaderValue::from_static("accept-encoding")));
        if let (Some(v), false) = (coding.header(), status == StatusCode::NOT_MODIFIED) {
            extra.push((CONTENT_ENCODING, v));
        }
    }
    let length = body.len();
    let mut r = Response::new(if shape.head || status == StatusCode::NOT_MODIFIED {
        Body::empty()
    } else {
        Body::from(body)
    });
    *r.status_mut() = status;
    // Room for every header of an answer (these and the server's CORS ones) without growing.
    *r.headers_mut() = HeaderMap::with_capacity(16);
    let h = r.headers_mut();
    if let Some(v) = &f.head.content_type {
        h.insert(CONTENT_TYPE, v.clone());
    }
    if let Some(v) = &f.head.cache_control {
        h.insert(CACHE_CONTROL, v.clone());
    }
    if let Some(v) = &f.head.cdn_cache_control {
        h.insert(weir_http::CDN_CACHE_CONTROL, v.clone());
    }
    if status != StatusCode::NOT_MODIFIED {
        h.insert(CONTENT_LENGTH, HeaderValue::from(length));
    }
    for (k, v) in extra {
        h.insert(k, v);
    }
    let age = f.head.age + cached.fetched_at.elapsed().as_secs();
    h.insert(AGE, HeaderValue::from(age));
    let x_cache = match (cached.stale, cache_status) {
        (true, _) => "STALE",
        (false, "HIT") => "HIT",
        _ => "MISS",
    };
    h.insert("x-cache", HeaderValue::from_static(x_cache));
    r
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
    h.insert("x-cache", HeaderValue::from_static("MISS"));
    r
}
