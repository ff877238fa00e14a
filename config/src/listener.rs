//! An HTTP listener's bounds and TLS (`[edge.http]`, `[origin.http]`).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::ConfigError;

/// One HTTP listener's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpListenerSettings {
    /// The certificate chain and key (PEM files; relative paths from the configuration
    /// file's directory) when the listener speaks HTTPS (HTTP/2 by ALPN, HTTP/1.1); re-read
    /// when they change. None by default: plain HTTP (HTTP/1.1, and HTTP/2 with prior
    /// knowledge).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Time a client has to send a request head (and finish the TLS handshake); also the
    /// longest an HTTP/1.1 keep-alive connection may idle. Default 10 000 ms, 1 000..=120 000.
    pub header_read_timeout: Duration,
    /// Largest request head, bytes. Default 16 384, 4 096..=1 048 576.
    pub max_header_bytes: usize,
    /// Most connections at once. Default 20 000 at the edge, 10 000 at the origin.
    pub max_connections: usize,
    /// Most connections at once from one address. Default 1 000 at the edge (raise it when
    /// a load balancer is the peer), none at the origin; 0 = none.
    pub max_connections_per_ip: Option<usize>,
    /// A connection with no request in flight for this long is closed, HTTP/2 included
    /// (HTTP/1.1 closes at the header timeout already if that is shorter). Default
    /// 60 000 ms, 1 000..=3 600 000.
    pub idle_timeout: Duration,
    /// Threads serving the listener's connections, each with a single-threaded runtime of
    /// its own (`weir_http::workers`); 0 = on the process's shared runtime. Default: one per
    /// core at the edge, 0 at the origin; at most 256.
    pub workers: usize,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawHttp {
    tls_cert_file: Option<String>,
    tls_key_file: Option<String>,
    header_read_timeout_ms: Option<u64>,
    max_header_bytes: Option<usize>,
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    idle_timeout_ms: Option<u64>,
    workers: Option<usize>,
}

impl RawHttp {
    /// Validates the `[{listener}.http]` table; `edge` picks the edge's defaults.
    pub(crate) fn validate(self, listener: &str) -> Result<HttpListenerSettings, ConfigError> {
        let edge = listener == "edge";
        let field =
            |f: &str, range: &str| ConfigError::Invalid(format!("{listener}.http.{f}: {range}"));
        let tls = match (self.tls_cert_file, self.tls_key_file) {
            (Some(c), Some(k)) => Some((PathBuf::from(c), PathBuf::from(k))),
            (None, None) => None,
            _ => return Err(field("tls_cert_file", "set with tls_key_file, or neither")),
        };
        let timeout = self.header_read_timeout_ms.unwrap_or(10_000);
        if !(1_000..=120_000).contains(&timeout) {
            return Err(field("header_read_timeout_ms", "1000..=120000"));
        }
        let max_header_bytes = self.max_header_bytes.unwrap_or(16 * 1024);
        if !(4_096..=1_048_576).contains(&max_header_bytes) {
            return Err(field("max_header_bytes", "4096..=1048576"));
        }
        let max_connections = self
            .max_connections
            .unwrap_or(if edge { 20_000 } else { 10_000 });
        if !(1..=1_000_000).contains(&max_connections) {
            return Err(field("max_connections", "1..=1000000"));
        }
        let per_ip = self
            .max_connections_per_ip
            .unwrap_or(if edge { 1_000 } else { 0 });
        let idle = self.idle_timeout_ms.unwrap_or(60_000);
        if !(1_000..=3_600_000).contains(&idle) {
            return Err(field("idle_timeout_ms", "1000..=3600000"));
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let workers = self.workers.unwrap_or(if edge { cores } else { 0 });
        if workers > 256 {
            return Err(field("workers", "0..=256"));
        }
        Ok(HttpListenerSettings {
            workers,
            idle_timeout: Duration::from_millis(idle),
            tls,
            header_read_timeout: Duration::from_millis(timeout),
            max_header_bytes,
            max_connections,
            max_connections_per_ip: (per_ip > 0).then_some(per_ip),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_by_listener_and_bad_values() {
        let edge = RawHttp::default().validate("edge").unwrap();
        assert_eq!(edge.max_connections_per_ip, Some(1_000));
        assert_eq!(edge.header_read_timeout, Duration::from_secs(10));
        let origin = RawHttp::default().validate("origin").unwrap();
        assert_eq!(origin.max_connections_per_ip, None);
        assert_eq!(origin.max_connections, 10_000);
        assert_eq!(origin.workers, 0, "the origin serves on the shared runtime");
        assert!(edge.workers >= 1, "the edge has a worker per core");
        for (toml, field) in [
            ("tls_cert_file = \"c.pem\"", "tls_cert_file"),
            ("header_read_timeout_ms = 10", "header_read_timeout_ms"),
            ("max_header_bytes = 10", "max_header_bytes"),
            ("max_connections = 0", "max_connections"),
            ("workers = 1000", "workers"),
        ] {
            let raw: RawHttp = toml::from_str(toml).unwrap();
            let e = raw.validate("edge").unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        }
        let raw: RawHttp = toml::from_str(
            "tls_cert_file = \"c.pem\"\ntls_key_file = \"k.pem\"\nmax_connections_per_ip = 0",
        )
        .unwrap();
        let s = raw.validate("edge").unwrap();
        assert_eq!(s.tls, Some(("c.pem".into(), "k.pem".into())));
        assert_eq!(s.max_connections_per_ip, None);
    }
}
