//! `/admin/v1/events`: create, list, get, update, delete, status, key rotation, kick.

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;
use weir_config::{check_event_id, check_stream_key, EventOptions, StreamKey};
use weir_origin::Store;

use super::types::{AuthErrors, ByIdErrors, CreateErrors, EventPath, UpdateErrors};
use super::types::{
    CreateEvent, CreatedEvent, EdgePurge, EventView, InputName, Kicked, Purged, RotateKey,
    RotatedKey, UpdateEvent,
};
use super::{ApiError, ApiJson, ApiJsonOrDefault};
use crate::db::EventRecord;
use crate::registry::RegistryError;
use crate::status::{unix_ms, EventStatus};
use crate::Control;

type Ctl<S> = State<Arc<Control<S>>>;

fn bad(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
}

fn registry_error(e: RegistryError) -> ApiError {
    match e {
        RegistryError::BadId => bad(e),
        other => ApiError::new(StatusCode::CONFLICT, other.to_string()),
    }
}

/// `rtmp://HOST:PORT/APP`: the host this request was sent to, the RTMP listener's port.
fn rtmp_server<S: Store>(control: &Control<S>, headers: &http::HeaderMap) -> Option<String> {
    let (port, app) = control.rtmp.get()?;
    let host = headers.get(http::header::HOST)?.to_str().ok()?;
    let host = match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b));
    valid.then(|| format!("rtmp://{host}:{port}/{app}"))
}

/// A new random stream key: 128 bits, 32 hex digits.
fn new_key() -> Result<String, ApiError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(ApiError::internal)?;
    Ok(hex::encode(bytes))
}

fn check_text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.chars().count() > max {
        return Err(bad(format!("{field}: at most {max} characters")));
    }
    Ok(())
}

/// The event's record, or 404; a malformed id is 400.
async fn load<S: Store>(control: &Control<S>, id: &str) -> Result<EventRecord, ApiError> {
    check_event_id(id).map_err(bad)?;
    control
        .db
        .get(id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(ApiError::not_found)
}

/// Validates `record`, applies it to the running server, then stores it with `store`.
async fn apply<S: Store>(control: &Control<S>, record: &EventRecord) -> Result<(), ApiError> {
    let settings = record.settings(&control.ladders).map_err(bad)?;
    control.registry.upsert(settings).map_err(registry_error)?;
    Ok(())
}

fn view<S: Store>(control: &Control<S>, record: &EventRecord) -> EventView {
    let registry = &control.registry;
    EventView::new(
        record,
        registry.is_live(&record.id).unwrap_or(false),
        registry.is_ended(&record.id).unwrap_or(false),
    )
}

/// Every event.
#[utoipa::path(get, path = "/admin/v1/events", tag = "events",
    responses((status = 200, description = "The events, by id", body = [EventView]), AuthErrors))]
pub(crate) async fn list_events<S: Store>(
    State(control): Ctl<S>,
) -> Result<Json<Vec<EventView>>, ApiError> {
    let records = control.db.list().await.map_err(ApiError::internal)?;
    Ok(Json(records.iter().map(|r| view(&control, r)).collect()))
}

/// Creates an event; it accepts publishes at once. Its stream keys are in the answer, the
/// only time they are shown.
#[utoipa::path(post, path = "/admin/v1/events", tag = "events", request_body = CreateEvent,
    responses((status = 201, description = "Created", body = CreatedEvent), CreateErrors))]
