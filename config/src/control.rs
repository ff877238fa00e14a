//! Control-plane settings (`[control]`): where events are persisted and who may use the admin
//! API.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

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
}

/// An admin API bearer token, held as its SHA-256 digest only; compared in constant time.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken([u8; 32]);

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
        Ok(AdminToken(Sha256::digest(plain.as_bytes()).into()))
    }

    /// Whether `candidate` is this token, in time that does not depend on where they differ.
    pub fn matches(&self, candidate: &str) -> bool {
        let d: [u8; 32] = Sha256::digest(candidate.as_bytes()).into();
        self.0.ct_eq(&d).into()
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
}

impl Default for RawControl {
    fn default() -> Self {
        RawControl {
            data_dir: "weir-data".into(),
            database_url: None,
            admin_tokens: Vec::new(),
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
        })
    }
}
