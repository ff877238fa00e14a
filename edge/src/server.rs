//! The edge's request path, phase by phase (the crate docs list them): this module runs them
//! in order and turns their errors into answers.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::response::{IntoResponse, Response};
use http::header::{HeaderValue, ACCESS_CONTROL_ALLOW_ORIGIN, CACHE_CONTROL};
use http::{Method, StatusCode, Uri};
use weir_config::AccessSettings;
use weir_url::{Directives, Route};

use crate::access::{Access, Denial, Request};
use crate::audience::{report_loop, Audience};
use crate::cache_key::cache_key;
use crate::client_addr::client_ip;
use crate::coalesce::{Answer, Coalescer, FetchRole, Wait};
use crate::counters::Counters;
use crate::follow::Followers;
use crate::geo::Geo;
use crate::internal::{content_key, from_edge, policy_for_edge, purge};
use crate::licence::{clearkey, MAX_REQUEST_BYTES as MAX_LICENCE_REQUEST_BYTES};
use crate::policy::Policies;
use crate::response::{add_cors, response, streamed, Shape};
use crate::route::{served, Served};
use crate::sharing::TokenSharing;
use crate::upstream::Upstream;

/// The edge's settings.
#[derive(Clone, Debug)]
pub struct EdgeConfig {
    /// Upstream base URL, `http://host:port`, or several separated by commas, most
    /// preferred first (failover with health checks: [`crate::UPSTREAM_PROBE_EVERY`]).
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
    /// Viewer access: token keys, trusted proxies, the GeoIP database, the cluster secret
    /// (sent upstream on internal paths, and required from edges in front of this one).
    pub access: AccessSettings,
    /// The secret sent for content keys when it is not the cluster secret: the one the
    /// origin of the same `weir serve` made for its own edge when none is configured.
    pub key_secret: Option<weir_config::ClusterSecret>,
    /// How long after a short-lived object (a live playlist) expires its last good copy may
    /// still answer when the upstream fails or times out (`X-Cache: STALE`); zero: never.
    pub stale_if_error: Duration,
    /// How long a viewer of a live playlist waits on its refresh before getting the last
    /// good copy (`X-Cache: STALE`) while the refresh goes on; zero: always wait.
    pub stale_while_revalidate: Duration,
    /// Most requests that may wait on one upstream fetch; more get 503 with `Retry-After`.
    pub max_waiters_per_object: usize,
    /// PEM certificate authorities trusted for `https://` upstreams besides the system's.
    pub upstream_ca_file: Option<std::path::PathBuf>,
    /// The origin of the same process (`weir serve`'s own edge): objects are fetched from
    /// it by a call, not over HTTP, and cached objects share its store's bytes. `upstream`
    /// is then only where the edge's viewer reports go.
    pub local_origin: Option<crate::LocalOrigin>,
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
    /// The viewer is refused by the event's access policy: 403 (429 for too many viewers
    /// of one token), the body naming the reason and nothing more.
    #[error("forbidden: {0}")]
    Denied(Denial),
    /// Too many requests already wait on the same upstream fetch: 503, `Retry-After: 1`.
    #[error("overloaded, retry")]
    Overloaded,
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
            EdgeError::Denied(Denial::Sharing) => StatusCode::TOO_MANY_REQUESTS,
            EdgeError::Denied(_) => StatusCode::FORBIDDEN,
            EdgeError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        };
        let retry = matches!(self, EdgeError::Overloaded);
        let mut r = (status, format!("{self}\n")).into_response();
        r.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if retry {
            r.headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

pub(crate) struct EdgeState {
    pub(crate) coalescer: Arc<Coalescer>,
    followers: Arc<Followers>,
    audience: Arc<Audience>,
    pub(crate) access: Access,
    pub(crate) config: EdgeConfig,
    cors: HeaderValue,
    pub(crate) counters: Counters,
}

/// The edge's request path as an app for [`weir_http::serve`]: one [`EdgeConnection`] per
/// viewer connection runs the phases straight from each request, without a router in
/// between. Cloning is cheap (one shared state).
#[derive(Clone)]
pub struct Edge(Arc<EdgeState>);

impl Edge {
    /// Drops every cached object of `event` (and its last good copies and access policy),
    /// as `POST /internal/v1/purge/{event}` does, for a control plane in the same process;
    /// returns how many cache entries went.
    pub fn purge(&self, event: &str) -> u64 {
        crate::internal::purge_event(&self.0, event)
    }
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge")
            .field("upstream", &self.0.config.upstream)
            .field("id", &self.0.config.id)
            .finish_non_exhaustive()
    }
}

impl weir_http::App for Edge {
    type Body = axum::body::Body;
    type Connection = EdgeConnection;

    fn connection(&self, peer: std::net::SocketAddr) -> EdgeConnection {
        EdgeConnection(Arc::new(Connected {
            state: self.0.clone(),
            peer: peer.ip(),
        }))
    }
}

