//! The origin's HTTP server: live-window objects with `Content-Type`, `Cache-Control` and
//! CORS, blocking playlist reload and preload-hinted parts (RFC 8216bis §6.2.5.2, §6.2.6),
//! plus `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::header::{
    HeaderValue, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, CACHE_CONTROL,
    CONTENT_LENGTH, CONTENT_TYPE,
};
use http::{Method, StatusCode, Uri};
use tokio::time::Instant;
use weir_packager::{PartRef, PlaylistUpdate};

use crate::directives::{readiness, Readiness};
use crate::store::half_target;
use crate::{EventId, Object, ObjectKind, Route, Store};
use weir_url::{DirectiveError, Directives};

/// Renders the process's metrics in the Prometheus text format, for `/metrics`.
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

/// The origin server's settings.
#[derive(Clone, Debug)]
pub struct OriginConfig {
    /// `Access-Control-Allow-Origin` on every response.
    pub cors_allow_origin: String,
}

/// `Cache-Control` of segments and init segments: their names are unique per publisher
/// session, so they never change (HLS-RULES "Caching").
pub const IMMUTABLE: &str = "public, max-age=604800, immutable";

struct OriginState<S> {
    store: Arc<S>,
    cors: HeaderValue,
    metrics: Option<MetricsRender>,
}

/// The origin's routes for `store`, with `routes` (e.g. the admin API) beside its own; to
/// serve with `weir-http`.
pub fn router<S: Store>(
    store: Arc<S>,
    config: OriginConfig,
    metrics: Option<MetricsRender>,
    routes: Router,
) -> Router {
    let cors =
        HeaderValue::from_str(&config.cors_allow_origin).unwrap_or(HeaderValue::from_static("*"));
    let state = Arc::new(OriginState {
        store,
        cors,
        metrics,
    });
    Router::new()
        .route("/metrics", get(metrics_text::<S>))
        .fallback(object::<S>)
        .with_state(state)
        .merge(routes)
}

async fn metrics_text<S: Store>(State(state): State<Arc<OriginState<S>>>) -> Response {
    match &state.metrics {
        Some(render) => ([(CONTENT_TYPE, "text/plain; version=0.0.4")], render()).into_response(),
        None => OriginError::NotFound.into_response(),
    }
}

