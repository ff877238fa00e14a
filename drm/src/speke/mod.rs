//! Content keys from a commercial DRM key provider over SPEKE v2.0 (AWS "Secure Packager and
//! Encoder Key Exchange" API v2, which exchanges DASH-IF CPIX 2.3 documents): the key of a
//! rotation period, and what each DRM system (Widevine, PlayReady, FairPlay) needs in the
//! init segments (`pssh`) and the playlists (`EXT-X-KEY`, `EXT-X-SESSION-KEY`).
//!
//! ```text
//! weir (encryptor) --POST CPIX: contentId, KID, cbcs, period index, systems--> key provider
//!                  <--CPIX: key (PlainValue), explicitIV, per system PSSH + HLS signalling--
//! ```
//!
//! The exchange (SPEKE API v2 "Live workflow"): `POST {url}` with `Content-Type:
//! application/xml` and `X-Speke-Version: 2.0`, the body a CPIX document ([`request_document`]);
//! the answer is `200` with the same header echoed and the document filled in
//! ([`parse_response`]). weir asks for one key per rotation period for all tracks
//! (`intendedTrackType="ALL"`, the `ContentKeyPeriod@index` being the period of
//! [`crate::RotationSchedule`]), chooses the KID itself (as SPEKE's encryptor does), and takes
//! keys in the clear over HTTPS (`pskc:PlainValue`); SPEKE's content key encryption (RSA
//! `EncryptedValue`) is refused with [`CpixError::EncryptedKey`].
//!
//! A fetch blocks for one HTTP exchange (bounded by the client's timeout), so it runs ahead of
//! the period that needs the key, never on the packager's thread: the design is a source that
//! fetches period `p + 1` while `p` plays ([`KeyFeed`]).

mod cpix;
mod feed;

use std::fmt;
use std::time::Duration;

pub use cpix::{parse_response, request_document, CpixError};
pub use feed::KeyFeed;

/// A commercial DRM system a key provider can sign keys for (its CENC system ID, ISO/IEC
/// 23001-7 §8.1.2, from the DASH-IF identifier registry).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DrmSystem {
    /// Google Widevine, `edef8ba9-79d6-4ace-a3c8-27dcd51d21ed`.
    Widevine,
    /// Microsoft PlayReady, `9a04f079-9840-4286-ab92-e65be0885f95`.
    PlayReady,
    /// Apple FairPlay Streaming, `94ce86fb-07ff-4f43-adb8-93d2fa968ca2` (no `pssh`: its
    /// playlists name the key with an `skd://` URI).
    FairPlay,
}

impl DrmSystem {
    /// Every system, in the order weir writes them.
    pub const ALL: [DrmSystem; 3] = [
        DrmSystem::Widevine,
        DrmSystem::PlayReady,
        DrmSystem::FairPlay,
    ];

    /// The system's 16-byte ID.
    pub const fn system_id(self) -> [u8; 16] {
        match self {
            DrmSystem::Widevine => [
                0xed, 0xef, 0x8b, 0xa9, 0x79, 0xd6, 0x4a, 0xce, 0xa3, 0xc8, 0x27, 0xdc, 0xd5, 0x1d,
                0x21, 0xed,
            ],
            DrmSystem::PlayReady => [
                0x9a, 0x04, 0xf0, 0x79, 0x98, 0x40, 0x42, 0x86, 0xab, 0x92, 0xe6, 0x5b, 0xe0, 0x88,
                0x5f, 0x95,
            ],
            DrmSystem::FairPlay => [
                0x94, 0xce, 0x86, 0xfb, 0x07, 0xff, 0x4f, 0x43, 0xad, 0xb8, 0x93, 0xd2, 0xfa, 0x96,
                0x8c, 0xa2,
            ],
        }
    }

    /// Its name in weir's configuration: `widevine`, `playready`, `fairplay`.
    pub const fn name(self) -> &'static str {
        match self {
            DrmSystem::Widevine => "widevine",
            DrmSystem::PlayReady => "playready",
            DrmSystem::FairPlay => "fairplay",
        }
    }

    /// The system named `name` in configuration (case-insensitive).
    pub fn parse(name: &str) -> Option<DrmSystem> {
        DrmSystem::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }

    /// Whether its init segments carry a `pssh` box (FairPlay's do not).
    pub const fn has_pssh(self) -> bool {
        !matches!(self, DrmSystem::FairPlay)
    }

    /// The system whose ID is `id`.
    pub fn from_system_id(id: &[u8; 16]) -> Option<DrmSystem> {
        DrmSystem::ALL.into_iter().find(|s| &s.system_id() == id)
    }
}

impl fmt::Display for DrmSystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What weir asks a key provider for: the key of one rotation period of one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRequest {
    /// `CPIX@contentId`: the event's id (what the key provider's policies are keyed by).
    pub content_id: String,
    /// The KID weir chose for the period (random, 128 bits: [`crate::KeyId::random_kid`]).
    pub kid: [u8; 16],
    /// `ContentKeyPeriod@index`: the rotation period ([`crate::RotationSchedule::period`]).
    pub period: u64,
    /// The DRM systems whose signalling is asked for (at least one).
    pub systems: Vec<DrmSystem>,
}