/// The edge serving one connection from a peer (hyper's `Service`, any request body). Each
/// request holds the connection's own reference, not the edge's: the requests of different
/// connections (on different worker threads) do not contend for one reference count.
#[derive(Clone)]
pub struct EdgeConnection(Arc<Connected>);

struct Connected {
    state: Arc<EdgeState>,
    /// The peer's address (phase 1 may take the viewer's from a trusted proxy's header).
    peer: std::net::IpAddr,
}

impl std::fmt::Debug for EdgeConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeConnection")
            .field("peer", &self.0.peer)
            .finish_non_exhaustive()
    }
}

impl<B> hyper::service::Service<http::Request<B>> for EdgeConnection
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<weir_http::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, request: http::Request<B>) -> Self::Future {
        // Only a licence request has a body the edge reads (bounded); any other is dropped.
        let (parts, body) = request.into_parts();
        let connected = self.0.clone();
        let licence = parts.method == Method::POST && parts.uri.path().starts_with("/licence/");
        let fut = async move {
            let body = match licence {
                true => {
                    let limited = http_body_util::Limited::new(body, MAX_LICENCE_REQUEST_BYTES);
                    Box::pin(http_body_util::BodyExt::collect(limited))
                        .await
                        .ok()
                        .map(|b| b.to_bytes())
                }
                false => None,
            };
            Ok(handle(&connected.state, connected.peer, parts, body.as_ref()).await)
        };
        Box::pin(fut)
    }
}

/// The edge, to serve with `weir-http`; starts its background tasks (reports, GeoIP watch,
/// upstream probes). Call within a Tokio runtime, after the metrics recorder is installed
/// (the edge's counters are resolved here, once).
///
/// # Errors
/// The GeoIP database or the upstream CA file cannot be read (the message says why).
pub fn edge(config: EdgeConfig) -> Result<Edge, String> {
    let geo = Geo::open(config.access.geoip_database.clone())?;
    let upstream = Upstream::new(
        &config.upstream,
        config.upstream_ca_file.as_deref(),
        config.upstream_timeout,
        config.access.cluster_secret.clone(),
        config
            .key_secret
            .clone()
            .or(config.access.cluster_secret.clone()),
        config.local_origin.clone(),
    )?;
    let primary = upstream
        .targets
        .primary()
        .map(|t| t.base.clone())
        .ok_or("no upstream URL")?;
    if upstream.targets.order().len() > 1 {
        tokio::spawn(upstream.targets.clone().probe_loop(upstream.client.clone()));
    }
    let audience = Arc::new(Audience::default());
    tokio::spawn(report_loop(
        audience.clone(),
        primary,
        config.id.clone(),
        config.access.cluster_secret.clone(),
    ));
    let coalescer = Arc::new(Coalescer::new(
        config.cache_capacity_bytes,
        upstream,
        config.stale_if_error,
        config.max_waiters_per_object,
    ));
    tokio::spawn(crate::held::gauge_loop(coalescer.clone()));
    let state = Arc::new(EdgeState {
        coalescer,
        followers: Arc::new(Followers::new()),
        audience,
        access: Access {
            geo,
            token_keys: config.access.token_keys.clone(),
            policies: Policies::default(),
            sharing: TokenSharing::default(),
        },
        cors: HeaderValue::from_str(&config.cors_allow_origin)
            .unwrap_or(HeaderValue::from_static("*")),
        counters: Counters::new(),
        config,
    });
    Ok(Edge(state))
}

async fn handle(
    state: &EdgeState,
    peer: std::net::IpAddr,
    request: http::request::Parts,
    body: Option<&bytes::Bytes>,
) -> Response {
    let (method, uri, headers) = (&request.method, &request.uri, &request.headers);
    // Phase 1: the client address (and the one reading of the clock for the request).
    let viewer = Viewer {
        ip: client_ip(peer, headers, &state.config.access.trusted_proxies),
        user_agent: headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
        at: Instant::now(),
        http2: request.version == http::Version::HTTP_2,
    };
    let mut response = match respond(state, method, uri, headers, &viewer, body).await {
        Ok(r) => r,
        Err(e) => {
            if e.is_retryable() {
                tracing::warn!(path = uri.path(), error = %e, "upstream failure");
            }
            e.into_response()
        }
    };
    // Every answer carries them; a cached object's head has them already.
    let h = response.headers_mut();
    if !h.contains_key(ACCESS_CONTROL_ALLOW_ORIGIN) {
        add_cors(h, &state.cors);
    }
    response
}

/// Who asked, and when (phase 1's answer).
struct Viewer<'a> {
    ip: std::net::IpAddr,
    user_agent: Option<&'a str>,
    /// When the request came: every phase's "now".
    at: Instant,
    /// It came over HTTP/2 (a body is answered in record-sized slices: [`crate::slices`]).
    http2: bool,
}