pub(crate) async fn create_event<S: Store>(
    State(control): Ctl<S>,
    headers: http::HeaderMap,
    ApiJson(body): ApiJson<CreateEvent>,
) -> Result<Response, ApiError> {
    check_event_id(&body.id).map_err(bad)?;
    let title = body.title.unwrap_or_default();
    let description = body.description.unwrap_or_default();
    check_text("title", &title, 200)?;
    check_text("description", &description, 2_000)?;
    let stream_key = match body.stream_key {
        Some(k) => k,
        None => new_key()?,
    };
    let primary = check_stream_key(&body.id, "stream_key", &stream_key).map_err(bad)?;
    let backup_key = match (body.backup_stream_key, body.backup.unwrap_or(false)) {
        (Some(k), _) => Some(k),
        (None, true) => Some(new_key()?),
        (None, false) => None,
    };
    if backup_key.as_ref() == Some(&stream_key) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "the backup stream key must differ from the primary",
        ));
    }
    let backup = backup_key
        .as_deref()
        .map(|k| check_stream_key(&body.id, "backup_stream_key", k))
        .transpose()
        .map_err(bad)?;
    let now = unix_ms(SystemTime::now());
    let record = EventRecord {
        id: body.id,
        title,
        description,
        stream_key_sha256: primary.digest_hex(),
        backup_stream_key_sha256: backup.as_ref().map(StreamKey::digest_hex),
        ended: false,
        options: EventOptions {
            ladder: body.ladder,
            low_latency: body.low_latency,
            srt_passphrase: body.srt_passphrase,
            max_ingest_kbps: body.max_ingest_kbps,
            failover_after_ms: body.failover_after_ms,
            failback_after_ms: body.failback_after_ms,
            window_segments: body.window_segments,
            access: body.access.map(Into::into),
            encryption: body.encryption.map(|e| e.as_str().to_string()),
            key_rotation_segments: body.key_rotation_segments,
        },
        created_at_ms: now,
        updated_at_ms: now,
    };
    let settings = record.settings(&control.ladders).map_err(bad)?;
    control
        .registry
        .check_keys(&settings)
        .map_err(registry_error)?;
    if !control
        .db
        .insert(&record)
        .await
        .map_err(ApiError::internal)?
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "an event with this id exists",
        ));
    }
    if let Err(e) = control.registry.upsert(settings) {
        let _ = control.db.delete(&record.id).await;
        return Err(registry_error(e));
    }
    tracing::info!(event = %record.id, "event created");
    let created = CreatedEvent {
        event: view(&control, &record),
        stream_key,
        backup_stream_key: backup_key,
        rtmp_server: rtmp_server(&control, &headers),
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// One event.
#[utoipa::path(get, path = "/admin/v1/events/{id}", tag = "events",
    params(EventPath),
    responses((status = 200, description = "The event", body = EventView),
              ByIdErrors))]
pub(crate) async fn get_event<S: Store>(
    State(control): Ctl<S>,
    Path(id): Path<String>,
) -> Result<Json<EventView>, ApiError> {
    let record = load(&control, &id).await?;
    Ok(Json(view(&control, &record)))
}

/// Changes an event. Applies at once, except a ladder (from the next publisher session).
#[utoipa::path(patch, path = "/admin/v1/events/{id}", tag = "events", request_body = UpdateEvent,
    params(EventPath),
    responses((status = 200, description = "The changed event", body = EventView),
              UpdateErrors))]
pub(crate) async fn update_event<S: Store>(
    State(control): Ctl<S>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateEvent>,
) -> Result<Json<EventView>, ApiError> {
    let mut record = load(&control, &id).await?;
    if let Some(t) = body.title {
        check_text("title", &t, 200)?;
        record.title = t;
    }
    if let Some(d) = body.description {
        check_text("description", &d, 2_000)?;
        record.description = d;
    }
    let o = &mut record.options;
    o.ladder = body.ladder.or(o.ladder.take());
    o.low_latency = body.low_latency.or(o.low_latency);
    o.srt_passphrase = body.srt_passphrase.or(o.srt_passphrase.take());
    o.max_ingest_kbps = body.max_ingest_kbps.or(o.max_ingest_kbps);
    o.failover_after_ms = body.failover_after_ms.or(o.failover_after_ms);
    o.failback_after_ms = body.failback_after_ms.or(o.failback_after_ms);
    o.window_segments = body.window_segments.or(o.window_segments);
    if let Some(a) = body.access {
        o.access = Some(a.into());
    }
    if let Some(e) = body.encryption {
        o.encryption = Some(e.as_str().to_string());
    }
    o.key_rotation_segments = body.key_rotation_segments.or(o.key_rotation_segments);
    record.updated_at_ms = unix_ms(SystemTime::now());
    apply(&control, &record).await?;
    control
        .db
        .update(&record)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(view(&control, &record)))
}

