//! weir's HTTP listeners: one server setup for every listener (edge, origin with the admin
//! API, metrics), so every one has the same bounds.
//!
//! ```text
//! accept --> connection caps (total, per client address): over a cap, a plain connection
//!            gets `503` and is closed, a TLS one is closed
//!        --> TLS (rustls, ring; ALPN h2 / http/1.1; certificate re-read when its files
//!            change), bounded by the header timeout
//!        --> hyper-util auto: HTTP/1.1, or HTTP/2 (ALPN over TLS, prior knowledge on
//!            plain TCP: h2c); request headers bounded in size and in time (the header
//!            timeout, which also closes an idle keep-alive connection)
//!        --> the service (an axum router, or any `Service` of the same shape), with
//!            `ConnectInfo<SocketAddr>` of the peer
//! shutdown --> stop accepting; in-flight responses finish (bounded by the grace period)
//! ```

mod limits;
mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tower_service::Service;

pub use limits::ConnectionLimits;
pub use tls::{TlsError, TlsFiles, RELOAD_CHECK as TLS_RELOAD_CHECK};

/// One listener's bounds and TLS.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    /// The listener's name in logs and metrics (`edge`, `origin`).
    pub name: &'static str,
    /// Time a client has to send a whole request head (and the TLS handshake), and the
    /// longest an HTTP/1.1 keep-alive connection may wait idle for its next request.
    pub header_read_timeout: Duration,
    /// Largest request head, bytes (HTTP/1.1 buffer; HTTP/2 header list).
    pub max_header_bytes: usize,
    /// Most connections at once.
    pub max_connections: usize,
    /// Most connections at once from one client address (`None`: no per-address cap).
    pub max_connections_per_ip: Option<usize>,
    /// TLS certificate and key files, if the listener speaks HTTPS.
    pub tls: Option<TlsFiles>,
    /// On shutdown, how long in-flight responses may take to finish.
    pub shutdown_grace: Duration,
    /// A connection with no request in flight (none being handled or its response sent)
    /// for this long is closed, HTTP/2 included (hyper closes an idle HTTP/1.1 connection
    /// at the header timeout already, if that is shorter). Nothing is cut: no response is
    /// under way.
    pub idle_timeout: Duration,
}

impl HttpSettings {
    /// Plain HTTP with the defaults: 10 s header timeout, 16 KiB heads, 10 000 connections,
    /// no per-address cap, 5 s grace, 60 s idle timeout.
    pub fn plain(name: &'static str) -> HttpSettings {
        HttpSettings {
            name,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            max_connections: 10_000,
            max_connections_per_ip: None,
            tls: None,
            shutdown_grace: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Why a listener could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The certificate or key could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Accepting failed for good.
    #[error("accepting connections: {0}")]
    Accept(std::io::Error),
}

/// The builder both protocols share.
fn builder(s: &HttpSettings) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(s.header_read_timeout)
        .max_buf_size(s.max_header_bytes.max(8192));
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(s.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

/// What a listener serves: an axum [`Router`](axum::Router), or any cloneable service of
/// the same shape (the edge's request path is one, without a router's per-request costs).
/// Each request carries the peer's `ConnectInfo<SocketAddr>` in its extensions.
pub trait App:
    Service<
        http::Request<hyper::body::Incoming>,
        Response = http::Response<Self::Body>,
        Error = std::convert::Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
    /// The response body.
    type Body: http_body::Body<Data = bytes::Bytes, Error: Into<BoxError>> + Send + Unpin + 'static;
}

impl<S, B> App for S
where
    S: Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<B>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    type Body = B;
}

/// A boxed error, as hyper takes from bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Serves `app` on `listener` with `settings` until `shutdown` resolves, then lets in-flight
/// connections finish for up to the grace period.
///
/// # Errors
/// [`ServeError::Tls`] if the certificate cannot be loaded at start; [`ServeError::Accept`]
/// if the listener fails for good.
pub async fn serve<A: App>(
    listener: TcpListener,
    app: A,
    settings: HttpSettings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let tls = match &settings.tls {
        Some(files) => Some(tls::Acceptor::start(files.clone(), settings.name)?),
        None => None,
    };
    let limits = Arc::new(ConnectionLimits::new(
        settings.max_connections,
        settings.max_connections_per_ip,
    ));
    let builder = builder(&settings);
    let graceful = GracefulShutdown::new();
    let name = settings.name;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) if transient(&e) => {
                    // Out of file descriptors, say: refuse for a moment, keep serving.
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                Err(e) => return Err(ServeError::Accept(e)),
            },
            () = &mut shutdown => break,
        };
        let Some(permit) = limits.admit(peer.ip()) else {
            metrics::counter!("weir_http_connections_refused_total", "listener" => name)
                .increment(1);
            if tls.is_none() {
                tokio::spawn(refuse(stream));
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let builder = builder.clone();
        let timeout = settings.header_read_timeout;
        let idle = settings.idle_timeout;
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => serve_connection(builder, stream, app, peer, watcher, idle).await,
                Some(acceptor) => {
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(timeout, acceptor.accept(stream)).await
                    else {
                        metrics::counter!("weir_http_tls_handshake_failures_total", "listener" => name)
                            .increment(1);
                        return;
                    };
                    serve_connection(builder, stream, app, peer, watcher, idle).await;
                }
            }
        });
    }
    drop(listener);
    tracing::info!(
        listener = name,
        "stopped accepting; finishing in-flight responses"
    );
    if tokio::time::timeout(settings.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            listener = name,
            "connections still open after the grace period"
        );
    }
    Ok(())
}

