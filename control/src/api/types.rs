//! The admin API's request and response bodies.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, IntoResponses, ToSchema};

use super::ErrorBody;
use crate::db::EventRecord;

/// Who may watch an event (enforced by every edge within about 2 s of a change). Every field
/// is optional; an event without them is open to everyone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Access {
    /// Require a signed token (`?token=`, minted with `weir token` or by a paywall with an
    /// `[access] token_keys` secret) on every viewer URL. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_token: Option<bool>,
    /// Only viewers in these countries (ISO 3166-1 alpha-2, e.g. `GB`) may watch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = country_codes)]
    pub geo_allow: Option<Vec<String>>,
    /// Viewers in these countries may not watch (with `geo_allow` too: those it lists but
    /// this does not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = country_codes)]
    pub geo_deny: Option<Vec<String>>,
    /// Viewers whose country is unknown: default `deny` with `geo_allow`, `allow` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geo_unknown: Option<GeoUnknown>,
    /// Viewers (address + user agent, seen in the last 30 s) per token at once, 1..=10000;
    /// one more is answered 429. No limit by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 10_000)]
    pub max_viewers_per_token: Option<u32>,
}

/// The schema of a country list: null, or at most 300 ISO 3166-1 alpha-2 codes.
fn country_codes() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[A-Za-z]{2}$")),
        )
        .max_items(Some(300))
        .description(Some("ISO 3166-1 alpha-2 country codes, e.g. GB"))
        .build()
}

/// What to do with viewers of unknown country.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GeoUnknown {
    /// Admit them.
    Allow,
    /// Refuse them.
    Deny,
}

impl From<Access> for weir_config::AccessOptions {
    fn from(a: Access) -> Self {
        weir_config::AccessOptions {
            require_token: a.require_token,
            geo_allow: a.geo_allow,
            geo_deny: a.geo_deny,
            geo_unknown: a.geo_unknown.map(|u| match u {
                GeoUnknown::Allow => weir_config::GeoUnknown::Allow,
                GeoUnknown::Deny => weir_config::GeoUnknown::Deny,
            }),
            max_viewers_per_token: a.max_viewers_per_token,
        }
    }
}

impl From<weir_config::AccessOptions> for Access {
    fn from(a: weir_config::AccessOptions) -> Self {
        Access {
            require_token: a.require_token,
            geo_allow: a.geo_allow,
            geo_deny: a.geo_deny,
            geo_unknown: a.geo_unknown.map(|u| match u {
                weir_config::GeoUnknown::Allow => GeoUnknown::Allow,
                weir_config::GeoUnknown::Deny => GeoUnknown::Deny,
            }),
            max_viewers_per_token: a.max_viewers_per_token,
        }
    }
}

/// An event as the API shows it. Stream keys are never shown after they are made.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct EventView {
    /// The event id, used in URLs (`/live/{id}/master.m3u8`).
    pub id: String,
    /// A title for operators.
    pub title: String,
    /// A description for operators.
    pub description: String,
    /// Whether the event has a backup stream key (redundant ingest).
    pub has_backup_stream_key: bool,
    /// The ladder: `default`, `passthrough` or a ladder of the configuration file.
    pub ladder: String,
    /// LL-HLS on or off.
    pub low_latency: bool,
    /// Whether SRT publishers must encrypt with a passphrase.
    pub srt_passphrase_set: bool,
    /// The most a publisher may send, kbit/s.
    pub max_ingest_kbps: u64,
    /// Silence of the packaged encoder after which the other takes over, ms.
    pub failover_after_ms: u64,
    /// Unbroken media from the primary before it is taken back, ms.
    pub failback_after_ms: u64,
    /// Segments in each live media playlist, when the event sets its own (else the server's).
    pub window_segments: Option<usize>,
    /// Who may watch.
    pub access: Access,
    /// `none`, `aes-128` or `cbcs`.
    pub encryption: EncryptionName,
    /// A new content key every this many segments (0: never).
    pub key_rotation_segments: u32,
    /// Whether a publisher is connected.
    pub live: bool,
    /// Whether the event has been ended (`POST .../end`): its playlists carry
    /// `EXT-X-ENDLIST` and publishes are refused until `POST .../start`.
    pub ended: bool,
    /// The master playlist's path at the edge.
    pub playback_path: String,
    /// When it was created, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// When it was last changed, ms since the Unix epoch.
    pub updated_at_ms: u64,
}

