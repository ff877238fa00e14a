//! weir's DRM: content keys, AES-128 segment encryption and `cbcs` sample encryption, and
//! keys from commercial DRM key providers over SPEKE v2.0 ([`speke`]).
//!
//! ```text
//! packager --key(msn)--> EventEncryption  --period of msn (RotationSchedule)--> a new key
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

mod cbcs;
mod cipher;
mod key;
mod schedule;
mod segment;
pub mod speke;
mod store;
mod systems;

// The public interface.
pub use cbcs::{decrypt_sample, encrypt_runs, encrypt_sample};
pub use cipher::{decrypt, encrypt, CipherError};
pub use key::{ContentKey, KeyId};
pub use schedule::RotationSchedule;
pub use segment::EventEncryption;
pub use store::{KeyEncryptionKey, KeyProvider, KeyStore, KeyStoreError};
pub use systems::{clearkey_tag, pssh_box, CLEARKEY_KEYFORMAT, CLEARKEY_SYSTEM_ID};
