//! The upstream HTTP client: one GET, bounded in time and size.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AGE, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::filling::Head;
use crate::health::Targets;
use crate::local::{LocalOrigin, UpstreamBody};
use crate::EdgeError;

/// Largest upstream body the edge accepts (a long segment of a high bit rate stream).
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// What the upstream answered.
#[derive(Clone, Debug)]
pub(crate) struct Fetched {
    /// Status and the headers the edge keeps.
    pub(crate) head: Head,
    pub(crate) body: Bytes,
}

impl Fetched {
    /// The answer `head` with its whole `body`.
    pub(crate) fn new(head: Head, body: Bytes) -> Fetched {
        Fetched { head, body }
    }

    /// How long the response may be cached: `max-age` minus `Age`; `None` when it may not be
    /// stored by a shared cache (RFC 9111 §3, §5.2.2). A `200`, or a `404` with an explicit
    /// `max-age` (negative caching, RFC 9111 §4.2.2); nothing else. A `CDN-Cache-Control`
    /// field, when the upstream sends one, is used instead of `Cache-Control` (RFC 9213 §2.2:
    /// a cache that takes a targeted field ignores `Cache-Control`).
    pub(crate) fn ttl(&self) -> Option<Duration> {
        if self.head.status != StatusCode::OK && self.head.status != StatusCode::NOT_FOUND {
            return None;
        }
        let cc = self
            .head
            .cdn_cache_control
            .as_ref()
            .or(self.head.cache_control.as_ref())?
            .to_str()
            .ok()?;
        let mut max_age = None;
        for directive in cc.split(',').map(str::trim) {
            let lower = directive.to_ascii_lowercase();
            if lower == "no-store" || lower == "private" || lower == "no-cache" {
                return None;
            }
            if let Some(v) = lower.strip_prefix("s-maxage=") {
                max_age = v.parse::<u64>().ok();
            } else if let Some(v) = lower.strip_prefix("max-age=") {
                max_age = max_age.or(v.parse::<u64>().ok());
            }
        }
        let ttl = max_age?.checked_sub(self.head.age)?;
        (ttl > 0).then(|| Duration::from_secs(ttl))
    }
}

/// The client: HTTP/1.1, plain or TLS by URL scheme.
pub(crate) type UpstreamClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// rustls (ring) trusting the system's certificate authorities and those in `ca_file`.
fn tls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(file) = ca_file {
        let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_file_iter(file)
            .and_then(|i| i.collect::<Result<_, _>>())
            .map_err(|e| format!("edge.upstream_ca_file {}: {e}", file.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "edge.upstream_ca_file {}: no certificate in it",
                file.display()
            ));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("edge.upstream_ca_file {}: {e}", file.display()))?;
        }
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        .map_err(|e| format!("TLS client: {e}"))
}

/// The HTTP client for the upstreams ([`Targets`]: failover in order of preference).
#[derive(Clone, Debug)]
pub(crate) struct Upstream {
    pub(crate) targets: Arc<Targets>,
    pub(crate) client: UpstreamClient,
    /// Sent on internal paths (`/internal/...`) only.
    cluster_secret: Option<HeaderValue>,
    /// Sent for content keys (`/internal/v1/keys/...`).
    key_secret: Option<HeaderValue>,
    /// The origin of the same process, asked instead of the targets when set.
    local: Option<LocalOrigin>,
}

