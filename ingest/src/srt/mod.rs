//! The SRT listener: callers publish MPEG-TS over SRT (Haivision's Secure Reliable Transport,
//! draft-sharabayko-srt), through the `srt-tokio` implementation.
//!
//! A caller is admitted during the handshake, before any media is accepted: its `streamid`
//! ([`streamid`]) names the stream key, the [`EventDirectory`] admits it (or the caller gets
//! the SRT reject code that says why, e.g. 2401 for an unknown key), and the event's
//! passphrase, if it has one, keys the session's AES encryption (a wrong one is rejected by
//! SRT with `BADSECRET`). The received bytes go through the [`TsDemuxer`] into the same
//! [`PublishSession`] the RTMP path feeds. The connection's SRT statistics are published as
//! metrics labelled by event once a second.

mod stats;
mod streamid;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use srt_tokio::access::{RejectReason, ServerRejectReason};
use srt_tokio::options::{KeySize, Passphrase};
use srt_tokio::{ConnectionRequest, SrtListener, SrtSocket};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::ts::{TsDemuxer, TsEvent};
use crate::{EventDirectory, PublishRequest, PublishSession, Rejection};
use streamid::StreamIdError;

/// Settings of the SRT listener.
#[derive(Clone, Debug)]
pub struct SrtConfig {
    /// The application a `streamid` may name (`live` in `#!::r=live/KEY`); the same one RTMP
    /// publishers use. An id that names no application is taken as this one.
    pub app: String,
    /// SRT latency (`SRTO_LATENCY`): how long the receiver holds packets to recover losses
    /// before delivering them. The larger of this and the caller's applies.
    pub latency: Duration,
    /// Most SRT publishers connected at once; more are rejected with 2402 (overload).
    pub max_connections: usize,
    /// Time a connected publisher may send no media before it is dropped.
    pub idle_timeout: Duration,
}

/// Accepts SRT publishers on `socket` (a bound UDP socket) until the task is dropped.
///
/// Each caller is handled in its own task and span (`peer`); a refused caller, a failed
/// handshake or a broken stream affects no one else. Should the SRT implementation's
/// listener task fail, it is logged, counted (`weir_srt_listener_restarts_total`) and
/// started again on the same socket.
///
/// # Errors
/// Only if the socket cannot be handed to the runtime.
pub async fn serve<D: EventDirectory>(
    socket: std::net::UdpSocket,
    directory: Arc<D>,
    config: SrtConfig,
) -> std::io::Result<()> {
    socket.set_nonblocking(true)?;
    let config = Arc::new(config);
    let permits = Arc::new(Semaphore::new(config.max_connections.max(1)));
    loop {
        let udp = tokio::net::UdpSocket::from_std(socket.try_clone()?)?;
        let (_listener, mut incoming) = SrtListener::builder()
            .latency(config.latency)
            .socket(udp)
            .set(|o| o.connect.timeout = Duration::from_secs(5))
            .bind(socket.local_addr()?)
            .await?;
        while let Some(request) = incoming.incoming().next().await {
            let peer = request.remote();
            let span = tracing::info_span!("srt", %peer);
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                tracing::warn!(parent: &span, "srt connection limit reached; rejecting");
                reject(request, reject_code(Refusal::Overload)).await;
                continue;
            };
            let (directory, config) = (directory.clone(), config.clone());
            tokio::spawn(
                async move {
                    metrics::counter!("weir_ingest_connections_total", "protocol" => "srt")
                        .increment(1);
                    connection(request, directory, &config).await;
                    drop(permit);
                }
                .instrument(span),
            );
        }
        metrics::counter!("weir_srt_listener_restarts_total").increment(1);
        tracing::error!("the srt listener stopped; starting it again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Why a caller is refused before its handshake completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    BadStreamId,
    NotPublish,
    UnknownApp,
    Overload,
    Unencrypted,
    Directory(Rejection),
}

impl Refusal {
    fn reason(self) -> &'static str {
        match self {
            Refusal::BadStreamId => "bad streamid",
            Refusal::NotPublish => "not a publisher",
            Refusal::UnknownApp => "app",
            Refusal::Overload => "connection limit",
            Refusal::Unencrypted => "passphrase mismatch",
            Refusal::Directory(r) => r.reason(),
        }
    }
}

/// The SRT reject reason a refusal is sent as (SRT access control, `SRT_REJX_*`).
fn reject_code(refusal: Refusal) -> RejectReason {
    use srt_protocol::packet::CoreRejectReason;
    let server = |r| RejectReason::Server(r);
    match refusal {
        Refusal::BadStreamId => server(ServerRejectReason::BadRequest),
        Refusal::NotPublish => server(ServerRejectReason::BadMode),
        Refusal::UnknownApp => server(ServerRejectReason::Notfound),
        Refusal::Overload => server(ServerRejectReason::Overload),
        Refusal::Unencrypted => RejectReason::Core(CoreRejectReason::Unsecure),
        Refusal::Directory(Rejection::UnknownStreamKey) => server(ServerRejectReason::Unauthorized),
        Refusal::Directory(Rejection::AlreadyPublishing) => server(ServerRejectReason::Conflict),
        Refusal::Directory(_) => server(ServerRejectReason::Down),
    }
}

