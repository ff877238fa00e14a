//! The admin REST API at `/admin/v1` (JSON, bearer-token auth) and its OpenAPI 3 document at
//! `/admin/v1/openapi.json`, generated from these handlers and types by `utoipa`.
//!
//! Errors are JSON `{"error": "..."}` with a 4xx status: 400 malformed input (bad JSON,
//! unknown fields, out-of-range values, bad ids), 401 missing or wrong token, 404 no such
//! event, 409 conflicts (id or key in use, a change that needs the event idle), 413 bodies
//! over 64 KiB. Nothing is changed when a request is refused.

mod events;
mod tokens;
mod types;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::{header, StatusCode};
use serde::de::DeserializeOwned;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use weir_origin::Store;

use crate::Control;

type Ctl<S> = State<Arc<Control<S>>>;

pub use tokens::{CreateToken, CreatedToken, TokenView};
pub use types::{
    CreateEvent, CreatedEvent, EdgePurge, EventView, Kicked, Purged, RotateKey, RotatedKey,
    UpdateEvent,
};

/// Largest request body the API reads.
const MAX_BODY: usize = 64 * 1024;

/// A refused request: its status and a short message for the JSON body.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "no such event")
    }

    pub(crate) fn internal(e: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %e, "admin API");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error (see the log)",
        )
    }
}

/// The JSON body of every error response.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What was wrong.
    pub error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response()
    }
}

/// A JSON body, whatever its `Content-Type` says (the body is JSON or it is refused): every
/// rejection (bad JSON, unknown fields, wrong types, too large) is a JSON error like every
/// other, 400 or 413.
#[derive(Debug)]
pub(crate) struct ApiJson<T>(pub(crate) T);

/// [`ApiJson`], or `T::default()` for an empty body.
#[derive(Debug)]
pub(crate) struct ApiJsonOrDefault<T>(pub(crate) T);

async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|r| {
        let status = r.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!("request body over {MAX_BODY} bytes")
        } else {
            r.body_text()
        };
        ApiError::new(status, message)
    })
}

/// Parses a JSON object into `T`. JSON Schema counts `5.0` as an integer, so numbers with no
/// fraction are taken as integers; any body that is not an object (an array would otherwise
/// fill a struct's fields in order) is refused, as is a nested `access` that is not one.
fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let invalid =
        |e: String| ApiError::new(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}"));
    let mut value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
    if !value.is_object() {
        return Err(invalid("a JSON object is required".into()));
    }
    // Nested objects too: an array would fill their fields in order.
    if value
        .get("access")
        .is_some_and(|a| !a.is_object() && !a.is_null())
    {
        return Err(invalid("access: a JSON object is required".into()));
    }
    integral(&mut value);
    serde_json::from_value(value).map_err(|e| invalid(e.to_string()))
}

/// Replaces every number with a zero fraction (`5.0`) by the same integer.
fn integral(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64() {
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    *value = Value::from(f as i64);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral),
        Value::Object(fields) => fields.values_mut().for_each(integral),
        _ => {}
    }
}

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(req, state).await?;
        parse(&bytes).map(ApiJson)
    }
}

impl<S, T> FromRequest<S> for ApiJsonOrDefault<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(req, state).await?;
        let text = std::str::from_utf8(&bytes).unwrap_or("-").trim();
        if text.is_empty() || text == "null" {
            return Ok(ApiJsonOrDefault(T::default()));
        }
        parse(&bytes).map(ApiJsonOrDefault)
    }
}

