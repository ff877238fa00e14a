//! Phase 7, the response: the cached (or just fetched) upstream answer with its
//! `Content-Type` and `Cache-Control`, `Age` (the upstream's plus the time cached), `X-Cache`
//! (`HIT`, or `MISS` for a fetched or coalesced answer), and, for a playlist of an event
//! that requires tokens, the viewer's token in every URI ([`crate::rewrite`]).

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::header::{HeaderValue, AGE, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};

use crate::coalesce::Cached;
use crate::rewrite::with_token;

/// The answer to a viewer from `cached`; `token` is added to a playlist's URIs.
pub(crate) fn response(
    cached: &Cached,
    cache_status: &'static str,
    head: bool,
    token: Option<&str>,
) -> Response {
    let f = &cached.fetched;
    let body = match (token, std::str::from_utf8(&f.body)) {
        (Some(t), Ok(text)) if f.status.is_success() => Bytes::from(with_token(text, t)),
        _ => f.body.clone(),
    };
    let length = body.len();
    let mut r = Response::new(if head {
        Body::empty()
    } else {
        Body::from(body)
    });
    *r.status_mut() = f.status;
    let h = r.headers_mut();
    if let Some(v) = &f.content_type {
        h.insert(CONTENT_TYPE, v.clone());
    }
    if let Some(v) = &f.cache_control {
        h.insert(CACHE_CONTROL, v.clone());
    }
    h.insert(CONTENT_LENGTH, HeaderValue::from(length));
    let age = f.age + cached.fetched_at.elapsed().as_secs();
    h.insert(AGE, HeaderValue::from(age));
    h.insert(
        "x-cache",
        HeaderValue::from_static(if cache_status == "HIT" { "HIT" } else { "MISS" }),
    );
    r
}