async fn respond(
    state: &EdgeState,
    method: &Method,
    uri: &Uri,
    headers: &http::HeaderMap,
    viewer: &Viewer<'_>,
    body: Option<&bytes::Bytes>,
) -> Result<Response, EdgeError> {
    if method == Method::OPTIONS {
        let mut r = weir_http::cors_preflight();
        r.headers_mut().insert(
            "access-control-allow-methods",
            HeaderValue::from_static("GET, HEAD, POST, OPTIONS"),
        );
        return Ok(r);
    }
    // Is this a path we serve: junk never reaches the upstream.
    let served = served(uri.path()).ok_or(EdgeError::NotFound)?;
    if let Served::Purge(event) = &served {
        return purge(state, method, event, headers);
    }
    if let Served::Licence(event) = &served {
        if method != Method::POST {
            return Err(EdgeError::MethodNotAllowed);
        }
        // Phases 2 and 3 as for any viewer request of the event.
        let request = Request {
            event: event.as_str(),
            path: uri.path(),
            query: uri.query(),
            client: viewer.ip,
            user_agent: viewer.user_agent,
        };
        state
            .access
            .check(
                &request,
                &state.coalescer,
                state.config.upstream_timeout,
                viewer.at,
            )
            .await?;
        return Box::pin(clearkey(state, event.as_str(), body)).await;
    }
    if method != Method::GET && method != Method::HEAD {
        return Err(EdgeError::MethodNotAllowed);
    }
    let route = match served {
        Served::Purge(_) | Served::Licence(_) => return Err(EdgeError::NotFound),
        Served::PolicyForEdge(event) => {
            return Box::pin(policy_for_edge(state, &event, headers)).await
        }
        // A content key for an edge in front of this one: only with the cluster secret (a
        // shield without one never hands out keys), never stored.
        Served::KeyForEdge(event, id) => {
            if !from_edge(state, headers) {
                return Err(EdgeError::NotFound);
            }
            return Box::pin(content_key(state, event.as_str(), &id)).await;
        }
        Served::Viewer(route) => route,
    };
    // Phases 2 and 3: geo and token, under the event's policy.
    let request = Request {
        event: route.event().as_str(),
        path: uri.path(),
        query: uri.query(),
        client: viewer.ip,
        user_agent: viewer.user_agent,
    };
    let token = state
        .access
        .check(
            &request,
            &state.coalescer,
            state.config.upstream_timeout,
            viewer.at,
        )
        .await?;
    if let Route::Key(event, id) = &route {
        return Box::pin(content_key(state, event.as_str(), id)).await;
    }
    // Phase 4: the cache key.
    let (key, directives) = cache_key(&route, uri)?;
    let blocking = directives.is_some_and(|d| d.blocking());
    let timeout = if blocking {
        state.config.blocking_timeout
    } else {
        state.config.upstream_timeout
    };
    // Phases 5 and 6: lookup/coalesce and upstream.
    let playlist = matches!(route, Route::Master(_) | Route::MediaPlaylist(..));
    let whole_needed = method == Method::HEAD
        || headers.contains_key(http::header::RANGE)
        || headers.contains_key(http::header::IF_NONE_MATCH);
    let swr = state.config.stale_while_revalidate;
    let wait = Wait {
        media: !playlist,
        take_stream: !playlist && !whole_needed,
        stale_after: (playlist && !blocking && !swr.is_zero()).then_some(swr),
    };
    let (answer, role) = state.coalescer.fetch_with(&key, &key, timeout, wait).await;
    let status = match role {
        FetchRole::Hit => "HIT",
        FetchRole::Started => "MISS",
        FetchRole::Joined => "COALESCED",
    };
    state.counters.request(route.kind(), status);
    let cached = match answer? {
        Answer::Whole(cached) => cached,
        Answer::Streaming(filling) => {
            record_viewer(state, &route, viewer, role);
            let r = streamed(&filling);
            let sent = filling.head.content_length.unwrap_or(0);
            state.counters.sent(route.kind(), sent);
            return Ok(r);
        }
    };
    record_viewer(state, &route, viewer, role);
    if directives.is_some_and(|d| d == Directives::default()) && cached.ttl.is_some() {
        state
            .followers
            .touch(&key, &state.coalescer, state.config.blocking_timeout);
    }
    // Phase 7: the response (with the viewer's token in a playlist's URIs).
    let r = response(
        &cached,
        status,
        Shape {
            head: method == Method::HEAD,
            token: token.filter(|_| playlist),
            request: Some(headers),
            media: !playlist,
            compress: playlist,
            cors: Some(&state.cors),
            http2: viewer.http2,
        },
        viewer.at,
    );
    let sent = http_body::Body::size_hint(r.body()).exact().unwrap_or(0);
    state.counters.sent(route.kind(), sent);
    Ok(r)
}

/// Counts the viewer in the event's audience (reported upstream), with whether the edge
/// answered without its own upstream request.
fn record_viewer(state: &EdgeState, route: &Route, viewer: &Viewer<'_>, role: FetchRole) {
    state.audience.record(
        route.event().as_str(),
        viewer.ip,
        viewer.user_agent,
        role != FetchRole::Started,
        viewer.at,
    );
}
