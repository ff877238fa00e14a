//! A listener served by worker threads, each running a single-threaded Tokio runtime of its
//! own that accepts from the same listening socket and serves what it accepted to the end.
//!
//! A multi-threaded runtime moves tasks between threads (work stealing) and wakes a task on
//! one thread from another; for a cache hit that is a few microseconds of a request that costs
//! tens, and it is what separated weir's edge from a bare server on the same cores (see
//! `benches/edge/RESULTS.md`). A worker keeps a connection, its requests and the tasks they
//! spawn on one thread. The kernel hands each new connection to whichever worker accepts
//! first; a worker with more open connections than the least loaded one by more than one
//! waits its turn ([`crate::balance`]).
//!
//! What the service shares between workers (the edge's cache, its upstream pool) is
//! thread-safe already; what a request spawns (a detached upstream fetch) runs on its worker.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::net::TcpListener;

use crate::balance::Balance;
use crate::{accept_loop, App, HttpSettings, ServeError, Shared};

/// The runtimes of the worker threads now running (any listener), by a serial number.
static RUNTIMES: Mutex<Vec<(u64, tokio::runtime::Handle)>> = Mutex::new(Vec::new());
static SERIAL: AtomicU64 = AtomicU64::new(0);

/// Tokio tasks not yet finished on every worker runtime now running: their connections and
/// what those spawned. Adds to the main runtime's count for a whole-process figure.
pub fn alive_tasks() -> usize {
    RUNTIMES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(_, h)| h.metrics().num_alive_tasks())
        .sum()
}

/// Serves `app` on `settings.workers` threads (see the module docs) until `shutdown`, then
/// tells every worker to stop accepting and waits while each drains its connections (bounded
/// by the grace period).
///
/// # Errors
/// [`ServeError::Accept`] if a worker cannot start, or one's listener fails for good (the
/// others are then stopped too).
pub(crate) async fn serve<A: App>(
    listener: TcpListener,
    app: A,
    settings: HttpSettings,
    shared: Shared,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let listener = listener.into_std().map_err(ServeError::Accept)?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (done, mut finished) = tokio::sync::mpsc::unbounded_channel();
    for (i, turn) in Balance::turns(settings.workers).into_iter().enumerate() {
        let listener = listener.try_clone().map_err(ServeError::Accept)?;
        let name = format!("weir-{}-{i}", settings.name);
        let (app, settings, shared, done) =
            (app.clone(), settings.clone(), shared.clone(), done.clone());
        let mut stopped = stopped.clone();
        let worker = move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(ServeError::Accept)
                .and_then(|runtime| {
                    let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
                    let runtimes = || RUNTIMES.lock().unwrap_or_else(|e| e.into_inner());
                    runtimes().push((serial, runtime.handle().clone()));
                    let result = runtime.block_on(async move {
                        let listener =
                            TcpListener::from_std(listener).map_err(ServeError::Accept)?;
                        let stop = async move {
                            let _ = stopped.wait_for(|s| *s).await;
                        };
                        accept_loop(listener, app, &settings, &shared, Some(turn), stop).await
                    });
                    runtimes().retain(|(s, _)| *s != serial);
                    result
                });
            // Nobody listens any more only if `serve` was dropped.
            let _ = done.send(result);
        };
        std::thread::Builder::new()
            .name(name)
            .spawn(worker)
            .map_err(ServeError::Accept)?;
    }
    drop((listener, done));
    tokio::pin!(shutdown);
    // A worker ends before the shutdown only when its listener failed.
    let first = tokio::select! {
        () = &mut shutdown => None,
        ended = finished.recv() => ended,
    };
    let _ = stop.send(true);
    let mut result = first.unwrap_or(Ok(()));
    // Every worker's result, or its end (a panicked worker drops its sender unsent).
    while let Some(ended) = finished.recv().await {
        if result.is_ok() {
            result = ended;
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// The tests of this module count every worker runtime of the process: one at a time.
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    /// Answers every request with the name of the thread that served it.
    fn thread_named() -> axum::Router {
        axum::Router::new().route(
            "/",
            axum::routing::get(|| async {
                std::thread::current().name().unwrap_or("?").to_string()
            }),
        )
    }

    /// Two workers of a listener named `name` answering [`thread_named`]: the address, the
    /// stop, and the serving task.
    async fn two_workers(
        name: &'static str,
    ) -> (
        std::net::SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<Result<(), ServeError>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let settings = HttpSettings {
            workers: 2,
            ..HttpSettings::plain(name)
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(crate::serve(listener, thread_named(), settings, async {
            let _ = rx.await;
        }));
        (addr, tx, server)
    }

    /// Stops the workers and waits for them.
    async fn stop(
        tx: tokio::sync::oneshot::Sender<()>,
        server: tokio::task::JoinHandle<Result<(), ServeError>>,
    ) {
        tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("workers stopped")
            .unwrap()
            .unwrap();
    }

    async fn get(addr: std::net::SocketAddr) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out.rsplit("\r\n\r\n").next().unwrap().to_string()
    }

    #[tokio::test]
    async fn connections_are_served_on_the_worker_threads_and_drained_on_shutdown() {
        let _alone = ONE_AT_A_TIME.lock().await;
        let (addr, tx, server) = two_workers("wtest").await;
        let mut threads = HashSet::new();
        // Whichever worker accepts first serves: ask until both have (each one is idle
        // between our requests, so neither can take them all for long).
        for _ in 0..2_000 {
            threads.insert(get(addr).await);
            if threads.len() == 2 {
                break;
            }
        }
        assert_eq!(
            threads,
            HashSet::from(["weir-wtest-0".to_string(), "weir-wtest-1".to_string()])
        );
        assert!(alive_tasks() < 10, "connections closed: {}", alive_tasks());
        stop(tx, server).await;
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "the listening socket is closed once every worker stopped"
        );
        assert!(RUNTIMES.lock().unwrap().is_empty(), "runtimes unregistered");
    }

    /// Forty connections opened at once and kept open end up split evenly between two
    /// workers ([`crate::balance`]), whichever one the kernel wakes first.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_connections_is_split_evenly_between_the_workers() {
        let _alone = ONE_AT_A_TIME.lock().await;
        let (addr, tx, server) = two_workers("btest").await;
        let mut connections = Vec::new();
        for _ in 0..40 {
            connections.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        let mut served = std::collections::HashMap::<String, usize>::new();
        for s in &mut connections {
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            // Kept alive: read until the body (a worker's name) has come.
            let mut got = Vec::new();
            let name = loop {
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got);
                if let Some(name) = ["weir-btest-0", "weir-btest-1"]
                    .into_iter()
                    .find(|n| text.ends_with(n))
                {
                    break name;
                }
            };
            *served.entry(name.to_string()).or_default() += 1;
        }
        let counts: Vec<usize> = ["weir-btest-0", "weir-btest-1"]
            .iter()
            .map(|n| served.get(*n).copied().unwrap_or(0))
            .collect();
        assert!(
            counts[0].abs_diff(counts[1]) <= crate::balance::SLACK + 2,
            "connections per worker: {served:?}"
        );
        drop(connections);
        stop(tx, server).await;
    }
}
