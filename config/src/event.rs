//! Live events (`[[events]]`): their stream keys (a primary and an optional backup), ladder,
//! SRT passphrase, ingest bound and failover timing.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::access::{AccessOptions, AccessPolicy};
use crate::digest::SecretDigest;
use crate::srt::SrtPassphrase;
use crate::{ConfigError, LadderSettings};

/// A publisher's secret, held as its SHA-256 digest only: the key itself is never stored
/// (a leaked database or memory dump does not give it away). Its `Debug` prints nothing and it
/// compares in constant time.
#[derive(Clone, PartialEq, Eq)]
pub struct StreamKey(SecretDigest);

impl StreamKey {
    /// The key `plain` (not validated; see [`check_stream_key`]).
    pub fn new(plain: &str) -> StreamKey {
        StreamKey(SecretDigest::of(plain))
    }

    /// A key known only by its digest, as [`digest_hex`](Self::digest_hex) wrote it
    /// (64 hex digits). `None` if it is not one.
    pub fn from_digest_hex(hex_digest: &str) -> Option<StreamKey> {
        SecretDigest::from_hex(hex_digest).map(StreamKey)
    }

    /// The SHA-256 digest, 64 lowercase hex digits (what is stored).
    pub fn digest_hex(&self) -> String {
        self.0.hex()
    }

    /// Whether `candidate` is this key, in time that does not depend on where they differ.
    pub fn matches(&self, candidate: &str) -> bool {
        self.0.matches(candidate)
    }

    /// Whether `candidate` (a key digested once, e.g. to compare with many keys) is this key,
    /// in constant time.
    pub fn matches_key(&self, candidate: &StreamKey) -> bool {
        self.0.matches_digest(&candidate.0)
    }
}

impl fmt::Debug for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StreamKey(<redacted>)")
    }
}

/// Checks a stream key's form: 8-256 printable ASCII characters, no `/` and no space (it
/// sits in an RTMP URL path and an SRT stream id).
///
/// # Errors
/// [`ConfigError::Invalid`] naming `event` and `field`.
pub fn check_stream_key(event: &str, field: &str, key: &str) -> Result<StreamKey, ConfigError> {
    let printable = key.bytes().all(|b| b.is_ascii_graphic() && b != b'/');
    if key.len() < 8 || key.len() > 256 || !printable {
        return Err(invalid(format!(
            "events.{field} of {event:?}: 8-256 printable ASCII characters, no '/'"
        )));
    }
    Ok(StreamKey::new(key))
}

/// Checks an event id: 1-64 of `[A-Za-z0-9_-]` (it is a URL path component).
///
/// # Errors
/// [`ConfigError::Invalid`] naming it.
pub fn check_event_id(id: &str) -> Result<(), ConfigError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "events.id: {id:?} must be 1-64 of [A-Za-z0-9_-]"
        )))
    }
}

/// An event's settings other than its id and stream keys, as written (every field optional,
/// defaulted by [`validate_event`]). The same fields as in `[[events]]` of the TOML file; the
/// admin API stores them with the event.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventOptions {
    /// A ladder name: `default`, `passthrough` or a `[ladders.NAME]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ladder: Option<String>,
    /// LL-HLS on or off (default on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_latency: Option<bool>,
    /// The SRT passphrase (10-79 characters). A secret: `Debug` prints nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srt_passphrase: Option<String>,
    /// kbit/s, 100..=1 000 000 (default 50 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ingest_kbps: Option<u64>,
    /// ms, 100..=30 000 (default 1 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_after_ms: Option<u64>,
    /// ms, 0..=600 000 (default 10 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failback_after_ms: Option<u64>,
    /// Segments in each live media playlist, 3..=1 000 (default `[packager] window_segments`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_segments: Option<usize>,
    /// Viewer access: tokens, geo, viewers per token (default: open to everyone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<AccessOptions>,
    /// `"none"` (default), `"aes-128"` or `"cbcs"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<String>,
    /// A new content key every this many segments; 0 = never; default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_rotation_segments: Option<u32>,
}

