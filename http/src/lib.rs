//! weir's HTTP listeners: one server setup for every listener (edge, origin with the admin
//! API, metrics), so every one has the same bounds.
//!
//! ```text
//! accept --> connection caps (total, per client address): over a cap, a plain connection
//!            gets `503` and is closed, a TLS one is closed
//!        --> TLS (rustls, ring; ALPN h2 / http/1.1; certificate re-read when its files
//!            change), bounded by the header timeout
//!        --> hyper-util auto: HTTP/1.1, or HTTP/2 (ALPN over TLS, prior knowledge on
//!            plain TCP: h2c); request heads bounded in size, and a connection's quiet time
//!            in one watch per connection: the header timeout (which also closes an idle
//!            keep-alive connection) and, for HTTP/2, the idle timeout
//!        --> the app's service for this peer ([`App::connection`]: an axum router gets
//!            `ConnectInfo<SocketAddr>` in each request)
//! shutdown --> stop accepting; in-flight responses finish (bounded by the grace period)
//! ```

mod balance;
mod connection;
mod limits;
mod tls;
pub mod workers;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use connection::{serve_connection, Quiet};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

pub use limits::ConnectionLimits;
pub use tls::{TlsError, TlsFiles, RELOAD_CHECK as TLS_RELOAD_CHECK};

/// One listener's bounds and TLS.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    /// The listener's name in logs and metrics (`edge`, `origin`).
    pub name: &'static str,
    /// Time a client has to send a whole request head (and the TLS handshake), and the
    /// longest an HTTP/1.1 keep-alive connection may wait idle for its next request (or any
    /// connection for its first).
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
    /// for this long is closed, HTTP/2 included (an idle HTTP/1.1 connection is closed at
    /// the header timeout already, if that is shorter). Nothing is cut: no response is
    /// under way.
    pub idle_timeout: Duration,
    /// Threads that accept and serve this listener's connections, each with a
    /// single-threaded Tokio runtime of its own (as nginx runs a worker process per core:
    /// no work stealing or cross-thread wakeups on the request path). 0: on the caller's
    /// runtime, beside everything else.
    pub workers: usize,
}

impl HttpSettings {
    /// Plain HTTP with the defaults: 10 s header timeout, 16 KiB heads, 10 000 connections,
    /// no per-address cap, 5 s grace, 60 s idle timeout, on the caller's runtime.
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
            workers: 0,
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
    // The header timeout is the connection's own watch (`connection::Quiet`), not a timer
    // per request head.
    b.http1()
        .header_read_timeout(None)
        .max_buf_size(s.max_header_bytes.max(8192));
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(s.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

/// What a listener serves: an axum [`Router`](axum::Router), or an app of its own (the
/// edge's request path is one, without a router's per-request costs), which makes one
/// service per connection knowing the peer's address.
pub trait App: Clone + Send + 'static {
    /// The response body.
    type Body: http_body::Body<Data = bytes::Bytes, Error: Into<BoxError>> + Send + Unpin + 'static;
    /// What serves one connection's requests (hyper's `Service`: called by reference, each
    /// future on its own).
    type Connection: hyper::service::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<Self::Body>,
            Error = std::convert::Infallible,
            Future: Send + 'static,
        > + Send
        + 'static;

    /// The service for a connection from `peer` (once per connection).
    fn connection(&self, peer: SocketAddr) -> Self::Connection;
}

impl App for axum::Router {
    type Body = axum::body::Body;
    type Connection = RouterConnection;

    fn connection(&self, peer: SocketAddr) -> RouterConnection {
        RouterConnection {
            router: self.clone(),
            peer,
        }
    }
}

/// An axum router serving one connection: each request gets the peer's
/// `ConnectInfo<SocketAddr>` for the router's handlers.
#[derive(Clone, Debug)]
pub struct RouterConnection {
    router: axum::Router,
    peer: SocketAddr,
}

impl hyper::service::Service<http::Request<hyper::body::Incoming>> for RouterConnection {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = axum::routing::future::RouteFuture<std::convert::Infallible>;

    fn call(&self, mut request: http::Request<hyper::body::Incoming>) -> Self::Future {
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(self.peer));
        tower_service::Service::call(&mut self.router.clone(), request)
    }
}

/// A boxed error, as hyper takes from bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Serves `app` on `listener` with `settings` until `shutdown` resolves, then lets in-flight
/// connections finish for up to the grace period. With [`HttpSettings::workers`] > 0 the
/// connections are served on that many threads of their own ([`workers`]); the call itself
/// stays on the caller's runtime and only waits.
///
/// # Errors
/// [`ServeError::Tls`] if the certificate cannot be loaded at start; [`ServeError::Accept`]
/// if the listener fails for good, or a worker thread cannot start.
pub async fn serve<A: App>(
    listener: TcpListener,
    app: A,
    settings: HttpSettings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let shared = Shared::new(&settings)?;
    if settings.workers == 0 {
        accept_loop(listener, app, &settings, &shared, None, shutdown).await
    } else {
        workers::serve(listener, app, settings, shared, shutdown).await
    }
}

/// What every accept loop of one listener shares: its caps, its TLS configuration and its
/// connection builder.
#[derive(Clone)]
struct Shared {
    limits: Arc<ConnectionLimits>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    builder: auto::Builder<TokioExecutor>,
}

impl Shared {
    /// Loads the certificate (starting its reload watch on the current runtime).
    fn new(settings: &HttpSettings) -> Result<Shared, ServeError> {
        let tls = match &settings.tls {
            Some(files) => Some(tls::Acceptor::start(files.clone(), settings.name)?),
            None => None,
        };
        Ok(Shared {
            limits: Arc::new(ConnectionLimits::new(
                settings.max_connections,
                settings.max_connections_per_ip,
            )),
            tls,
            builder: builder(settings),
        })
    }
}

/// Accepts and serves connections on the current runtime until `shutdown`, then drains; a
/// worker thread's loop accepts on its `turn` ([`balance`]).
async fn accept_loop<A: App>(
    listener: TcpListener,
    app: A,
    settings: &HttpSettings,
    shared: &Shared,
    turn: Option<balance::Turn>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let graceful = GracefulShutdown::new();
    let name = settings.name;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = accept(&listener, turn.as_ref()) => match accepted {
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
        let Some(permit) = shared.limits.admit(peer.ip()) else {
            metrics::counter!("weir_http_connections_refused_total", "listener" => name)
                .increment(1);
            if shared.tls.is_none() {
                tokio::spawn(refuse(stream));
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let open = turn.as_ref().map(balance::Turn::open);
        let service = app.connection(peer);
        let builder = shared.builder.clone();
        let timeout = settings.header_read_timeout;
        let quiet = Quiet {
            head: timeout,
            idle: settings.idle_timeout,
        };
        let watcher = graceful.watcher();
        let tls = shared.tls.clone();
        tokio::spawn(async move {
            let _counted = (permit, open);
            match tls {
                None => serve_connection(builder, stream, service, watcher, quiet).await,
                Some(acceptor) => {
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(timeout, acceptor.accept(stream)).await
                    else {
                        metrics::counter!("weir_http_tls_handshake_failures_total", "listener" => name)
                            .increment(1);
                        return;
                    };
                    serve_connection(builder, stream, service, watcher, quiet).await;
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

/// The next connection, once `turn` (if any) lets this worker take it.
async fn accept(
    listener: &TcpListener,
    turn: Option<&balance::Turn>,
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    if let Some(turn) = turn {
        turn.ready().await;
    }
    listener.accept().await
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
