//! The key store: where content keys live between the packager that makes them and the origin
//! that hands them to edges. [`KeyProvider`] is the interface (a commercial key server, e.g.
//! SPEKE, would be another implementation); [`KeyStore`] keeps keys in memory and, with a
//! directory, in one file per event, each key wrapped with AES-256-GCM under the key-encryption
//! key (KEK) and bound to its event and id (the associated data), so the file holds no key in
//! the clear and a wrapped key moved to another event or id does not unwrap.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use serde::{Deserialize, Serialize};

use crate::key::{ContentKey, KeyId};

/// Why the key store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyStoreError {
    /// Reading or writing a key file.
    #[error("key store {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A key-encryption key that is not 64 hex digits.
    #[error("key_encryption_key: 64 hex digits (32 bytes), e.g. `openssl rand -hex 32`")]
    BadKek,
}

/// Where content keys are kept and found.
pub trait KeyProvider: Send + Sync + fmt::Debug {
    /// Keeps `key` for `event` (fetchable by [`get`](Self::get) when this returns).
    ///
    /// # Errors
    /// Persisting failed; the key is still kept in memory.
    fn put(&self, event: &str, key: &ContentKey) -> Result<(), KeyStoreError>;

    /// The 16 bytes of key `id` of `event`, if kept.
    fn get(&self, event: &str, id: &str) -> Option<[u8; 16]>;

    /// Drops keys `ids` of `event`.
    fn remove(&self, event: &str, ids: &[KeyId]);

    /// Drops every key of `event` (the event was deleted).
    fn forget(&self, event: &str);
}

/// The 256-bit key-encryption key. Its `Debug` prints nothing.
#[derive(Clone)]
pub struct KeyEncryptionKey([u8; 32]);

impl KeyEncryptionKey {
    /// Parses 64 hex digits.
    ///
    /// # Errors
    /// [`KeyStoreError::BadKek`].
    pub fn from_hex(s: &str) -> Result<KeyEncryptionKey, KeyStoreError> {
        let mut b = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut b).map_err(|_| KeyStoreError::BadKek)?;
        Ok(KeyEncryptionKey(b))
    }

    /// The key of these 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> KeyEncryptionKey {
        KeyEncryptionKey(bytes)
    }

    /// A random one (keys written with it cannot be read after a restart).
    ///
    /// # Panics
    /// If the operating system has no randomness to give.
    pub fn generate() -> KeyEncryptionKey {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).expect("the OS CSPRNG");
        KeyEncryptionKey(b)
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new((&self.0).into())
    }
}

impl fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyEncryptionKey(<redacted>)")
    }
}

/// One key as written to disk.
#[derive(Serialize, Deserialize)]
struct Wrapped {
    id: String,
    first_msn: u64,
    /// The IV, hex (it is in every playlist anyway).
    iv: String,
    /// 12-byte nonce, then the AES-256-GCM ciphertext and tag of the key, hex.
    wrapped: String,
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    version: u32,
    event: String,
    keys: Vec<Wrapped>,
}

fn aad(event: &str, id: &str) -> Vec<u8> {
    format!("weir-content-key|{event}|{id}").into_bytes()
}

impl KeyEncryptionKey {
    fn wrap(&self, event: &str, k: &ContentKey) -> Wrapped {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).expect("the OS CSPRNG");
        let aad = aad(event, k.id.as_str());
        let sealed = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &k.key,
                    aad: &aad,
                },
            )
            .expect("AES-GCM seals 16 bytes");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Wrapped {
            id: k.id.to_string(),
            first_msn: k.first_msn,
            iv: hex::encode(k.iv),
            wrapped: hex::encode(out),
        }
    }

    fn unwrap(&self, event: &str, w: &Wrapped) -> Option<ContentKey> {
        let id = KeyId::parse(&w.id)?;
        let bytes = hex::decode(&w.wrapped).ok()?;
        if bytes.len() < 12 {
            return None;
        }
        let (nonce, sealed) = bytes.split_at(12);
        let aad = aad(event, &w.id);
        let key = self
            .cipher()
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .ok()?;
        let mut iv = [0u8; 16];
        hex::decode_to_slice(&w.iv, &mut iv).ok()?;
        Some(ContentKey {
            id,
            key: key.try_into().ok()?,
            iv,
            first_msn: w.first_msn,
        })
    }
}

/// Keys in memory, and in `{dir}/{event}.keys.json` when a directory is given.
pub struct KeyStore {
    kek: KeyEncryptionKey,
    dir: Option<PathBuf>,
    keys: RwLock<HashMap<String, BTreeMap<KeyId, ContentKey>>>,
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        f.debug_struct("KeyStore")
            .field("dir", &self.dir)
            .field("events", &keys.len())
            .field("keys", &keys.values().map(BTreeMap::len).sum::<usize>())
            .finish()
    }
}

impl KeyStore {
    /// A store in memory only.
    pub fn in_memory() -> KeyStore {
        KeyStore {
            kek: KeyEncryptionKey::generate(),
            dir: None,
            keys: RwLock::new(HashMap::new()),
        }
    }