impl EventView {
    pub(crate) fn new(record: &EventRecord, live: bool, ended: bool) -> EventView {
        let o = &record.options;
        EventView {
            id: record.id.clone(),
            title: record.title.clone(),
            description: record.description.clone(),
            has_backup_stream_key: record.backup_stream_key_sha256.is_some(),
            ladder: o.ladder.clone().unwrap_or_else(|| "default".into()),
            low_latency: o.low_latency.unwrap_or(true),
            srt_passphrase_set: o.srt_passphrase.is_some(),
            max_ingest_kbps: o.max_ingest_kbps.unwrap_or(50_000),
            failover_after_ms: o.failover_after_ms.unwrap_or(1_000),
            failback_after_ms: o.failback_after_ms.unwrap_or(10_000),
            window_segments: o.window_segments,
            access: o.access.clone().map(Access::from).unwrap_or_default(),
            encryption: match o.encryption.as_deref() {
                Some("aes-128") => EncryptionName::Aes128,
                Some("cbcs") => EncryptionName::Cbcs,
                _ => EncryptionName::None,
            },
            key_rotation_segments: o
                .key_rotation_segments
                .unwrap_or(weir_config::DEFAULT_KEY_ROTATION_SEGMENTS),
            live,
            ended,
            playback_path: format!("/live/{}/master.m3u8", record.id),
            created_at_ms: record.created_at_ms,
            updated_at_ms: record.updated_at_ms,
        }
    }
}

/// The `{id}` of `/admin/v1/events/{id}/...`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Only described: handlers take the id as `Path<String>`.
pub(crate) struct EventPath {
    /// The event id.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub(crate) id: String,
}

/// `POST /admin/v1/events`: a new event. Only `id` is required.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEvent {
    /// 1-64 of `[A-Za-z0-9_-]`.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub id: String,
    /// A title for operators (at most 200 characters).
    #[serde(default)]
    #[schema(max_length = 200)]
    pub title: Option<String>,
    /// A description for operators (at most 2000 characters).
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    /// The primary stream key (8-256 printable ASCII characters, no `/`); made at random when
    /// absent.
    #[serde(default)]
    #[schema(pattern = "^[!-.0-~]{8,256}$")]
    pub stream_key: Option<String>,
    /// The backup stream key; made at random when `backup` is true and this is absent.
    #[serde(default)]
    #[schema(pattern = "^[!-.0-~]{8,256}$")]
    pub backup_stream_key: Option<String>,
    /// Give the event a backup stream key (redundant ingest).
    #[serde(default)]
    pub backup: Option<bool>,
    /// `default` (the default), `passthrough` or a ladder of the configuration file.
    #[serde(default)]
    pub ladder: Option<String>,
    /// LL-HLS (default true).
    #[serde(default)]
    pub low_latency: Option<bool>,
    /// SRT passphrase (10-79 printable ASCII characters); none by default.
    #[serde(default)]
    #[schema(pattern = "^[ -~]{10,79}$")]
    pub srt_passphrase: Option<String>,
    /// kbit/s, 100..=1000000 (default 50000).
    #[serde(default)]
    #[schema(minimum = 100, maximum = 1_000_000)]
    pub max_ingest_kbps: Option<u64>,
    /// ms, 100..=30000 (default 1000).
    #[serde(default)]
    #[schema(minimum = 100, maximum = 30_000)]
    pub failover_after_ms: Option<u64>,
    /// ms, 0..=600000 (default 10000).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 600_000)]
    pub failback_after_ms: Option<u64>,
    /// Segments in each live media playlist, 3..=1000 (default: the server's).
    #[serde(default)]
    #[schema(minimum = 3, maximum = 1_000)]
    pub window_segments: Option<usize>,
    /// Who may watch (default: everyone).
    #[serde(default)]
    pub access: Option<Access>,
    /// `none` (default), `aes-128` (segments and parts encrypted whole, keys issued by edges)
    /// or `cbcs` (samples encrypted, ClearKey licences issued by edges), to viewers the
    /// access settings admit.
    #[serde(default)]
    pub encryption: Option<EncryptionName>,
    /// A new content key every this many segments, 0..=100000 (0: never; default 10).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100_000)]
    pub key_rotation_segments: Option<u32>,
}