/// One DRM system's signalling for a key, as the key provider gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemSignalling {
    /// The system.
    pub system: DrmSystem,
    /// Its whole `pssh` box (ISO/IEC 23001-7 §8.1), for the init segments; `None` for
    /// FairPlay.
    pub pssh: Option<Vec<u8>>,
    /// The attribute list of the media playlists' `EXT-X-KEY` (RFC 8216bis §4.4.4.4), without
    /// the tag name: `METHOD=SAMPLE-AES,URI="skd://...",KEYFORMAT=...`.
    pub media_key_tag: String,
    /// The attribute list of the master playlist's `EXT-X-SESSION-KEY` (RFC 8216bis
    /// §4.4.6.5), if the key provider gave one.
    pub session_key_tag: Option<String>,
}

/// A key provider's answer: the content key, its IV if the provider chose one, and every
/// asked system's signalling. Its `Debug` never prints the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ProvidedKey {
    /// The KID (the request's).
    pub kid: [u8; 16],
    /// The 128-bit content key.
    pub key: [u8; 16],
    /// `ContentKey@explicitIV`: the constant IV for `cbcs`, if the provider set one (weir
    /// makes one otherwise).
    pub iv: Option<[u8; 16]>,
    /// One entry per system of the request, in the request's order.
    pub systems: Vec<SystemSignalling>,
}

impl fmt::Debug for ProvidedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProvidedKey")
            .field("kid", &hex::encode(self.kid))
            .field("key", &"<redacted>")
            .field("systems", &self.systems)
            .finish()
    }
}

/// Why a key could not be had from a key provider.
#[derive(Debug, thiserror::Error)]
pub enum SpekeError {
    /// The HTTP exchange failed (connection, TLS, timeout, a body over 1 MiB).
    #[error("SPEKE request to the key provider failed: {0}")]
    Http(String),
    /// The key provider answered with a status other than 200 (the start of its body).
    #[error("the key provider answered {status}: {body}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// Up to 200 characters of its body.
        body: String,
    },
    /// The answer's `X-Speke-Version` is missing or is not the request's `2.0`.
    #[error("the key provider does not speak SPEKE 2.0 (X-Speke-Version: {0:?})")]
    Version(Option<String>),
    /// The answer's CPIX document lacks what weir needs.
    #[error(transparent)]
    Cpix(#[from] CpixError),
}

/// Where a rotation period's key comes from. Implementations block (network I/O): call them
/// ahead of the period, off the packager's thread.
pub trait KeySource: Send + Sync + fmt::Debug {
    /// The key and signalling for `request`.
    ///
    /// # Errors
    /// [`SpekeError`] when the key provider cannot be reached, refuses, or answers something
    /// unusable; nothing is retried here.
    fn fetch(&self, request: &KeyRequest) -> Result<ProvidedKey, SpekeError>;
}

/// The SPEKE v2.0 version weir speaks (`X-Speke-Version`, and CPIX `version="2.3"`).
pub const SPEKE_VERSION: &str = "2.0";
/// The most of a key provider's answer weir reads, bytes.
const MAX_ANSWER_BYTES: u64 = 1 << 20;

/// A SPEKE v2.0 client: one key provider URL, the headers it authenticates with (e.g.
/// `Authorization` or `X-Api-Key`, values kept out of logs), a timeout for the whole
/// exchange.
pub struct SpekeClient {
    agent: ureq::Agent,
    url: String,
    headers: Vec<(String, String)>,
}

impl fmt::Debug for SpekeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("SpekeClient")
            .field("url", &self.url)
            .field("headers", &names)
            .finish()
    }
}

impl SpekeClient {
    /// A client for the key provider at `url` (`https://` in production; the key comes back
    /// in the clear, protected by TLS), sending `headers` with every request, giving up on an
    /// exchange after `timeout`. TLS trusts the bundled Mozilla roots.
    pub fn new(url: &str, headers: Vec<(String, String)>, timeout: Duration) -> SpekeClient {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .user_agent(concat!("weir/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        SpekeClient {
            agent,
            url: url.to_string(),
            headers,
        }
    }
}

impl KeySource for SpekeClient {
    fn fetch(&self, request: &KeyRequest) -> Result<ProvidedKey, SpekeError> {
        let mut post = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/xml")
            .header("X-Speke-Version", SPEKE_VERSION);
        for (name, value) in &self.headers {
            post = post.header(name, value);
        }
        let mut answer = post
            .send(request_document(request))
            .map_err(|e| SpekeError::Http(e.to_string()))?;
        let status = answer.status().as_u16();
        let body = answer
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_string()
            .map_err(|e| SpekeError::Http(e.to_string()))?;
        if status != 200 {
            return Err(SpekeError::Status {
                status,
                body: body.chars().take(200).collect(),
            });
        }
        let version = answer
            .headers()
            .get("X-Speke-Version")
            .and_then(|v| v.to_str().ok())
            .map(str::trim);
        if version != Some(SPEKE_VERSION) {
            return Err(SpekeError::Version(version.map(str::to_string)));
        }
        Ok(parse_response(&body, request)?)
    }
}

#[cfg(test)]
mod tests;