impl Upstream {
    /// A client for `bases` (one base URL or several separated by commas, most preferred
    /// first; `http://` or `https://`, the latter verified against the system's roots and
    /// the certificates in `ca_file`); connecting gives up after `connect_timeout`. With
    /// `local`, requests go to that in-process origin instead (the targets are then only
    /// where the edge's reports go).
    ///
    /// # Errors
    /// `ca_file` cannot be read or holds no certificate.
    pub(crate) fn new(
        bases: &str,
        ca_file: Option<&std::path::Path>,
        connect_timeout: Duration,
        cluster_secret: Option<weir_config::ClusterSecret>,
        key_secret: Option<weir_config::ClusterSecret>,
        local: Option<LocalOrigin>,
    ) -> Result<Upstream, String> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        // TLS on the connection when the URL says https (ALPN not offered: HTTP/1.1).
        connector.enforce_http(false);
        let tls = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(ca_file)?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(tls);
        let header = |s: Option<weir_config::ClusterSecret>| {
            s.and_then(|s| HeaderValue::from_str(s.expose()).ok())
        };
        Ok(Upstream {
            targets: Arc::new(Targets::parse(bases)),
            client,
            cluster_secret: header(cluster_secret),
            key_secret: header(key_secret),
            local,
        })
    }

    /// GETs `path_and_query` (a validated route, with normalized directives) from the first
    /// upstream that answers by `deadline`, and returns its head with the body still to read
    /// ([`collect`], or [`crate::filling::receive`]). Each upstream tried gets an equal share
    /// of the time left; one that fails (connection, its share of time, 502/503/504 while
    /// others remain) is marked down and the next is tried.
    ///
    /// # Errors
    /// The last upstream's failure: [`EdgeError::UpstreamUnreachable`] or
    /// [`EdgeError::UpstreamTimeout`].
    pub(crate) async fn open(
        &self,
        path_and_query: &str,
        deadline: tokio::time::Instant,
    ) -> Result<(Head, UpstreamBody), EdgeError> {
        if let Some(local) = &self.local {
            let request = self.request(path_and_query.to_string(), axum::body::Body::empty())?;
            let response = tokio::time::timeout_at(deadline, local.call(request))
                .await
                .map_err(|_| EdgeError::UpstreamTimeout)?;
            let (parts, body) = response.into_parts();
            return Ok((head(&parts), UpstreamBody::Local(body)));
        }
        let order = self.targets.order();
        let mut last = EdgeError::UpstreamUnreachable;
        for (i, target) in order.iter().enumerate() {
            let left = (order.len() - i) as u32;
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(EdgeError::UpstreamTimeout);
            }
            let share = (deadline - now) / left;
            let attempt = self.attempt(&target.base, path_and_query);
            match tokio::time::timeout(share, attempt).await {
                Ok(Ok((head, body))) => {
                    let gateway = matches!(head.status.as_u16(), 502..=504);
                    if !gateway || left == 1 {
                        if !gateway {
                            target.mark_up();
                        }
                        return Ok((head, body));
                    }
                    target.mark_down("answered 5xx");
                    last = EdgeError::UpstreamUnreachable;
                }
                Ok(Err(e)) => {
                    target.mark_down("unreachable");
                    last = e;
                }
                Err(_) => {
                    target.mark_down("timed out");
                    last = EdgeError::UpstreamTimeout;
                }
            }
            if left > 1 {
                metrics::counter!("weir_edge_upstream_failovers_total").increment(1);
            }
        }
        Err(last)
    }

    /// One GET of `path_and_query` from the upstream at `base`.
    async fn attempt(
        &self,
        base: &str,
        path_and_query: &str,
    ) -> Result<(Head, UpstreamBody), EdgeError> {
        let request = self.request(format!("{base}{path_and_query}"), Empty::new())?;
        let response = self.client.request(request).await.map_err(|e| {
            tracing::warn!(error = %e, "upstream request failed");
            EdgeError::UpstreamUnreachable
        })?;
        let (parts, body) = response.into_parts();
        Ok((head(&parts), UpstreamBody::Remote(body)))
    }

    /// A GET of `uri` (whose path is a validated route) with the secret its path needs.
    fn request<B>(&self, uri: String, body: B) -> Result<http::Request<B>, EdgeError> {
        let uri: http::Uri = uri.parse().map_err(|_| EdgeError::BadUpstream)?;
        let path = uri.path();
        let secret = if path.starts_with("/internal/v1/keys/") {
            self.key_secret.as_ref()
        } else if path.starts_with("/internal/") {
            self.cluster_secret.as_ref()
        } else {
            None
        };
        let mut request = http::Request::get(uri);
        if let Some(secret) = secret {
            request = request.header(crate::CLUSTER_SECRET_HEADER, secret.clone());
        }
        request.body(body).map_err(|_| EdgeError::BadUpstream)
    }
}

/// What the edge keeps of an upstream response's head.
fn head(parts: &http::response::Parts) -> Head {
    let number = |name| {
        parts
            .headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
    };
    Head {
        status: parts.status,
        content_type: parts.headers.get(CONTENT_TYPE).cloned(),
        cache_control: parts.headers.get(CACHE_CONTROL).cloned(),
        cdn_cache_control: parts.headers.get(weir_http::CDN_CACHE_CONTROL).cloned(),
        age: number(AGE).unwrap_or(0),
        content_length: number(CONTENT_LENGTH),
    }
}

/// Reads a whole body by `deadline`, at most [`MAX_BODY_BYTES`].
pub(crate) async fn collect(
    body: UpstreamBody,
    deadline: tokio::time::Instant,
) -> Result<Bytes, EdgeError> {
    match tokio::time::timeout_at(deadline, Limited::new(body, MAX_BODY_BYTES).collect()).await {
        Err(_) => Err(EdgeError::UpstreamTimeout),
        Ok(Err(_)) => Err(EdgeError::UpstreamUnreachable),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetched(status: u16, cc: &str, age: u64) -> Fetched {
        Fetched::new(
            Head {
                status: StatusCode::from_u16(status).unwrap(),
                content_type: None,
                cache_control: Some(HeaderValue::from_str(cc).unwrap()),
                cdn_cache_control: None,
                age,
                content_length: None,
            },
            Bytes::new(),
        )
    }

    #[test]
    fn ttl_follows_cache_control_and_age() {
        assert_eq!(
            fetched(200, "public, max-age=3", 0).ttl(),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            fetched(200, "max-age=10, s-maxage=4", 1).ttl(),
            Some(Duration::from_secs(3))
        );
        assert_eq!(fetched(200, "max-age=3", 3).ttl(), None);
        assert_eq!(fetched(200, "private, max-age=60", 0).ttl(), None);
        assert_eq!(fetched(200, "no-store", 0).ttl(), None);
        assert_eq!(
            fetched(404, "max-age=1", 0).ttl(),
            Some(Duration::from_secs(1))
        );
        assert_eq!(fetched(404, "no-store", 0).ttl(), None);
        assert_eq!(fetched(502, "max-age=60", 0).ttl(), None);
        // CDN-Cache-Control wins over Cache-Control, both ways.
        let targeted = |cc: &str, cdn: &str, age| {
            let mut f = fetched(200, cc, age);
            f.head.cdn_cache_control = Some(HeaderValue::from_str(cdn).unwrap());
            f.ttl()
        };
        assert_eq!(
            targeted("public, max-age=604800, immutable", "max-age=26", 0),
            Some(Duration::from_secs(26))
        );
        assert_eq!(
            targeted("public, max-age=604800", "max-age=26", 6),
            Some(Duration::from_secs(20))
        );
        assert_eq!(targeted("public, max-age=60", "no-store", 0), None);
        assert_eq!(
            targeted("no-store", "max-age=5", 0),
            Some(Duration::from_secs(5))
        );
    }
}