/// Serves one connection (plain or TLS) with the router, the peer's address given as
/// `ConnectInfo`, until it closes, the shutdown ends it, or it has had no request in flight
/// for `idle`.
async fn serve_connection<I, A: App>(
    builder: auto::Builder<TokioExecutor>,
    io: I,
    app: A,
    peer: SocketAddr,
    watcher: hyper_util::server::graceful::Watcher,
    idle: Duration,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let tracked = activity.clone();
    let service =
        hyper::service::service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let mut app = app.clone();
            // In flight from here until the response body is dropped (sent or abandoned).
            let busy = tracked.begin();
            let response = app.call(request);
            async move {
                let response = response.await?;
                Ok::<_, std::convert::Infallible>(
                    response.map(|body| Tracked { body, _busy: busy }),
                )
            }
        });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    let served = watcher.watch(conn.into_owned());
    tokio::select! {
        _ = served => {}
        () = activity.idle_for(idle) => {
            metrics::counter!("weir_http_idle_closed_total").increment(1);
        }
    }
}

/// A response body that keeps its request counted as in flight until it is dropped (sent
/// or abandoned); a plain wrapper, no allocation per request.
struct Tracked<B> {
    body: B,
    _busy: Busy,
}

impl<B: http_body::Body + Unpin> http_body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Requests in flight on one connection, and when the last one ended (lock-free: two
/// atomics per request).
struct Activity {
    in_flight: std::sync::atomic::AtomicUsize,
    /// Milliseconds from `born` to the end of the last request.
    last_ms: std::sync::atomic::AtomicU64,
    born: tokio::time::Instant,
}

/// One request in flight; ends when dropped.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let a = &self.0;
        a.last_ms
            .store(a.born.elapsed().as_millis() as u64, Ordering::Release);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Activity {
    fn new() -> Activity {
        Activity {
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            last_ms: std::sync::atomic::AtomicU64::new(0),
            born: tokio::time::Instant::now(),
        }
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    /// Resolves once no request has been in flight for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.born + Duration::from_millis(self.last_ms.load(Ordering::Acquire));
            let quiet = self.in_flight.load(Ordering::Acquire) == 0;
            let since = last.elapsed();
            if quiet && since >= idle {
                return;
            }
            // Busy: look again after a whole idle period; quiet: when it would run out.
            let wait = if quiet { idle - since } else { idle };
            tokio::time::sleep(wait).await;
        }
    }
}

/// Errors after which accepting goes on (RFC: accept(2) ERRORS that concern one connection
/// or a passing shortage).
fn transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock | TimedOut
    ) || matches!(e.raw_os_error(), Some(23 | 24 | 12 | 105))
}

/// Answers a connection over a cap with `503` and closes it.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        stream.write_all(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\nRetry-After: 1\r\n\r\n",
        ),
    )
    .await;
    let _ = stream.shutdown().await;
}

/// `CDN-Cache-Control` (RFC 9213): a lifetime meant for CDNs alone, which they take over
/// `Cache-Control`. The origin sends it on live media objects (useful only while listed,
/// though their names never change); the edge honours it and passes it on to an edge in
/// front of it.
pub const CDN_CACHE_CONTROL: http::HeaderName = http::HeaderName::from_static("cdn-cache-control");

/// Where TLS files live, for settings that name them relative to a directory.
pub fn resolve(base: &std::path::Path, p: &std::path::Path) -> PathBuf {
    if p.is_relative() {
        base.join(p)
    } else {
        p.to_path_buf()
    }
}

/// The CORS preflight answer (Fetch standard §3.2.2): GET and HEAD from anywhere allowed.
pub fn cors_preflight() -> axum::response::Response {
    let mut r = axum::response::IntoResponse::into_response(http::StatusCode::NO_CONTENT);
    let h = r.headers_mut();
    h.insert(
        "access-control-allow-methods",
        http::HeaderValue::from_static("GET, HEAD, OPTIONS"),
    );
    h.insert(
        "access-control-allow-headers",
        http::HeaderValue::from_static("*"),
    );
    h.insert(
        "access-control-max-age",
        http::HeaderValue::from_static("86400"),
    );
    r
}
