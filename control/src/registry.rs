//! The live events: ingest's [`EventDirectory`]. Each event has up to two inputs (its primary
//! and backup stream keys); its [`InputSelector`] decides which one is packaged, and a
//! [`Pipeline`] packages it. Events are added, changed and removed while weir runs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Instant, SystemTime};

use weir_config::{Encryption, EventSettings, LadderSettings, PackagerSettings, StreamKey};
use weir_drm::speke::{DrmSystem, KeyFeed, KeySource, SpekeClient};
use weir_drm::{EventEncryption, KeyProvider, RotationSchedule};
use weir_ingest::{
    Admission, Departure, EventDirectory, FailoverPolicy, InputRole, InputSelector, PublishRequest,
    PublishSession, Rejection, Route, Switch, SwitchReason,
};
use weir_media::{Frame, TrackInfo};
use weir_origin::{EventId, Store};
use weir_packager::{MediaSequence, Packager, PackagerConfig, TargetDurationPolicy};

use crate::hooks::Hooks;
use crate::pipeline::{lock, EventOutput, EventState, Pipeline};
use crate::status::{unix_ms, EventStatus, InputMeter, RenditionStatus};

/// Why the registry refused a change.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryError {
    /// Another event has this stream key (primary or backup).
    #[error("another event has this stream key")]
    KeyInUse,
    /// The change needs the event to have no publisher (`low_latency` and `window_segments`
    /// change the playlists' form).
    #[error("the event has a publisher; kick it first")]
    Live,
    /// The event id is not valid in URLs.
    #[error("bad event id")]
    BadId,
}

/// The live events.
pub struct Registry<S: Store> {
    events: RwLock<HashMap<String, Arc<LiveEvent<S>>>>,
    packager: PackagerSettings,
    store: Arc<S>,
    hooks: Arc<Hooks>,
    /// Where encrypted events keep their content keys.
    keys: Arc<dyn KeyProvider>,
    /// Where `cbcs` events' keys come from, and which systems name them.
    drm: CbcsKeys,
}

/// How `cbcs` events get their keys (`[drm]`): named for W3C ClearKey or not, and from a
/// DRM key provider (SPEKE v2.0) or made locally.
#[derive(Clone, Debug)]
pub(crate) struct CbcsKeys {
    /// Whether keys are also named for ClearKey (and licensed by the edge).
    pub(crate) clearkey: bool,
    /// The key provider, the systems asked of it, and how long a key may be waited for.
    pub(crate) provider: Option<(Arc<dyn KeySource>, Vec<DrmSystem>, std::time::Duration)>,
}

impl CbcsKeys {
    /// From the configuration's `[drm]`.
    pub(crate) fn from_settings(drm: &weir_config::DrmSettings) -> CbcsKeys {
        let provider = drm.speke.as_ref().map(|s| {
            let headers = s
                .headers
                .iter()
                .map(|(n, v)| (n.clone(), v.expose().to_string()))
                .collect();
            let client: Arc<dyn KeySource> = Arc::new(SpekeClient::new(&s.url, headers, s.timeout));
            let systems = s
                .systems
                .iter()
                .filter_map(|n| DrmSystem::parse(n))
                .collect();
            // A key is waited for a little longer than one exchange may take.
            (
                client,
                systems,
                s.timeout + std::time::Duration::from_secs(1),
            )
        });
        CbcsKeys {
            clearkey: drm.clearkey,
            provider,
        }
    }
}

impl<S: Store> std::fmt::Debug for Registry<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("events", &self.read().len())
            .finish_non_exhaustive()
    }
}

struct LiveEvent<S: Store> {
    settings: RwLock<EventSettings>,
    output: EventOutput<S>,
    inputs: Mutex<Inputs<S>>,
}

/// Which input is packaged, what packages it, and who is connected.
struct Inputs<S: Store> {
    selector: InputSelector,
    pipeline: Option<Pipeline<S>>,
    connected: [Option<Connected>; 2],
}

/// A connected publisher, as the event sees it.
struct Connected {
    revoked: Arc<AtomicBool>,
    meter: Arc<Mutex<InputMeter>>,
}

