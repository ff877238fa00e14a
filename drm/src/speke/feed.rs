//! [`KeyFeed`]: one event's keys from a [`KeySource`], each fetched on a thread of its own
//! ahead of the rotation period that needs it, so the packager's thread does not wait on the
//! key provider (but for a key it asks before its fetch is done).

use std::collections::BTreeMap;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{DrmSystem, KeyRequest, KeySource, ProvidedKey, SpekeError};
use crate::key::KeyId;

/// Most periods fetched ahead at once (a feed asks for the next one only).
const MAX_PENDING: usize = 4;

/// The key provider side of a `cbcs` event: its source, the DRM systems asked for, and the
/// fetches under way by rotation period.
#[derive(Debug)]
pub struct KeyFeed {
    source: Arc<dyn KeySource>,
    content_id: String,
    systems: Vec<DrmSystem>,
    /// How long a period's key may be waited for once asked (the source's own timeout
    /// should be shorter).
    wait: Duration,
    pending: Mutex<BTreeMap<u64, Receiver<Result<ProvidedKey, SpekeError>>>>,
}

impl KeyFeed {
    /// A feed of `content_id`'s keys from `source` for `systems` (at least one), waiting at
    /// most `wait` for a key that is asked for.
    pub fn new(
        source: Arc<dyn KeySource>,
        content_id: &str,
        systems: Vec<DrmSystem>,
        wait: Duration,
    ) -> KeyFeed {
        KeyFeed {
            source,
            content_id: content_id.to_string(),
            systems,
            wait,
            pending: Mutex::new(BTreeMap::new()),
        }
    }

    /// The systems it asks for.
    pub fn systems(&self) -> &[DrmSystem] {
        &self.systems
    }

    /// Starts fetching `period`'s key (a new random KID) unless it is under way or done.
    pub fn prefetch(&self, period: u64) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.contains_key(&period) {
            return;
        }
        while pending.len() >= MAX_PENDING {
            pending.pop_first();
        }
        let kid = KeyId::random_kid()
            .kid()
            .unwrap_or_else(|| unreachable!("a random KID is 16 bytes"));
        let request = KeyRequest {
            content_id: self.content_id.clone(),
            kid,
            period,
            systems: self.systems.clone(),
        };
        let (tx, rx) = sync_channel(1);
        let source = self.source.clone();
        let fetch = move || {
            let _ = tx.send(source.fetch(&request));
        };
        match std::thread::Builder::new()
            .name("speke".into())
            .spawn(fetch)
        {
            Ok(_) => {
                pending.insert(period, rx);
            }
            Err(e) => {
                tracing::error!(event = %self.content_id, error = %e, "cannot start a key fetch");
            }
        }
    }

    /// `period`'s key: the prefetched one (waiting for it if its fetch is under way), or
    /// fetched now.
    ///
    /// # Errors
    /// The source's [`SpekeError`], or [`SpekeError::Http`] when no answer came within the
    /// feed's wait.
    pub fn take(&self, period: u64) -> Result<ProvidedKey, SpekeError> {
        self.prefetch(period);
        let rx = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&period);
        let Some(rx) = rx else {
            return Err(SpekeError::Http("no key fetch could be started".into()));
        };
        match rx.recv_timeout(self.wait) {
            Ok(answer) => answer,
            Err(RecvTimeoutError::Timeout) => Err(SpekeError::Http(format!(
                "no answer within {} ms",
                self.wait.as_millis()
            ))),
            Err(RecvTimeoutError::Disconnected) => Err(SpekeError::Http(
                "the key fetch ended without an answer".into(),
            )),
        }
    }
}
