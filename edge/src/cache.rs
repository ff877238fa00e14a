//! The edge's request path: route, cache key, lookup/coalesce, upstream, response.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http::header::{
    HeaderValue, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, AGE, CACHE_CONTROL,
    CONTENT_LENGTH, CONTENT_TYPE,
};
use http::{Method, StatusCode, Uri};
use tokio::net::TcpListener;
use weir_origin::{preflight, Directives, Route};

use crate::audience::{report_loop, Audience};
use crate::coalesce::{Cached, Coalescer, FetchRole};
use crate::follow::Followers;
use crate::upstream::Upstream;

/// The edge's settings.
#[derive(Clone, Debug)]
pub struct EdgeConfig {
    /// Upstream base URL, `http://host:port` (no trailing slash).
    pub upstream: String,
    /// Cache capacity: bytes of cached bodies (plus keys).
    pub cache_capacity_bytes: u64,
    /// Longest wait for an upstream response to a request for an object or a plain
    /// playlist; past it the viewer gets 504.
    pub upstream_timeout: Duration,
    /// Longest wait for an upstream response to a blocking playlist request (`_HLS_msn`):
    /// the origin may hold it for three target durations, so this must be longer.
    pub blocking_timeout: Duration,
    /// `Access-Control-Allow-Origin` on every response.
    pub cors_allow_origin: String,
    /// This edge's name in its reports to the upstream (viewers, cache hits per event).
    pub id: String,
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
    /// Malformed LL-HLS delivery directives: 400 without asking upstream.
    #[error("bad request")]
    BadRequest,
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
            EdgeError::BadRequest => StatusCode::BAD_REQUEST,
            EdgeError::UpstreamUnreachable | EdgeError::BadUpstream => StatusCode::BAD_GATEWAY,
            EdgeError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        };
        let mut r = (status, format!("{self}\n")).into_response();
        r.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }
}

struct EdgeState {
    coalescer: Arc<Coalescer>,
    followers: Arc<Followers>,
    audience: Arc<Audience>,
    config: EdgeConfig,
    cors: HeaderValue,
}

/// Serves the edge on `listener` until the future is dropped.
///
/// # Errors
/// The listener's accept loop failed.
pub async fn serve(listener: TcpListener, config: EdgeConfig) -> std::io::Result<()> {
    let upstream = Upstream::new(config.upstream.clone(), config.upstream_timeout);
    let audience = Arc::new(Audience::default());
    tokio::spawn(report_loop(
        audience.clone(),
        config.upstream.clone(),
        config.id.clone(),
    ));
    let state = Arc::new(EdgeState {
        coalescer: Arc::new(Coalescer::new(config.cache_capacity_bytes, upstream)),
        followers: Arc::new(Followers::new()),
        audience,
        cors: HeaderValue::from_str(&config.cors_allow_origin)
            .unwrap_or(HeaderValue::from_static("*")),
        config,
    });
    let app = Router::new().fallback(handle).with_state(state);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .await
}

async fn handle(
    State(state): State<Arc<EdgeState>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    method: Method,
    headers: http::HeaderMap,
    uri: Uri,
) -> Response {
    let viewer = Viewer {
        ip: peer.ip(),
        user_agent: headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
    };
    let mut response = match respond(&state, &method, &uri, &viewer).await {
        Ok(r) => r,
        Err(e) => {
            if e.is_retryable() {
                tracing::warn!(path = uri.path(), error = %e, "upstream failure");
            }
            e.into_response()
        }
    };
    let h = response.headers_mut();
    h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, state.cors.clone());
    // hls.js reads Age to tune in to a low-latency stream behind a CDN.
    h.insert(
        ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Age"),
    );
    response
}

/// Who asked (the client address phase: the socket peer).
struct Viewer<'a> {
    ip: std::net::IpAddr,
    user_agent: Option<&'a str>,
}

async fn respond(
    state: &EdgeState,
    method: &Method,
    uri: &Uri,
    viewer: &Viewer<'_>,
) -> Result<Response, EdgeError> {
    if method == Method::OPTIONS {
        return Ok(preflight());
    }
    if method != Method::GET && method != Method::HEAD {
        return Err(EdgeError::MethodNotAllowed);
    }
    // Route phase: junk never reaches the upstream.
    let route = Route::parse(uri.path()).ok_or(EdgeError::NotFound)?;
    // Cache key phase: the path, plus the normalized delivery directives for a media
    // playlist; no other query parameter changes the answer.
    let (key, directives) = match route {
        Route::MediaPlaylist(..) => {
            let d = Directives::parse(uri.query()).map_err(|_| EdgeError::BadRequest)?;
            let q = d.canonical_query();
            let key = if q.is_empty() {
                uri.path().to_string()
            } else {
                format!("{}?{q}", uri.path())
            };
            (key, Some(d))
        }
        _ => (uri.path().to_string(), None),
    };
    let blocking = directives.is_some_and(|d| d.blocking());
    let timeout = if blocking {
        state.config.blocking_timeout
    } else {
        state.config.upstream_timeout
    };
    // Lookup/coalesce and upstream phases.
    let (outcome, role) = state.coalescer.fetch(&key, &key, timeout).await;
    let cached = outcome?;
    let status = match role {
        FetchRole::Hit => "HIT",
        FetchRole::Started => "MISS",
        FetchRole::Joined => "COALESCED",
    };
    metrics::counter!("weir_edge_requests_total", "kind" => route.kind(), "cache_status" => status)
        .increment(1);
    if method != Method::HEAD {
        metrics::counter!("weir_edge_bytes_sent_total", "kind" => route.kind())
            .increment(cached.fetched.body.len() as u64);
    }
    state.audience.record(
        route.event().as_str(),
        viewer.ip,
        viewer.user_agent,
        role != FetchRole::Started,
        std::time::Instant::now(),
    );
    if directives.is_some_and(|d| d == Directives::default()) && cached.ttl.is_some() {
        state
            .followers
            .touch(&key, &state.coalescer, state.config.blocking_timeout);
    }
    Ok(response(&cached, status, method == Method::HEAD))
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
    h.insert(
        "x-cache",
        HeaderValue::from_static(if cache_status == "HIT" { "HIT" } else { "MISS" }),
    );
    r
}
