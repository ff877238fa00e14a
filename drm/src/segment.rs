//! [`EventEncryption`]: the packager's encryption hook, one per event (and packager), for
//! `encryption = "aes-128"` (whole segments) and `"cbcs"` (samples): a key per rotation
//! period, made when a segment of the period is first asked for, kept in the key provider
//! until every segment of its period has left the playlists.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use weir_media::Subsample;
use weir_packager::{EncryptionMethod, MediaSequence, Pattern, SegmentEncryption, SegmentKey};

use crate::cipher::encrypt;
use crate::key::{ContentKey, KeyId};
use crate::schedule::RotationSchedule;
use crate::store::KeyProvider;
use crate::systems::{clearkey_tag, pssh_box, CLEARKEY_SYSTEM_ID};

/// One event's encryption: AES-128 whole segments (RFC 8216 §4.3.2.4) or `cbcs` samples
/// (ISO/IEC 23001-7 §10.4, `METHOD=SAMPLE-AES`).
#[derive(Debug)]
pub struct EventEncryption {
    event: String,
    method: EncryptionMethod,
    schedule: RotationSchedule,
    provider: Arc<dyn KeyProvider>,
    /// The keys in use, by period.
    periods: Mutex<BTreeMap<u64, (KeyId, SegmentKey)>>,
}

impl EventEncryption {
    /// AES-128 encryption for `event` on `schedule`, keeping its keys in `provider`. Keys are
    /// named `/keys/{event}/{key_id}` in playlists (the edge's key route).
    pub fn new(
        event: &str,
        schedule: RotationSchedule,
        provider: Arc<dyn KeyProvider>,
    ) -> EventEncryption {
        EventEncryption::with_method(event, EncryptionMethod::Aes128, schedule, provider)
    }

    /// `cbcs` encryption for `event` on `schedule`, keeping its keys (by 128-bit KID) in
    /// `provider`. Playlists name each key for W3C ClearKey (the edge's licence endpoint),
    /// and init segments carry its `pssh`.
    pub fn cbcs(
        event: &str,
        schedule: RotationSchedule,
        provider: Arc<dyn KeyProvider>,
    ) -> EventEncryption {
        EventEncryption::with_method(event, EncryptionMethod::SampleAes, schedule, provider)
    }

    fn with_method(
        event: &str,
        method: EncryptionMethod,
        schedule: RotationSchedule,
        provider: Arc<dyn KeyProvider>,
    ) -> EventEncryption {
        EventEncryption {
            event: event.to_string(),
            method,
            schedule,
            provider,
            periods: Mutex::new(BTreeMap::new()),
        }
    }

    /// How many keys it holds (bounded by the periods still listed).
    pub fn keys_held(&self) -> usize {
        self.periods.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// A new key for segments from `msn` on, as the packager names it.
    fn generate(&self, msn: MediaSequence) -> (KeyId, SegmentKey) {
        let key = match self.method {
            EncryptionMethod::Aes128 => ContentKey::generate(msn.0),
            EncryptionMethod::SampleAes => ContentKey::generate_cenc(msn.0),
        };
        if let Err(e) = self.provider.put(&self.event, &key) {
            // Kept in memory all the same: the live event plays on.
            tracing::error!(event = %self.event, key_id = %key.id, error = %e, "content key not persisted");
        }
        tracing::info!(event = %self.event, key_id = %key.id, first_msn = msn.0, "new content key");
        metrics::counter!("weir_drm_keys_created_total").increment(1);
        let segment_key = match (self.method, key.id.kid()) {
            (EncryptionMethod::SampleAes, Some(kid)) => SegmentKey::sample_aes(
                kid,
                key.iv,
                key.key,
                vec![clearkey_tag(&self.event, &kid)],
                Bytes::from(pssh_box(&CLEARKEY_SYSTEM_ID, &[kid], &[])),
            ),
            _ => SegmentKey::new(
                format!("/keys/{}/{}", self.event, key.id).into(),
                key.iv,
                key.key,
            ),
        };
        (key.id, segment_key)
    }
}

impl SegmentEncryption for EventEncryption {
    fn method(&self) -> EncryptionMethod {
        self.method
    }

    fn key(&self, msn: MediaSequence) -> SegmentKey {
        let period = self.schedule.period(msn.0);
        let mut periods = self.periods.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, k)) = periods.get(&period) {
            return k.clone();
        }
        let (id, segment_key) = self.generate(msn);
        periods.insert(period, (id, segment_key.clone()));
        segment_key
    }

    fn encrypt(&self, key: &SegmentKey, plain: &[u8]) -> Bytes {
        Bytes::from(encrypt(key.secret(), key.iv(), plain))
    }

    fn encrypt_sample(
        &self,
        key: &SegmentKey,
        sample: &mut [u8],
        subsamples: &[Subsample],
        pattern: Pattern,
    ) {
        crate::cbcs::encrypt_sample(
            key.secret(),
            key.iv(),
            sample,
            subsamples,
            (pattern.crypt, pattern.skip),
        );
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
        let e = EventEncryption::new(
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
