//! SRT ingest settings (`[srt]`) and the per-event SRT passphrase.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::ConfigError;

/// SRT ingest settings (`[srt]`).
#[derive(Clone, Debug)]
pub struct SrtSettings {
    /// Whether weir listens for SRT publishers. Default true.
    pub enabled: bool,
    /// The UDP address callers connect to (`srt://HOST:9000?streamid=...`). Default
    /// `0.0.0.0:9000`.
    pub listen: SocketAddr,
    /// SRT latency (`SRTO_LATENCY`, the receiver's buffer for recovering losses); the larger
    /// of this and the caller's applies. Default 120 ms, 20..=8 000 ms.
    pub latency: Duration,
    /// Most SRT publishers connected at once. Default 100.
    pub max_connections: usize,
    /// Time a connected publisher may send no media before it is dropped. Default 15 000 ms.
    pub idle_timeout: Duration,
}

/// An event's SRT passphrase (`SRTO_PASSPHRASE`, 10-79 characters): callers must encrypt with
/// it (AES-128, -192 or -256, as the caller chooses). Its `Debug` prints nothing.
#[derive(Clone)]
pub struct SrtPassphrase(String);

impl SrtPassphrase {
    /// Checks the length SRT allows.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming `event` if it is not 10-79 characters.
    pub(crate) fn new(event: &str, value: String) -> Result<SrtPassphrase, ConfigError> {
        let printable = value.bytes().all(|b| b == b' ' || b.is_ascii_graphic());
        if (10..=79).contains(&value.len()) && printable {
            Ok(SrtPassphrase(value))
        } else {
            Err(ConfigError::Invalid(format!(
                "events.srt_passphrase of {event:?}: 10-79 printable ASCII characters"
            )))
        }
    }

    /// The passphrase itself, for the SRT handshake. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SrtPassphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SrtPassphrase(<redacted>)")
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawSrt {
    enabled: bool,
    listen: String,
    latency_ms: u64,
    max_connections: usize,
    idle_timeout_ms: u64,
}

impl Default for RawSrt {
    fn default() -> Self {
        RawSrt {
            enabled: true,
            listen: "0.0.0.0:9000".into(),
            latency_ms: 120,
            max_connections: 100,
            idle_timeout_ms: 15_000,
        }
    }
}

impl RawSrt {
    pub(crate) fn validate(
        self,
        addr: impl Fn(&str, &str) -> Result<SocketAddr, ConfigError>,
        ms: impl Fn(&str, u64, u64, u64) -> Result<Duration, ConfigError>,
    ) -> Result<SrtSettings, ConfigError> {
        Ok(SrtSettings {
            enabled: self.enabled,
            listen: addr("srt.listen", &self.listen)?,
            latency: ms("srt.latency_ms", self.latency_ms, 20, 8_000)?,
            max_connections: self.max_connections.max(1),
            idle_timeout: ms("srt.idle_timeout_ms", self.idle_timeout_ms, 1_000, 600_000)?,
        })
    }
}
