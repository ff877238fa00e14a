//! [`EventEncryption`]: the packager's encryption hook, one per event (and packager), for
//! `encryption = "aes-128"` (whole segments) and `"cbcs"` (samples): a key per rotation
//! period, made when a segment of the period is first asked for, kept in the key provider
//! until every segment of its period has left the playlists.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use weir_packager::{EncryptionMethod, MediaSequence, Pattern, SegmentEncryption, SegmentKey};

use crate::cipher::encrypt;
use crate::key::{ContentKey, KeyId};
use crate::schedule::RotationSchedule;
use crate::speke::{KeyFeed, ProvidedKey};
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
    /// `cbcs` keys from a DRM key provider, if the event has one.
    feed: Option<KeyFeed>,
    /// Whether `cbcs` keys are named for W3C ClearKey (and kept in `provider` for the
    /// edge's licences).
    clearkey: bool,
    /// The keys in use, by period.
    periods: Mutex<BTreeMap<u64, (KeyId, SegmentKey)>>,
    /// The key provider's last good answer, used again while it fails.
    last_provided: Mutex<Option<ProvidedKey>>,
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

    /// `cbcs` encryption for `event` on `schedule` whose keys, and the FairPlay, Widevine
    /// and PlayReady signalling that names them (`EXT-X-KEY` tags, `pssh` boxes), come from
    /// a DRM key provider through `feed`; the first period's key is asked for at once, each
    /// next one when its predecessor comes into use. With `clearkey`, each key is also named
    /// for W3C ClearKey and kept in `provider` for the edge's licences (for tests and
    /// browsers without a commercial CDM; off in production, where the key must only reach
    /// a DRM's licence server).
    ///
    /// When the key provider fails, the last key it gave is used again (the period is not
    /// rotated; logged, `weir_drm_key_provider_errors_total`); with no key from it yet, a
    /// local key is used, which only ClearKey (if on) names: segments are never clear.
    pub fn cbcs_from(
        event: &str,
        schedule: RotationSchedule,
        provider: Arc<dyn KeyProvider>,
        feed: KeyFeed,
        clearkey: bool,
    ) -> EventEncryption {
        feed.prefetch(schedule.period(0));
        let mut e =
            EventEncryption::with_method(event, EncryptionMethod::SampleAes, schedule, provider);
        e.feed = Some(feed);
        e.clearkey = clearkey;
        e
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
            feed: None,
            clearkey: true,
            periods: Mutex::new(BTreeMap::new()),
            last_provided: Mutex::new(None),
        }
    }

    /// How many keys it holds (bounded by the periods still listed).
    pub fn keys_held(&self) -> usize {
        self.periods.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// A new key for segments from `msn` on, as the packager names it.
    fn generate(&self, msn: MediaSequence) -> (KeyId, SegmentKey) {
        let mut key = match self.method {
            EncryptionMethod::Aes128 => return self.aes128(ContentKey::generate(msn.0)),
            EncryptionMethod::SampleAes => ContentKey::generate_cenc(msn.0),
        };
        let mut tags = Vec::new();
        let mut pssh = Vec::new();
        if let Some(provided) = self.provided(msn, key.iv) {
            key.id = KeyId::from_kid(&provided.kid);
            key.key = provided.key;
            key.iv = provided.iv.unwrap_or(key.iv);
            for s in provided.systems {
                tags.push(s.media_key_tag);
                pssh.extend(s.pssh.unwrap_or_default());
            }
        }
        let kid = key
            .id
            .kid()
            .unwrap_or_else(|| unreachable!("cbcs KIDs are 16 bytes"));
        if self.clearkey {
            self.keep(&key);
            tags.insert(0, clearkey_tag(&self.event, &kid));
            pssh.splice(0..0, pssh_box(&CLEARKEY_SYSTEM_ID, &[kid], &[]));
        }
        self.created(&key);
        let segment_key = SegmentKey::sample_aes(kid, key.iv, key.key, tags, Bytes::from(pssh));
        (key.id, segment_key)
    }

    /// An AES-128 key, kept in the key provider, named by the edge's key route.
    fn aes128(&self, key: ContentKey) -> (KeyId, SegmentKey) {
        self.keep(&key);
        self.created(&key);
        let uri = format!("/keys/{}/{}", self.event, key.id);
        (key.id, SegmentKey::new(uri.into(), key.iv, key.key))
    }

    /// Logs and counts a new key (its id only).
    fn created(&self, key: &ContentKey) {
        tracing::info!(event = %self.event, key_id = %key.id, first_msn = key.first_msn, "new content key");
        metrics::counter!("weir_drm_keys_created_total").increment(1);
    }

    /// Puts `key` in the key provider (for the edge).
    fn keep(&self, key: &ContentKey) {
        if let Err(e) = self.provider.put(&self.event, key) {
            // Kept in memory all the same: the live event plays on.
            tracing::error!(event = %self.event, key_id = %key.id, error = %e, "content key not persisted");
        }
    }

    /// The DRM key provider's key for the period of `msn` (asking for the next period's),
    /// or its last good one when it fails; `None` without a key provider or any answer. An
    /// answer without an IV gets `iv`, fixed with it so that a key used again is the same.
    fn provided(&self, msn: MediaSequence, iv: [u8; 16]) -> Option<ProvidedKey> {
        let feed = self.feed.as_ref()?;
        let period = self.schedule.period(msn.0);
        let answer = feed.take(period);
        if self.schedule.last_msn(period).is_some() {
            feed.prefetch(period + 1);
        }
        let mut last = self.last_provided.lock().unwrap_or_else(|e| e.into_inner());
        match answer {
            Ok(mut p) => {
                p.iv.get_or_insert(iv);
                *last = Some(p.clone());
                Some(p)
            }
            Err(e) => {
                metrics::counter!("weir_drm_key_provider_errors_total").increment(1);
                tracing::error!(
                    event = %self.event, period, error = %e,
                    "no key from the DRM key provider: the last one is used again (a local key if none)"
                );
                last.clone()
            }
        }
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

    fn encrypt_runs(
        &self,
        key: &SegmentKey,
        data: &mut [u8],
        runs: &[std::ops::Range<usize>],
        pattern: Pattern,
    ) {
        crate::cbcs::encrypt_runs(
            key.secret(),
            key.iv(),
            data,
            runs,
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
        let mut ids: Vec<KeyId> = done
            .iter()
            .filter_map(|p| periods.remove(p).map(|(id, _)| id))
            .collect();
        // A key used again for a later period (its key provider failing) stays.
        ids.retain(|id| periods.values().all(|(kept, _)| kept != id));
        drop(periods);
        tracing::debug!(event = %self.event, keys = ids.len(), "content keys released");
        self.provider.remove(&self.event, &ids);
    }
}

#[cfg(test)]
#[path = "segment_tests.rs"]
mod tests;