/// Deletes an event: new publishes are refused and its publishers are disconnected.
#[utoipa::path(delete, path = "/admin/v1/events/{id}", tag = "events",
    params(EventPath),
    responses((status = 204, description = "Deleted"),
              ByIdErrors))]
pub(crate) async fn delete_event<S: Store>(
    State(control): Ctl<S>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    check_event_id(&id).map_err(bad)?;
    if !control.db.delete(&id).await.map_err(ApiError::internal)? {
        return Err(ApiError::not_found());
    }
    control.registry.remove(&id);
    tracing::info!(event = %id, "event deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// The event's live status: its publishers (address, codec, resolution, bit rate, frame
/// rate, uptime), renditions and newest segment.
#[utoipa::path(get, path = "/admin/v1/events/{id}/status", tag = "events",
    params(EventPath),
    responses((status = 200, description = "Live status", body = EventStatus),
              ByIdErrors))]
pub(crate) async fn event_status<S: Store>(
    State(control): Ctl<S>,
    Path(id): Path<String>,
) -> Result<Json<EventStatus>, ApiError> {
    check_event_id(&id).map_err(bad)?;
    let mut status = control
        .registry
        .status(&id)
        .ok_or_else(ApiError::not_found)?;
    let (viewers, ratio) = control
        .edge_reports
        .for_event(&id, std::time::Instant::now());
    status.viewers_total = viewers.iter().map(|v| v.viewers).sum();
    status.viewers = viewers;
    status.cache_hit_ratio = ratio;
    Ok(Json(status))
}

/// Replaces a stream key. The new key is in the answer, the only time it is shown; the old
/// one is refused from now on and its publisher is disconnected.
#[utoipa::path(post, path = "/admin/v1/events/{id}/stream-keys/rotate", tag = "events",
    request_body(content = Option<RotateKey>, description = "Which key (default primary); the body may be empty"),
    params(EventPath),
    responses((status = 200, description = "The new key", body = RotatedKey),
              ByIdErrors))]
pub(crate) async fn rotate_key<S: Store>(
    State(control): Ctl<S>,
    Path(id): Path<String>,
    ApiJsonOrDefault(body): ApiJsonOrDefault<RotateKey>,
) -> Result<Json<RotatedKey>, ApiError> {
    let mut record = load(&control, &id).await?;
    let key = new_key()?;
    let digest = StreamKey::new(&key).digest_hex();
    match body.input {
        InputName::Primary => record.stream_key_sha256 = digest,
        InputName::Backup => record.backup_stream_key_sha256 = Some(digest),
    }
    record.updated_at_ms = unix_ms(SystemTime::now());
    apply(&control, &record).await?;
    control
        .db
        .update(&record)
        .await
        .map_err(ApiError::internal)?;
    tracing::info!(event = %id, input = ?body.input, "stream key rotated");
    Ok(Json(RotatedKey {
        input: body.input,
        stream_key: key,
    }))
}

/// Disconnects the event's publishers (the keys stay valid: rotate a key to keep one out).
#[utoipa::path(post, path = "/admin/v1/events/{id}/kick", tag = "events",
    params(EventPath),
    responses((status = 200, description = "Publishers disconnected", body = Kicked),
              ByIdErrors))]
pub(crate) async fn kick<S: Store>(
    State(control): Ctl<S>,
    Path(id): Path<String>,
) -> Result<Json<Kicked>, ApiError> {
    check_event_id(&id).map_err(bad)?;
    let kicked = control.registry.kick(&id).ok_or_else(ApiError::not_found)?;
    tracing::info!(event = %id, kicked, "publishers kicked");
    Ok(Json(Kicked { kicked }))
}