impl fmt::Debug for EventOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventOptions")
            .field("ladder", &self.ladder)
            .field("low_latency", &self.low_latency)
            .field(
                "srt_passphrase",
                &self.srt_passphrase.as_ref().map(|_| "<redacted>"),
            )
            .field("max_ingest_kbps", &self.max_ingest_kbps)
            .field("failover_after_ms", &self.failover_after_ms)
            .field("failback_after_ms", &self.failback_after_ms)
            .field("window_segments", &self.window_segments)
            .field("access", &self.access)
            .field("encryption", &self.encryption)
            .field("key_rotation_segments", &self.key_rotation_segments)
            .finish()
    }
}

/// One live event (`[[events]]`).
#[derive(Clone, Debug)]
pub struct EventSettings {
    /// The event ID in URLs (`/live/{id}/master.m3u8`): 1-64 of `[A-Za-z0-9_-]`.
    pub id: String,
    /// The primary encoder's stream key (`rtmp://host/live/{stream_key}`, or the SRT
    /// `streamid`).
    pub stream_key: StreamKey,
    /// The backup encoder's stream key, if the event has redundant ingest: both encoders may
    /// publish at once; weir packages one (see [`FailoverSettings`]).
    pub backup_stream_key: Option<StreamKey>,
    /// When to switch between the primary and the backup encoder.
    pub failover: FailoverSettings,
    /// The renditions it is published in. Default: the built-in `default` ladder.
    pub ladder: LadderSettings,
    /// LL-HLS: parts, preload hints, blocking playlist reload, delta updates and rendition
    /// reports in its playlists. Default true.
    pub low_latency: bool,
    /// The passphrase SRT publishers of this event must encrypt with; none by default
    /// (RTMP publishers are not affected).
    pub srt_passphrase: Option<SrtPassphrase>,
    /// The most a publisher may send, bits per second averaged over 5 s; a publisher above it
    /// is dropped. Default 50 000 kbit/s, 100..=1 000 000 kbit/s.
    pub max_ingest_bitrate_bps: u64,
    /// Segments in each live media playlist, when the event sets its own window (else
    /// `[packager] window_segments`). 3..=1 000.
    pub window_segments: Option<std::num::NonZeroUsize>,
    /// Who may watch: tokens, geo, viewers per token (enforced by edges).
    pub access: AccessPolicy,
    /// How its segments and parts are encrypted.
    pub encryption: crate::Encryption,
    /// The options as written, from which the fields above were validated (what the admin
    /// API stores and shows).
    pub options: EventOptions,
}

/// Redundant ingest timing of one event (`failover_after_ms`, `failback_after_ms`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailoverSettings {
    /// How long the packaged encoder may deliver no media before the other one takes over
    /// (a publisher that disconnects is replaced at once). Default 1 000 ms, 100..=30 000 ms.
    pub failover_after: Duration,
    /// How long the primary must have delivered media without a break before it is taken
    /// back from the backup. Default 10 000 ms, 0..=600 000 ms.
    pub failback_after: Duration,
}

