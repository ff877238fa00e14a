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
    /// Time a publisher may send nothing before it is dropped.
    pub idle_timeout: Duration,
}

impl Default for RtmpConfig {
    fn default() -> Self {
        RtmpConfig {
            app: "live".into(),
            max_connections: 1_000,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(15),
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
                drop(permit);
            }
            .instrument(span),
        );
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
        }
    }

    async fn run(mut self) -> Result<(), IngestError> {
        let _ = self.stream.set_nodelay(true);
        let leftover = tokio::time::timeout(self.config.handshake_timeout, self.handshake())
            .await
            .map_err(|_| IngestError::Timeout("handshake"))??;
        let (mut session, initial) = ServerSession::new(ServerSessionConfig::new())
            .map_err(|e| IngestError::Protocol(format!("session setup: {e:?}")))?;
        self.apply(&mut session, initial).await?;
        if !leftover.is_empty() {
            let results = session
                .handle_input(&leftover)
                .map_err(|e| IngestError::Protocol(format!("{e:?}")))?;
            if self.apply(&mut session, results).await? {
                return Ok(());
            }
        }
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = tokio::time::timeout(self.config.idle_timeout, self.stream.read(&mut buf))
                .await
                .map_err(|_| IngestError::Timeout("idle publisher"))??;
            if n == 0 {
                return Err(IngestError::ClientClosed);
            }
            self.meter(n)?;
            if self.publisher.as_ref().is_some_and(|p| p.revoked()) {
                return Err(IngestError::Revoked);
            }
            let results = session
                .handle_input(&buf[..n])
                .map_err(|e| IngestError::Protocol(format!("{e:?}")))?;
            if self.apply(&mut session, results).await? {
                return Ok(());
            }
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
                    self.stream.write_all(&response_bytes).await?;
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    self.stream.write_all(&response_bytes).await?;
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
                ServerSessionResult::OutboundResponse(packet) => {
                    self.stream.write_all(&packet.bytes).await?
                }
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
                self.media(flv::parse_video(ms, data));
                Ok(None)
            }
            ServerSessionEvent::AudioDataReceived {
                data, timestamp, ..
            } => {
                let ms = self.clock.unwrap(u64::from(timestamp.value));
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

    async fn send(&mut self, results: Vec<ServerSessionResult>) -> Result<(), IngestError> {
        for r in results {
            if let ServerSessionResult::OutboundResponse(packet) = r {
                self.stream.write_all(&packet.bytes).await?;
            }
        }
        let _ = self.stream.flush().await;
        Ok(())
    }
}
