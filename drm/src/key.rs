//! Content keys: 128-bit AES keys and IVs from the operating system's CSPRNG (`getrandom`),
//! each with an id that names it in URLs (`/keys/{event}/{key_id}`).

use std::fmt;

/// A content key's id: 16 lowercase hex digits, random (so ids say nothing about order or
/// count, and never repeat across restarts in practice).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct KeyId(String);

impl KeyId {
    /// A new random id.
    ///
    /// # Panics
    /// If the operating system has no randomness to give (nothing can be keyed then).
    pub fn random() -> KeyId {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).expect("the OS CSPRNG");
        KeyId(hex::encode(b))
    }

    /// A new random 128-bit Common Encryption key ID (ISO/IEC 23001-7 §3 KID, the `tenc`
    /// default KID): 32 hex digits.
    ///
    /// # Panics
    /// If the operating system has no randomness to give.
    pub fn random_kid() -> KeyId {
        let mut b = [0u8; 16];
        getrandom::fill(&mut b).expect("the OS CSPRNG");
        KeyId(hex::encode(b))
    }

    /// The id of the 128-bit KID `kid` (one a DRM key provider gave).
    pub(crate) fn from_kid(kid: &[u8; 16]) -> KeyId {
        KeyId(hex::encode(kid))
    }

    /// The id's 16 bytes when it is a 128-bit KID (32 hex digits).
    pub fn kid(&self) -> Option<[u8; 16]> {
        let mut b = [0u8; 16];
        hex::decode_to_slice(&self.0, &mut b).ok()?;
        Some(b)
    }

    /// Parses an id from a URL component: 1-32 of `[0-9a-z]`.
    pub fn parse(s: &str) -> Option<KeyId> {
        let ok = !s.is_empty()
            && s.len() <= 32
            && s.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase());
        ok.then(|| KeyId(s.to_string()))
    }

    /// The id as in URLs.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One content key: its id, the AES-128 key, the IV written in `EXT-X-KEY`, and the first
/// media sequence number it encrypts. Its `Debug` prints the id only.
#[derive(Clone, PartialEq, Eq)]
pub struct ContentKey {
    /// Its id.
    pub id: KeyId,
    /// The 128-bit key.
    pub key: [u8; 16],
    /// The 128-bit IV.
    pub iv: [u8; 16],
    /// The first segment it encrypts.
    pub first_msn: u64,
}

impl ContentKey {
    /// A new key and IV from the CSPRNG, for segments from `first_msn` on.
    ///
    /// # Panics
    /// If the operating system has no randomness to give.
    pub fn generate(first_msn: u64) -> ContentKey {
        ContentKey::with_id(KeyId::random(), first_msn)
    }

    /// A new key and IV from the CSPRNG with a 128-bit KID ([`KeyId::random_kid`]), for the
    /// Common Encryption of segments from `first_msn` on.
    ///
    /// # Panics
    /// If the operating system has no randomness to give.
    pub fn generate_cenc(first_msn: u64) -> ContentKey {
        ContentKey::with_id(KeyId::random_kid(), first_msn)
    }

    fn with_id(id: KeyId, first_msn: u64) -> ContentKey {
        let mut key = [0u8; 16];
        let mut iv = [0u8; 16];
        getrandom::fill(&mut key).expect("the OS CSPRNG");
        getrandom::fill(&mut iv).expect("the OS CSPRNG");
        ContentKey {
            id,
            key,
            iv,
            first_msn,
        }
    }
}

impl fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContentKey")
            .field("id", &self.id)
            .field("key", &"<redacted>")
            .field("first_msn", &self.first_msn)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_never_printed() {
        let a = ContentKey::generate(7);
        let b = ContentKey::generate(7);
        assert_ne!(a.key, b.key);
        assert_ne!(a.iv, b.iv);
        assert_ne!(a.id, b.id);
        let shown = format!("{a:?}");
        assert!(!shown.contains(&hex::encode(a.key)), "{shown}");
        assert!(shown.contains(a.id.as_str()));
        assert_eq!(KeyId::parse(a.id.as_str()), Some(a.id.clone()));
        for bad in ["", "A1", "a/b", &"a".repeat(33)] {
            assert_eq!(KeyId::parse(bad), None);
        }
        assert_eq!(a.id.kid(), None, "an AES-128 key id is 64 bits");
        let c = ContentKey::generate_cenc(7);
        let kid = c.id.kid().expect("a 128-bit KID");
        assert_eq!(hex::encode(kid), c.id.as_str());
        assert_eq!(KeyId::parse(c.id.as_str()), Some(c.id.clone()));
    }
}