/// Refuses requests without a valid `Authorization: Bearer TOKEN`.
async fn authorize<S: Store>(
    State(control): State<Arc<Control<S>>>,
    request: Request,
    next: Next,
) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Every token is compared, so the time taken says nothing about which one matched.
    let ok = token.is_some_and(|t| {
        control
            .admin_tokens
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .fold(false, |found, known| known.token.matches(t) | found)
    });
    if !ok {
        let reason = if token.is_some() { "wrong" } else { "missing" };
        metrics::counter!("weir_admin_unauthorized_total", "reason" => reason).increment(1);
        let mut r = ApiError::new(StatusCode::UNAUTHORIZED, "a valid bearer token is required")
            .into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return r;
    }
    next.run(request).await
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document of the admin API.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "weir admin API", version = "1", description = "Manage weir's live events while it runs."),
    paths(
        events::list_events,
        events::create_event,
        events::get_event,
        events::update_event,
        events::delete_event,
        events::event_status,
        events::rotate_key,
        events::kick,
        events::end_event,
        events::start_event,
        events::purge,
        tokens::list_tokens,
        tokens::create_token,
        tokens::delete_token,
    ),
    components(schemas(
        ErrorBody,
        EventView,
        CreateEvent,
        CreatedEvent,
        UpdateEvent,
        RotateKey,
        RotatedKey,
        Kicked,
        types::Purged,
        types::EdgePurge,
        crate::EventStatus,
        crate::InputStatus,
        crate::RenditionStatus,
        crate::EdgeViewers,
        types::InputName,
        types::Access,
        types::GeoUnknown,
        types::EncryptionName,
        tokens::TokenView,
        tokens::CreateToken,
        tokens::CreatedToken,
    )),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

/// The OpenAPI document as served: [`ApiDoc`] with the `ladder` fields restricted to the
/// ladders this configuration has (they are only known at run time).
pub(crate) fn openapi_document(ladders: &[String]) -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    for schema in ["CreateEvent", "UpdateEvent"] {
        if let Some(ladder) =
            doc.pointer_mut(&format!("/components/schemas/{schema}/properties/ladder"))
        {
            let mut names: Vec<serde_json::Value> =
                ladders.iter().map(|l| l.as_str().into()).collect();
            names.push(serde_json::Value::Null);
            ladder["enum"] = serde_json::Value::Array(names);
        }
    }
    doc
}

/// The dashboard: one page (sign in with an admin token, events with live status, create,
/// rotate, end/start, a preview player, an ingest bit rate graph), built into the binary.
async fn dashboard() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("../../assets/dashboard.html"),
    )
        .into_response()
}

/// hls.js 1.7.4 (light build, Apache-2.0, `control/assets/hls.js-LICENSE`) for the preview.
async fn hls_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        include_str!("../../assets/hls.light.min.js"),
    )
        .into_response()
}

/// `POST /internal/v1/edge-reports`: an edge's viewers, requests and hits per event. For
/// edges only (the origin listener is not for the public); not part of the admin API.
fn edge_report<S: Store>(control: &Control<S>, body: &[u8]) -> Response {
    match parse::<crate::audience::EdgeReport>(body) {
        Ok(report) => {
            if control
                .edge_reports
                .record(report, std::time::Instant::now())
            {
                metrics::counter!("weir_control_edge_reports_total").increment(1);
                StatusCode::NO_CONTENT.into_response()
            } else {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too many edges").into_response()
            }
        }
        Err(e) => e.into_response(),
    }
}