/// Ends (`ended`) or starts an event, in the registry and in the database.
async fn set_ended<S: Store>(
    control: &Control<S>,
    id: &str,
    ended: bool,
) -> Result<Json<EventView>, ApiError> {
    let mut record = load(control, id).await?;
    let done = if ended {
        control.registry.end(id)
    } else {
        control.registry.start(id)
    };
    if !done {
        return Err(ApiError::not_found());
    }
    record.ended = ended;
    record.updated_at_ms = unix_ms(SystemTime::now());
    control
        .db
        .update(&record)
        .await
        .map_err(ApiError::internal)?;
    tracing::info!(event = %id, ended, "event ended or started");
    Ok(Json(view(control, &record)))
}

/// Ends the event: its publishers are disconnected, the playlists get `EXT-X-ENDLIST` and
/// stay playable as a finished event, and publishes are refused until it is started again.
#[utoipa::path(post, path = "/admin/v1/events/{id}/end", tag = "events",
    params(EventPath),
    responses((status = 200, description = "The ended event", body = EventView), ByIdErrors))]
pub(crate) async fn end_event<S: Store>(
    State(control): Ctl<S>,
    Path(id): Path<String>,
) -> Result<Json<EventView>, ApiError> {
    set_ended(&control, &id, true).await
}

/// Starts an ended event again: it accepts publishers, and the next one continues its
/// playlists after a discontinuity.
#[utoipa::path(post, path = "/admin/v1/events/{id}/start", tag = "events",
    params(EventPath),
    responses((status = 200, description = "The started event", body = EventView), ByIdErrors))]
pub(crate) async fn start_event<S: Store>(
    State(control): Ctl<S>,
    Path(id): Path<String>,
) -> Result<Json<EventView>, ApiError> {
    set_ended(&control, &id, false).await
}

/// Drops the event's cached objects (playlists, segments, parts, its access policy) from
/// every edge the control plane knows (`[control] edges` and the edge of `weir serve`), so
/// the next request for each goes to the origin. Each edge is told with the cluster secret
/// (`POST /internal/v1/purge/{id}`); the answer says what each one did.
#[utoipa::path(post, path = "/admin/v1/events/{id}/purge", tag = "events",
    params(EventPath),
    responses((status = 200, description = "What each edge purged", body = Purged),
              ByIdErrors))]
pub(crate) async fn purge<S: Store>(
    State(control): Ctl<S>,
    Path(id): Path<String>,
) -> Result<Json<Purged>, ApiError> {
    check_event_id(&id).map_err(bad)?;
    load(&control, &id).await?;
    let edges = control.edges();
    let secret = control.edge_secret().expose().to_string();
    let event = id.clone();
    let tls = control.tls.clone();
    let answers = tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(5)))
            .build()
            .into();
        edges
            .into_iter()
            .map(|edge| purge_edge(&agent, edge, &event, &secret))
            .collect::<Vec<_>>()
    })
    .await
    .map_err(ApiError::internal)?;
    let mut answers = answers;
    if let Some((edge, purge)) = control.local_edge() {
        answers.push(EdgePurge {
            edge: edge.clone(),
            purged: Some((purge.0)(&id)),
            error: None,
        });
    }
    tracing::info!(event = %id, edges = answers.len(), "purge sent to the edges");
    Ok(Json(Purged { edges: answers }))
}

/// Tells one edge to purge `event`.
fn purge_edge(agent: &ureq::Agent, edge: String, event: &str, secret: &str) -> EdgePurge {
    let answer = agent
        .post(&format!("{edge}/internal/v1/purge/{event}"))
        .header(crate::CLUSTER_SECRET_HEADER, secret)
        .send_empty();
    let (purged, error) = match answer {
        Ok(mut r) if r.status().is_success() => {
            let n = r
                .body_mut()
                .read_to_string()
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|v| v["purged"].as_u64());
            match n {
                Some(n) => (Some(n), None),
                None => (None, Some("unreadable answer".to_string())),
            }
        }
        Ok(r) => (
            None,
            Some(format!(
                "answered {} (is [access] cluster_secret the same on both?)",
                r.status().as_u16()
            )),
        ),
        Err(e) => (None, Some(e.to_string())),
    };
    EdgePurge {
        edge,
        purged,
        error,
    }
}
