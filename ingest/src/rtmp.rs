//! The RTMP server: one task per connection, driving rml_rtmp's sans-I/O handshake and server
//! session, and handing what a publisher sends to the [`EventDirectory`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::chunk_guard::{ChunkGuard, ChunkViolation};
use crate::clock::{Unwrapper, WRAP_32};
use crate::flv::{self, Tag};
use crate::meter::IngestMeter;
use crate::{EventDirectory, IngestError, PublishRequest, PublishSession};

/// Limits and names of the RTMP server.
#[derive(Clone, Debug)]
pub struct RtmpConfig {
    /// The RTMP application publishers must connect to (`rtmp://host/{app}/{stream key}`).
    pub app: String,
    /// Most connections open at once; more are closed on accept.
    pub max_connections: usize,
    /// Time a new connection has to complete the RTMP handshake.
    pub handshake_timeout: Duration,
    /// Time an authorized publisher may send no audio or video message before it is
    /// dropped (bytes that make no media, one at a time say, do not count).
    pub idle_timeout: Duration,
    /// Time from the connection to an authorized publish; past it the peer is dropped.
    pub auth_timeout: Duration,
    /// Longest RTMP message an authorized publisher may send, bytes (before authorization:
    /// [`PRE_AUTH_MAX_MESSAGE`]).
    pub max_message_bytes: u32,
    /// Largest `Set Chunk Size` a peer may ask for, bytes.
    pub max_chunk_size: u32,
    /// Most connections at once from one address.
    pub max_connections_per_ip: usize,
    /// Longest a write to the peer may take.
    pub write_timeout: Duration,
}

/// Bytes a peer may send after the handshake before its publish is authorized (connect,
/// createStream and publish commands take a few hundred).
pub const PRE_AUTH_BYTES: usize = 64 * 1024;

/// Longest message before the publish is authorized, bytes.
pub const PRE_AUTH_MAX_MESSAGE: u32 = 16 * 1024;

impl Default for RtmpConfig {
    fn default() -> Self {
        RtmpConfig {
            app: "live".into(),
            max_connections: 1_000,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(15),
            auth_timeout: Duration::from_secs(10),
            max_message_bytes: 8 * 1024 * 1024,
            max_chunk_size: 1024 * 1024,
            max_connections_per_ip: 32,
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// Accepts RTMP publishers on `listener` until the task is dropped.
///
/// Each connection runs in its own task and span (`peer`); a connection that fails (garbage,
/// a bad handshake, a refused stream key, a timeout) is closed and logged, and nothing else is
/// affected.
pub async fn serve<D: EventDirectory>(
    listener: TcpListener,
    directory: Arc<D>,
    config: RtmpConfig,
) {
    let config = Arc::new(config);
    let permits = Arc::new(Semaphore::new(config.max_connections));
    let per_ip = Arc::new(PerIp::default());
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "rtmp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "rtmp connection limit reached; closing");
            metrics::counter!("weir_ingest_rejected_total", "reason" => "connection limit")
                .increment(1);
            continue;
        };
        let Some(from_ip) = per_ip.admit(peer.ip(), config.max_connections_per_ip) else {
            tracing::warn!(%peer, "rtmp connections per address limit reached; closing");
            metrics::counter!("weir_ingest_rejected_total", "reason" => "connections per address")
                .increment(1);
            continue;
        };
        let (directory, config) = (directory.clone(), config.clone());
        let span = tracing::info_span!("rtmp", %peer);
        tokio::spawn(
            async move {
                metrics::counter!("weir_ingest_connections_total").increment(1);
                match Connection::new(stream, peer, directory, config).run().await {
                    Ok(()) => tracing::info!("rtmp connection closed"),
                    Err(e) if e.is_client_closed() => tracing::info!("publisher disconnected"),
                    Err(e) => {
                        metrics::counter!("weir_ingest_connection_errors_total").increment(1);
                        tracing::warn!(error = %e, "rtmp connection closed on error");
                    }
                }
                drop((permit, from_ip));
            }
            .instrument(span),
        );
    }
}

/// Connections per client address.
#[derive(Default)]
struct PerIp(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

/// One connection's slot in [`PerIp`], freed on drop.
struct IpSlot(Arc<PerIp>, std::net::IpAddr);

impl PerIp {
    fn admit(self: &Arc<Self>, ip: std::net::IpAddr, max: usize) -> Option<IpSlot> {
        let mut open = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= max.max(1) {
            return None;
        }
        *n += 1;
        Some(IpSlot(self.clone(), ip))
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.0 .0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.1);
            }
        }
    }
}

