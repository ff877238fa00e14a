//! `weir`: the live streaming origin and edge, one binary for every role.
//!
//! `weir serve` runs ingest, packager, origin and edge in one process; `weir edge` runs an
//! edge on its own in front of a remote origin.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use weir_config::Config;
use weir_origin::{MemoryStore, OriginConfig};

mod allocator;
mod listen;
mod mint;

/// jemalloc for every allocation in the process: Rust's, and FFmpeg's and x264's too (the
/// `unprefixed_malloc_on_supported_platforms` feature makes jemalloc's `malloc`/`free` the
/// process's). With glibc's allocator the memory each publisher session's decoder and
/// encoder threads freed stayed in per-thread arenas, and the resident size of `weir serve`
/// on the default ladder rose by 25-60 MB at many publisher reconnects (+110 MB/h in a soak
/// with a reconnect every 5 minutes) while the live heap stayed flat; jemalloc returns freed
/// pages after its decay time (10 s), and what a session leaves behind no longer
/// accumulates (benches/soak/RESULTS.md).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser, Debug)]
#[command(
    name = "weir",
    version,
    about = "Live streaming origin and CDN edge: RTMP in, CMAF HLS out"
)]
struct Cli {
    /// Log lines as text (for people) or JSON (one object per line, for log collectors).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written (stderr).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    /// `2026-11-23T14:00:00Z INFO target: message key=value`.
    Text,
    /// One JSON object per line: timestamp, level, target, fields, spans.
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Ingest, packager, origin and edge in one process (the embedded demo event without --config).
    Serve {
        /// TOML configuration (see config/weir.example.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// RTMP listen address (overrides rtmp.listen).
        #[arg(long)]
        rtmp_listen: Option<SocketAddr>,
        /// SRT listen address, UDP (overrides srt.listen).
        #[arg(long)]
        srt_listen: Option<SocketAddr>,
        /// Origin listen address (overrides origin.listen).
        #[arg(long)]
        origin_listen: Option<SocketAddr>,
        /// Edge listen address (overrides edge.listen).
        #[arg(long)]
        edge_listen: Option<SocketAddr>,
    },
    /// An edge cache on its own in front of a remote origin or shield edge.
    Edge {
        /// TOML configuration; only [edge] is used.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Upstream base URL, e.g. http://origin:8081, or several separated by commas, most
        /// preferred first (overrides edge.upstream).
        #[arg(long)]
        upstream: Option<String>,
        /// Edge listen address (overrides edge.listen).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Upstream timeout in ms (overrides edge.upstream_timeout_ms).
        #[arg(long)]
        upstream_timeout_ms: Option<u64>,
        /// Where to serve /metrics (overrides edge.metrics_listen).
        #[arg(long)]
        metrics_listen: Option<SocketAddr>,
    },
    /// Mints a signed viewer token for an event and prints the playable URL (stdout); the
    /// token's key, expiry and scope go to stderr.
    Token {
        /// TOML configuration whose [access] token_keys holds the signing key.
        #[arg(long)]
        config: Option<PathBuf>,
        /// A file holding the signing secret instead (with --key-id).
        #[arg(long)]
        secret_file: Option<PathBuf>,
        /// The event the token admits to.
        #[arg(long)]
        event: String,
        /// How long it is valid, e.g. 90s, 30m, 1h, 2days.
        #[arg(long, default_value = "1h")]
        ttl: humantime::Duration,
        /// The signing key's id (default: the configuration's only key).
        #[arg(long)]
        key_id: Option<String>,
        /// Bind the token to a viewer address or CIDR block, e.g. 203.0.113.0/24.
        #[arg(long)]
        ip: Option<String>,
        /// Limit the token to URLs under this path, e.g. /live/EVENT/720p/.
        #[arg(long)]
        path: Option<String>,
        /// The edge's base URL for the printed URL (default: from edge.listen).
        #[arg(long)]
        base_url: Option<String>,
        /// Print only the token, not the URL.
        #[arg(long)]
        token_only: bool,
    },
}

