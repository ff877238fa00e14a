//! One connection: hyper-util's auto builder (HTTP/1.1 or HTTP/2) with the peer's address
//! given to the service, and its idle timeout (no request in flight for so long).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::App;

/// Serves one connection (plain or TLS) with the router, the peer's address given as
/// `ConnectInfo`, until it closes, the shutdown ends it, or it has had no request in flight
/// for `idle`.
pub(crate) async fn serve_connection<I, A: App>(
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
