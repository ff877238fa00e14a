//! The binary's HTTP listeners: every one served by `weir-http` with its `[*.http]` settings,
//! and the shutdown signal they drain on.

use std::path::Path;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use weir_config::{Config, HttpListenerSettings};

/// The `weir-http` settings of listener `name` from its configuration; TLS files relative to
/// `base` (the configuration file's directory).
pub(crate) fn http_settings(
    name: &'static str,
    s: &HttpListenerSettings,
    base: &Path,
) -> weir_http::HttpSettings {
    weir_http::HttpSettings {
        header_read_timeout: s.header_read_timeout,
        max_header_bytes: s.max_header_bytes,
        max_connections: s.max_connections,
        max_connections_per_ip: s.max_connections_per_ip,
        idle_timeout: s.idle_timeout,
        workers: s.workers,
        tls: s.tls.as_ref().map(|(cert, key)| weir_http::TlsFiles {
            cert: weir_http::resolve(base, cert),
            key: weir_http::resolve(base, key),
        }),
        ..weir_http::HttpSettings::plain(name)
    }
}

/// `http` or `https`, as listener `s` speaks.
pub(crate) fn scheme(s: &HttpListenerSettings) -> &'static str {
    if s.tls.is_some() {
        "https"
    } else {
        "http"
    }
}

/// The shutdown signal: SIGINT (Ctrl-C) or SIGTERM flips it to true.
pub(crate) fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let term = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = term => {}
        }
        tracing::info!("shutting down");
        let _ = tx.send(true);
    });
    rx
}

/// Resolves when `rx` says to stop.
pub(crate) async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Sets `weir_runtime_alive_tasks` (Tokio tasks not yet finished on the main runtime and the
/// HTTP listeners' worker runtimes: every connection, fetch, session and timer loop) and the
/// allocator's gauges ([`crate::allocator`]) when `/metrics` is rendered: a count that grows
/// with nothing left running is a leak.
pub(crate) fn publish_runtime_gauges() {
    if let Ok(h) = tokio::runtime::Handle::try_current() {
        let tasks = h.metrics().num_alive_tasks() + weir_http::workers::alive_tasks();
        metrics::gauge!("weir_runtime_alive_tasks").set(tasks as f64);
    }
    crate::allocator::publish_gauges();
}

/// Serves `/metrics` (Prometheus text) from `handle` on `listener`, for a role that has no
/// origin listener. Install the recorder before anything is served, so nothing goes uncounted.
pub(crate) async fn serve_metrics(
    listener: TcpListener,
    handle: weir_metrics::Handle,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            publish_runtime_gauges();
            let text = handle.render();
            async move {
                (
                    [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    text,
                )
            }
        }),
    );
    let settings = weir_http::HttpSettings::plain("metrics");
    weir_http::serve(listener, app, settings, stopped(stop))
        .await
        .context("metrics server")
}

/// Runs `edge` on `listener` until `stop`.
pub(crate) async fn run_edge(
    listener: TcpListener,
    edge: weir_edge::Edge,
    c: &Config,
    base: &Path,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let settings = http_settings("edge", &c.edge.http, base);
    weir_http::serve(listener, edge, settings, stopped(stop))
        .await
        .context("edge server")
}

/// The edge for `upstream` (starting its background tasks); `key_secret` is the secret for
/// content keys when it is not the configured cluster secret, and `local_origin` the origin
/// it calls instead of `upstream` (both for the in-process edge of `weir serve`). Call after
/// the metrics recorder is installed.
pub(crate) fn make_edge(
    c: &Config,
    upstream: String,
    key_secret: Option<weir_config::ClusterSecret>,
    local_origin: Option<weir_edge::LocalOrigin>,
) -> anyhow::Result<weir_edge::Edge> {
    // Only the edge inside `weir serve` is given the in-process key secret.
    let embedded = key_secret.is_some();
    let config = weir_edge::EdgeConfig {
        upstream,
        cache_capacity_bytes: c.edge.cache_capacity_bytes.unwrap_or(if embedded {
            weir_config::EMBEDDED_EDGE_CACHE_BYTES
        } else {
            weir_config::EDGE_CACHE_BYTES
        }),
        upstream_timeout: c.edge.upstream_timeout,
        blocking_timeout: c.edge.blocking_timeout,
        cors_allow_origin: c.edge.cors_allow_origin.clone(),
        id: c.edge.id.clone(),
        access: c.access.clone(),
        key_secret,
        stale_if_error: c.edge.stale_if_error,
        stale_while_revalidate: c.edge.stale_while_revalidate,
        max_waiters_per_object: c.edge.max_waiters_per_object,
        upstream_ca_file: c.edge.upstream_ca_file.clone(),
        local_origin,
    };
    weir_edge::edge(config).map_err(|e| anyhow::anyhow!("edge: {e}"))
}

/// Raises the soft limit of open files to the hard limit: every connection is one, and the
/// listeners' caps run to tens of thousands.
pub(crate) fn raise_file_limit(c: &Config) {
    let wanted = (c.edge.http.max_connections + c.origin.http.max_connections + 1_024) as u64;
    match rlimit::increase_nofile_limit(wanted) {
        Ok(got) if got < wanted => tracing::warn!(
            limit = got,
            wanted,
            "the open-file limit is below the listeners' connection caps"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
}