/// Relative file paths of the configuration are taken from `base`, its directory.
fn resolve_paths(c: &mut Config, base: &std::path::Path) {
    for p in [
        c.access.geoip_database.as_mut(),
        c.edge.upstream_ca_file.as_mut(),
        c.control.ca_file.as_mut(),
    ]
    .into_iter()
    .flatten()
    {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    }
}

fn config_dir(config: Option<&PathBuf>) -> PathBuf {
    config
        .and_then(|p| p.parent())
        .map(PathBuf::from)
        .unwrap_or_default()
}

fn load(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    match path {
        None => Ok(Config::embedded()),
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Ok(Config::from_toml(&text)?)
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter =
        || tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    // Before any thread or encoder exists.
    allocator::disable_transparent_huge_pages();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve {
                config,
                rtmp_listen,
                srt_listen,
                origin_listen,
                edge_listen,
            } => {
                let mut c = load(config.as_ref())?;
                let base = config_dir(config.as_ref());
                resolve_paths(&mut c, &base);
                c.rtmp.listen = rtmp_listen.unwrap_or(c.rtmp.listen);
                c.srt.listen = srt_listen.unwrap_or(c.srt.listen);
                c.origin.listen = origin_listen.unwrap_or(c.origin.listen);
                c.edge.listen = edge_listen.unwrap_or(c.edge.listen);
                serve(c, &base, config.is_none()).await
            }
            Command::Token {
                config,
                secret_file,
                event,
                ttl,
                key_id,
                ip,
                path,
                base_url,
                token_only,
            } => {
                let config = config.as_ref().map(|p| load(Some(p))).transpose()?;
                let (t, url) = mint::mint(mint::MintRequest {
                    config,
                    secret_file,
                    event,
                    ttl: ttl.into(),
                    key_id,
                    ip,
                    path,
                    base_url,
                })?;
                println!("{}", if token_only { t } else { url });
                Ok(())
            }
            Command::Edge {
                config,
                upstream,
                listen,
                upstream_timeout_ms,
                metrics_listen,
            } => {
                let mut c = load(config.as_ref())?;
                let base = config_dir(config.as_ref());
                resolve_paths(&mut c, &base);
                listen::raise_file_limit(&c);
                c.edge.listen = listen.unwrap_or(c.edge.listen);
                c.edge.metrics_listen = metrics_listen.or(c.edge.metrics_listen);
                if let Some(ms) = upstream_timeout_ms {
                    c.edge.upstream_timeout = std::time::Duration::from_millis(ms);
                }
                let upstream = match upstream {
                    Some(u) => weir_config::parse_upstreams(u)?,
                    None => c.edge.upstream.clone().context(
                        "weir edge needs --upstream URL[,URL...] (or edge.upstream in the config)",
                    )?,
                };
                let listener = bind(c.edge.listen, "edge").await?;
                let metrics = match c.edge.metrics_listen {
                    Some(addr) => {
                        let handle =
                            weir_metrics::install().context("installing the metrics recorder")?;
                        Some((bind(addr, "metrics").await?, handle))
                    }
                    None => None,
                };
                let metrics_ready = match &metrics {
                    Some((l, _)) => format!(" metrics={}", l.local_addr()?),
                    None => String::new(),
                };
                println!(
                    "weir ready edge={} upstream={upstream}{metrics_ready}",
                    listener.local_addr()?
                );
                let stop = listen::shutdown_signal();
                let metrics_stop = stop.clone();
                let metrics_task = async move {
                    match metrics {
                        Some((l, handle)) => listen::serve_metrics(l, handle, metrics_stop).await,
                        None => std::future::pending().await,
                    }
                };
                let upstream = upstream.trim_end_matches('/').to_string();
                let edge = listen::make_edge(&c, upstream, None, None)?;
                tokio::select! {
                    r = listen::run_edge(listener, edge, &c, &base, stop) => r,
                    r = metrics_task => r,
                }
            }
        }
    });
    // Blocking threads (libsrt's accept loop, say) do not end by themselves: give them a
    // moment, then exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {what} listener to {addr}"))
}

