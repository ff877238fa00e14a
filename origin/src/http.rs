//! The origin's HTTP server: live-window objects with `Content-Type`, `Cache-Control` and
//! CORS, plus `/metrics`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::header::{
    HeaderValue, ACCESS_CONTROL_ALLOW_ORIGIN, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE,
};
use http::{Method, StatusCode, Uri};
use tokio::net::TcpListener;

use crate::{Object, ObjectKind, Route, Store};

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

/// Serves `store` on `listener` until the future is dropped.
///
/// # Errors
/// The listener's accept loop failed.
pub async fn serve<S: Store>(
    listener: TcpListener,
    store: Arc<S>,
    config: OriginConfig,
    metrics: Option<MetricsRender>,
) -> std::io::Result<()> {
    let cors =
        HeaderValue::from_str(&config.cors_allow_origin).unwrap_or(HeaderValue::from_static("*"));
    let state = Arc::new(OriginState {
        store,
        cors,
        metrics,
    });
    let app = Router::new()
        .route("/metrics", get(metrics_text::<S>))
        .fallback(object::<S>)
        .with_state(state);
    axum::serve(listener, app).await
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
    let mut response = match respond(&state, &method, &uri) {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    response
        .headers_mut()
        .insert(ACCESS_CONTROL_ALLOW_ORIGIN, state.cors.clone());
    response
}

fn respond<S: Store>(
    state: &OriginState<S>,
    method: &Method,
    uri: &Uri,
) -> Result<Response, OriginError> {
    if method == Method::OPTIONS {
        return Ok(preflight());
    }
    if method != Method::GET && method != Method::HEAD {
        return Err(OriginError::MethodNotAllowed);
    }
    let route = Route::parse(uri.path()).ok_or(OriginError::NotFound)?;
    let status = |s: &'static str| metrics::counter!("weir_origin_requests_total", "kind" => route.kind(), "status" => s);
    let Some(object) = state.store.get(&route) else {
        status("404").increment(1);
        return Err(OriginError::NotFound);
    };
    status("200").increment(1);
    Ok(object_response(&object, method == Method::HEAD))
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
    r
}

/// The CORS preflight answer (Fetch standard §3.2.2): GET and HEAD from anywhere allowed.
pub fn preflight() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    h.insert(
        "access-control-allow-methods",
        HeaderValue::from_static("GET, HEAD, OPTIONS"),
    );
    h.insert(
        "access-control-allow-headers",
        HeaderValue::from_static("*"),
    );
    h.insert("access-control-max-age", HeaderValue::from_static("86400"));
    r
}

/// Why the origin could not serve a request; turned into a response in one place.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OriginError {
    /// The path is not a route, or names an object the store does not hold.
    #[error("not found")]
    NotFound,
    /// A method other than GET, HEAD or OPTIONS.
    #[error("method not allowed")]
    MethodNotAllowed,
}

impl IntoResponse for OriginError {
    fn into_response(self) -> Response {
        let status = match self {
            OriginError::NotFound => StatusCode::NOT_FOUND,
            OriginError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        };
        let mut r = (status, format!("{self}\n")).into_response();
        r.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }
}