    /// A store persisted in `dir` (created if missing), its keys wrapped with `kek`; the keys
    /// already there are loaded (those `kek` does not unwrap are skipped with a warning).
    ///
    /// # Errors
    /// The directory cannot be created or read.
    pub fn open(dir: &Path, kek: KeyEncryptionKey) -> Result<KeyStore, KeyStoreError> {
        let io = |source| KeyStoreError::Io {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut keys = HashMap::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if !path.to_string_lossy().ends_with(".keys.json") {
                continue;
            }
            let Some(file) = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<KeyFile>(&b).ok())
            else {
                tracing::warn!(path = %path.display(), "unreadable key file skipped");
                continue;
            };
            let mut loaded = BTreeMap::new();
            for w in &file.keys {
                match kek.unwrap(&file.event, w) {
                    Some(k) => {
                        loaded.insert(k.id.clone(), k);
                    }
                    None => tracing::warn!(event = %file.event, key_id = %w.id,
                        "a stored content key does not unwrap with this key_encryption_key; skipped"),
                }
            }
            keys.insert(file.event, loaded);
        }
        Ok(KeyStore {
            kek,
            dir: Some(dir.to_path_buf()),
            keys: RwLock::new(keys),
        })
    }

    /// The file of `event`'s keys.
    pub fn file_of(&self, event: &str) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{event}.keys.json")))
    }

    fn persist(
        &self,
        event: &str,
        keys: &BTreeMap<KeyId, ContentKey>,
    ) -> Result<(), KeyStoreError> {
        let Some(path) = self.file_of(event) else {
            return Ok(());
        };
        let io = |source| KeyStoreError::Io {
            path: path.clone(),
            source,
        };
        if keys.is_empty() {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(e)),
                _ => Ok(()),
            };
        }
        let file = KeyFile {
            version: 1,
            event: event.to_string(),
            keys: keys.values().map(|k| self.kek.wrap(event, k)).collect(),
        };
        let text = serde_json::to_vec_pretty(&file).expect("JSON of strings and numbers");
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }

    fn change(
        &self,
        event: &str,
        f: impl FnOnce(&mut BTreeMap<KeyId, ContentKey>),
    ) -> Result<(), KeyStoreError> {
        let mut all = self.keys.write().unwrap_or_else(|e| e.into_inner());
        let keys = all.entry(event.to_string()).or_default();
        f(keys);
        let result = self.persist(event, keys);
        if keys.is_empty() {
            all.remove(event);
        }
        result
    }
}

impl KeyProvider for KeyStore {
    fn put(&self, event: &str, key: &ContentKey) -> Result<(), KeyStoreError> {
        self.change(event, |keys| {
            keys.insert(key.id.clone(), key.clone());
        })
    }

    fn get(&self, event: &str, id: &str) -> Option<[u8; 16]> {
        let id = KeyId::parse(id)?;
        let all = self.keys.read().unwrap_or_else(|e| e.into_inner());
        all.get(event)?.get(&id).map(|k| k.key)
    }

    fn remove(&self, event: &str, ids: &[KeyId]) {
        if let Err(e) = self.change(event, |keys| {
            for id in ids {
                keys.remove(id);
            }
        }) {
            tracing::warn!(event, error = %e, "key store not updated");
        }
    }

    fn forget(&self, event: &str) {
        let mut all = self.keys.write().unwrap_or_else(|e| e.into_inner());
        all.remove(event);
        drop(all);
        if let Some(path) = self.file_of(event) {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_persist_wrapped_and_reload() {
        let dir = std::env::temp_dir().join(format!("weir-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let kek = KeyEncryptionKey::from_hex(&"ab".repeat(32)).unwrap();
        let store = KeyStore::open(&dir, kek.clone()).unwrap();
        let (a, b) = (ContentKey::generate(1), ContentKey::generate(11));
        store.put("ev", &a).unwrap();
        store.put("ev", &b).unwrap();
        assert_eq!(store.get("ev", a.id.as_str()), Some(a.key));
        assert_eq!(store.get("other", a.id.as_str()), None);
        // The file holds no key in the clear, in bytes or hex.
        let file = std::fs::read(store.file_of("ev").unwrap()).unwrap();
        for k in [&a, &b] {
            assert!(!file.windows(16).any(|w| w == k.key));
            let text = String::from_utf8_lossy(&file).to_lowercase();
            assert!(!text.contains(&hex::encode(k.key)));
        }
        // Reopened with the KEK: the same keys; with another KEK: none.
        let again = KeyStore::open(&dir, kek.clone()).unwrap();
        assert_eq!(again.get("ev", b.id.as_str()), Some(b.key));
        let wrong = KeyStore::open(&dir, KeyEncryptionKey::generate()).unwrap();
        assert_eq!(wrong.get("ev", b.id.as_str()), None);
        // A wrapped key moved to another event does not unwrap there.
        let w = kek.wrap("ev", &a);
        assert!(kek.unwrap("other", &w).is_none());
        assert!(kek.unwrap("ev", &w).is_some());
        // Removed keys leave the file; the last one removes it.
        again.remove("ev", std::slice::from_ref(&a.id));
        assert_eq!(again.get("ev", a.id.as_str()), None);
        again.remove("ev", std::slice::from_ref(&b.id));
        assert!(!again.file_of("ev").unwrap().exists());
        assert!(!format!("{kek:?}{again:?}").contains("abab"));
        assert!(KeyEncryptionKey::from_hex("abc").is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