async fn reject(request: ConnectionRequest, reason: RejectReason) {
    if let Err(e) = request.reject(reason).await {
        tracing::debug!(error = %e, "the srt listener went away while rejecting");
    }
}

/// Admits or refuses one caller, then receives its stream until it ends.
async fn connection<D: EventDirectory>(
    request: ConnectionRequest,
    directory: Arc<D>,
    config: &SrtConfig,
) {
    let peer = request.remote();
    let stream_id = request
        .stream_id()
        .map(|s| s.to_string())
        .unwrap_or_default();
    let admitted = admit(&request, &stream_id, peer, &*directory, config);
    let (publish, keys) = match admitted {
        Ok(x) => x,
        Err(refusal) => {
            metrics::counter!("weir_ingest_rejected_total", "reason" => refusal.reason())
                .increment(1);
            tracing::warn!(reason = refusal.reason(), "srt publisher refused");
            reject(request, reject_code(refusal)).await;
            return;
        }
    };
    let socket = match request.accept(keys).await {
        Ok(s) => s,
        Err(e) => {
            metrics::counter!("weir_ingest_rejected_total", "reason" => "srt handshake")
                .increment(1);
            tracing::warn!(error = %e, "srt handshake failed (a wrong passphrase is refused here)");
            return;
        }
    };
    let request = PublishRequest {
        app: &publish.0,
        stream_key: &publish.1,
        peer,
    };
    match directory.authorize(&request) {
        Ok(session) => {
            tracing::info!(latency = ?socket.settings().recv_tsbpd_latency, "srt publisher accepted");
            receive(socket, session, config).await;
        }
        Err(rejection) => {
            metrics::counter!("weir_ingest_rejected_total", "reason" => rejection.reason())
                .increment(1);
            tracing::warn!(
                reason = rejection.reason(),
                "srt publisher refused after its handshake"
            );
        }
    }
}

type Admitted = (
    (String, String),
    Option<srt_protocol::settings::KeySettings>,
);

/// The checks made during the handshake: stream id, application, the directory's
/// admission, and encryption on both sides or neither.
fn admit<D: EventDirectory>(
    request: &ConnectionRequest,
    stream_id: &str,
    peer: SocketAddr,
    directory: &D,
    config: &SrtConfig,
) -> Result<Admitted, Refusal> {
    let parsed = streamid::parse(stream_id).map_err(|e| match e {
        StreamIdError::Malformed => Refusal::BadStreamId,
        StreamIdError::NotPublish => Refusal::NotPublish,
    })?;
    let app = parsed.app.unwrap_or(&config.app);
    if app != config.app {
        return Err(Refusal::UnknownApp);
    }
    let publish = PublishRequest {
        app,
        stream_key: parsed.stream_key,
        peer,
    };
    let admission = directory.admit(&publish).map_err(Refusal::Directory)?;
    // srt-tokio needs the caller's key size; a caller that announces none has no passphrase.
    let keys = match (admission.srt_passphrase, request.key_size()) {
        (None, KeySize::Unspecified) => None,
        (Some(_), KeySize::Unspecified) | (None, _) => return Err(Refusal::Unencrypted),
        (Some(passphrase), key_size) => Some(srt_protocol::settings::KeySettings {
            key_size,
            passphrase: Passphrase::try_from(passphrase).map_err(|_| Refusal::Unencrypted)?,
        }),
    };
    Ok(((app.to_string(), parsed.stream_key.to_string()), keys))
}

/// Demuxes what the caller sends into `session` until the caller goes away or is idle.
async fn receive<S: PublishSession>(mut socket: SrtSocket, mut session: S, config: &SrtConfig) {
    let mut demuxer = TsDemuxer::new();
    let mut events = Vec::new();
    let mut statistics = socket.statistics().clone();
    let mut recorder = stats::Recorder::new(session.event_id(), socket.settings().rtt);
    loop {
        tokio::select! {
            next = tokio::time::timeout(config.idle_timeout, socket.next()) => match next {
                Ok(Some(Ok((_, bytes)))) => {
                    demuxer.push(&bytes, &mut events);
                    deliver(&mut events, &mut session);
                }
                Ok(Some(Err(e))) => {
                    tracing::warn!(error = %e, "srt receive failed");
                    break;
                }
                Ok(None) => {
                    tracing::info!("srt publisher disconnected");
                    break;
                }
                Err(_) => {
                    tracing::warn!("srt publisher idle; dropping it");
                    break;
                }
            },
            Some(s) = statistics.next() => recorder.record(&s),
        }
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