/// The answer to `POST /admin/v1/events`: the event, and its stream keys, shown this once.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CreatedEvent {
    /// The event.
    pub event: EventView,
    /// The primary stream key: `rtmp://HOST/live/{stream_key}` or SRT `streamid`.
    pub stream_key: String,
    /// The backup stream key, if the event has one.
    pub backup_stream_key: Option<String>,
    /// The RTMP server to publish to, `rtmp://HOST:PORT/APP` (HOST as the request named this
    /// server); the full publish URL is this, `/`, and the stream key.
    pub rtmp_server: Option<String>,
}

/// `PATCH /admin/v1/events/{id}`: the fields to change; absent fields stay as they are.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEvent {
    /// A title for operators (at most 200 characters).
    #[serde(default)]
    #[schema(max_length = 200)]
    pub title: Option<String>,
    /// A description for operators (at most 2000 characters).
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    /// The ladder; applies from the next publisher session.
    #[serde(default)]
    pub ladder: Option<String>,
    /// LL-HLS; only while no publisher is connected (409 otherwise).
    #[serde(default)]
    pub low_latency: Option<bool>,
    /// SRT passphrase (10-79 printable ASCII characters); applies to new SRT publishers.
    #[serde(default)]
    #[schema(pattern = "^[ -~]{10,79}$")]
    pub srt_passphrase: Option<String>,
    /// kbit/s, 100..=1000000; applies to new publishers.
    #[serde(default)]
    #[schema(minimum = 100, maximum = 1_000_000)]
    pub max_ingest_kbps: Option<u64>,
    /// ms, 100..=30000; applies at once.
    #[serde(default)]
    #[schema(minimum = 100, maximum = 30_000)]
    pub failover_after_ms: Option<u64>,
    /// ms, 0..=600000; applies at once.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 600_000)]
    pub failback_after_ms: Option<u64>,
    /// Segments in each live media playlist, 3..=1000; only while no publisher is connected
    /// (409 otherwise).
    #[serde(default)]
    #[schema(minimum = 3, maximum = 1_000)]
    pub window_segments: Option<usize>,
    /// Who may watch: replaces the event's access settings as a whole (`{}` opens it to
    /// everyone); applies at every edge within about 2 s.
    #[serde(default)]
    pub access: Option<Access>,
    /// `none`, `aes-128` or `cbcs`; only while no publisher is connected (409 otherwise).
    #[serde(default)]
    pub encryption: Option<EncryptionName>,
    /// A new content key every this many segments, 0..=100000 (0: never); only while no
    /// publisher is connected (409 otherwise).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100_000)]
    pub key_rotation_segments: Option<u32>,
}

/// How an event's segments are encrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum EncryptionName {
    /// In the clear.
    #[serde(rename = "none")]
    None,
    /// `EXT-X-KEY:METHOD=AES-128` (RFC 8216 §4.3.2.4).
    #[serde(rename = "aes-128")]
    Aes128,
    /// `EXT-X-KEY:METHOD=SAMPLE-AES`: CMAF `cbcs` (ISO/IEC 23001-7 §10.4), licences from the
    /// edge's `/licence/clearkey/{event}`.
    #[serde(rename = "cbcs")]
    Cbcs,
}

