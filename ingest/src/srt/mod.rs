//! The SRT listener: callers publish MPEG-TS over SRT (Haivision's Secure Reliable Transport,
//! draft-sharabayko-srt) through libsrt, the reference implementation ([`weir_srt`]).
//!
//! A caller is admitted during the handshake, before any media is accepted: libsrt hands its
//! `streamid` ([`streamid`]) to our callback, the [`EventDirectory`] admits it (or the caller
//! gets the SRT reject code that says why, e.g. 1401 "unauthorized" for an unknown key), and
//! the event's passphrase, if it has one, is set on the pending socket (libsrt then rejects a
//! caller with another passphrase with `BADSECRET`, one without with `UNSECURE`). Each
//! accepted caller is served on a thread of its own with blocking receives: the bytes go
//! through the [`TsDemuxer`] into the same [`PublishSession`] the RTMP path feeds, and the
//! connection's statistics become metrics labelled by event once a second.

mod stats;
mod streamid;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_srt::{Caller, Decision, Listener, RejectReason, Socket};

use crate::meter::IngestMeter;
use crate::ts::{TsDemuxer, TsEvent};
use crate::{EventDirectory, PublishRequest, PublishSession, Rejection};
use streamid::StreamIdError;

/// Settings of the SRT listener.
#[derive(Clone, Debug)]
pub struct SrtConfig {
    /// The application a `streamid` may name (`live` in `#!::r=live/KEY`); the same one RTMP
    /// publishers use. An id that names no application is taken as this one.
    pub app: String,
    /// SRT latency (`SRTO_RCVLATENCY`): how long the receiver holds packets to recover
    /// losses before delivering them. The larger of this and the caller's applies.
    pub latency: Duration,
    /// Most SRT publishers connected at once; more are rejected with 1402 (overload).
    pub max_connections: usize,
    /// Time a connected publisher may send no media before it is dropped.
    pub idle_timeout: Duration,
}

/// A bound SRT listener, ready to [`SrtServer::run`].
pub struct SrtServer {
    listener: Arc<Listener>,
    spawn: Box<dyn Fn(Socket) + Send + Sync>,
}

impl std::fmt::Debug for SrtServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtServer")
            .field("listener", &self.listener)
            .finish()
    }
}

/// Binds the SRT listener to `addr` (UDP). Callers are admitted by `directory`.
///
/// # Errors
/// libsrt's error if the address cannot be bound.
pub fn bind<D: EventDirectory>(
    addr: SocketAddr,
    directory: Arc<D>,
    config: SrtConfig,
) -> std::io::Result<SrtServer> {
    let config = Arc::new(config);
    let active = Arc::new(AtomicUsize::new(0));
    let hook = {
        let (directory, config, active) = (directory.clone(), config.clone(), active.clone());
        move |caller: &Caller<'_>| {
            let full = active.load(Ordering::Relaxed) >= config.max_connections.max(1);
            match admit(caller, full, &*directory, &config) {
                Ok(passphrase) => Decision::Accept { passphrase },
                Err(refusal) => {
                    metrics::counter!("weir_ingest_rejected_total", "reason" => refusal.reason())
                        .increment(1);
                    tracing::warn!(peer = %caller.peer, reason = refusal.reason(), "srt publisher refused");
                    Decision::Reject(reject_code(refusal))
                }
            }
        }
    };
    let listener = Listener::bind(addr, config.latency, hook)
        .map_err(|e| std::io::Error::other(format!("srt listener on {addr}: {e}")))?;
    let spawn = move |socket: Socket| {
        let (directory, config, active) = (directory.clone(), config.clone(), active.clone());
        active.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!("srt", peer = %socket.peer());
        let spawned = std::thread::Builder::new()
            .name("weir-srt-conn".into())
            .spawn(move || {
                let _entered = span.enter();
                metrics::counter!("weir_ingest_connections_total", "protocol" => "srt")
                    .increment(1);
                connection(socket, &*directory, &config);
                active.fetch_sub(1, Ordering::Relaxed);
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a thread for an srt publisher");
        }
    };
    Ok(SrtServer {
        listener: Arc::new(listener),
        spawn: Box::new(spawn),
    })
}

