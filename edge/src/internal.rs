//! The paths an edge serves to other edges and to its control plane, not to viewers: an
//! event's access policy for an edge in front (a shield tier), content keys for an edge in
//! front (with the cluster secret), and purge. Every one answers 404 to a request without
//! the secret, as if it did not exist.

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL};
use http::{Method, StatusCode};
use weir_url::EventId;

use crate::coalesce::FetchRole;
use crate::response::{response, Shape};
use crate::server::EdgeState;
use crate::EdgeError;

/// An event's access policy for an edge in front of this one (a shield tier): from this
/// edge's cache, so the tier adds no origin requests. With a cluster secret configured, only
/// to requests that carry it.
pub(crate) async fn policy_for_edge(
    state: &EdgeState,
    event: &EventId,
    headers: &http::HeaderMap,
) -> Result<Response, EdgeError> {
    if state.config.access.cluster_secret.is_some() && !from_edge(state, headers) {
        return Err(EdgeError::NotFound);
    }
    let path = crate::policy::policy_path(event.as_str());
    let (outcome, role) = state
        .coalescer
        .fetch(&path, &path, state.config.upstream_timeout)
        .await;
    let status = if role == FetchRole::Hit {
        "HIT"
    } else {
        "MISS"
    };
    let cached = outcome?;
    Ok(response(
        &cached,
        status,
        Shape::plain(),
        std::time::Instant::now(),
    ))
}

/// `POST /internal/v1/purge/{event}` ([`crate::purge`]): with the cluster secret or the
/// key secret of this process's control plane; 404 without (as every internal path).
pub(crate) fn purge(
    state: &EdgeState,
    method: &Method,
    event: &EventId,
    headers: &http::HeaderMap,
) -> Result<Response, EdgeError> {
    let key_secret_ok = state
        .config
        .key_secret
        .as_ref()
        .is_some_and(|s| s.matches(presented_secret(headers)));
    if !from_edge(state, headers) && !key_secret_ok {
        return Err(EdgeError::NotFound);
    }
    if method != Method::POST {
        return Err(EdgeError::MethodNotAllowed);
    }
    let purged = purge_event(state, event.as_str());
    let mut r = format!("{{\"purged\":{purged}}}\n").into_response();
    let h = r.headers_mut();
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

/// Whether the request carries this edge's configured cluster secret (an edge in front of
/// this one); `false` when none is configured.
pub(crate) fn from_edge(state: &EdgeState, headers: &http::HeaderMap) -> bool {
    state
        .config
        .access
        .cluster_secret
        .as_ref()
        .is_some_and(|secret| secret.matches(presented_secret(headers)))
}

/// The value of the cluster-secret header, empty when absent.
fn presented_secret(headers: &http::HeaderMap) -> &[u8] {
    headers
        .get(crate::CLUSTER_SECRET_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default()
}

/// A content key for a viewer the access phases admitted: fetched from the origin's internal
/// path (with the cluster secret), coalesced but never stored, and answered
/// `Cache-Control: private, no-store` so that no cache on the way keeps it either.
pub(crate) async fn content_key(
    state: &EdgeState,
    event: &str,
    id: &str,
) -> Result<Response, EdgeError> {
    let key = fetch_key(state, event, id).await?;
    let mut r = (StatusCode::OK, Bytes::copy_from_slice(&key)).into_response();
    let h = r.headers_mut();
    h.insert(CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(r)
}

/// The 16 bytes of content key `id` of `event`, from the origin's internal path (with the
/// cluster secret), coalesced with other requests for it, never stored.
///
/// # Errors
/// [`EdgeError::NotFound`] when the upstream has no such key; the upstream's errors, and
/// [`EdgeError::UpstreamUnreachable`] when it refuses (another cluster secret).
pub(crate) async fn fetch_key(
    state: &EdgeState,
    event: &str,
    id: &str,
) -> Result<[u8; 16], EdgeError> {
    let path = format!("/internal/v1/keys/{event}/{id}");
    let (outcome, role) = state
        .coalescer
        .fetch(&path, &path, state.config.upstream_timeout)
        .await;
    let cached = outcome?;
    let status = if role == FetchRole::Joined {
        "COALESCED"
    } else {
        "MISS"
    };
    state.counters.request("key", status);
    match cached.fetched.head.status {
        StatusCode::OK => <[u8; 16]>::try_from(&cached.fetched.body[..])
            .map_err(|_| EdgeError::UpstreamUnreachable),
        StatusCode::NOT_FOUND => Err(EdgeError::NotFound),
        other => {
            tracing::warn!(
                event,
                status = other.as_u16(),
                "the upstream refused a content key (is [access] cluster_secret the same on both?)"
            );
            Err(EdgeError::UpstreamUnreachable)
        }
    }
}

/// Drops `event`'s cached objects, last good copies and access policy; counted in
/// `weir_edge_purged_objects_total`.
pub(crate) fn purge_event(state: &EdgeState, event: &str) -> u64 {
    let purged = state.coalescer.purge(event);
    state.access.policies.forget(event);
    tracing::info!(event, purged, "event purged from the edge cache");
    metrics::counter!("weir_edge_purged_objects_total").increment(purged);
    purged
}
