//! Control-plane settings (`[control]`): where events are persisted and who may use the admin
//! API.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use crate::digest::SecretDigest;
use crate::ConfigError;

/// Control-plane settings (`[control]`).
#[derive(Clone, Debug)]
pub struct ControlSettings {
    /// Where the embedded SQLite database (`weir.db`) lives; created on first start.
    /// Default `weir-data` (relative to the working directory).
    pub data_dir: PathBuf,
    /// A database URL that replaces the embedded SQLite one: `postgres://user:pass@host/db`
    /// for a cluster (or `sqlite://path`). None by default.
    pub database_url: Option<String>,
    /// Bearer tokens the admin API accepts (`Authorization: Bearer TOKEN`), held as digests.
    /// With none configured, `weir serve` makes one at start and prints it on stdout.
    pub admin_tokens: Vec<AdminToken>,
    /// Webhooks (`[control.hooks]`).
    pub hooks: HookSettings,
    /// The edges the admin API's purge reaches (`http://host:port` each, besides the edge of
    /// `weir serve` itself), told with the cluster secret. None by default.
    pub edges: Vec<String>,
    /// PEM certificate authorities that `https://` edges and webhook URLs are checked
    /// against, instead of the bundled Mozilla roots (webpki-roots); relative to the
    /// configuration file. None by default.
    pub ca_file: Option<PathBuf>,
}

/// Webhooks (`[control.hooks]`): HTTP POSTs of JSON to the operator's URLs when publishers
/// come and go and segments are published, signed with HMAC-SHA256 when a secret is set.
#[derive(Clone, Debug)]
pub struct HookSettings {
    /// Asked before a publisher is accepted: a 2xx answer accepts it, anything else (or no
    /// answer within `timeout`) refuses it.
    pub on_publish: Option<String>,
    /// Told when a publisher leaves.
    pub on_unpublish: Option<String>,
    /// Told when a segment is published.
    pub on_segment: Option<String>,
    /// The HMAC-SHA256 key of the `X-Weir-Signature` header; none by default (unsigned).
    pub secret: Option<HookSecret>,
    /// Longest wait for a hook's answer. Default 2 000 ms, 100..=30 000.
    pub timeout: std::time::Duration,
    /// Attempts per notification (`on_unpublish`, `on_segment`), with a doubling pause from
    /// 500 ms. Default 3, 1..=10. `on_publish` is asked once.
    pub max_attempts: u32,
    /// Notifications waiting for delivery at most; beyond it new ones are dropped and counted.
    /// Default 1 000.
    pub queue: usize,
}

/// The webhooks' signing key. Its `Debug` prints nothing.
#[derive(Clone)]
pub struct HookSecret(String);

impl HookSecret {
    /// The key's bytes.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for HookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HookSecret(<redacted>)")
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawHooks {
    on_publish: Option<String>,
    on_unpublish: Option<String>,
    on_segment: Option<String>,
    secret: Option<String>,
    timeout_ms: u64,
    max_attempts: u32,
    queue: usize,
}

impl Default for RawHooks {
    fn default() -> Self {
        RawHooks {
            on_publish: None,
            on_unpublish: None,
            on_segment: None,
            secret: None,
            timeout_ms: 2_000,
            max_attempts: 3,
            queue: 1_000,
        }
    }
}

impl RawHooks {
    fn validate(self) -> Result<HookSettings, ConfigError> {
        let url = |field: &str, v: Option<String>| match v {
            Some(u) if !u.starts_with("http://") => Err(ConfigError::Invalid(format!(
                "control.hooks.{field}: an http:// URL (https:// comes with TLS support)"
            ))),
            other => Ok(other),
        };
        if !(100..=30_000).contains(&self.timeout_ms) {
            return Err(ConfigError::Invalid(
                "control.hooks.timeout_ms: 100..=30000".into(),
            ));
        }
        if !(1..=10).contains(&self.max_attempts) {
            return Err(ConfigError::Invalid(
                "control.hooks.max_attempts: 1..=10".into(),
            ));
        }
        if self.secret.as_ref().is_some_and(|s| s.len() < 16) {
            return Err(ConfigError::Invalid(
                "control.hooks.secret: at least 16 characters".into(),
            ));
        }
        Ok(HookSettings {
            on_publish: url("on_publish", self.on_publish)?,
            on_unpublish: url("on_unpublish", self.on_unpublish)?,
            on_segment: url("on_segment", self.on_segment)?,
            secret: self.secret.map(HookSecret),
            timeout: std::time::Duration::from_millis(self.timeout_ms),
            max_attempts: self.max_attempts,
            queue: self.queue.clamp(1, 1_000_000),
        })
    }
}

/// An admin API bearer token, held as its SHA-256 digest only; compared in constant time.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(SecretDigest);

impl AdminToken {
    /// The token `plain`.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] if it is shorter than 16 or longer than 256 characters, or not
    /// visible ASCII (it travels in an HTTP header).
    pub fn new(plain: &str) -> Result<AdminToken, ConfigError> {
        let ok = (16..=256).contains(&plain.len()) && plain.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            return Err(ConfigError::Invalid(
                "control.admin_tokens: 16-256 visible ASCII characters each".into(),
            ));
        }
        Ok(AdminToken(SecretDigest::of(plain)))
    }

    /// A token known only by its digest (64 hex digits, as [`digest_hex`](Self::digest_hex)
    /// wrote it). `None` if it is not one.
    pub fn from_digest_hex(hex_digest: &str) -> Option<AdminToken> {
        SecretDigest::from_hex(hex_digest).map(AdminToken)
    }

    /// The SHA-256 digest, 64 lowercase hex digits (what is stored).
    pub fn digest_hex(&self) -> String {
        self.0.hex()
    }

    /// Whether `candidate` is this token, in time that does not depend on where they differ.
    pub fn matches(&self, candidate: &str) -> bool {
        self.0.matches(candidate)
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawControl {
    data_dir: String,
    database_url: Option<String>,
    admin_tokens: Vec<String>,
    hooks: RawHooks,
    edges: Vec<String>,
    ca_file: Option<String>,
}

impl Default for RawControl {
    fn default() -> Self {
        RawControl {
            data_dir: "weir-data".into(),
            database_url: None,
            admin_tokens: Vec::new(),
            hooks: RawHooks::default(),
            edges: Vec::new(),
            ca_file: None,
        }
    }
}

impl RawControl {
    pub(crate) fn validate(self) -> Result<ControlSettings, ConfigError> {
        if let Some(url) = &self.database_url {
            let known = ["postgres://", "postgresql://", "sqlite:"];
            if !known.iter().any(|p| url.starts_with(p)) {
                return Err(ConfigError::Invalid(
                    "control.database_url: a postgres:// or sqlite: URL".into(),
                ));
            }
        }
        Ok(ControlSettings {
            data_dir: PathBuf::from(self.data_dir),
            database_url: self.database_url,
            admin_tokens: self
                .admin_tokens
                .iter()
                .map(|t| AdminToken::new(t))
                .collect::<Result<_, _>>()?,
            hooks: self.hooks.validate()?,
            edges: self
                .edges
                .into_iter()
                .map(|e| {
                    let e = e.trim_end_matches('/').to_string();
                    if e.starts_with("http://") || e.starts_with("https://") {
                        Ok(e)
                    } else {
                        Err(ConfigError::Invalid(format!(
                            "control.edges: {e:?} is not an http:// or https:// URL"
                        )))
                    }
                })
                .collect::<Result<_, _>>()?,
            ca_file: self.ca_file.map(PathBuf::from),
        })
    }
}
