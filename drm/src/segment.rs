//! [`Aes128Encryption`]: the packager's encryption hook for `encryption = "aes-128"`, one per
//! event (and packager): a key per rotation period, made when a segment of the period is first
//! asked for, kept in the key provider until every segment of its period has left the
//! playlists.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use weir_packager::{MediaSequence, SegmentEncryption, SegmentKey};

use crate::cipher::encrypt;
use crate::key::{ContentKey, KeyId};
use crate::schedule::RotationSchedule;
use crate::store::KeyProvider;

/// AES-128 whole-segment encryption for one event (RFC 8216 §4.3.2.4).
#[derive(Debug)]
pub struct Aes128Encryption {
    event: String,
    schedule: RotationSchedule,
    provider: Arc<dyn KeyProvider>,
    /// The keys in use, by period.
    periods: Mutex<BTreeMap<u64, (KeyId, SegmentKey)>>,
}

impl Aes128Encryption {
    /// Encryption for `event` on `schedule`, keeping its keys in `provider`. Keys are named
    /// `/keys/{event}/{key_id}` in playlists (the edge's key route).
    pub fn new(
        event: &str,
        schedule: RotationSchedule,
        provider: Arc<dyn KeyProvider>,
    ) -> Aes128Encryption {
        Aes128Encryption {
            event: event.to_string(),
            schedule,
            provider,
            periods: Mutex::new(BTreeMap::new()),
        }
    }

    /// How many keys it holds (bounded by the periods still listed).
    pub fn keys_held(&self) -> usize {
        self.periods.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl SegmentEncryption for Aes128Encryption {
    fn key(&self, msn: MediaSequence) -> SegmentKey {
        let period = self.schedule.period(msn.0);
        let mut periods = self.periods.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, k)) = periods.get(&period) {
            return k.clone();
        }
        let key = ContentKey::generate(msn.0);
        if let Err(e) = self.provider.put(&self.event, &key) {
            // Kept in memory all the same: the live event plays on.
            tracing::error!(event = %self.event, key_id = %key.id, error = %e, "content key not persisted");
        }
        tracing::info!(event = %self.event, key_id = %key.id, first_msn = msn.0, "new content key");
        metrics::counter!("weir_drm_keys_created_total").increment(1);
        let uri: Arc<str> = format!("/keys/{}/{}", self.event, key.id).into();
        let segment_key = SegmentKey::new(uri, key.iv, key.key);
        periods.insert(period, (key.id, segment_key.clone()));
        segment_key
    }

    fn encrypt(&self, key: &SegmentKey, plain: &[u8]) -> Bytes {
        Bytes::from(encrypt(key.secret(), key.iv(), plain))
    }

    fn release_through(&self, msn: MediaSequence) {
        let mut periods = self.periods.lock().unwrap_or_else(|e| e.into_inner());
        let done: Vec<u64> = periods
            .keys()
            .copied()
            .filter(|p| self.schedule.last_msn(*p).is_some_and(|last| last <= msn.0))
            .collect();
        if done.is_empty() {
            return;
        }
        let ids: Vec<KeyId> = done
            .iter()
            .filter_map(|p| periods.remove(p).map(|(id, _)| id))
            .collect();
        drop(periods);
        tracing::debug!(event = %self.event, keys = ids.len(), "content keys released");
        self.provider.remove(&self.event, &ids);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::KeyStore;
    use std::num::NonZeroU32;

    #[test]
    fn a_key_per_period_kept_until_its_segments_are_gone() {
        let store = Arc::new(KeyStore::in_memory());
        let e = Aes128Encryption::new(
            "ev",
            RotationSchedule::new(100, NonZeroU32::new(2)),
            store.clone(),
        );
        let k = |m| e.key(MediaSequence(m));
        assert!(k(100).same_as(&k(101)));
        assert!(!k(101).same_as(&k(102)));
        assert!(k(102).uri().starts_with("/keys/ev/"));
        let id = |key: &SegmentKey| key.uri().rsplit('/').next().unwrap().to_string();
        let first = id(&k(100));
        assert_eq!(store.get("ev", &first), Some(*k(100).secret()));
        // Segment 100 gone: its key stays (101 uses it); 101 gone: it goes.
        e.release_through(MediaSequence(100));
        assert!(store.get("ev", &first).is_some());
        e.release_through(MediaSequence(101));
        assert_eq!(store.get("ev", &first), None);
        assert_eq!(e.keys_held(), 1);
        // What it encrypts decrypts with the key and IV the playlist names.
        let key = k(102);
        let c = e.encrypt(&key, b"moof mdat");
        assert_eq!(
            crate::decrypt(key.secret(), key.iv(), &c).unwrap(),
            b"moof mdat"
        );
    }
}