impl Default for FailoverSettings {
    fn default() -> Self {
        FailoverSettings {
            failover_after: Duration::from_millis(1_000),
            failback_after: Duration::from_millis(10_000),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEvent {
    pub(crate) id: String,
    pub(crate) stream_key: String,
    #[serde(default)]
    pub(crate) backup_stream_key: Option<String>,
    #[serde(default)]
    pub(crate) failover_after_ms: Option<u64>,
    #[serde(default)]
    pub(crate) failback_after_ms: Option<u64>,
    #[serde(default)]
    pub(crate) ladder: Option<String>,
    #[serde(default)]
    pub(crate) low_latency: Option<bool>,
    #[serde(default)]
    pub(crate) srt_passphrase: Option<String>,
    #[serde(default)]
    pub(crate) max_ingest_kbps: Option<u64>,
    #[serde(default)]
    pub(crate) window_segments: Option<usize>,
    #[serde(default)]
    pub(crate) access: Option<AccessOptions>,
    #[serde(default)]
    pub(crate) encryption: Option<String>,
    #[serde(default)]
    pub(crate) key_rotation_segments: Option<u32>,
}

impl RawEvent {
    fn options(&self) -> EventOptions {
        EventOptions {
            ladder: self.ladder.clone(),
            low_latency: self.low_latency,
            srt_passphrase: self.srt_passphrase.clone(),
            max_ingest_kbps: self.max_ingest_kbps,
            failover_after_ms: self.failover_after_ms,
            failback_after_ms: self.failback_after_ms,
            window_segments: self.window_segments,
            access: self.access.clone(),
            encryption: self.encryption.clone(),
            key_rotation_segments: self.key_rotation_segments,
        }
    }

    /// An event with `id` and `stream_key` and every other field defaulted.
    pub(crate) fn new(id: &str, stream_key: &str) -> RawEvent {
        RawEvent {
            id: id.into(),
            stream_key: stream_key.into(),
            backup_stream_key: None,
            failover_after_ms: None,
            failback_after_ms: None,
            ladder: None,
            low_latency: None,
            srt_passphrase: None,
            max_ingest_kbps: None,
            window_segments: None,
            access: None,
            encryption: None,
            key_rotation_segments: None,
        }
    }
}

fn invalid(message: String) -> ConfigError {
    ConfigError::Invalid(message)
}

fn millis(
    event: &str,
    field: &str,
    value: u64,
    min: u64,
    max: u64,
) -> Result<Duration, ConfigError> {
    if (min..=max).contains(&value) {
        Ok(Duration::from_millis(value))
    } else {
        Err(invalid(format!(
            "events.{field} of {event:?}: {value} ms is outside {min}..={max}"
        )))
    }
}

/// Validates one event: `options` defaulted and range-checked, the ladder resolved among
/// `ladders`. Keys are checked by [`check_stream_key`] beforehand; that no key or id repeats
/// across events is the caller's to check.
///
/// # Errors
/// [`ConfigError::Invalid`] naming the field.
pub fn validate_event(
    id: &str,
    stream_key: StreamKey,
    backup_stream_key: Option<StreamKey>,
    options: &EventOptions,
    ladders: &[LadderSettings],
) -> Result<EventSettings, ConfigError> {
    check_event_id(id)?;
    if backup_stream_key.as_ref() == Some(&stream_key) {
        return Err(invalid(format!(
            "events: {id:?} repeats an id or a stream key"
        )));
    }
    let ladder_name = options.ladder.as_deref().unwrap_or("default");
    let ladder = ladders
        .iter()
        .find(|l| l.name == ladder_name)
        .cloned()
        .ok_or_else(|| {
            invalid(format!(
                "events.ladder of {id:?}: no ladder {ladder_name:?} (built in: \"default\", \"passthrough\"; others in [ladders.NAME])"
            ))
        })?;
    let srt_passphrase = options
        .srt_passphrase
        .clone()
        .map(|p| SrtPassphrase::new(id, p))
        .transpose()?;
    let max_ingest_kbps = options.max_ingest_kbps.unwrap_or(50_000);
    if !(100..=1_000_000).contains(&max_ingest_kbps) {
        return Err(invalid(format!(
            "events.max_ingest_kbps of {id:?}: 100..=1000000"
        )));
    }
    let window_segments = match options.window_segments {
        Some(n) if (3..=1_000).contains(&n) => std::num::NonZeroUsize::new(n),
        Some(_) => {
            return Err(invalid(format!(
                "events.window_segments of {id:?}: 3..=1000"
            )))
        }
        None => None,
    };
    let access = AccessPolicy::validate(id, &options.access.clone().unwrap_or_default())?;
    let encryption = crate::Encryption::validate(
        id,
        options.encryption.as_deref(),
        options.key_rotation_segments,
    )?;
    let defaults = FailoverSettings::default();
    let failover = FailoverSettings {
        failover_after: match options.failover_after_ms {
            Some(v) => millis(id, "failover_after_ms", v, 100, 30_000)?,
            None => defaults.failover_after,
        },
        failback_after: match options.failback_after_ms {
            Some(v) => millis(id, "failback_after_ms", v, 0, 600_000)?,
            None => defaults.failback_after,
        },
    };
    Ok(EventSettings {
        srt_passphrase,
        max_ingest_bitrate_bps: max_ingest_kbps * 1_000,
        id: id.to_string(),
        stream_key,
        backup_stream_key,
        failover,
        ladder,
        low_latency: options.low_latency.unwrap_or(true),
        window_segments,
        access,
        encryption,
        options: options.clone(),
    })
}

/// Validates the events of the file in order; `ladders` are the ladders they may name.
pub(crate) fn validate_events(
    raw: Vec<RawEvent>,
    ladders: &[LadderSettings],
) -> Result<Vec<EventSettings>, ConfigError> {
    let mut events: Vec<EventSettings> = Vec::with_capacity(raw.len());
    for e in raw {
        check_event_id(&e.id)?;
        let stream_key = check_stream_key(&e.id, "stream_key", &e.stream_key)?;
        let backup_stream_key = e
            .backup_stream_key
            .as_deref()
            .map(|k| check_stream_key(&e.id, "backup_stream_key", k))
            .transpose()?;
        // Every key names one event and one role: no key repeats anywhere.
        let mut keys = vec![e.stream_key.as_str()];
        keys.extend(e.backup_stream_key.as_deref());
        let repeated = keys.len() == 2 && stream_key.matches(keys[1])
            || events.iter().any(|o| {
                o.id == e.id
                    || keys.iter().any(|k| {
                        o.stream_key.matches(k)
                            || o.backup_stream_key.as_ref().is_some_and(|b| b.matches(k))
                    })
            });
        if repeated {
            return Err(invalid(format!(
                "events: {:?} repeats an id or a stream key",
                e.id
            )));
        }
        events.push(validate_event(
            &e.id,
            stream_key,
            backup_stream_key,
            &e.options(),
            ladders,
        )?);
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use crate::Config;
    use std::time::Duration;

    #[test]
    fn backup_keys_and_failover_timing() {
        let c = Config::from_toml(
            "[[events]]\nid = \"a\"\nstream_key = \"primary-1\"\nbackup_stream_key = \"backup-11\"\n\
             failover_after_ms = 500\nfailback_after_ms = 0\n\
             [[events]]\nid = \"b\"\nstream_key = \"primary-2\"\n",
        )
        .unwrap();
        let a = &c.events[0];
        assert!(a.backup_stream_key.as_ref().unwrap().matches("backup-11"));
        assert_eq!(a.failover.failover_after, Duration::from_millis(500));
        assert_eq!(a.failover.failback_after, Duration::ZERO);
        let b = &c.events[1];
        assert!(b.backup_stream_key.is_none());
        assert_eq!(b.failover.failover_after, Duration::from_millis(1_000));
        assert_eq!(b.failover.failback_after, Duration::from_secs(10));
        assert!(!format!("{c:?}").contains("backup-11"));
        assert_eq!(a.window_segments, None);
        let c = Config::from_toml(
            "[[events]]\nid = \"w\"\nstream_key = \"key-w-0001\"\nwindow_segments = 30\n",
        )
        .unwrap();
        assert_eq!(c.events[0].window_segments.map(|n| n.get()), Some(30));
    }

    #[test]
    fn refuses_repeated_keys_and_bad_timing() {
        let event = |id: &str, key: &str, extra: &str| {
            format!("[[events]]\nid = \"{id}\"\nstream_key = \"{key}\"\n{extra}")
        };
        for (bad, field) in [
            (
                event("a", "same-key-1", "backup_stream_key = \"same-key-1\"\n"),
                "repeats",
            ),
            (
                event("a", "key-one-1", "backup_stream_key = \"key-two-2\"\n")
                    + &event("b", "key-two-2", ""),
                "repeats",
            ),
            (
                event("a", "key-one-1", "")
                    + &event("b", "key-two-2", "backup_stream_key = \"key-one-1\"\n"),
                "repeats",
            ),
            (
                event("a", "key-one-1", "backup_stream_key = \"short\"\n"),
                "backup_stream_key",
            ),
            (
                event("a", "key-one-1", "failover_after_ms = 50\n"),
                "failover_after_ms",
            ),
            (
                event("a", "key-one-1", "failback_after_ms = 600001\n"),
                "failback_after_ms",
            ),
            (
                event("a", "key-one-1", "window_segments = 2\n"),
                "window_segments",
            ),
        ] {
            let e = Config::from_toml(&bad).unwrap_err().to_string();
            assert!(e.contains(field), "{bad}: {e}");
        }
    }
}
