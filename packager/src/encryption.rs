//! The encryption hook: how an event's segments and parts are encrypted and which key each
//! segment names in the playlists. The packager calls it; the keys, their rotation and the
//! cipher belong to the `weir-drm` crate, which implements it.
//!
//! Whole-resource encryption (RFC 8216 §4.3.2.4 `METHOD=AES-128`): every segment and every
//! part (RFC 8216bis §4.4.4.9) is encrypted on its own with its segment's key and IV, so a
//! player decrypts a part without the rest of its segment.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::MediaSequence;

/// The key a segment is encrypted with, as a playlist names it: its URI and IV
/// (`EXT-X-KEY:METHOD=AES-128,URI="...",IV=0x...`), and the secret the cipher uses. Its
/// `Debug` prints the URI only.
#[derive(Clone)]
pub struct SegmentKey {
    uri: Arc<str>,
    iv: [u8; 16],
    secret: [u8; 16],
}

impl SegmentKey {
    /// A key named `uri` (relative to the media playlist, or path-absolute), with `iv` and
    /// the 16-byte AES-128 `secret`.
    pub fn new(uri: Arc<str>, iv: [u8; 16], secret: [u8; 16]) -> SegmentKey {
        SegmentKey { uri, iv, secret }
    }

    /// The key's URI.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The initialization vector (128 bits).
    pub fn iv(&self) -> &[u8; 16] {
        &self.iv
    }

    /// The AES-128 key.
    pub fn secret(&self) -> &[u8; 16] {
        &self.secret
    }

    /// Whether `self` and `other` are the same key (same URI).
    pub fn same_as(&self, other: &SegmentKey) -> bool {
        self.uri == other.uri
    }
}

impl fmt::Debug for SegmentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SegmentKey({:?}, <redacted>)", self.uri)
    }
}

/// Encrypts one event's segments and parts.
pub trait SegmentEncryption: Send + Sync + fmt::Debug {
    /// The key of segment `msn`: the same key every time it is asked for the same `msn`, and
    /// fetchable at its URI from the moment it is returned (the packager asks before it
    /// publishes a playlist that names it, and may ask ahead for a preload hint's segment).
    fn key(&self, msn: MediaSequence) -> SegmentKey;

    /// `plain` (one whole segment or part) encrypted with `key`.
    fn encrypt(&self, key: &SegmentKey, plain: &[u8]) -> Bytes;

    /// Every segment up to `msn` has left the playlists for good: keys only they used may go.
    fn release_through(&self, msn: MediaSequence);
}
