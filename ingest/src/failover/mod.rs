//! Redundant ingest: which of an event's two encoders (primary and backup) is packaged.
//!
//! Sans-I/O: the caller reports connections, decoder configurations and frames with the
//! [`Instant`] they arrived, and gets back what to do with each ([`Route`]). Nothing here
//! reads a clock or touches a socket.
//!
//! The rules (the shape AWS MediaLive's automatic input failover and broadcast changeover
//! switches follow):
//! - The first encoder to connect is packaged (the *active* input); a backup that connects
//!   while the primary is connected waits on standby.
//! - The standby input keeps its frames since its newest video keyframe (one GOP, bounded by
//!   [`MAX_STANDBY_FRAMES`] and [`MAX_STANDBY_BYTES`]), so it can take over at once, from a
//!   keyframe, without waiting for the next one.
//! - **Failover**: when the active input has delivered no media for `failover_after` while the
//!   standby has (checked as the standby's frames arrive), or the active input disconnects,
//!   the standby takes over from its newest keyframe. The viewer loses at most
//!   `failover_after` of the programme (less the standby's buffered GOP) and sees at most one
//!   GOP again when the backup encoder runs behind; the live edge resumes without waiting
//!   for the next keyframe.
//! - **Failback**: when the backup is active and the primary has delivered media without a
//!   break of `failover_after` for `failback_after`, the primary is taken back at its next
//!   keyframe. A primary that connects within `failover_after` of a backup that started the
//!   event (both encoders started together, the backup a little faster) takes over at its
//!   first keyframe.
//!
//! Each [`Switch`] is one discontinuity downstream: the caller ends the packaged session and
//! begins one for the new input, which continues the media sequence numbers and the decode
//! timeline.

use std::fmt;
use std::time::{Duration, Instant};

use weir_media::{Frame, TrackInfo, TrackKind};

#[cfg(test)]
mod tests;

/// Frames the standby input keeps (about 10 s of 30 fps video with 48 kHz AAC); a longer GOP
/// is dropped and the standby waits for its next keyframe.
pub const MAX_STANDBY_FRAMES: usize = 768;

/// Coded bytes the standby input keeps (a 10 s GOP at 25 Mbit/s).
pub const MAX_STANDBY_BYTES: usize = 32 * 1024 * 1024;

/// Which of an event's encoders an input is: the stream key it published with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InputRole {
    /// The preferred encoder (the event's `stream_key`).
    Primary,
    /// The backup encoder (the event's `backup_stream_key`).
    Backup,
}

impl InputRole {
    /// `"primary"` or `"backup"`, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            InputRole::Primary => "primary",
            InputRole::Backup => "backup",
        }
    }

    fn index(self) -> usize {
        match self {
            InputRole::Primary => 0,
            InputRole::Backup => 1,
        }
    }

    fn other(self) -> InputRole {
        match self {
            InputRole::Primary => InputRole::Backup,
            InputRole::Backup => InputRole::Primary,
        }
    }
}

impl fmt::Display for InputRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When to switch inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailoverPolicy {
    /// Silence of the active input after which a live standby takes over.
    pub failover_after: Duration,
    /// Unbroken media from the primary after which it is taken back from the backup.
    pub failback_after: Duration,
}

/// Why the packaged input changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwitchReason {
    /// Nothing was packaged: the first input to connect.
    Start,
    /// The active input delivered no media for this long.
    Stalled(Duration),
    /// The active input disconnected.
    Disconnected,
    /// The primary is healthy again and takes over from the backup.
    Failback,
}

impl SwitchReason {
    /// `"start"`, `"stalled"`, `"disconnected"` or `"failback"`, for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            SwitchReason::Start => "start",
            SwitchReason::Stalled(_) => "stalled",
            SwitchReason::Disconnected => "disconnected",
            SwitchReason::Failback => "failback",
        }
    }
}

/// A change of the packaged input: end what is packaged now (if anything), begin a new
/// session for `to`, announce `tracks`, then send `frames` in order.
#[derive(Debug)]
pub struct Switch {
    /// The input packaged until now, if any.
    pub from: Option<InputRole>,
    /// The input packaged from now on.
    pub to: InputRole,
    /// Why.
    pub reason: SwitchReason,
    /// The new input's decoder configurations (at most one per kind).
    pub tracks: Vec<TrackInfo>,
    /// The new input's frames to package first, with their arrival times: its buffered GOP,
    /// beginning with a video keyframe when it has video. Empty at [`SwitchReason::Start`].
    pub frames: Vec<(Frame, Instant)>,
}

