//! weir's DRM: content keys and AES-128 segment encryption.
//!
//! ```text
//! packager --key(msn)--> Aes128Encryption --period of msn (RotationSchedule)--> a new key
//!                              |                 (CSPRNG key and IV)  --put--> KeyProvider
//!          <--SegmentKey-------+                                               (KeyStore: memory,
//!          --encrypt(key, segment or part)--> AES-128-CBC + PKCS7               and a file per event
//!                                                                               wrapped with the KEK)
//! origin --get(event, key id)--> KeyProvider --16 bytes--> edge --authorized viewer only
//! ```
//!
//! Sans-I/O but for the key store's files: the cipher ([`encrypt`]), the rotation schedule
//! ([`RotationSchedule`]) and the key wrapping are plain functions. No key ever appears in a
//! `Debug` output or a log line.

mod cipher;
mod key;
mod schedule;
mod segment;
mod store;

// The public interface.
pub use cipher::{decrypt, encrypt, CipherError};
pub use key::{ContentKey, KeyId};
pub use schedule::RotationSchedule;
pub use segment::Aes128Encryption;
pub use store::{KeyEncryptionKey, KeyProvider, KeyStore, KeyStoreError};
