//! weir's ingest: accepts live publishers and turns what they send into timestamped frames.
//!
//! Two protocols: RTMP (handshake, chunk stream and AMF0 commands through the `rml_rtmp`
//! crate's sans-I/O session; FLV video/audio tag bodies parsed here) and SRT (libsrt, the
//! reference implementation, through `weir-srt`; its MPEG-TS payload demuxed by our sans-I/O
//! [`TsDemuxer`]). The stream key
//! a publisher names selects an event through the [`EventDirectory`] the caller provides; an
//! unknown key is refused before any media is buffered. Both produce the same
//! [`TrackInfo`]s and [`Frame`]s, so everything downstream is shared. This crate knows
//! nothing of HTTP or playlists.
//!
//! ```text
//! ffmpeg/OBS --TCP--> rtmp::serve --handshake, session--> EventDirectory::authorize
//!                                  --FLV tags--> flv::parse_* --> PublishSession::{track, frame}
//! encoder --SRT/UDP--> srt::serve --streamid, passphrase--> EventDirectory::{admit, authorize}
//!                                  --MPEG-TS--> TsDemuxer --> PublishSession::{track, frame}
//! ```

mod chunk_guard;
mod clock;
mod failover;
mod flv;
mod meter;
mod nal;
mod rtmp;
mod srt;
mod transcode;
mod ts;

use std::fmt;
use std::net::SocketAddr;

use weir_media::{Frame, TrackInfo};

// The public interface.
pub use chunk_guard::{ChunkGuard, ChunkViolation};
pub use failover::{
    Departure, FailoverPolicy, InputRole, InputSelector, Route, Switch, SwitchReason,
    MAX_STANDBY_BYTES, MAX_STANDBY_FRAMES,
};
pub use flv::{file_tags, parse_audio, parse_video, Tag, TagError};
pub use rtmp::{serve as serve_rtmp, RtmpConfig, PRE_AUTH_BYTES, PRE_AUTH_MAX_MESSAGE};
pub use srt::{bind as bind_srt, SrtConfig, SrtServer};
pub use transcode::{
    check_ffmpeg, fit_rendition, x264_options, RenditionSink, TranscodeError, Transcoder,
    TranscoderConfig,
};
pub use ts::{TsDemuxer, TsEvent, TsProblem};

/// A publisher asking to publish: what [`EventDirectory::authorize`] decides on.
pub struct PublishRequest<'a> {
    /// The RTMP application (`live` in `rtmp://host/live/KEY`).
    pub app: &'a str,
    /// The stream key, as the publisher sent it. A secret: never log it.
    pub stream_key: &'a str,
    /// The publisher's address.
    pub peer: SocketAddr,
}

impl fmt::Debug for PublishRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublishRequest")
            .field("app", &self.app)
            .field("stream_key", &"<redacted>")
            .field("peer", &self.peer)
            .finish()
    }
}

/// What [`EventDirectory::admit`] tells a protocol about a publisher it would accept.
#[derive(Clone, Default)]
pub struct Admission {
    /// The SRT passphrase the event requires (10-79 characters), if any: the caller must
    /// encrypt with it. A secret: its `Debug` prints nothing.
    pub srt_passphrase: Option<String>,
}

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission")
            .field(
                "srt_passphrase",
                &self.srt_passphrase.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Why a publisher was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// No event has this stream key.
    #[error("unknown stream key")]
    UnknownStreamKey,
    /// The event already has a live publisher; one stream key publishes at a time.
    #[error("stream key already publishing")]
    AlreadyPublishing,
    /// The event cannot take a publisher now (its transcoder could not start).
    #[error("event unavailable")]
    Unavailable,
    /// The operator ended the event; it takes no publisher until it is started again.
    #[error("event ended")]
    Ended,
    /// The operator's `on_publish` hook refused the publisher (or could not be asked).
    #[error("refused by the on_publish hook")]
    Refused,
}

impl Rejection {
    /// A short, stable reason for logs, metrics labels and the RTMP status description.
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::UnknownStreamKey => "unknown stream key",
            Rejection::AlreadyPublishing => "stream key already publishing",
            Rejection::Unavailable => "event unavailable",
            Rejection::Ended => "event ended",
            Rejection::Refused => "refused by the on_publish hook",
        }
    }
}

/// The events a publisher can publish to; implemented by whoever wires ingest to packaging.
pub trait EventDirectory: Send + Sync + 'static {
    /// What receives an accepted publisher's media.
    type Session: PublishSession;

    /// Decides on a publish request. Must compare the stream key in constant time and must
    /// not log it.
    ///
    /// # Errors
    /// A [`Rejection`], sent to the publisher as `NetStream.Publish.BadName`; the connection
    /// is then closed.
    fn authorize(&self, request: &PublishRequest<'_>) -> Result<Self::Session, Rejection>;

    /// Whether [`EventDirectory::authorize`] would accept `request` now, without starting
    /// anything, and what the protocol must require of the publisher first (SRT: the
    /// passphrase, applied during its handshake). Same key handling rules as `authorize`.
    ///
    /// # Errors
    /// The [`Rejection`] `authorize` would return.
    fn admit(&self, request: &PublishRequest<'_>) -> Result<Admission, Rejection>;
}

/// Receives one accepted publisher's media. Dropping it ends the publisher session (the
/// publisher sent `deleteStream`/`FCUnpublish`, disconnected, or failed).
pub trait PublishSession: Send + 'static {
    /// The id of the event the session publishes to (for metric labels and logs).
    fn event_id(&self) -> &str;
    /// The most a publisher of this event may send, bits per second averaged over 5 s (all
    /// protocol bytes: FLV/RTMP or TS payload); a publisher above it is dropped.
    fn max_ingest_bitrate(&self) -> u64;
    /// A decoder configuration arrived (AVC or AAC sequence header).
    fn track(&mut self, info: TrackInfo);
    /// A coded frame arrived.
    fn frame(&mut self, frame: Frame);
    /// Whether the operator has revoked this publisher (kicked it, rotated its key, deleted
    /// its event): the protocol then closes the connection. Checked as data arrives.
    fn revoked(&self) -> bool {
        false
    }
}

/// Why an ingest connection ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// The peer closed the connection.
    #[error("connection closed by the peer")]
    ClientClosed,
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The peer did not complete a step in time.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The peer broke the RTMP protocol (bad handshake, malformed chunk stream).
    #[error("rtmp protocol error: {0}")]
    Protocol(String),
    /// The peer connected to an application other than the configured one.
    #[error("unknown rtmp application {0:?}")]
    UnknownApp(String),
    /// The publish request was refused.
    #[error("publish refused: {0}")]
    Rejected(Rejection),
    /// The publisher sent more than its event allows.
    #[error(
        "ingest bit rate {rate_bps} bit/s over 5 s is above the event's limit of {limit_bps} bit/s"
    )]
    BitrateExceeded {
        /// The measured rate, bits per second.
        rate_bps: u64,
        /// The event's limit, bits per second.
        limit_bps: u64,
    },
    /// The operator revoked the publisher ([`PublishSession::revoked`]).
    #[error("revoked by the operator")]
    Revoked,
}

impl IngestError {
    /// Whether the peer simply went away (not worth a warning).
    pub fn is_client_closed(&self) -> bool {
        match self {
            IngestError::ClientClosed => true,
            IngestError::Io(e) => matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            ),
            _ => false,
        }
    }
}