/// The internal paths are for edges: with `[access] cluster_secret` set, a request without it
/// (`X-Weir-Cluster-Secret`) is refused with 401.
async fn cluster_only<S: Store>(State(control): Ctl<S>, request: Request, next: Next) -> Response {
    if let Some(secret) = &control.cluster_secret {
        let presented = request
            .headers()
            .get(crate::CLUSTER_SECRET_HEADER)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if !secret.matches(presented) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "internal path: cluster secret required",
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// `GET /internal/v1/events/{id}/access`: the event's access options, for edges (cached by
/// them for the `max-age`, 2 s). 404 for an unknown event.
async fn event_access<S: Store>(
    State(control): Ctl<S>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    match control.registry.access_options(&id) {
        Some(options) => (
            [(header::CACHE_CONTROL, "public, max-age=2")],
            Json(options),
        )
            .into_response(),
        // An unknown event's 404 may be kept by edges for a second: a flood of requests for
        // made-up events reaches the origin once a second per name at most.
        None => (
            [(header::CACHE_CONTROL, "public, max-age=1")],
            ApiError::not_found(),
        )
            .into_response(),
    }
}

/// `GET /internal/v1/keys/{event}/{id}`: the 16 bytes of a content key, for edges only:
/// always behind the cluster secret (one made for the run when none is configured, so only
/// the edge in this process has it). `Cache-Control: private, no-store`.
async fn content_key<S: Store>(
    State(control): Ctl<S>,
    axum::extract::Path((event, id)): axum::extract::Path<(String, String)>,
    headers: http::HeaderMap,
) -> Response {
    let presented = headers
        .get(crate::CLUSTER_SECRET_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !control.key_secret.matches(presented) {
        metrics::counter!("weir_origin_key_requests_refused_total").increment(1);
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "content keys: cluster secret required",
        )
        .into_response();
    }
    use weir_drm::KeyProvider;
    match control.keys.get(&event, &id) {
        Some(key) => (
            [
                (header::CACHE_CONTROL, "private, no-store"),
                (header::CONTENT_TYPE, "application/octet-stream"),
            ],
            key.to_vec(),
        )
            .into_response(),
        None => ApiError::not_found().into_response(),
    }
}

async fn no_route() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such admin route")
}

/// The admin API's routes (`/admin/v1/...`), to merge into the origin's router.
pub fn router<S: Store>(control: Arc<Control<S>>) -> Router {
    let ladders: Vec<String> = control.ladders.iter().map(|l| l.name.clone()).collect();
    let doc = Arc::new(openapi_document(&ladders));
    let authed = Router::new()
        .route(
            "/admin/v1/events",
            get(events::list_events::<S>).post(events::create_event::<S>),
        )
        .route(
            "/admin/v1/events/{id}",
            get(events::get_event::<S>)
                .patch(events::update_event::<S>)
                .delete(events::delete_event::<S>),
        )
        .route(
            "/admin/v1/events/{id}/status",
            get(events::event_status::<S>),
        )
        .route(
            "/admin/v1/events/{id}/stream-keys/rotate",
            post(events::rotate_key::<S>),
        )
        .route(
            "/admin/v1/tokens",
            get(tokens::list_tokens::<S>).post(tokens::create_token::<S>),
        )
        .route(
            "/admin/v1/tokens/{id}",
            axum::routing::delete(tokens::delete_token::<S>),
        )
        .route("/admin/v1/events/{id}/kick", post(events::kick::<S>))
        .route("/admin/v1/events/{id}/end", post(events::end_event::<S>))
        .route("/admin/v1/events/{id}/purge", post(events::purge::<S>))
        .route(
            "/admin/v1/events/{id}/start",
            post(events::start_event::<S>),
        )
        .route("/admin/v1/{*rest}", axum::routing::any(no_route))
        .layer(from_fn_with_state(control.clone(), authorize::<S>))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(control.clone());
    let internal = Router::new()
        .route(
            "/internal/v1/edge-reports",
            post(|State(control): Ctl<S>, body: Bytes| async move { edge_report(&control, &body) })
                .layer(DefaultBodyLimit::max(1024 * 1024)),
        )
        .route("/internal/v1/events/{id}/access", get(event_access::<S>))
        .layer(from_fn_with_state(control.clone(), cluster_only::<S>))
        .with_state(control.clone());
    let keys = Router::new()
        .route("/internal/v1/keys/{event}/{id}", get(content_key::<S>))
        .with_state(control);
    Router::new()
        .merge(internal)
        .merge(keys)
        .route(
            "/admin",
            get(|| async { axum::response::Redirect::permanent("/admin/") }),
        )
        .route("/admin/", get(dashboard))
        .route("/admin/hls.light.min.js", get(hls_js))
        .route(
            "/admin/v1/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { Json((*doc).clone()) }
            }),
        )
        .merge(authed)
}