impl SrtServer {
    /// The bound address.
    ///
    /// # Errors
    /// libsrt's error if the listener is closed.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener
            .local_addr()
            .map_err(|e| std::io::Error::other(e.to_string()))
    }

    /// Accepts publishers on a thread of its own until the returned future is dropped: an
    /// accept error is logged and counted (`weir_srt_accept_errors_total`) and accepting goes
    /// on after a pause that grows to a second while errors repeat, so a failing SRT listener
    /// never takes the rest of weir down.
    ///
    /// # Errors
    /// Only if the accept thread cannot be started.
    pub async fn run(self) -> std::io::Result<()> {
        let SrtServer { listener, spawn } = self;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (accepting, stopping) = (listener.clone(), stop.clone());
        std::thread::Builder::new()
            .name("weir-srt-accept".into())
            .spawn(move || {
                let mut pause = Duration::from_millis(10);
                while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
                    match accepting.accept() {
                        Ok(socket) => {
                            pause = Duration::from_millis(10);
                            spawn(socket);
                        }
                        Err(_) if stopping.load(std::sync::atomic::Ordering::Relaxed) => break,
                        Err(e) => {
                            metrics::counter!("weir_srt_accept_errors_total").increment(1);
                            tracing::warn!(error = %e, "srt accept failed; retrying");
                            std::thread::sleep(pause);
                            pause = (pause * 2).min(Duration::from_secs(1));
                        }
                    }
                }
            })?;
        // Accepting goes on until this future is dropped (weir stopping): then the listener
        // is closed, which wakes the accept thread, and it ends.
        struct Closer(Arc<Listener>, Arc<std::sync::atomic::AtomicBool>);
        impl Drop for Closer {
            fn drop(&mut self) {
                self.1.store(true, std::sync::atomic::Ordering::Relaxed);
                self.0.close();
            }
        }
        let _closer = Closer(listener, stop);
        std::future::pending().await
    }
}

/// Why a caller is refused during its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    BadStreamId,
    NotPublish,
    UnknownApp,
    Overload,
    Directory(Rejection),
}

impl Refusal {
    fn reason(self) -> &'static str {
        match self {
            Refusal::BadStreamId => "bad streamid",
            Refusal::NotPublish => "not a publisher",
            Refusal::UnknownApp => "app",
            Refusal::Overload => "connection limit",
            Refusal::Directory(r) => r.reason(),
        }
    }
}

/// The SRT reject reason a refusal is sent as (SRT access control, `SRT_REJX_*`).
fn reject_code(refusal: Refusal) -> RejectReason {
    match refusal {
        Refusal::BadStreamId => RejectReason::BAD_REQUEST,
        Refusal::NotPublish => RejectReason::BAD_MODE,
        Refusal::UnknownApp => RejectReason::NOT_FOUND,
        Refusal::Overload => RejectReason::OVERLOAD,
        Refusal::Directory(Rejection::UnknownStreamKey) => RejectReason::UNAUTHORIZED,
        Refusal::Directory(Rejection::AlreadyPublishing) => RejectReason::CONFLICT,
        Refusal::Directory(Rejection::Ended | Rejection::Refused) => RejectReason::FORBIDDEN,
        Refusal::Directory(_) => RejectReason::DOWN,
    }
}

/// The handshake-time checks: stream id, application, connection limit and the directory's
/// admission; the passphrase the caller must use.
fn admit<D: EventDirectory>(
    caller: &Caller<'_>,
    full: bool,
    directory: &D,
    config: &SrtConfig,
) -> Result<Option<String>, Refusal> {
    let request = publish_request(caller.stream_id, caller.peer, config)?;
    if full {
        return Err(Refusal::Overload);
    }
    let admission = directory
        .admit(&request.as_request())
        .map_err(Refusal::Directory)?;
    Ok(admission.srt_passphrase)
}

struct Request<'a> {
    app: &'a str,
    stream_key: &'a str,
    peer: SocketAddr,
}