/// What to do with a frame an input delivered.
#[derive(Debug)]
pub enum Route {
    /// It belongs to the packaged input: package it.
    Forward(Frame),
    /// The input is on standby: the selector keeps it for a takeover.
    Standby,
    /// The packaged input changes; the frame is the last of [`Switch::frames`].
    Switch(Switch),
}

/// What follows an input's disconnection.
#[derive(Debug)]
pub enum Departure {
    /// It was on standby: nothing changes downstream.
    Standby,
    /// It was packaged and the other input takes over.
    Switch(Switch),
    /// It was packaged and no input remains: end the packaged session.
    Ended,
}

/// One connected input.
#[derive(Debug)]
struct Input {
    connected_at: Instant,
    /// It became the packaged input when it connected (nothing was packaged).
    started: bool,
    /// When its newest frame arrived.
    last_media: Option<Instant>,
    /// Since when it has delivered media without a break of `failover_after`.
    healthy_since: Option<Instant>,
    tracks: Vec<TrackInfo>,
    /// Frames since its newest video keyframe, while it is on standby.
    gop: Vec<(Frame, Instant)>,
    gop_bytes: usize,
}

impl Input {
    fn new(now: Instant) -> Input {
        Input {
            connected_at: now,
            started: false,
            last_media: None,
            healthy_since: None,
            tracks: Vec::new(),
            gop: Vec::new(),
            gop_bytes: 0,
        }
    }

    fn has_video(&self) -> bool {
        self.tracks.iter().any(|t| t.kind == TrackKind::Video)
    }

    /// How long it has delivered nothing (since it connected, if it never did).
    fn silent_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_media.unwrap_or(self.connected_at))
    }

    fn clear_gop(&mut self) {
        self.gop.clear();
        self.gop_bytes = 0;
    }

    fn take_gop(&mut self) -> Vec<(Frame, Instant)> {
        self.gop_bytes = 0;
        std::mem::take(&mut self.gop)
    }

    /// Keeps a standby frame: a video keyframe starts a new GOP; other frames join the GOP
    /// that has begun, if any; an input without video keeps only the newest frame.
    fn keep(&mut self, frame: Frame, now: Instant) {
        if !self.has_video() || (frame.track == TrackKind::Video && frame.keyframe) {
            self.clear_gop();
        } else if self.gop.is_empty() {
            return;
        }
        if self.gop.len() >= MAX_STANDBY_FRAMES
            || self.gop_bytes + frame.data.len() > MAX_STANDBY_BYTES
        {
            self.clear_gop();
            return;
        }
        self.gop_bytes += frame.data.len();
        self.gop.push((frame, now));
    }

    /// Whether it can take over now: it has a keyframe to begin with (or no video).
    fn ready(&self) -> bool {
        !self.gop.is_empty()
    }
}

/// Chooses which of an event's two inputs is packaged. See the [module docs](self).
#[derive(Debug)]
pub struct InputSelector {
    policy: FailoverPolicy,
    inputs: [Option<Input>; 2],
    active: Option<InputRole>,
    /// The backup won a start race: the primary connected within `failover_after` of it and
    /// takes over at its first keyframe, without waiting `failback_after`.
    primary_preempts: bool,
}

impl InputSelector {
    /// A selector with no input connected.
    pub fn new(policy: FailoverPolicy) -> InputSelector {
        InputSelector {
            policy,
            inputs: [None, None],
            active: None,
            primary_preempts: false,
        }
    }

    /// Changes the timing; it applies from the next frame on.
    pub fn set_policy(&mut self, policy: FailoverPolicy) {
        self.policy = policy;
    }

    /// The input packaged now, if any.
    pub fn active(&self) -> Option<InputRole> {
        self.active
    }

    /// Whether `role` has a publisher connected.
    pub fn is_connected(&self, role: InputRole) -> bool {
        self.inputs[role.index()].is_some()
    }

    /// Frames the standby input keeps now (for tests and metrics).
    pub fn standby_frames(&self) -> usize {
        self.inputs.iter().flatten().map(|i| i.gop.len()).sum()
    }

