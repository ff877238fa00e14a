//! EventEncryption: keys by period, released with their segments; keys from a DRM key
//! provider fetched ahead, reused while it fails.

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

/// A key provider in memory: a key derived from each KID, the signalling of each system;
/// it fails for periods from `fail_from` on.
#[derive(Debug)]
struct FakeProvider {
    asked: Mutex<Vec<crate::speke::KeyRequest>>,
    fail_from: u64,
}

impl crate::speke::KeySource for FakeProvider {
    fn fetch(
        &self,
        request: &crate::speke::KeyRequest,
    ) -> Result<ProvidedKey, crate::speke::SpekeError> {
        self.asked.lock().unwrap().push(request.clone());
        if request.period >= self.fail_from {
            return Err(crate::speke::SpekeError::Status {
                status: 503,
                body: String::new(),
            });
        }
        let mut key = request.kid;
        key.reverse();
        let systems = request
            .systems
            .iter()
            .map(|s| crate::speke::SystemSignalling {
                system: *s,
                pssh: s
                    .has_pssh()
                    .then(|| pssh_box(&s.system_id(), &[request.kid], b"x")),
                media_key_tag: format!("METHOD=SAMPLE-AES,URI=\"skd://{}\"", s.name()),
                session_key_tag: None,
            })
            .collect();
        Ok(ProvidedKey {
            kid: request.kid,
            key,
            iv: None,
            systems,
        })
    }
}

fn sourced(fail_from: u64, clearkey: bool) -> (Arc<FakeProvider>, Arc<KeyStore>, EventEncryption) {
    use crate::speke::DrmSystem;
    let store = Arc::new(KeyStore::in_memory());
    let source = Arc::new(FakeProvider {
        asked: Mutex::default(),
        fail_from,
    });
    let systems = vec![DrmSystem::Widevine, DrmSystem::FairPlay];
    let feed = KeyFeed::new(
        source.clone(),
        "ev",
        systems,
        std::time::Duration::from_secs(30),
    );
    let schedule = RotationSchedule::new(100, NonZeroU32::new(2));
    let e = EventEncryption::cbcs_from("ev", schedule, store.clone(), feed, clearkey);
    (source, store, e)
}

#[test]
fn key_provider_keys_are_fetched_a_period_ahead_with_their_systems_signalling() {
    use crate::speke::DrmSystem;
    let (source, store, e) = sourced(u64::MAX, false);
    let k = |m| e.key(MediaSequence(m));
    let first = k(100);
    // The provider's key and KID, its systems' tags and pssh boxes; no ClearKey.
    let mut want = *first.kid();
    want.reverse();
    assert_eq!(first.secret(), &want);
    assert_eq!(first.tags().len(), 2);
    assert!(
        first.tags()[0].contains("skd://widevine"),
        "{:?}",
        first.tags()
    );
    assert!(first.tags()[1].contains("skd://fairplay"));
    let pssh = first.pssh();
    assert_eq!(&pssh[4..8], b"pssh");
    assert_eq!(pssh[12..28], DrmSystem::Widevine.system_id());
    let size = u32::from_be_bytes(pssh[..4].try_into().unwrap()) as usize;
    assert_eq!(pssh.len(), size, "one box: FairPlay has none");
    let id = hex::encode(first.kid());
    assert!(
        store.get("ev", &id).is_none(),
        "without ClearKey no licence can name it"
    );
    assert!(k(101).same_as(&first));
    // Period 1 was asked for when period 0 came into use, with its own KID and index.
    let second = k(102);
    assert!(!second.same_as(&first));
    let asked = source.asked.lock().unwrap();
    let periods: Vec<u64> = asked.iter().map(|r| r.period).collect();
    assert_eq!(periods[..2], [0, 1], "{periods:?}");
    assert!(asked
        .iter()
        .all(|r| r.content_id == "ev" && r.systems.len() == 2));
    assert_eq!(asked[1].kid, *second.kid());
}

#[test]
fn a_failing_key_provider_leaves_the_last_key_in_use_never_the_clear() {
    let (_, store, e) = sourced(1, true);
    let k = |m| e.key(MediaSequence(m));
    let first = k(100);
    // ClearKey first, then the provider's systems.
    assert_eq!(first.tags().len(), 3);
    assert!(first.tags()[0].contains("org.w3.clearkey"));
    let id = hex::encode(first.kid());
    assert_eq!(store.get("ev", &id), Some(*first.secret()));
    // Periods 1 and 2: the provider fails; period 0's key goes on.
    for m in [102, 104] {
        let again = k(m);
        assert!(again.same_as(&first));
        assert_eq!((again.secret(), again.iv()), (first.secret(), first.iv()));
    }
    // Period 0's segments gone: its key stays, periods 1 and 2 use it.
    e.release_through(MediaSequence(101));
    assert_eq!(store.get("ev", &id), Some(*first.secret()));
    e.release_through(MediaSequence(105));
    assert_eq!(store.get("ev", &id), None);
}