fn role_index(role: InputRole) -> usize {
    match role {
        InputRole::Primary => 0,
        InputRole::Backup => 1,
    }
}

fn policy(settings: &EventSettings) -> FailoverPolicy {
    FailoverPolicy {
        failover_after: settings.failover.failover_after,
        failback_after: settings.failover.failback_after,
    }
}

fn lock_inputs<S: Store>(inputs: &Mutex<Inputs<S>>) -> MutexGuard<'_, Inputs<S>> {
    inputs.lock().unwrap_or_else(|e| e.into_inner())
}

/// How often what left every event's playlists is checked for expiry.
pub(crate) const EXPIRE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl<S: Store> Registry<S> {
    /// Every [`EXPIRE_EVERY`], lets each event go of the segments, parts and init segments
    /// whose availability time has passed (the packager otherwise does it only as new
    /// segments arrive, so an event whose publisher left kept its last ones). Runs until
    /// dropped.
    pub async fn expire_loop(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(EXPIRE_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let events: Vec<Arc<LiveEvent<S>>> = self.read().values().cloned().collect();
            for e in events {
                e.output.expire();
            }
        }
    }

    /// An empty registry whose events package with `packager` into `store`, telling `hooks`.
    pub(crate) fn new(
        packager: PackagerSettings,
        store: Arc<S>,
        hooks: Arc<Hooks>,
        keys: Arc<dyn KeyProvider>,
        drm: CbcsKeys,
    ) -> Registry<S> {
        Registry {
            events: RwLock::new(HashMap::new()),
            packager,
            store,
            hooks,
            keys,
            drm,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<LiveEvent<S>>>> {
        self.events.read().unwrap_or_else(|e| e.into_inner())
    }

    fn packager_for(&self, settings: &EventSettings) -> Packager {
        // A (re)created packager starts above every media sequence number used before.
        let started_ms = unix_ms(SystemTime::now());
        // weir's encoder places every keyframe when no rendition is the source's.
        let encoded = settings.ladder.video.iter().all(|v| v.encoding.is_some());
        let first_msn = MediaSequence::from_unix_millis(started_ms);
        let encryption: Option<Arc<dyn weir_packager::SegmentEncryption>> =
            match settings.encryption {
                Encryption::None => None,
                Encryption::Aes128 { rotate_every } => Some(Arc::new(EventEncryption::new(
                    &settings.id,
                    RotationSchedule::new(first_msn.0, rotate_every),
                    self.keys.clone(),
                ))),
                Encryption::Cbcs { rotate_every } => {
                    let schedule = RotationSchedule::new(first_msn.0, rotate_every);
                    let keys = self.keys.clone();
                    Some(Arc::new(match &self.drm.provider {
                        None => EventEncryption::cbcs(&settings.id, schedule, keys),
                        Some((source, systems, wait)) => {
                            let feed =
                                KeyFeed::new(source.clone(), &settings.id, systems.clone(), *wait);
                            EventEncryption::cbcs_from(
                                &settings.id,
                                schedule,
                                keys,
                                feed,
                                self.drm.clearkey,
                            )
                        }
                    }))
                }
            };
        Packager::new(PackagerConfig {
            target_duration: self.packager.segment_target,
            target_duration_policy: if encoded {
                TargetDurationPolicy::Configured
            } else {
                TargetDurationPolicy::FirstSegment
            },
            part_target: self.packager.part_target,
            low_latency: settings.low_latency,
            window_segments: settings
                .window_segments
                .unwrap_or(self.packager.window_segments),
            first_msn,
            encryption,
        })
    }

    /// Adds an event, or changes one: keys, passphrase, ingest bound and failover timing
    /// apply at once (new publishes); a ladder change applies from the next publisher
    /// session; a `low_latency` or `window_segments` change only while no publisher is
    /// connected.
    ///
    /// # Errors
    /// [`RegistryError::KeyInUse`] if another event has one of its keys,
    /// [`RegistryError::Live`] for a `low_latency` change of a live event.
    pub fn upsert(&self, settings: EventSettings) -> Result<(), RegistryError> {
        let id = EventId::parse(&settings.id).ok_or(RegistryError::BadId)?;
        let mut events = self.events.write().unwrap_or_else(|e| e.into_inner());
        if key_clash(&events, &settings) {
            return Err(RegistryError::KeyInUse);
        }
        if let Some(event) = events.get(&settings.id) {
            let mut inputs = lock_inputs(&event.inputs);
            let mut current = event.settings.write().unwrap_or_else(|e| e.into_inner());
            if current.low_latency != settings.low_latency
                || current.window_segments != settings.window_segments
                || current.encryption != settings.encryption
            {
                if inputs.connected.iter().any(Option::is_some) {
                    return Err(RegistryError::Live);
                }
                lock(&event.output.state).packager = self.packager_for(&settings);
            }
            inputs.selector.set_policy(policy(&settings));
            // Publishers whose key is no longer the event's are revoked.
            for (role, key) in [
                (InputRole::Primary, Some(&settings.stream_key)),
                (InputRole::Backup, settings.backup_stream_key.as_ref()),
            ] {
                let old = match role {
                    InputRole::Primary => Some(&current.stream_key),
                    InputRole::Backup => current.backup_stream_key.as_ref(),
                };
                if old != key {
                    if let Some(c) = &inputs.connected[role_index(role)] {
                        c.revoked.store(true, Ordering::Relaxed);
                    }
                }
            }
            *current = settings;
            return Ok(());
        }
        let event = LiveEvent {
            output: EventOutput {
                id,
                hooks: self.hooks.clone(),
                segment_target: self.packager.segment_target,
                state: Arc::new(Mutex::new(EventState::new(self.packager_for(&settings)))),
                store: self.store.clone(),
            },
            inputs: Mutex::new(Inputs {
                selector: InputSelector::new(policy(&settings)),
                pipeline: None,
                connected: [None, None],
            }),
            settings: RwLock::new(settings),
        };
        let id = event.output.id.to_string();
        // Its label sets are kept, even if an event of this id was deleted moments ago.
        weir_metrics::revive_event(&id);
        events.insert(id, Arc::new(event));
        Ok(())
    }

    /// Checks that no other event has one of `settings`' stream keys.
    ///
    /// # Errors
    /// [`RegistryError::KeyInUse`].
    pub fn check_keys(&self, settings: &EventSettings) -> Result<(), RegistryError> {
        if key_clash(&self.read(), settings) {
            return Err(RegistryError::KeyInUse);
        }
        Ok(())
    }

    /// Removes an event: new publishes are refused, its publishers are revoked, its
    /// objects and playlists leave the origin's store (what it served is gone: 404), and
    /// its metrics' label sets are dropped (`weir_metrics::forget_event`). Returns whether it
    /// existed.
    pub fn remove(&self, id: &str) -> bool {
        let removed = self
            .events
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        match removed {
            Some(event) => {
                event.end();
                event.output.remove();
                self.keys.forget(id);
                // Its metrics' label sets go too (a process outlives many events).
                weir_metrics::forget_event(id);
                true
            }
            None => false,
        }
    }

    /// Ends the event: its publishers are revoked and what they sent is packaged up to now,
    /// the playlists get `EXT-X-ENDLIST` and stay playable as a finished event, and new
    /// publishers are refused until [`start`](Self::start). Returns whether the event exists.
    pub fn end(&self, id: &str) -> bool {
        let Some(event) = self.read().get(id).cloned() else {
            return false;
        };
        event.end();
        true
    }

    /// Lets an ended event take publishers again: the next one continues its playlists after a
    /// discontinuity. Returns whether the event exists.
    pub fn start(&self, id: &str) -> bool {
        let Some(event) = self.read().get(id).cloned() else {
            return false;
        };
        let _inputs = lock_inputs(&event.inputs);
        event.output.reopen();
        true
    }

    /// Event `id`'s access options as written (what edges enforce); `None` if there is no
    /// such event.
    pub fn access_options(&self, id: &str) -> Option<weir_config::AccessOptions> {
        let event = self.read().get(id)?.clone();
        let settings = event.settings.read().unwrap_or_else(|e| e.into_inner());
        Some(settings.options.access.clone().unwrap_or_default())
    }

    /// Whether the event has ended, if it exists.
    pub fn is_ended(&self, id: &str) -> Option<bool> {
        let event = self.read().get(id).cloned()?;
        let ended = lock(&event.output.state).packager.is_ended();
        Some(ended)
    }

    /// Revokes the event's publishers (they are disconnected as their next data arrives).
    /// Returns how many there were, or `None` if there is no such event.
    pub fn kick(&self, id: &str) -> Option<usize> {
        let event = self.read().get(id).cloned()?;
        Some(event.revoke_all())
    }

    /// The event's live status, if it exists.
    pub fn status(&self, id: &str) -> Option<EventStatus> {
        let event = self.read().get(id).cloned()?;
        let inputs = lock_inputs(&event.inputs);
        let active = inputs.selector.active();
        let mut reports = Vec::new();
        for role in [InputRole::Primary, InputRole::Backup] {
            if let Some(c) = &inputs.connected[role_index(role)] {
                let meter = c.meter.lock().unwrap_or_else(|e| e.into_inner());
                reports.push(meter.report(role.as_str(), active == Some(role)));
            }
        }
        drop(inputs);
        let state = lock(&event.output.state);
        Some(EventStatus {
            live: reports.iter().any(|r| r.packaged),
            playable: state.packager.has_master(),
            inputs: reports,
            renditions: state
                .packager
                .renditions()
                .into_iter()
                .map(|(r, bps)| RenditionStatus {
                    name: r.as_str().to_string(),
                    average_kbps: bps / 1_000,
                })
                .collect(),
            last_segment_at_ms: state.last_segment_at().map(unix_ms),
            viewers: Vec::new(),
            viewers_total: 0,
            cache_hit_ratio: None,
        })
    }

    /// Whether the event has a publisher connected, if it exists.
    pub fn is_live(&self, id: &str) -> Option<bool> {
        let event = self.read().get(id).cloned()?;
        let inputs = lock_inputs(&event.inputs);
        Some(inputs.connected.iter().any(Option::is_some))
    }

    /// The event and input `stream_key` publishes. Every key of every event is compared, so
    /// the time taken says nothing about which one matched.
    fn find(&self, stream_key: &str) -> Result<(Arc<LiveEvent<S>>, InputRole), Rejection> {
        // Digested once, then compared with every key.
        let candidate = StreamKey::new(stream_key);
        let mut found = None;
        for e in self.read().values() {
            let s = e.settings.read().unwrap_or_else(|e| e.into_inner());
            if s.stream_key.matches_key(&candidate) {
                found = Some((e.clone(), InputRole::Primary));
            }
            if s.backup_stream_key
                .as_ref()
                .is_some_and(|k| k.matches_key(&candidate))
            {
                found = Some((e.clone(), InputRole::Backup));
            }
        }
        found.ok_or(Rejection::UnknownStreamKey)
    }
}

/// Whether an event other than `settings.id` has one of its keys.
fn key_clash<S: Store>(
    events: &HashMap<String, Arc<LiveEvent<S>>>,
    settings: &EventSettings,
) -> bool {
    let mine = [
        Some(&settings.stream_key),
        settings.backup_stream_key.as_ref(),
    ];
    events.iter().any(|(other_id, other)| {
        if *other_id == settings.id {
            return false;
        }
        let o = other.settings.read().unwrap_or_else(|e| e.into_inner());
        let theirs = [Some(&o.stream_key), o.backup_stream_key.as_ref()];
        theirs
            .iter()
            .flatten()
            .any(|k| mine.iter().flatten().any(|m| m == k))
    })
}

impl<S: Store> LiveEvent<S> {
    /// Revokes the publishers, packages what they sent up to now and ends the playlists.
    fn end(&self) {
        let mut inputs = lock_inputs(&self.inputs);
        for c in inputs.connected.iter().flatten() {
            c.revoked.store(true, Ordering::Relaxed);
        }
        if let Some(p) = inputs.pipeline.take() {
            p.finish();
        }
        self.output.end_event();
        set_active_gauge(&self.output.id, None);
    }

    fn revoke_all(&self) -> usize {
        let inputs = lock_inputs(&self.inputs);
        let mut n = 0;
        for c in inputs.connected.iter().flatten() {
            c.revoked.store(true, Ordering::Relaxed);
            n += 1;
        }
        n
    }

    /// Carries out a switch of the packaged input: ends the current pipeline, starts one for
    /// the new input and hands it the new input's configurations and buffered frames.
    fn switch(&self, inputs: &mut Inputs<S>, switch: Switch) {
        let event = &self.output.id;
        if let Some(old) = inputs.pipeline.take() {
            old.finish();
        }
        if lock(&self.output.state).packager.is_ended() {
            return;
        }
        match switch.reason {
            SwitchReason::Start => {}
            reason => {
                let from = switch.from.map_or("none", InputRole::as_str);
                match reason {
                    SwitchReason::Stalled(silent) => {
                        tracing::warn!(%event, %from, to = %switch.to, silent_ms = silent.as_millis() as u64, replayed_frames = switch.frames.len(), "input failover: the packaged encoder stalled")
                    }
                    SwitchReason::Disconnected => {
                        tracing::warn!(%event, %from, to = %switch.to, replayed_frames = switch.frames.len(), "input failover: the packaged encoder disconnected")
                    }
                    _ => {
                        tracing::info!(%event, %from, to = %switch.to, "input failback: the primary encoder is healthy again")
                    }
                }
                metrics::counter!("weir_ingest_input_switches_total", "event" => event.to_string(), "to" => switch.to.as_str(), "reason" => reason.as_str()).increment(1);
            }
        }
        set_active_gauge(event, Some(switch.to));
        let ladder: LadderSettings = self
            .settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .ladder
            .clone();
        match Pipeline::start(&self.output, &ladder) {
            Ok(mut pipeline) => {
                tracing::info!(%event, input = %switch.to, session = %pipeline.session(), ladder = %ladder.name, "packaging input");
                for info in switch.tracks {
                    pipeline.track(info);
                }
                for (frame, _) in switch.frames {
                    pipeline.frame(frame);
                }
                inputs.pipeline = Some(pipeline);
            }
            Err(e) => {
                tracing::error!(%event, error = %e, "cannot start the transcoder; the input is not packaged");
            }
        }
    }
}

fn set_active_gauge(event: &EventId, active: Option<InputRole>) {
    for role in [InputRole::Primary, InputRole::Backup] {
        let v = f64::from(u8::from(active == Some(role)));
        metrics::gauge!("weir_ingest_active_input", "event" => event.to_string(), "input" => role.as_str()).set(v);
    }
}

impl<S: Store> EventDirectory for Registry<S> {
    type Session = Publisher<S>;

    fn admit(&self, request: &PublishRequest<'_>) -> Result<Admission, Rejection> {
        let (event, role) = self.find(request.stream_key)?;
        if lock_inputs(&event.inputs).selector.is_connected(role) {
            return Err(Rejection::AlreadyPublishing);
        }
        if lock(&event.output.state).packager.is_ended() {
            return Err(Rejection::Ended);
        }
        let settings = event.settings.read().unwrap_or_else(|e| e.into_inner());
        Ok(Admission {
            srt_passphrase: settings
                .srt_passphrase
                .as_ref()
                .map(|p| p.expose().to_string()),
        })
    }

    fn authorize(&self, request: &PublishRequest<'_>) -> Result<Publisher<S>, Rejection> {
        let (event, role) = self.find(request.stream_key)?;
        // Asked before anything is locked: the hook may take its whole timeout.
        if let Err(reason) =
            self.hooks
                .on_publish(event.output.id.as_str(), role.as_str(), request.peer)
        {
            tracing::warn!(event = %event.output.id, input = %role, peer = %request.peer, %reason, "publisher refused by the on_publish hook");
            return Err(Rejection::Refused);
        }
        let mut inputs = lock_inputs(&event.inputs);
        if inputs.selector.is_connected(role) {
            return Err(Rejection::AlreadyPublishing);
        }
        if lock(&event.output.state).packager.is_ended() {
            return Err(Rejection::Ended);
        }
        tracing::info!(event = %event.output.id, input = %role, peer = %request.peer, "publisher accepted");
        if let Some(start) = inputs.selector.connect(role, Instant::now()) {
            event.switch(&mut inputs, start);
            if inputs.pipeline.is_none() {
                inputs.selector.disconnect(role);
                return Err(Rejection::Unavailable);
            }
        }
        let connected = Connected {
            revoked: Arc::new(AtomicBool::new(false)),
            meter: Arc::new(Mutex::new(InputMeter::new(
                event.output.id.as_str(),
                role.as_str(),
                request.peer,
            ))),
        };
        let publisher = Publisher {
            event: event.clone(),
            role,
            revoked: connected.revoked.clone(),
            meter: connected.meter.clone(),
            max_ingest_bitrate_bps: event
                .settings
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .max_ingest_bitrate_bps,
        };
        inputs.connected[role_index(role)] = Some(connected);
        drop(inputs);
        // Every publisher session connected now, whatever the event (ended in `Drop`).
        metrics::gauge!("weir_ingest_publisher_sessions").increment(1.0);
        Ok(publisher)
    }
}

/// One accepted publisher (one input of an event): its media goes to the event's input
/// selector, which packages it or keeps it on standby.
pub struct Publisher<S: Store> {
    event: Arc<LiveEvent<S>>,
    role: InputRole,
    revoked: Arc<AtomicBool>,
    meter: Arc<Mutex<InputMeter>>,
    max_ingest_bitrate_bps: u64,
}

impl<S: Store> std::fmt::Debug for Publisher<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("event", &self.event.output.id)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl<S: Store> PublishSession for Publisher<S> {
    fn event_id(&self) -> &str {
        self.event.output.id.as_str()
    }

    fn max_ingest_bitrate(&self) -> u64 {
        self.max_ingest_bitrate_bps
    }

    fn track(&mut self, info: TrackInfo) {
        self.meter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .track(&info);
        let mut inputs = lock_inputs(&self.event.inputs);
        let inputs = &mut *inputs;
        if inputs.selector.track(self.role, info.clone()) {
            if let Some(p) = inputs.pipeline.as_mut() {
                p.track(info);
            }
        }
    }

    fn frame(&mut self, frame: Frame) {
        self.meter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .frame(&frame);
        let mut inputs = lock_inputs(&self.event.inputs);
        let inputs = &mut *inputs;
        match inputs.selector.frame(self.role, frame, Instant::now()) {
            Route::Forward(frame) => {
                if let Some(p) = inputs.pipeline.as_mut() {
                    p.frame(frame);
                }
            }
            Route::Standby => {}
            Route::Switch(switch) => self.event.switch(inputs, switch),
        }
    }

    fn revoked(&self) -> bool {
        self.revoked.load(Ordering::Relaxed)
    }
}

impl<S: Store> Drop for Publisher<S> {
    fn drop(&mut self) {
        let mut inputs = lock_inputs(&self.event.inputs);
        let inputs = &mut *inputs;
        let event = &self.event.output.id;
        inputs.connected[role_index(self.role)] = None;
        match inputs.selector.disconnect(self.role) {
            Departure::Standby => {}
            Departure::Switch(switch) => self.event.switch(inputs, switch),
            Departure::Ended => {
                if let Some(p) = inputs.pipeline.take() {
                    p.finish();
                }
                set_active_gauge(event, None);
            }
        }
        self.event
            .output
            .hooks
            .on_unpublish(event.as_str(), self.role.as_str());
        metrics::gauge!("weir_ingest_publisher_sessions").decrement(1.0);
        tracing::info!(%event, input = %self.role, "publisher session ended");
    }
}