async fn serve(c: Config, base: &std::path::Path, embedded: bool) -> anyhow::Result<()> {
    let metrics = weir_metrics::install().context("installing the metrics recorder")?;
    let store = Arc::new(MemoryStore::with_window(c.packager.window_segments.get()));
    // Every ladder the configuration offers can be given to an event at run time.
    if c.ladders.iter().any(|l| !l.is_passthrough()) {
        weir_ingest::check_ffmpeg()?;
    }
    listen::raise_file_limit(&c);
    let opened = weir_control::Control::open(&c, base, store.clone()).await?;
    let control = opened.control;
    let directory = control.registry.clone();
    tokio::spawn(directory.clone().expire_loop());
    let rtmp = bind(c.rtmp.listen, "rtmp").await?;
    let srt = if c.srt.enabled {
        let config = weir_ingest::SrtConfig {
            app: c.rtmp.app.clone(),
            latency: c.srt.latency,
            max_connections: c.srt.max_connections,
            idle_timeout: c.srt.idle_timeout,
        };
        let server = weir_ingest::bind_srt(c.srt.listen, directory.clone(), config)
            .with_context(|| format!("binding the srt listener to {} (udp)", c.srt.listen))?;
        Some(server)
    } else {
        None
    };
    let origin = bind(c.origin.listen, "origin").await?;
    let edge = bind(c.edge.listen, "edge").await?;
    let (rtmp_addr, origin_addr, edge_addr) =
        (rtmp.local_addr()?, origin.local_addr()?, edge.local_addr()?);
    control.set_rtmp_endpoint(rtmp_addr.port(), &c.rtmp.app);
    if embedded {
        tracing::warn!("no --config: running the embedded demo event; its stream key is public, do not expose this server");
    }
    let ingest_config = weir_ingest::RtmpConfig {
        app: c.rtmp.app.clone(),
        max_connections: c.rtmp.max_connections,
        handshake_timeout: c.rtmp.handshake_timeout,
        idle_timeout: c.rtmp.idle_timeout,
        auth_timeout: c.rtmp.auth_timeout,
        max_message_bytes: c.rtmp.max_message_bytes,
        max_chunk_size: c.rtmp.max_chunk_size,
        max_connections_per_ip: c.rtmp.max_connections_per_ip,
        write_timeout: c.rtmp.write_timeout,
    };
    let held = store.clone();
    let render: weir_origin::MetricsRender = Arc::new(move || {
        held.publish_gauges();
        listen::publish_runtime_gauges();
        metrics.render()
    });
    let origin_config = OriginConfig {
        cors_allow_origin: c.origin.cors_allow_origin.clone(),
    };
    // With TLS on the origin listener (for edges elsewhere), the in-process edge reaches the
    // origin on a plain listener of its own on loopback: no certificate to trust under a
    // loopback name, no TLS inside one process.
    let internal = match (&c.origin.http.tls, &c.edge.upstream) {
        (Some(_), None) => {
            Some(bind(SocketAddr::from(([127, 0, 0, 1], 0)), "internal origin").await?)
        }
        _ => None,
    };
    let internal_addr = internal.as_ref().map(TcpListener::local_addr).transpose()?;
    let upstream = c.edge.upstream.clone().unwrap_or_else(|| {
        if let Some(a) = internal_addr {
            return format!("http://{a}");
        }
        let host = if origin_addr.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            origin_addr.ip().to_string()
        };
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        format!("http://{host}:{}", origin_addr.port())
    });
    // The in-process edge has the secret for content keys, configured or made for this run.
    let key_secret = control.internal_secret();
    let app = weir_origin::router(
        store,
        origin_config,
        Some(render),
        weir_control::admin_router(control.clone()),
    );
    // The edge asks the origin of this process by a call (no loopback HTTP, no second copy
    // of what it caches), unless it was pointed at another upstream.
    let local_origin = c.edge.upstream.is_none().then(|| {
        let origin = app.clone();
        weir_edge::LocalOrigin::new(move |request| {
            let mut origin = origin.clone();
            async move {
                match tower_service::Service::call(&mut origin, request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            }
        })
    });
    let edge_service = listen::make_edge(&c, upstream, Some(key_secret), local_origin)?;
    let purger = edge_service.clone();
    control.set_local_edge(
        &format!("{}://{edge_addr}", listen::scheme(&c.edge.http)),
        weir_control::LocalPurge(Arc::new(move |event: &str| purger.purge(event))),
    );
    let srt_addr = srt.as_ref().map(|s| s.local_addr()).transpose()?;
    let srt_ready = srt_addr.map(|a| format!(" srt={a}")).unwrap_or_default();
    println!("weir ready rtmp={rtmp_addr} origin={origin_addr} edge={edge_addr}{srt_ready}");
    tracing::info!(database = %opened.database, "events stored in the database");
    match &opened.generated_token {
        Some(t) => println!("admin API: {}://{origin_addr}/admin/v1 (no control.admin_tokens configured; this run's token: {t})", listen::scheme(&c.origin.http)),
        None => println!("admin API: {}://{origin_addr}/admin/v1", listen::scheme(&c.origin.http)),
    }
    for e in &c.events {
        println!("event {}: publish to rtmp://{rtmp_addr}/{}/<stream key>, play {}://{edge_addr}/live/{}/master.m3u8", e.id, c.rtmp.app, listen::scheme(&c.edge.http), e.id);
        if let Some(a) = srt_addr {
            println!("event {}: or publish MPEG-TS to srt://{a}?streamid=#!::r={}/<stream key>,m=publish", e.id, c.rtmp.app);
        }
    }
    let srt_task = async move {
        match srt {
            Some(server) => server.run().await,
            None => std::future::pending().await,
        }
    };
    let stop = listen::shutdown_signal();
    let origin_settings = listen::http_settings("origin", &c.origin.http, base);
    if let Some(listener) = internal {
        let settings = weir_http::HttpSettings {
            tls: None,
            ..listen::http_settings("origin-internal", &c.origin.http, base)
        };
        let served = weir_http::serve(
            listener,
            app.clone(),
            settings,
            listen::stopped(stop.clone()),
        );
        tokio::spawn(async move {
            if let Err(e) = served.await {
                tracing::error!(error = %e, "the in-process edge's origin listener failed");
            }
        });
    }
    let mut origin_task = tokio::spawn(weir_http::serve(
        origin,
        app,
        origin_settings,
        listen::stopped(stop.clone()),
    ));
    let (edge_c, edge_base, edge_stop) = (c.clone(), base.to_path_buf(), stop.clone());
    let mut edge_task = tokio::spawn(async move {
        listen::run_edge(edge, edge_service, &edge_c, &edge_base, edge_stop).await
    });
    let (mut origin_done, mut edge_done) = (false, false);
    let result = tokio::select! {
        () = weir_ingest::serve_rtmp(rtmp, directory, ingest_config) => Ok(()),
        r = srt_task => r.context("srt listener"),
        r = &mut origin_task => {
            origin_done = true;
            r.context("origin server")?.context("origin server")
        }
        r = &mut edge_task => {
            edge_done = true;
            r.context("edge server")?
        }
        () = listen::stopped(stop.clone()) => Ok(()),
    };
    // Stopping: the HTTP listeners let in-flight responses finish (bounded by their grace).
    if *stop.borrow() {
        if !origin_done {
            let _ = origin_task.await;
        }
        if !edge_done {
            let _ = edge_task.await;
        }
    }
    result
}
