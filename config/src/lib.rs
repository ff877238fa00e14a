//! weir's configuration: a TOML file (or the embedded defaults) validated into typed settings.
//!
//! Two stages: the file is read into serde "raw" structs (`deny_unknown_fields`, every field
//! defaulted), then [`Config::from_toml`] validates it into immutable settings with real types
//! (`SocketAddr`, `Duration`, `NonZeroUsize`). Each role receives only its own part. Every
//! field is documented in `config/weir.example.toml`. This crate reads nothing but the string
//! it is given.
//!
//! ```
//! let config = weir_config::Config::from_toml("[[events]]\nid = \"main\"\nstream_key = \"s3cret-key\"\n").unwrap();
//! assert_eq!(config.events[0].id, "main");
//! assert_eq!(config.packager.window_segments.get(), 6);
//! ```

mod access;
mod control;
mod digest;
mod drm;
mod encryption;
mod event;
mod ladder;
mod listener;
mod srt;

use event::RawEvent;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use serde::Deserialize;

pub use access::{
    parse_cidr, AccessOptions, AccessPolicy, AccessSettings, ClusterSecret, CountryCode, GeoRule,
    GeoUnknown, TokenKey, CLUSTER_SECRET_HEADER,
};
pub use control::{AdminToken, ControlSettings, HookSecret, HookSettings};
pub use drm::{DrmSettings, HeaderSecret, SpekeSettings, DRM_SYSTEMS};
pub use encryption::{Encryption, KeyEncryptionKeyBytes, DEFAULT_KEY_ROTATION_SEGMENTS};
pub use event::{
    check_event_id, check_stream_key, validate_event, EventOptions, EventSettings,
    FailoverSettings, StreamKey,
};
pub use ladder::{
    AudioEncoding, AudioRendition, LadderSettings, VideoEncoding, VideoRendition, H264_PROFILES,
    X264_PRESETS,
};
pub use listener::HttpListenerSettings;
pub use srt::{SrtPassphrase, SrtSettings};

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The TOML does not parse, or names an unknown field.
    #[error("invalid configuration: {0}")]
    Parse(#[from] toml::de::Error),
    /// A value is out of range or malformed; the message names the field.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// RTMP ingest.
    pub rtmp: RtmpSettings,
    /// SRT ingest.
    pub srt: SrtSettings,
    /// Segmenting and playlists.
    pub packager: PackagerSettings,
    /// The origin's HTTP server.
    pub origin: OriginSettings,
    /// The edge cache.
    pub edge: EdgeSettings,
    /// The live events and their stream keys (seeded into the database on first start).
    pub events: Vec<EventSettings>,
    /// Every ladder events may name: the built-in ones and the file's `[ladders.NAME]`.
    pub ladders: Vec<LadderSettings>,
    /// The control plane: persistence and admin API access.
    pub control: ControlSettings,
    /// Viewer access: token keys, trusted proxies, GeoIP, the cluster secret (`[access]`).
    pub access: AccessSettings,
    /// DRM for `cbcs` events: key systems and the key provider (`[drm]`).
    pub drm: DrmSettings,
}

/// RTMP ingest settings (`[rtmp]`).
#[derive(Clone, Debug)]
pub struct RtmpSettings {
    /// Where publishers connect. Default `0.0.0.0:1935`.
    pub listen: SocketAddr,
    /// The RTMP application in the publish URL. Default `live`.
    pub app: String,
    /// Most RTMP connections at once. Default 1 000.
    pub max_connections: usize,
    /// Time to complete the handshake. Default 5 s.
    pub handshake_timeout: Duration,
    /// Time an authorized publisher may send no audio or video before it is dropped.
    /// Default 15 s.
    pub idle_timeout: Duration,
    /// Time from connecting to an authorized publish. Default 10 s, 1 000..=60 000 ms.
    pub auth_timeout: Duration,
    /// Longest RTMP message of an authorized publisher, bytes. Default 8 MiB,
    /// 64 KiB..=64 MiB.
    pub max_message_bytes: u32,
    /// Largest chunk size a peer may set, bytes. Default 1 MiB, 128..=16 MiB.
    pub max_chunk_size: u32,
    /// Most connections at once from one address. Default 32.
    pub max_connections_per_ip: usize,
    /// Longest a write to a peer may take. Default 10 s.
    pub write_timeout: Duration,
}

