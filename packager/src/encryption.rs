//! The encryption hook: how an event's segments and parts are encrypted and which key each
//! segment names in the playlists. The packager calls it; the keys, their rotation and the
//! cipher belong to the `weir-drm` crate, which implements it.
//!
//! Two methods ([`EncryptionMethod`]):
//! - whole-resource encryption (RFC 8216 §4.3.2.4 `METHOD=AES-128`): every segment and every
//!   part (RFC 8216bis §4.4.4.9) is encrypted on its own with its segment's key and IV, so a
//!   player decrypts a part without the rest of its segment;
//! - CMAF `cbcs` Common Encryption (ISO/IEC 23001-7 §10.4, `METHOD=SAMPLE-AES` over fMP4,
//!   RFC 8216bis §4.4.4.4): each sample's protected ranges are encrypted by pattern, the init
//!   segment carries `encv`/`enca` + `sinf` and the key systems' `pssh`, and each fragment its
//!   `senc`/`saiz`/`saio` (and a `seig` sample group when its key is not the init segment's
//!   default). Parts need nothing more: a part is a fragment.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::MediaSequence;

/// How an event's media is encrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncryptionMethod {
    /// `METHOD=AES-128`: AES-128-CBC over each whole segment and part.
    Aes128,
    /// `METHOD=SAMPLE-AES` over CMAF: `cbcs` Common Encryption of each sample.
    SampleAes,
}

/// A `cbcs` encryption pattern (ISO/IEC 23001-7 §9.6): `crypt` 16-byte blocks encrypted, then
/// `skip` blocks clear, repeated over each protected range; 0:0 encrypts every whole block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pattern {
    /// `crypt_byte_block`, 0-15.
    pub crypt: u8,
    /// `skip_byte_block`, 0-15.
    pub skip: u8,
}

impl Pattern {
    /// Video: one block in ten (CMAF §8.2.3.2, what every `cbcs` player expects).
    pub const VIDEO: Pattern = Pattern { crypt: 1, skip: 9 };
    /// Audio: every whole block of the sample.
    pub const AUDIO: Pattern = Pattern { crypt: 0, skip: 0 };
}

/// The key a segment is encrypted with, as a playlist names it: its URI and IV
/// (`EXT-X-KEY:METHOD=AES-128,URI="...",IV=0x...`), and the secret the cipher uses. Its
/// `Debug` prints the URI only.
///
/// A `SAMPLE-AES` key also has its 16-byte key ID (KID), the `EXT-X-KEY` attribute lists of
/// its key systems, and the `pssh` boxes its init segments carry.
#[derive(Clone)]
pub struct SegmentKey {
    uri: Arc<str>,
    iv: [u8; 16],
    secret: [u8; 16],
    kid: [u8; 16],
    tags: Arc<[Box<str>]>,
    pssh: Bytes,
}

impl SegmentKey {
    /// A key named `uri` (relative to the media playlist, or path-absolute), with `iv` and
    /// the 16-byte AES-128 `secret`.
    pub fn new(uri: Arc<str>, iv: [u8; 16], secret: [u8; 16]) -> SegmentKey {
        SegmentKey {
            uri,
            iv,
            secret,
            kid: [0; 16],
            tags: Arc::new([]),
            pssh: Bytes::new(),
        }
    }

    /// A `cbcs` key: `kid` (the `tenc`/`seig` default KID), the constant `iv`, the `secret`;
    /// `tags` are the attribute lists of its `EXT-X-KEY` tags, one per key system, each
    /// starting `METHOD=SAMPLE-AES` (also written as `EXT-X-SESSION-KEY` in the master
    /// playlist); `pssh` the `pssh` boxes (whole boxes, concatenated) of the init segment.
    /// Its URI is the first tag's, for [`SegmentKey::uri`].
    pub fn sample_aes(
        kid: [u8; 16],
        iv: [u8; 16],
        secret: [u8; 16],
        tags: Vec<String>,
        pssh: Bytes,
    ) -> SegmentKey {
        let uri = tags
            .first()
            .and_then(|t| t.split("URI=\"").nth(1))
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default();
        SegmentKey {
            uri: uri.into(),
            iv,
            secret,
            kid,
            tags: tags.into_iter().map(String::into_boxed_str).collect(),
            pssh,
        }
    }

    /// The key ID (all zeros for an `AES-128` key).
    pub fn kid(&self) -> &[u8; 16] {
        &self.kid
    }

    /// The `EXT-X-KEY` attribute lists of a `SAMPLE-AES` key (empty for `AES-128`).
    pub fn tags(&self) -> &[Box<str>] {
        &self.tags
    }

    /// The `pssh` boxes of a `SAMPLE-AES` key's init segments.
    pub fn pssh(&self) -> &Bytes {
        &self.pssh
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

    /// Whether `self` and `other` are the same key (same URI and key ID).
    pub fn same_as(&self, other: &SegmentKey) -> bool {
        self.uri == other.uri && self.kid == other.kid
    }
}

impl fmt::Debug for SegmentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SegmentKey({:?}, <redacted>)", self.uri)
    }
}

/// Encrypts one event's segments and parts.
pub trait SegmentEncryption: Send + Sync + fmt::Debug {
    /// Which method: [`EncryptionMethod::Aes128`] unless said otherwise.
    fn method(&self) -> EncryptionMethod {
        EncryptionMethod::Aes128
    }

    /// The key of segment `msn`: the same key every time it is asked for the same `msn`, and
    /// fetchable at its URI from the moment it is returned (the packager asks before it
    /// publishes a playlist that names it, and may ask ahead for a preload hint's segment).
    fn key(&self, msn: MediaSequence) -> SegmentKey;

    /// `plain` (one whole segment or part) encrypted with `key` (`AES-128` only).
    fn encrypt(&self, key: &SegmentKey, plain: &[u8]) -> Bytes;

    /// `data` (a fragment's `mdat` payload) encrypted in place with `key` (`SAMPLE-AES`
    /// only): each of `runs` (byte ranges of `data`, not overlapping: a subsample's
    /// protected bytes, or a whole audio sample) is one CBC chain from the key's constant IV
    /// over the blocks `pattern` selects (ISO/IEC 23001-7 §10.4). All of a fragment's runs
    /// come in one call, so that their chains can be encrypted side by side.
    fn encrypt_runs(
        &self,
        key: &SegmentKey,
        data: &mut [u8],
        runs: &[std::ops::Range<usize>],
        pattern: Pattern,
    );

    /// Every segment up to `msn` has left the playlists for good: keys only they used may go.
    fn release_through(&self, msn: MediaSequence);
}