    /// A publisher for `role` was accepted at `now`. The caller must have checked that
    /// `role` is free ([`is_connected`](Self::is_connected)); a second connection replaces
    /// the first's state. Returns the [`SwitchReason::Start`] switch when nothing was
    /// packaged.
    pub fn connect(&mut self, role: InputRole, now: Instant) -> Option<Switch> {
        self.inputs[role.index()] = Some(Input::new(now));
        if let Some(active) = self.active {
            let race = self.inputs[active.index()].as_ref().is_some_and(|a| {
                a.started
                    && now.saturating_duration_since(a.connected_at) < self.policy.failover_after
            });
            self.primary_preempts = role == InputRole::Primary && race;
            return None;
        }
        self.active = Some(role);
        if let Some(input) = self.inputs[role.index()].as_mut() {
            input.started = true;
        }
        Some(Switch {
            from: None,
            to: role,
            reason: SwitchReason::Start,
            tracks: Vec::new(),
            frames: Vec::new(),
        })
    }

    /// `role`'s publisher is gone.
    pub fn disconnect(&mut self, role: InputRole) -> Departure {
        self.inputs[role.index()] = None;
        if self.active != Some(role) {
            return Departure::Standby;
        }
        let other = role.other();
        self.primary_preempts = false;
        match self.inputs[other.index()].as_mut() {
            Some(input) => {
                self.active = Some(other);
                Departure::Switch(Switch {
                    from: Some(role),
                    to: other,
                    reason: SwitchReason::Disconnected,
                    tracks: input.tracks.clone(),
                    frames: input.take_gop(),
                })
            }
            None => {
                self.active = None;
                Departure::Ended
            }
        }
    }

    /// A decoder configuration from `role`. Returns whether to pass it on now (the input
    /// is packaged); a standby input's configuration comes with its [`Switch`].
    pub fn track(&mut self, role: InputRole, info: TrackInfo) -> bool {
        let Some(input) = self.inputs[role.index()].as_mut() else {
            return false;
        };
        if info.kind == TrackKind::Video && !input.has_video() {
            // Frames kept so far were kept as audio-only; the GOP begins at a keyframe.
            input.clear_gop();
        }
        input.tracks.retain(|t| t.kind != info.kind);
        input.tracks.push(info);
        self.active == Some(role)
    }

    /// A frame from `role` that arrived at `now`.
    pub fn frame(&mut self, role: InputRole, frame: Frame, now: Instant) -> Route {
        let failover_after = self.policy.failover_after;
        let Some(input) = self.inputs[role.index()].as_mut() else {
            return Route::Standby;
        };
        let resumed = input
            .last_media
            .is_none_or(|t| now.saturating_duration_since(t) >= failover_after);
        if resumed {
            input.healthy_since = Some(now);
        }
        input.last_media = Some(now);
        if self.active == Some(role) {
            return Route::Forward(frame);
        }
        let starts_gop = frame.track == TrackKind::Video && frame.keyframe;
        input.keep(frame, now);
        if !input.ready() {
            return Route::Standby;
        }
        let healthy = input
            .healthy_since
            .is_some_and(|t| now.saturating_duration_since(t) >= self.policy.failback_after);
        let at_keyframe = starts_gop || !input.has_video();
        let active_silence = self
            .active
            .and_then(|a| self.inputs[a.index()].as_ref())
            .map(|a| a.silent_for(now));
        let reason = match active_silence {
            None => Some(SwitchReason::Start),
            Some(silent) if silent >= failover_after => Some(SwitchReason::Stalled(silent)),
            Some(_) => {
                (role == InputRole::Primary && (healthy || self.primary_preempts) && at_keyframe)
                    .then_some(SwitchReason::Failback)
            }
        };
        let Some(reason) = reason else {
            return Route::Standby;
        };
        let from = self.active.replace(role);
        self.primary_preempts = false;
        let input = self.inputs[role.index()]
            .as_mut()
            .unwrap_or_else(|| unreachable!("checked above"));
        let switch = Switch {
            from,
            to: role,
            reason,
            tracks: input.tracks.clone(),
            frames: input.take_gop(),
        };
        if let Some(old) = from.and_then(|f| self.inputs[f.index()].as_mut()) {
            old.clear_gop();
        }
        Route::Switch(switch)
    }
}