/// Packager settings (`[packager]`).
#[derive(Clone, Debug)]
pub struct PackagerSettings {
    /// Segment target duration. Default 2 000 ms.
    pub segment_target: Duration,
    /// Part target (LL-HLS parts, RFC 8216bis §4.4.4.9). Default 333 ms, 100..=1 000 ms.
    pub part_target: Duration,
    /// Segments in each live media playlist. Default 6.
    pub window_segments: NonZeroUsize,
}

/// Origin settings (`[origin]`).
#[derive(Clone, Debug)]
pub struct OriginSettings {
    /// Where the origin serves playlists and segments to edges. Default `127.0.0.1:8081`.
    pub listen: SocketAddr,
    /// `Access-Control-Allow-Origin` value. Default `*`.
    pub cors_allow_origin: String,
    /// The listener's bounds and TLS (`[origin.http]`).
    pub http: HttpListenerSettings,
}

/// Edge settings (`[edge]`).
#[derive(Clone, Debug)]
pub struct EdgeSettings {
    /// This edge's name in its reports to the origin (viewers and cache hits per event).
    /// Default: `$HOSTNAME`, else the listen address.
    pub id: String,
    /// Where viewers connect. Default `0.0.0.0:8080`.
    pub listen: SocketAddr,
    /// Where `weir edge` serves `/metrics` (Prometheus text), apart from viewers. None by
    /// default (under `weir serve` the origin listener serves them).
    pub metrics_listen: Option<SocketAddr>,
    /// The upstream (origin or shield edge) base URL, `http://host:port` or
    /// `https://host:port`, or several separated by commas, most preferred first (failover). Under `weir serve` it defaults
    /// to the in-process origin.
    pub upstream: Option<String>,
    /// Cache capacity, bytes of cached bodies; `None`: the role's default,
    /// [`EDGE_CACHE_BYTES`] for `weir edge`, [`EMBEDDED_EDGE_CACHE_BYTES`] under `weir serve`.
    pub cache_capacity_bytes: Option<u64>,
    /// PEM file of certificate authorities trusted for `https://` upstreams, besides the
    /// system's (relative to the configuration file). None by default.
    pub upstream_ca_file: Option<std::path::PathBuf>,
    /// Longest wait for an upstream response (connect + headers + body). Default 5 000 ms.
    pub upstream_timeout: Duration,
    /// Longest wait for the upstream's answer to a blocking playlist request (`_HLS_msn`),
    /// which the origin may hold for three target durations. Default 35 000 ms.
    pub blocking_timeout: Duration,
    /// `Access-Control-Allow-Origin` value. Default `*`.
    pub cors_allow_origin: String,
    /// How long after a live playlist (or another object cached under a minute) expires its
    /// last good copy still answers when the upstream fails or is too slow
    /// (`X-Cache: STALE`). Default 10 000 ms, 0 (never)..=600 000.
    pub stale_if_error: Duration,
    /// How long a viewer of a live playlist waits on its refresh before the edge answers
    /// with the last good copy (`X-Cache: STALE`) while the refresh goes on (a slow origin
    /// costs viewers this much, not the upstream timeout). Default 500 ms, 0 (always
    /// wait)..=60 000.
    pub stale_while_revalidate: Duration,
    /// Most requests that may wait on one upstream fetch; the rest get 503 with
    /// `Retry-After: 1`. Default 20 000.
    pub max_waiters_per_object: usize,
    /// The listener's bounds and TLS (`[edge.http]`).
    pub http: HttpListenerSettings,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    rtmp: RawRtmp,
    srt: srt::RawSrt,
    packager: RawPackager,
    origin: RawOrigin,
    edge: RawEdge,
    events: Vec<RawEvent>,
    ladders: BTreeMap<String, ladder::RawLadder>,
    control: control::RawControl,
    access: access::RawAccess,
    drm: drm::RawDrm,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRtmp {
    listen: String,
    app: String,
    max_connections: usize,
    handshake_timeout_ms: u64,
    idle_timeout_ms: u64,
    auth_timeout_ms: u64,
    max_message_bytes: u32,
    max_chunk_size: u32,
    max_connections_per_ip: usize,
    write_timeout_ms: u64,
}

impl Default for RawRtmp {
    fn default() -> Self {
        RawRtmp {
            listen: "0.0.0.0:1935".into(),
            app: "live".into(),
            max_connections: 1_000,
            handshake_timeout_ms: 5_000,
            idle_timeout_ms: 15_000,
            auth_timeout_ms: 10_000,
            max_message_bytes: 8 * 1024 * 1024,
            max_chunk_size: 1024 * 1024,
            max_connections_per_ip: 32,
            write_timeout_ms: 10_000,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawPackager {
    segment_target_ms: u64,
    part_target_ms: u64,
    window_segments: usize,
}

impl Default for RawPackager {
    fn default() -> Self {
        RawPackager {
            segment_target_ms: 2_000,
            part_target_ms: 333,
            window_segments: 6,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawOrigin {
    listen: String,
    cors_allow_origin: String,
    http: listener::RawHttp,
}

impl Default for RawOrigin {
    fn default() -> Self {
        RawOrigin {
            listen: "127.0.0.1:8081".into(),
            cors_allow_origin: "*".into(),
            http: listener::RawHttp::default(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawEdge {
    id: Option<String>,
    listen: String,
    metrics_listen: Option<String>,
    upstream: Option<String>,
    cache_capacity_bytes: Option<u64>,
    upstream_ca_file: Option<String>,
    upstream_timeout_ms: u64,
    blocking_timeout_ms: u64,
    cors_allow_origin: String,
    stale_if_error_ms: u64,
    stale_while_revalidate_ms: u64,
    max_waiters_per_object: usize,
    http: listener::RawHttp,
}

impl Default for RawEdge {
    fn default() -> Self {
        RawEdge {
            id: None,
            listen: "0.0.0.0:8080".into(),
            metrics_listen: None,
            upstream: None,
            cache_capacity_bytes: None,
            upstream_ca_file: None,
            upstream_timeout_ms: 5_000,
            blocking_timeout_ms: 35_000,
            cors_allow_origin: "*".into(),
            stale_if_error_ms: 10_000,
            stale_while_revalidate_ms: 500,
            max_waiters_per_object: 20_000,
            http: listener::RawHttp::default(),
        }
    }
}

/// `edge.upstream`: base URLs separated by commas, each `http://host:port` or
/// `https://host:port` (trailing `/` dropped).
///
/// # Errors
/// [`ConfigError::Invalid`] for an empty list, another scheme, or a path.
pub fn parse_upstreams(list: String) -> Result<String, ConfigError> {
    let bases: Vec<&str> = list
        .split(',')
        .map(|b| b.trim().trim_end_matches('/'))
        .filter(|b| !b.is_empty())
        .collect();
    if bases.is_empty() {
        return Err(ConfigError::Invalid("edge.upstream: no URL".into()));
    }
    for b in &bases {
        let host = b
            .strip_prefix("http://")
            .or_else(|| b.strip_prefix("https://"))
            .ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "edge.upstream: {b:?} is not an http:// or https:// URL"
                ))
            })?;
        if host.is_empty() || host.contains('/') {
            return Err(ConfigError::Invalid(format!(
                "edge.upstream: {b:?} must be http://host:port, without a path"
            )));
        }
    }
    Ok(bases.join(","))
}

/// The edge cache's default capacity for `weir edge`, bytes (512 MiB): live media objects
/// leave it when no playlist can list them any more (the origin's `CDN-Cache-Control`), so
/// this bounds what a DVR-less live edge holds only for very many events.
pub const EDGE_CACHE_BYTES: u64 = 512 * 1024 * 1024;

/// The edge cache's default capacity under `weir serve`, bytes (128 MiB): the in-process
/// edge holds the live window of every event again beside the origin's store (about two
/// windows of every rendition: some 50 MB for the default ladder).
pub const EMBEDDED_EDGE_CACHE_BYTES: u64 = 128 * 1024 * 1024;

/// The event and stream key `weir serve` runs with when no configuration file is given.
pub const DEMO_EVENT: (&str, &str) = ("demo", "demo-key");

impl Config {
    /// The embedded defaults, with the demo event ([`DEMO_EVENT`]) so that `weir serve`
    /// works with no file.
    pub fn embedded() -> Config {
        let raw = RawConfig {
            events: vec![RawEvent::new(DEMO_EVENT.0, DEMO_EVENT.1)],
            ..RawConfig::default()
        };
        Config::validate(raw).unwrap_or_else(|e| unreachable!("embedded defaults are valid: {e}"))
    }

    /// Reads a TOML configuration; absent fields take their defaults.
    ///
    /// # Errors
    /// [`ConfigError::Parse`] for bad TOML or unknown fields, [`ConfigError::Invalid`] for
    /// values out of range (the message names the field).
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Config::validate(toml::from_str(text)?)
    }

    fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
        let addr = |field: &str, v: &str| {
            v.parse::<SocketAddr>().map_err(|_| {
                ConfigError::Invalid(format!(
                    "{field}: {v:?} is not an address like 0.0.0.0:8080"
                ))
            })
        };
        let ms = |field: &str, v: u64, min: u64, max: u64| {
            if (min..=max).contains(&v) {
                Ok(Duration::from_millis(v))
            } else {
                Err(ConfigError::Invalid(format!(
                    "{field}: {v} ms is outside {min}..={max}"
                )))
            }
        };
        let ladders = ladder::validate_ladders(raw.ladders)?;
        let events = event::validate_events(raw.events, &ladders)?;
        Ok(Config {
            rtmp: RtmpSettings {
                listen: addr("rtmp.listen", &raw.rtmp.listen)?,
                app: raw.rtmp.app,
                max_connections: raw.rtmp.max_connections.max(1),
                handshake_timeout: ms(
                    "rtmp.handshake_timeout_ms",
                    raw.rtmp.handshake_timeout_ms,
                    100,
                    60_000,
                )?,
                idle_timeout: ms(
                    "rtmp.idle_timeout_ms",
                    raw.rtmp.idle_timeout_ms,
                    1_000,
                    600_000,
                )?,
                auth_timeout: ms(
                    "rtmp.auth_timeout_ms",
                    raw.rtmp.auth_timeout_ms,
                    1_000,
                    60_000,
                )?,
                max_message_bytes: match raw.rtmp.max_message_bytes {
                    n @ 65_536..=67_108_864 => n,
                    _ => {
                        return Err(ConfigError::Invalid(
                            "rtmp.max_message_bytes: 65536..=67108864".into(),
                        ))
                    }
                },
                max_chunk_size: match raw.rtmp.max_chunk_size {
                    n @ 128..=16_777_216 => n,
                    _ => {
                        return Err(ConfigError::Invalid(
                            "rtmp.max_chunk_size: 128..=16777216".into(),
                        ))
                    }
                },
                max_connections_per_ip: raw.rtmp.max_connections_per_ip.max(1),
                write_timeout: ms(
                    "rtmp.write_timeout_ms",
                    raw.rtmp.write_timeout_ms,
                    100,
                    120_000,
                )?,
            },
            srt: raw.srt.validate(addr, ms)?,
            packager: PackagerSettings {
                segment_target: ms(
                    "packager.segment_target_ms",
                    raw.packager.segment_target_ms,
                    500,
                    30_000,
                )?,
                part_target: ms(
                    "packager.part_target_ms",
                    raw.packager.part_target_ms,
                    100,
                    1_000,
                )?,
                window_segments: NonZeroUsize::new(raw.packager.window_segments)
                    .filter(|n| n.get() >= 3)
                    .ok_or_else(|| {
                        ConfigError::Invalid("packager.window_segments: at least 3".into())
                    })?,
            },
            origin: OriginSettings {
                listen: addr("origin.listen", &raw.origin.listen)?,
                cors_allow_origin: raw.origin.cors_allow_origin,
                http: raw.origin.http.validate("origin")?,
            },
            edge: EdgeSettings {
                id: match raw.edge.id {
                    Some(id)
                        if !id.is_empty()
                            && id.len() <= 64
                            && id.bytes().all(|b| b.is_ascii_graphic()) =>
                    {
                        id
                    }
                    Some(_) => {
                        return Err(ConfigError::Invalid(
                            "edge.id: 1-64 visible ASCII characters".into(),
                        ))
                    }
                    None => std::env::var("HOSTNAME")
                        .ok()
                        .filter(|h| !h.is_empty())
                        .unwrap_or_else(|| raw.edge.listen.clone()),
                },
                listen: addr("edge.listen", &raw.edge.listen)?,
                metrics_listen: raw
                    .edge
                    .metrics_listen
                    .as_deref()
                    .map(|a| addr("edge.metrics_listen", a))
                    .transpose()?,
                upstream: raw.edge.upstream.map(parse_upstreams).transpose()?,
                cache_capacity_bytes: raw.edge.cache_capacity_bytes.map(|b| b.max(1024 * 1024)),
                upstream_ca_file: raw.edge.upstream_ca_file.map(std::path::PathBuf::from),
                upstream_timeout: ms(
                    "edge.upstream_timeout_ms",
                    raw.edge.upstream_timeout_ms,
                    100,
                    120_000,
                )?,
                blocking_timeout: ms(
                    "edge.blocking_timeout_ms",
                    raw.edge.blocking_timeout_ms,
                    1_000,
                    120_000,
                )?,
                cors_allow_origin: raw.edge.cors_allow_origin,
                stale_if_error: ms(
                    "edge.stale_if_error_ms",
                    raw.edge.stale_if_error_ms,
                    0,
                    600_000,
                )?,
                stale_while_revalidate: ms(
                    "edge.stale_while_revalidate_ms",
                    raw.edge.stale_while_revalidate_ms,
                    0,
                    60_000,
                )?,
                max_waiters_per_object: raw.edge.max_waiters_per_object.max(1),
                http: raw.edge.http.validate("edge")?,
            },
            events,
            ladders,
            control: raw.control.validate()?,
            access: raw.access.validate()?,
            drm: raw.drm.validate()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_is_valid_and_complete() {
        let c = Config::from_toml(include_str!("../weir.example.toml")).unwrap();
        assert_eq!(c.events.len(), 1);
        assert_eq!(c.packager.segment_target, Duration::from_secs(2));
        assert_eq!(c.packager.part_target, Duration::from_millis(333));
        assert!(c.events[0].low_latency);
        let c = Config::from_toml(
            "[[events]]\nid = \"a\"\nstream_key = \"abcdefgh\"\nlow_latency = false\n",
        )
        .unwrap();
        assert!(!c.events[0].low_latency);
    }

    #[test]
    fn refuses_bad_values_with_the_field_name() {
        let e = Config::from_toml("[rtmp]\nlisten = \"nope\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("rtmp.listen"), "{e}");
        assert!(Config::from_toml("[rtmp]\nbogus = 1\n").is_err());
        let e = Config::from_toml("[[events]]\nid = \"../x\"\nstream_key = \"abcdefgh\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("events.id"), "{e}");
        let e = Config::from_toml("[packager]\nwindow_segments = 2\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("window_segments"), "{e}");
        let e = Config::from_toml("[packager]\npart_target_ms = 1500\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("part_target_ms"), "{e}");
        let e = Config::from_toml("[edge]\nupstream = \"ftp://origin:21\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("edge.upstream"), "{e}");
    }

    #[test]
    fn upstreams_may_be_https_and_several_in_the_file_too() {
        let c = Config::from_toml(
            "[edge]\nupstream = \"https://shield.example:8443/, http://origin:8081\"\n",
        )
        .unwrap();
        assert_eq!(
            c.edge.upstream.as_deref(),
            Some("https://shield.example:8443,http://origin:8081")
        );
    }

    #[test]
    fn ladders_default_and_custom() {
        let c = Config::embedded();
        let names: Vec<_> = c.events[0]
            .ladder
            .video
            .iter()
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(names, ["1080p", "720p", "480p", "360p"]);
        let c = Config::from_toml(
            "[ladders.small]\naudio = { bitrate_kbps = 96 }\n\
             [[ladders.small.video]]\nname = \"source\"\npassthrough = true\n\
             [[ladders.small.video]]\nname = \"240p\"\nwidth = 427\nheight = 240\nbitrate_kbps = 300\n\
             [[events]]\nid = \"a\"\nstream_key = \"abcdefgh\"\nladder = \"small\"\n\
             [[events]]\nid = \"b\"\nstream_key = \"bcdefghi\"\nladder = \"passthrough\"\n",
        )
        .unwrap();
        let small = &c.events[0].ladder;
        assert_eq!(small.video[0].encoding, None);
        let rung = small.video[1].encoding.as_ref().unwrap();
        assert_eq!(
            (rung.width, rung.height, rung.max_rate_bps),
            (426, 240, 330_000)
        );
        assert_eq!(small.audio.encoding.as_ref().unwrap().bitrate_bps, 96_000);
        assert!(c.events[1].ladder.is_passthrough());
        for (bad, field) in [
            ("[[events]]\nid = \"a\"\nstream_key = \"abcdefgh\"\nladder = \"nope\"\n", "events.ladder"),
            ("[[ladders.x.video]]\nname = \"a/b\"\npassthrough = true\n", "ladders.x.video"),
            ("[[ladders.x.video]]\nname = \"a\"\nwidth = 640\nheight = 360\nbitrate_kbps = 700\npreset = \"warp\"\n", "preset"),
            ("[[ladders.x.video]]\nname = \"a\"\nwidth = 640\nheight = 360\n", "bitrate_kbps"),
            ("[[ladders.default.video]]\nname = \"a\"\npassthrough = true\n", "built-in"),
        ] {
            let e = Config::from_toml(bad).unwrap_err().to_string();
            assert!(e.contains(field), "{bad}: {e}");
        }
    }

    #[test]
    fn stream_keys_do_not_print() {
        let c = Config::embedded();
        assert!(!format!("{c:?}").contains(DEMO_EVENT.1));
        assert!(c.events[0].stream_key.matches(DEMO_EVENT.1));
        assert!(!c.events[0].stream_key.matches("demo-kez"));
    }

    #[test]
    fn srt_settings_and_passphrases() {
        let c = Config::embedded();
        assert!(c.srt.enabled);
        assert_eq!(c.srt.listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(c.srt.latency, Duration::from_millis(120));
        let event = |pass: &str| {
            format!(
                "[[events]]\nid = \"a\"\nstream_key = \"abcdefgh\"\nsrt_passphrase = \"{pass}\"\n"
            )
        };
        let c = Config::from_toml(&event("ten-chars!")).unwrap();
        let pass = c.events[0].srt_passphrase.as_ref().unwrap();
        assert_eq!(pass.expose(), "ten-chars!");
        assert!(!format!("{c:?}").contains("ten-chars!"));
        for (bad, field) in [
            (event("nine-char"), "srt_passphrase"),
            (event(&"x".repeat(80)), "srt_passphrase"),
            ("[srt]\nlatency_ms = 10\n".to_string(), "srt.latency_ms"),
            ("[srt]\nlisten = \"nowhere\"\n".to_string(), "srt.listen"),
        ] {
            let e = Config::from_toml(&bad).unwrap_err().to_string();
            assert!(e.contains(field), "{bad}: {e}");
        }
    }
}
