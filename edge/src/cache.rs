//! The edge's request path: route, cache lookup, coalesced upstream fetch, response.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Router;
use http::header::{
    HeaderValue, ACCESS_CONTROL_ALLOW_ORIGIN, AGE, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE,
};
use http::{Method, StatusCode, Uri};
use moka::future::Cache;
use moka::Expiry;
use tokio::net::TcpListener;
use weir_origin::{preflight, Route};

use crate::upstream::{Fetched, Upstream};

/// The edge's settings.
#[derive(Clone, Debug)]
pub struct EdgeConfig {
    /// Upstream base URL, `http://host:port` (no trailing slash).
    pub upstream: String,
    /// Cache capacity: bytes of cached bodies (plus keys).
    pub cache_capacity_bytes: u64,
    /// Longest wait for an upstream response; past it the viewer gets 504.
    pub upstream_timeout: Duration,
    /// `Access-Control-Allow-Origin` on every response.
    pub cors_allow_origin: String,
}

/// Why the edge could not answer from the cache or upstream; turned into a response in one
/// place, with a short body.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EdgeError {
    /// The path is not a weir route: answered 404 without asking upstream.
    #[error("not found")]
    NotFound,
    /// Not GET, HEAD or OPTIONS.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The upstream could not be reached or broke the connection: 502.
    #[error("upstream unreachable")]
    UpstreamUnreachable,
    /// The upstream did not answer within the configured timeout: 504.
    #[error("upstream timed out")]
    UpstreamTimeout,
    /// The upstream URL could not be formed: 502.
    #[error("bad upstream address")]
    BadUpstream,
}

impl EdgeError {
    /// Whether another attempt may succeed (the upstream's trouble, not the request's).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            EdgeError::UpstreamUnreachable | EdgeError::UpstreamTimeout
        )
    }
}

impl IntoResponse for EdgeError {
    fn into_response(self) -> Response {
        let status = match self {
            EdgeError::NotFound => StatusCode::NOT_FOUND,
            EdgeError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            EdgeError::UpstreamUnreachable | EdgeError::BadUpstream => StatusCode::BAD_GATEWAY,
            EdgeError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        };
        let mut r = (status, format!("{self}\n")).into_response();
        r.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }
}

/// A cached (or just fetched) upstream response.
#[derive(Debug)]
struct Cached {
    fetched: Fetched,
    fetched_at: Instant,
    ttl: Duration,
}

/// Per-entry lifetime: the TTL the upstream's `Cache-Control` gave.
struct UpstreamTtl;

impl Expiry<String, Arc<Cached>> for UpstreamTtl {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Arc<Cached>,
        _at: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// Why a fetch's result is not put in the cache; shared with every coalesced waiter.
#[derive(Debug)]
enum Miss {
    /// Upstream answered, but the response may not be stored.
    Uncacheable(Arc<Cached>),
    /// Upstream failed.
    Failed(EdgeError),
}

struct EdgeState {
    cache: Cache<String, Arc<Cached>>,
    upstream: Upstream,
    cors: HeaderValue,
}

/// Serves the edge on `listener` until the future is dropped.
///
/// # Errors
/// The listener's accept loop failed.
pub async fn serve(listener: TcpListener, config: EdgeConfig) -> std::io::Result<()> {
    let cache = Cache::builder()
        .max_capacity(config.cache_capacity_bytes)
        .weigher(|key: &String, value: &Arc<Cached>| {
            (key.len() + value.fetched.body.len() + 256)
                .try_into()
                .unwrap_or(u32::MAX)
        })
        .expire_after(UpstreamTtl)
        .build();
    let state = Arc::new(EdgeState {
        cache,
        upstream: Upstream::new(config.upstream, config.upstream_timeout),
        cors: HeaderValue::from_str(&config.cors_allow_origin)
            .unwrap_or(HeaderValue::from_static("*")),
    });
    let app = Router::new().fallback(handle).with_state(state);
    axum::serve(listener, app).await
}

async fn handle(State(state): State<Arc<EdgeState>>, method: Method, uri: Uri) -> Response {
    let mut response = match respond(&state, &method, &uri).await {
        Ok(r) => r,
        Err(e) => {
            if e.is_retryable() {
                tracing::warn!(path = uri.path(), error = %e, "upstream failure");
            }
            e.into_response()
        }
    };
    response
        .headers_mut()
        .insert(ACCESS_CONTROL_ALLOW_ORIGIN, state.cors.clone());
    response
}

async fn respond(state: &EdgeState, method: &Method, uri: &Uri) -> Result<Response, EdgeError> {
    if method == Method::OPTIONS {
        return Ok(preflight());
    }
    if method != Method::GET && method != Method::HEAD {
        return Err(EdgeError::MethodNotAllowed);
    }
    let route = Route::parse(uri.path()).ok_or(EdgeError::NotFound)?;
    let key = uri.path().to_string();
    let head = method == Method::HEAD;
    if let Some(hit) = state.cache.get(&key).await {
        metrics::counter!("weir_edge_requests_total", "kind" => route.kind(), "cache_status" => "HIT").increment(1);
        return Ok(response(&hit, "HIT", head));
    }
    metrics::counter!("weir_edge_requests_total", "kind" => route.kind(), "cache_status" => "MISS")
        .increment(1);
    let upstream = &state.upstream;
    let path = uri.path();
    let fetch = async {
        let fetched = upstream.get(path).await.map_err(Miss::Failed)?;
        let ttl = fetched.ttl();
        let cached = Arc::new(Cached {
            fetched,
            fetched_at: Instant::now(),
            ttl: ttl.unwrap_or_default(),
        });
        match ttl {
            Some(_) => Ok(cached),
            None => Err(Miss::Uncacheable(cached)),
        }
    };
    match state.cache.entry(key).or_try_insert_with(fetch).await {
        Ok(entry) => Ok(response(entry.value(), "MISS", head)),
        Err(miss) => match &*miss {
            Miss::Uncacheable(cached) => Ok(response(cached, "MISS", head)),
            Miss::Failed(e) => Err(e.clone()),
        },
    }
}

fn response(cached: &Cached, cache_status: &'static str, head: bool) -> Response {
    let f = &cached.fetched;
    let body = if head {
        Body::empty()
    } else {
        Body::from(f.body.clone())
    };
    let mut r = Response::new(body);
    *r.status_mut() = f.status;
    let h = r.headers_mut();
    if let Some(v) = &f.content_type {
        h.insert(CONTENT_TYPE, v.clone());
    }
    if let Some(v) = &f.cache_control {
        h.insert(CACHE_CONTROL, v.clone());
    }
    h.insert(CONTENT_LENGTH, HeaderValue::from(f.body.len()));
    let age = f.age + cached.fetched_at.elapsed().as_secs();
    h.insert(AGE, HeaderValue::from(age));
    h.insert("x-cache", HeaderValue::from_static(cache_status));
    r
}