struct Connection<D: EventDirectory> {
    stream: TcpStream,
    peer: SocketAddr,
    directory: Arc<D>,
    config: Arc<RtmpConfig>,
    publisher: Option<D::Session>,
    /// RTMP's 32-bit millisecond clock, extended past its wrap (49.7 days) so a long
    /// publish continues without a discontinuity.
    clock: Unwrapper,
    /// The publisher's bit rate against its event's limit, from the accepted publish on.
    meter: Option<IngestMeter>,
    /// When the last audio or video message arrived (or the publish was authorized).
    last_media: tokio::time::Instant,
}

impl<D: EventDirectory> Connection<D> {
    fn new(
        stream: TcpStream,
        peer: SocketAddr,
        directory: Arc<D>,
        config: Arc<RtmpConfig>,
    ) -> Self {
        Connection {
            stream,
            peer,
            directory,
            config,
            publisher: None,
            clock: Unwrapper::new(WRAP_32),
            meter: None,
            last_media: tokio::time::Instant::now(),
        }
    }

    async fn run(mut self) -> Result<(), IngestError> {
        let _ = self.stream.set_nodelay(true);
        let connected = tokio::time::Instant::now();
        let leftover = tokio::time::timeout(self.config.handshake_timeout, self.handshake())
            .await
            .map_err(|_| IngestError::Timeout("handshake"))??;
        let (mut session, initial) = ServerSession::new(ServerSessionConfig::new())
            .map_err(|e| IngestError::Protocol(format!("session setup: {e:?}")))?;
        self.apply(&mut session, initial).await?;
        // What the peer may make us hold is bounded before rml_rtmp sees a byte.
        let mut guard = ChunkGuard::new(PRE_AUTH_MAX_MESSAGE, self.config.max_chunk_size);
        let violation = |v: ChunkViolation| IngestError::Protocol(v.to_string());
        let mut pre_auth_bytes = 0;
        let mut buf = vec![0u8; 64 * 1024];
        let mut input = leftover;
        loop {
            if !input.is_empty() {
                if self.publisher.is_none() {
                    pre_auth_bytes += input.len();
                    if pre_auth_bytes > PRE_AUTH_BYTES {
                        return Err(IngestError::Protocol(
                            "too many bytes before the publish was authorized".into(),
                        ));
                    }
                }
                guard.check(&input).map_err(violation)?;
                self.meter(input.len())?;
                if self.publisher.as_ref().is_some_and(|p| p.revoked()) {
                    return Err(IngestError::Revoked);
                }
                let authorized = self.publisher.is_some();
                let results = session_input(&mut session, &input)?;
                if self.apply(&mut session, results).await? {
                    return Ok(());
                }
                if !authorized && self.publisher.is_some() {
                    guard.set_max_message(self.config.max_message_bytes);
                    self.last_media = tokio::time::Instant::now();
                }
            }
            // Before the publish: the authorization deadline; after: media must keep coming.
            let (deadline, what) = if self.publisher.is_some() {
                (self.last_media + self.config.idle_timeout, "idle publisher")
            } else {
                (
                    connected + self.config.auth_timeout,
                    "publish not authorized in time",
                )
            };
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut buf))
                .await
                .map_err(|_| IngestError::Timeout(what))??;
            if n == 0 {
                return Err(IngestError::ClientClosed);
            }
            input = buf[..n].to_vec();
        }
    }

    /// Runs the RTMP handshake (C0/C1/C2 against S0/S1/S2); returns bytes read past it.
    async fn handshake(&mut self) -> Result<Vec<u8>, IngestError> {
        let mut handshake = Handshake::new(PeerType::Server);
        let mut buf = vec![0u8; 4096];
        loop {
            let n = self.stream.read(&mut buf).await?;
            if n == 0 {
                return Err(IngestError::Protocol(
                    "connection closed during the handshake".into(),
                ));
            }
            match handshake
                .process_bytes(&buf[..n])
                .map_err(|e| IngestError::Protocol(format!("handshake: {e:?}")))?
            {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    self.write(&response_bytes).await?;
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    self.write(&response_bytes).await?;
                    return Ok(remaining_bytes);
                }
            }
        }
    }

    /// Sends the session's responses and handles its events; `Ok(true)` when the publisher has
    /// finished and the connection should close.
    async fn apply(
        &mut self,
        session: &mut ServerSession,
        results: Vec<ServerSessionResult>,
    ) -> Result<bool, IngestError> {
        let mut pending = std::collections::VecDeque::from(results);
        while let Some(result) = pending.pop_front() {
            match result {
                ServerSessionResult::OutboundResponse(packet) => self.write(&packet.bytes).await?,
                ServerSessionResult::RaisedEvent(event) => {
                    if let Some(more) = self.on_event(session, event).await? {
                        pending.extend(more);
                    }
                }
                ServerSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        Ok(false)
    }

    async fn on_event(
        &mut self,
        session: &mut ServerSession,
        event: ServerSessionEvent,
    ) -> Result<Option<Vec<ServerSessionResult>>, IngestError> {
        let protocol =
            |e: rml_rtmp::sessions::ServerSessionError| IngestError::Protocol(format!("{e:?}"));
        match event {
            ServerSessionEvent::ConnectionRequested {
                request_id,
                app_name,
            } => {
                if app_name != self.config.app {
                    metrics::counter!("weir_ingest_rejected_total", "reason" => "app").increment(1);
                    let out = session
                        .reject_request(
                            request_id,
                            "NetConnection.Connect.Rejected",
                            "unknown application",
                        )
                        .map_err(protocol)?;
                    self.send(out).await?;
                    return Err(IngestError::UnknownApp(app_name));
                }
                Ok(Some(session.accept_request(request_id).map_err(protocol)?))
            }
            ServerSessionEvent::PublishStreamRequested {
                request_id,
                app_name,
                stream_key,
                ..
            } => {
                if self.publisher.is_some() {
                    let out = session
                        .reject_request(
                            request_id,
                            "NetStream.Publish.BadName",
                            "already publishing",
                        )
                        .map_err(protocol)?;
                    self.send(out).await?;
                    return Err(IngestError::Protocol(
                        "second publish on one connection".into(),
                    ));
                }
                let request = PublishRequest {
                    app: &app_name,
                    stream_key: &stream_key,
                    peer: self.peer,
                };
                match self.directory.authorize(&request) {
                    Ok(publisher) => {
                        let limit = publisher.max_ingest_bitrate();
                        self.meter = Some(IngestMeter::new(limit, std::time::Instant::now()));
                        self.publisher = Some(publisher);
                        Ok(Some(session.accept_request(request_id).map_err(protocol)?))
                    }
                    Err(rejection) => {
                        metrics::counter!("weir_ingest_rejected_total", "reason" => rejection.reason()).increment(1);
                        let out = session
                            .reject_request(
                                request_id,
                                "NetStream.Publish.BadName",
                                rejection.reason(),
                            )
                            .map_err(protocol)?;
                        self.send(out).await?;
                        Err(IngestError::Rejected(rejection))
                    }
                }
            }
            ServerSessionEvent::VideoDataReceived {
                data, timestamp, ..
            } => {
                let ms = self.clock.unwrap(u64::from(timestamp.value));
                self.last_media = tokio::time::Instant::now();
                self.media(flv::parse_video(ms, data));
                Ok(None)
            }
            ServerSessionEvent::AudioDataReceived {
                data, timestamp, ..
            } => {
                let ms = self.clock.unwrap(u64::from(timestamp.value));
                self.last_media = tokio::time::Instant::now();
                self.media(flv::parse_audio(ms, data));
                Ok(None)
            }
            ServerSessionEvent::PublishStreamFinished { .. } => {
                self.publisher = None;
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// Counts `bytes` against the event's ingest limit.
    fn meter(&mut self, bytes: usize) -> Result<(), IngestError> {
        let (Some(meter), Some(publisher)) = (self.meter.as_mut(), self.publisher.as_ref()) else {
            return Ok(());
        };
        match meter.record(bytes, std::time::Instant::now()) {
            None => Ok(()),
            Some(rate_bps) => {
                let limit_bps = publisher.max_ingest_bitrate();
                metrics::counter!("weir_ingest_dropped_total", "reason" => "bitrate").increment(1);
                Err(IngestError::BitrateExceeded {
                    rate_bps,
                    limit_bps,
                })
            }
        }
    }

    fn media(&mut self, tag: Result<Tag, flv::TagError>) {
        let Some(publisher) = self.publisher.as_mut() else {
            return;
        };
        match tag {
            Ok(Tag::Config(info)) => publisher.track(info),
            Ok(Tag::Frame(frame)) => publisher.frame(frame),
            Ok(Tag::Nothing) => {}
            Err(e) => {
                metrics::counter!("weir_ingest_bad_tags_total").increment(1);
                tracing::debug!(error = %e, "dropping an unusable tag");
            }
        }
    }

    /// Writes to the peer, bounded by the write timeout (a peer that stops reading is
    /// dropped rather than holding the task).
    async fn write(&mut self, bytes: &[u8]) -> Result<(), IngestError> {
        tokio::time::timeout(self.config.write_timeout, self.stream.write_all(bytes))
            .await
            .map_err(|_| IngestError::Timeout("write"))??;
        Ok(())
    }

    async fn send(&mut self, results: Vec<ServerSessionResult>) -> Result<(), IngestError> {
        for r in results {
            if let ServerSessionResult::OutboundResponse(packet) = r {
                self.write(&packet.bytes).await?;
            }
        }
        let _ = self.stream.flush().await;
        Ok(())
    }
}

/// rml_rtmp's `ServerSession::handle_input`, with the library's panics on malformed messages
/// turned into a protocol error: rml_rtmp 0.8 panics on an AMF0 command message with fewer
/// than three values (`amf0_command.rs`, `drain(..3)`), which a 12-byte chunk after the
/// handshake sends (found by cargo fuzz, `rtmp_session`). The session is dropped with the
/// connection afterwards, so no state survives the unwind.
fn session_input(
    session: &mut ServerSession,
    input: &[u8],
) -> Result<Vec<ServerSessionResult>, IngestError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| session.handle_input(input)))
        .map_err(|_| IngestError::Protocol("malformed RTMP message".into()))?
        .map_err(|e| IngestError::Protocol(format!("{e:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_amf0_command_is_a_protocol_error_not_a_panic() {
        // Found by cargo fuzz (rtmp_session): a type-0 chunk on chunk stream 6 carrying an
        // empty AMF0 command (message type 20).
        let crash = [
            0x06, 0x00, 0x00, 0x58, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00,
        ];
        let (mut session, _) = ServerSession::new(ServerSessionConfig::new()).unwrap();
        assert!(matches!(
            session_input(&mut session, &crash),
            Err(IngestError::Protocol(_))
        ));
    }
}
