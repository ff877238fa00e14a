//! An event's encryption (`encryption`, `key_rotation_segments` in `[[events]]` and the admin
//! API) and the key-encryption key of the key store (`[access] key_encryption_key`).

use std::fmt;
use std::num::NonZeroU32;

use crate::ConfigError;

/// How an event's segments and parts are encrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encryption {
    /// In the clear (the default).
    None,
    /// `METHOD=AES-128` (RFC 8216 §4.3.2.4): AES-128-CBC with PKCS#7 over each whole segment
    /// and part, keys issued by the edge to authorized viewers.
    Aes128 {
        /// A new key every this many segments; `None`: one key for good.
        rotate_every: Option<NonZeroU32>,
    },
    /// `METHOD=SAMPLE-AES` over CMAF: `cbcs` Common Encryption of each sample (ISO/IEC
    /// 23001-7 §10.4), licences (W3C ClearKey) issued by the edge to authorized viewers.
    Cbcs {
        /// A new key every this many segments; `None`: one key for good.
        rotate_every: Option<NonZeroU32>,
    },
}

/// The default rotation: a new key every 10 segments.
pub const DEFAULT_KEY_ROTATION_SEGMENTS: u32 = 10;

impl Encryption {
    /// Validates `encryption` (`"none"`, `"aes-128"` or `"cbcs"`, default none) and
    /// `key_rotation_segments` (0 = never, default 10, at most 100 000) of event `event`.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the field.
    pub fn validate(
        event: &str,
        encryption: Option<&str>,
        key_rotation_segments: Option<u32>,
    ) -> Result<Encryption, ConfigError> {
        let rotation = key_rotation_segments.unwrap_or(DEFAULT_KEY_ROTATION_SEGMENTS);
        if rotation > 100_000 {
            return Err(ConfigError::Invalid(format!(
                "events.key_rotation_segments of {event:?}: 0..=100000"
            )));
        }
        match encryption.unwrap_or("none") {
            "none" => Ok(Encryption::None),
            "aes-128" => Ok(Encryption::Aes128 {
                rotate_every: NonZeroU32::new(rotation),
            }),
            "cbcs" => Ok(Encryption::Cbcs {
                rotate_every: NonZeroU32::new(rotation),
            }),
            other => Err(ConfigError::Invalid(format!(
                "events.encryption of {event:?}: {other:?} is not \"none\", \"aes-128\" or \"cbcs\""
            ))),
        }
    }
}

/// The key store's key-encryption key: 32 bytes. Its `Debug` prints nothing.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyEncryptionKeyBytes(pub [u8; 32]);

impl KeyEncryptionKeyBytes {
    /// Parses 64 hex digits.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`].
    pub fn from_hex(s: &str) -> Result<KeyEncryptionKeyBytes, ConfigError> {
        let mut b = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut b).map_err(|_| {
            ConfigError::Invalid(
                "access.key_encryption_key: 64 hex digits (e.g. `openssl rand -hex 32`)".into(),
            )
        })?;
        Ok(KeyEncryptionKeyBytes(b))
    }
}

impl fmt::Debug for KeyEncryptionKeyBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyEncryptionKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encryption_options() {
        assert_eq!(
            Encryption::validate("e", None, None).unwrap(),
            Encryption::None
        );
        assert_eq!(
            Encryption::validate("e", Some("aes-128"), None).unwrap(),
            Encryption::Aes128 {
                rotate_every: NonZeroU32::new(10)
            }
        );
        assert_eq!(
            Encryption::validate("e", Some("aes-128"), Some(0)).unwrap(),
            Encryption::Aes128 { rotate_every: None }
        );
        assert_eq!(
            Encryption::validate("e", Some("cbcs"), Some(3)).unwrap(),
            Encryption::Cbcs {
                rotate_every: NonZeroU32::new(3)
            }
        );
        for (enc, rot, field) in [
            (Some("cenc"), None, "events.encryption"),
            (Some("aes-128"), Some(100_001), "key_rotation_segments"),
        ] {
            let e = Encryption::validate("e", enc, rot).unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        }
        let k = KeyEncryptionKeyBytes::from_hex(&"0f".repeat(32)).unwrap();
        assert!(!format!("{k:?}").contains("0f"));
        assert!(KeyEncryptionKeyBytes::from_hex("0f").is_err());
    }
}
