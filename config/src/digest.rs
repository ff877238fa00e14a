//! Secrets held as their SHA-256 digest only (stream keys, admin tokens): stored and compared
//! without the secret itself.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The SHA-256 digest of a secret. Compares in constant time.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SecretDigest([u8; 32]);

impl SecretDigest {
    /// The digest of `secret`.
    pub(crate) fn of(secret: &str) -> SecretDigest {
        SecretDigest(Sha256::digest(secret.as_bytes()).into())
    }

    /// A digest written by [`hex`](Self::hex) (64 hex digits); `None` if it is not one.
    pub(crate) fn from_hex(hex_digest: &str) -> Option<SecretDigest> {
        let mut out = [0; 32];
        hex::decode_to_slice(hex_digest, &mut out).ok()?;
        Some(SecretDigest(out))
    }

    /// 64 lowercase hex digits.
    pub(crate) fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Whether `candidate` has this digest, in time that does not depend on where they differ.
    pub(crate) fn matches(&self, candidate: &str) -> bool {
        self.matches_digest(&SecretDigest::of(candidate))
    }

    /// Whether two digests are equal, in constant time.
    pub(crate) fn matches_digest(&self, other: &SecretDigest) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}