impl EncryptionName {
    /// The name as in the configuration file.
    pub fn as_str(&self) -> &'static str {
        match self {
            EncryptionName::None => "none",
            EncryptionName::Aes128 => "aes-128",
            EncryptionName::Cbcs => "cbcs",
        }
    }
}

/// Which of an event's stream keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum InputName {
    /// The primary encoder's key.
    #[default]
    Primary,
    /// The backup encoder's key (made if the event has none).
    Backup,
}

/// `POST /admin/v1/events/{id}/stream-keys/rotate`.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// Which key (default `primary`).
    #[serde(default)]
    pub input: InputName,
}

/// The new stream key, shown this once. The old key is refused from now on, and a publisher
/// connected with it is disconnected.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RotatedKey {
    /// Which key changed.
    pub input: InputName,
    /// The new key.
    pub stream_key: String,
}

/// `POST /admin/v1/events/{id}/kick`: how many publishers were disconnected.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Kicked {
    /// Publishers disconnected (0-2).
    pub kicked: usize,
}

/// `POST /admin/v1/events/{id}/purge`: what each edge said.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Purged {
    /// One entry per edge (`[control] edges`, and the edge of `weir serve`).
    pub edges: Vec<EdgePurge>,
}

/// One edge's answer to a purge.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct EdgePurge {
    /// The edge's base URL.
    pub edge: String,
    /// Cache entries it dropped; absent when it could not be told.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purged: Option<u64>,
    /// Why it could not be told (unreachable, refused the secret...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The error answers of every admin request.
#[derive(Debug, IntoResponses)]
#[allow(dead_code)] // Only described, never built: the errors are `ApiError`s.
pub(crate) enum AuthErrors {
    /// 401.
    #[response(status = 401, description = "Missing or wrong bearer token")]
    Unauthorized(ErrorBody),
}

/// The error answers of a request naming an event.
#[derive(Debug, IntoResponses)]
#[allow(dead_code)] // Only described, never built: the errors are `ApiError`s.
pub(crate) enum ByIdErrors {
    /// 400.
    #[response(status = 400, description = "Malformed id or body")]
    BadRequest(ErrorBody),
    /// 401.
    #[response(status = 401, description = "Missing or wrong bearer token")]
    Unauthorized(ErrorBody),
    /// 404.
    #[response(status = 404, description = "No such event")]
    NotFound(ErrorBody),
}

/// The error answers of `POST /admin/v1/events`.
#[derive(Debug, IntoResponses)]
#[allow(dead_code)] // Only described, never built: the errors are `ApiError`s.
pub(crate) enum CreateErrors {
    /// 400.
    #[response(status = 400, description = "Invalid input")]
    BadRequest(ErrorBody),
    /// 401.
    #[response(status = 401, description = "Missing or wrong bearer token")]
    Unauthorized(ErrorBody),
    /// 409.
    #[response(status = 409, description = "The id or a stream key is in use")]
    Conflict(ErrorBody),
    /// 413.
    #[response(status = 413, description = "Body over 64 KiB")]
    TooLarge(ErrorBody),
}

/// The error answers of `PATCH /admin/v1/events/{id}`.
#[derive(Debug, IntoResponses)]
#[allow(dead_code)] // Only described, never built: the errors are `ApiError`s.
pub(crate) enum UpdateErrors {
    /// 400.
    #[response(status = 400, description = "Invalid input")]
    BadRequest(ErrorBody),
    /// 401.
    #[response(status = 401, description = "Missing or wrong bearer token")]
    Unauthorized(ErrorBody),
    /// 404.
    #[response(status = 404, description = "No such event")]
    NotFound(ErrorBody),
    /// 409.
    #[response(
        status = 409,
        description = "low_latency changed while a publisher is connected"
    )]
    Conflict(ErrorBody),
}