impl Request<'_> {
    fn as_request(&self) -> PublishRequest<'_> {
        PublishRequest {
            app: self.app,
            stream_key: self.stream_key,
            peer: self.peer,
        }
    }
}

fn publish_request<'a>(
    stream_id: &'a str,
    peer: SocketAddr,
    config: &'a SrtConfig,
) -> Result<Request<'a>, Refusal> {
    let parsed = streamid::parse(stream_id).map_err(|e| match e {
        StreamIdError::Malformed => Refusal::BadStreamId,
        StreamIdError::NotPublish => Refusal::NotPublish,
    })?;
    let app = parsed.app.unwrap_or(&config.app);
    if app != config.app {
        return Err(Refusal::UnknownApp);
    }
    Ok(Request {
        app,
        stream_key: parsed.stream_key,
        peer,
    })
}

/// Serves one accepted caller: authorizes it, then receives its stream until it ends.
fn connection<D: EventDirectory>(socket: Socket, directory: &D, config: &SrtConfig) {
    let stream_id = socket.stream_id().unwrap_or_default();
    let session = publish_request(&stream_id, socket.peer(), config)
        .map_err(Refusal::reason)
        .and_then(|r| {
            directory
                .authorize(&r.as_request())
                .map_err(Rejection::reason)
        });
    match session {
        Ok(session) => {
            tracing::info!(latency = ?socket.latency(), "srt publisher accepted");
            receive(&socket, session, config);
        }
        Err(reason) => {
            metrics::counter!("weir_ingest_rejected_total", "reason" => reason).increment(1);
            tracing::warn!(reason, "srt publisher refused after its handshake");
        }
    }
}

/// Demuxes what the caller sends into `session` until the caller goes away or is idle.
fn receive<S: PublishSession>(socket: &Socket, mut session: S, config: &SrtConfig) {
    let mut demuxer = TsDemuxer::new();
    let mut events = Vec::new();
    let mut recorder = stats::Recorder::new(session.event_id());
    let mut buf = vec![0u8; 1_500];
    let mut last_stats = Instant::now();
    let mut meter = IngestMeter::new(session.max_ingest_bitrate(), Instant::now());
    if let Err(e) = socket.set_receive_timeout(config.idle_timeout) {
        tracing::warn!(error = %e, "srt socket");
        return;
    }
    loop {
        match socket.recv(&mut buf) {
            Ok(n) => {
                if let Some(rate) = meter.record(n, Instant::now()) {
                    let limit = session.max_ingest_bitrate();
                    metrics::counter!("weir_ingest_dropped_total", "reason" => "bitrate")
                        .increment(1);
                    tracing::warn!(
                        rate_bps = rate,
                        limit_bps = limit,
                        "srt publisher above the event's max ingest bit rate; dropping it"
                    );
                    break;
                }
                if session.revoked() {
                    tracing::warn!("srt publisher revoked by the operator; dropping it");
                    break;
                }
                demuxer.push(&buf[..n], &mut events);
                deliver(&mut events, &mut session);
            }
            Err(e) if e.is_timeout() => {
                tracing::warn!("srt publisher idle; dropping it");
                break;
            }
            Err(e) => {
                tracing::info!(reason = %e, "srt publisher disconnected");
                break;
            }
        }
        if last_stats.elapsed() >= Duration::from_secs(1) {
            last_stats = Instant::now();
            if let Ok(s) = socket.stats() {
                recorder.record(&s);
            }
        }
    }
    if let Ok(s) = socket.stats() {
        recorder.record(&s);
    }
    demuxer.finish(&mut events);
    deliver(&mut events, &mut session);
    recorder.finish();
}

fn deliver<S: PublishSession>(events: &mut Vec<TsEvent>, session: &mut S) {
    for event in events.drain(..) {
        match event {
            TsEvent::Track(info) => session.track(info),
            TsEvent::Frame(frame) => session.frame(frame),
            TsEvent::Problem(problem) => {
                metrics::counter!("weir_ingest_ts_problems_total", "reason" => problem.reason())
                    .increment(1);
                tracing::debug!(?problem, "transport stream problem");
            }
        }
    }
}