async fn object<S: Store>(
    State(state): State<Arc<OriginState<S>>>,
    method: Method,
    uri: Uri,
) -> Response {
    let mut response = match respond(&state, &method, &uri).await {
        Ok(r) => r,
        // A playlist that does not exist yet (an event not started, a rendition not yet
        // published): caches may keep the 404 for a second, so a crowd waiting for the start
        // does not reach the origin with every poll.
        Err(OriginError::NotFound)
            if matches!(
                Route::parse(uri.path()),
                Some(Route::Master(_) | Route::MediaPlaylist(..))
            ) =>
        {
            not_yet()
        }
        Err(e) => e.into_response(),
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

async fn respond<S: Store>(
    state: &OriginState<S>,
    method: &Method,
    uri: &Uri,
) -> Result<Response, OriginError> {
    if method == Method::OPTIONS {
        return Ok(weir_http::cors_preflight());
    }
    if method != Method::GET && method != Method::HEAD {
        return Err(OriginError::MethodNotAllowed);
    }
    let route = Route::parse(uri.path()).ok_or(OriginError::NotFound)?;
    let head = method == Method::HEAD;
    let result = match &route {
        Route::MediaPlaylist(event, rendition) => {
            let directives = Directives::parse(uri.query()).map_err(OriginError::BadRequest)?;
            let form = match (directives.blocking(), directives.skip) {
                (false, false) => "plain",
                (true, false) => "blocking",
                (false, true) => "skip",
                (true, true) => "blocking_skip",
            };
            metrics::counter!("weir_origin_playlist_requests_total", "directives" => form)
                .increment(1);
            let watch = state
                .store
                .playlist(event, rendition)
                .ok_or(OriginError::NotFound)?;
            media_playlist(watch, directives, head).await
        }
        Route::Part(event, rendition, session, msn, part) => {
            let wanted = PartRef {
                session: session.clone(),
                msn: *msn,
                part: *part,
            };
            hinted_part(&*state.store, &route, event, rendition, wanted, head).await
        }
        _ => state
            .store
            .get(&route)
            .map(|o| object_response(&o, head))
            .ok_or(OriginError::NotFound),
    };
    let status = match &result {
        Ok(_) => "200",
        Err(OriginError::NotFound) => "404",
        Err(OriginError::BadRequest(_)) => "400",
        Err(OriginError::Unavailable) => "503",
        Err(_) => "other",
    };
    metrics::counter!("weir_origin_requests_total", "kind" => route.kind(), "status" => status)
        .increment(1);
    result
}

/// `404` that caches may keep for a second (RFC 9111 §4.2.2: an explicit `max-age` makes
/// a 404 storable).
fn not_yet() -> Response {
    let mut r = (StatusCode::NOT_FOUND, "not found\n").into_response();
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("public, max-age=1"));
    r
}

/// How long a blocking request may be held: three target durations (RFC 8216bis §6.2.5.2).
fn block_limit(update: &PlaylistUpdate) -> Duration {
    update.target_duration * 3
}

/// Counts a request held by the origin while it is held.
struct Held;

impl Held {
    fn new(kind: &'static str) -> Held {
        metrics::gauge!("weir_origin_held_requests").increment(1.0);
        metrics::counter!("weir_origin_held_requests_total", "kind" => kind).increment(1);
        Held
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        metrics::gauge!("weir_origin_held_requests").decrement(1.0);
    }
}

/// A media playlist: at once, or, with `_HLS_msn`, once it holds the segment or part asked
/// for; 503 after three target durations. Waits on the playlist's notification, never a
/// timer per version: a client that goes away drops the wait with its request.
async fn media_playlist(
    mut watch: crate::store::PlaylistWatch,
    directives: Directives,
    head: bool,
) -> Result<Response, OriginError> {
    let mut current = watch
        .borrow_and_update()
        .clone()
        .ok_or(OriginError::NotFound)?;
    let deadline = Instant::now() + block_limit(&current);
    let mut held = None;
    loop {
        match readiness(&directives, &current) {
            Readiness::Ready => break,
            Readiness::TooFarAhead => {
                return Err(OriginError::BadRequest(DirectiveError::TooFarAhead))
            }
            Readiness::Wait => {
                held.get_or_insert_with(|| Held::new("playlist"));
                match tokio::time::timeout_at(deadline, watch.changed()).await {
                    Ok(Ok(())) => {
                        if let Some(next) = watch.borrow_and_update().clone() {
                            current = next;
                        }
                    }
                    Ok(Err(_)) => return Err(OriginError::NotFound),
                    Err(_) => return Err(OriginError::Unavailable),
                }
            }
        }
    }
    drop(held);
    let body = match (&current.delta, directives.skip) {
        (Some(delta), true) => delta.clone(),
        _ => current.full.clone(),
    };
    let max_age = if directives.blocking() {
        // The answer to a directive is valid for as long as what it asked for is listed.
        current.target_duration.as_secs() * 3
    } else if current.part_target.is_some() {
        1
    } else {
        half_target(Some(current.target_duration))
    };
    Ok(playlist_response(body, max_age, head))
}

/// A part: at once if it exists; if it is the one the playlist's preload hint names, as soon
/// as it is complete (RFC 8216bis §6.2.6); otherwise 404.
async fn hinted_part<S: Store>(
    store: &S,
    route: &Route,
    event: &EventId,
    rendition: &weir_packager::RenditionId,
    wanted: PartRef,
    head: bool,
) -> Result<Response, OriginError> {
    if let Some(o) = store.get(route) {
        return Ok(object_response(&o, head));
    }
    let mut watch = store
        .playlist(event, rendition)
        .ok_or(OriginError::NotFound)?;
    let limit = watch
        .borrow()
        .as_ref()
        .map_or(Duration::from_secs(6), |u| block_limit(u));
    let deadline = Instant::now() + limit;
    let mut held = None;
    loop {
        let hinted = watch
            .borrow_and_update()
            .as_ref()
            .is_some_and(|u| u.preload_hint.as_ref() == Some(&wanted));
        // Read after the hint: a part is stored before the playlist that lists it.
        if let Some(o) = store.get(route) {
            return Ok(object_response(&o, head));
        }
        if !hinted {
            return Err(OriginError::NotFound);
        }
        held.get_or_insert_with(|| Held::new("part"));
        match tokio::time::timeout_at(deadline, watch.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(OriginError::NotFound),
            Err(_) => return Err(OriginError::Unavailable),
        }
    }
}

fn playlist_response(body: bytes::Bytes, max_age_secs: u64, head: bool) -> Response {
    object_response(
        &Object {
            kind: ObjectKind::LivePlaylist {
                max_age_secs: max_age_secs.max(1),
            },
            body,
            cdn_max_age: None,
        },
        head,
    )
}

/// A `200` for `object` with its `Content-Type`, `Cache-Control` and `Content-Length`; no
/// body for `HEAD`.
pub fn object_response(object: &Object, head: bool) -> Response {
    let (content_type, cache_control) = match object.kind {
        ObjectKind::LivePlaylist { max_age_secs } => (
            "application/vnd.apple.mpegurl",
            HeaderValue::from_str(&format!("public, max-age={max_age_secs}"))
                .unwrap_or(HeaderValue::from_static("no-cache")),
        ),
        ObjectKind::InitSegment => ("video/mp4", HeaderValue::from_static(IMMUTABLE)),
        ObjectKind::Segment => ("video/iso.segment", HeaderValue::from_static(IMMUTABLE)),
    };
    let len = object.body.len();
    let body = if head {
        Body::empty()
    } else {
        Body::from(object.body.clone())
    };
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CACHE_CONTROL, cache_control);
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    if let Some(age) = object.cdn_max_age {
        h.insert(
            weir_http::CDN_CACHE_CONTROL,
            HeaderValue::from_str(&format!("max-age={}", age.as_secs()))
                .unwrap_or(HeaderValue::from_static("max-age=60")),
        );
    }
    r
}

/// Why the origin could not serve a request; turned into a response in one place.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OriginError {
    /// The path is not a route, or names an object the store does not hold (or a part that
    /// is neither listed nor hinted).
    #[error("not found")]
    NotFound,
    /// A method other than GET, HEAD or OPTIONS.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// Bad LL-HLS delivery directives (RFC 8216bis §6.2.5.2): 400.
    #[error("bad request: {0}")]
    BadRequest(DirectiveError),
    /// A blocking request was not answerable within three target durations: 503.
    #[error("playlist not updated in time")]
    Unavailable,
}

impl OriginError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            OriginError::NotFound => StatusCode::NOT_FOUND,
            OriginError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            OriginError::BadRequest(_) => StatusCode::BAD_REQUEST,
            OriginError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for OriginError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut r = (status, format!("{self}\n")).into_response();
        r.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
