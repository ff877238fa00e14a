//! One connection: hyper-util's auto builder (HTTP/1.1 or HTTP/2) with the app's service for
//! this peer, and one watch over the connection for both of its time limits: the header
//! timeout (an HTTP/1.1 connection gets that long to send its next request head) and the idle
//! timeout (no request in flight for so long).
//!
//! hyper's own header timeout arms a timer per request head (an allocation and a timer-wheel
//! entry each time, about 3% of a cached playlist's cost at the edge); the watch here is one
//! timer per connection, in a task apart from the connection's, that only looks at two
//! atomics the requests update.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};

/// How long a connection may go without a request in flight (see the module docs).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Quiet {
    /// Until the connection has carried an HTTP/2 request: an HTTP/1.1 connection waits
    /// this long at most for a whole request head (the header timeout), after its previous
    /// response or from its start.
    pub(crate) head: Duration,
    /// A connection that carries HTTP/2 (its streams multiplexed; no head is awaited).
    pub(crate) idle: Duration,
}

/// Serves one connection (plain or TLS) with `service` (the app's for this peer) until it
/// closes, the shutdown ends it, or it has had no request in flight for its [`Quiet`] limit.
pub(crate) async fn serve_connection<I, S, B>(
    builder: auto::Builder<TokioExecutor>,
    io: I,
    service: S,
    watcher: hyper_util::server::graceful::Watcher,
    quiet: Quiet,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<B>,
            Error = std::convert::Infallible,
            Future: Send + 'static,
        > + Send
        + 'static,
    B: http_body::Body<Data = bytes::Bytes, Error: Into<crate::BoxError>> + Send + Unpin + 'static,
{
    let activity = Arc::new(Activity::new());
    let tracked = activity.clone();
    let service =
        hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
            // In flight from here until the response body is dropped (sent or abandoned).
            let busy = tracked.begin(request.version());
            let response = service.call(request);
            async move {
                let response = response.await?;
                Ok::<_, std::convert::Infallible>(
                    response.map(|body| Tracked { body, _busy: busy }),
                )
            }
        });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    // The connection runs as a task of its own, so the watch (this task) wakes only when
    // its timer fires or the connection ends, not at every event of the connection.
    let mut served = tokio::spawn(watcher.watch(conn.into_owned()));
    tokio::select! {
        biased;
        _ = &mut served => {}
        timeout = activity.quiet_for(quiet) => {
            served.abort();
            let name = match timeout {
                Timeout::Head => "weir_http_header_timeouts_total",
                Timeout::Idle => "weir_http_idle_closed_total",
            };
            metrics::counter!(name).increment(1);
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

/// Requests in flight on one connection, when the last one ended, and whether it carries
/// HTTP/2 (lock-free: two atomics per request).
struct Activity {
    in_flight: std::sync::atomic::AtomicUsize,
    /// Milliseconds from `born` to the end of the last request.
    last_ms: std::sync::atomic::AtomicU64,
    http2: std::sync::atomic::AtomicBool,
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

/// Which limit closed a quiet connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timeout {
    /// An HTTP/1.1 connection sent no whole request head within the header timeout.
    Head,
    /// No request in flight for the idle timeout.
    Idle,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            last_ms: std::sync::atomic::AtomicU64::new(0),
            http2: std::sync::atomic::AtomicBool::new(false),
            born: tokio::time::Instant::now(),
        }
    }

    fn begin(self: &Arc<Self>, version: http::Version) -> Busy {
        if version == http::Version::HTTP_2 && !self.http2.load(Ordering::Relaxed) {
            self.http2.store(true, Ordering::Relaxed);
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    /// The limit a quiet connection has now, and which one it is.
    fn limit(&self, quiet: Quiet) -> (Duration, Timeout) {
        if self.http2.load(Ordering::Relaxed) || quiet.idle <= quiet.head {
            (quiet.idle, Timeout::Idle)
        } else {
            (quiet.head, Timeout::Head)
        }
    }

    /// Resolves once no request has been in flight for the connection's limit (one timer
    /// per connection: a busy one is looked at again a whole limit later).
    async fn quiet_for(&self, quiet: Quiet) -> Timeout {
        loop {
            let (limit, which) = self.limit(quiet);
            let last = self.born + Duration::from_millis(self.last_ms.load(Ordering::Acquire));
            let idle = self.in_flight.load(Ordering::Acquire) == 0;
            let since = last.elapsed();
            if idle && since >= limit {
                return which;
            }
            // Busy: look again after a whole limit; quiet: when it would run out.
            let wait = if idle { limit - since } else { limit };
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet() -> Quiet {
        Quiet {
            head: Duration::from_secs(10),
            idle: Duration::from_secs(60),
        }
    }

    /// Which limit applies, by what the connection carried and how the two are set.
    #[test]
    fn the_header_timeout_bounds_http1_and_the_idle_timeout_http2() {
        let table = [
            (None, quiet(), (10, Timeout::Head)),
            (Some(http::Version::HTTP_11), quiet(), (10, Timeout::Head)),
            (Some(http::Version::HTTP_10), quiet(), (10, Timeout::Head)),
            (Some(http::Version::HTTP_2), quiet(), (60, Timeout::Idle)),
            (
                Some(http::Version::HTTP_11),
                Quiet {
                    head: Duration::from_secs(10),
                    idle: Duration::from_secs(5),
                },
                (5, Timeout::Idle),
            ),
        ];
        for (version, quiet, (secs, which)) in table {
            let a = Arc::new(Activity::new());
            if let Some(v) = version {
                drop(a.begin(v));
            }
            assert_eq!(
                a.limit(quiet),
                (Duration::from_secs(secs), which),
                "{version:?}"
            );
        }
    }

    /// A connection is closed the header timeout after its last response ended, never while
    /// a request is in flight however long that takes.
    #[tokio::test(start_paused = true)]
    async fn a_quiet_connection_is_closed_at_its_limit_and_a_busy_one_never() {
        let a = Arc::new(Activity::new());
        let start = tokio::time::Instant::now();
        assert_eq!(a.quiet_for(quiet()).await, Timeout::Head);
        assert_eq!(start.elapsed(), Duration::from_secs(10), "from its start");

        let busy = a.begin(http::Version::HTTP_11);
        let watch = {
            let a = a.clone();
            tokio::spawn(async move { a.quiet_for(quiet()).await })
        };
        // A request in flight for a minute: the watch sees a busy connection each time.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!watch.is_finished());
        let ended = tokio::time::Instant::now();
        drop(busy);
        assert_eq!(watch.await.unwrap(), Timeout::Head);
        let waited = ended.elapsed();
        assert!(
            waited >= Duration::from_secs(10) && waited <= Duration::from_secs(11),
            "closed {waited:?} after the response ended"
        );
    }
}
