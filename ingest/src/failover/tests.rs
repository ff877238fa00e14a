use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;
use weir_media::{
    AacConfig, AvcConfig, CodecConfig, Frame, Timescale, Timestamp, TrackInfo, TrackKind,
};

use super::*;

/// The avcC of the bundled Big Buck Bunny clip.
const AVCC: &[u8] = &[
    0x01, 0x4d, 0x40, 0x1f, 0xff, 0xe1, 0x00, 0x17, 0x67, 0x4d, 0x40, 0x1f, 0xda, 0x01, 0x40, 0x16,
    0xec, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40, 0x00, 0x00, 0x0c, 0x83, 0xc6, 0x0c, 0xa8, 0x01,
    0x00, 0x04, 0x68, 0xef, 0x3c, 0x80,
];

fn video_info() -> TrackInfo {
    TrackInfo {
        kind: TrackKind::Video,
        codec: CodecConfig::H264(AvcConfig::parse(Bytes::from_static(AVCC)).unwrap()),
    }
}

fn audio_info() -> TrackInfo {
    TrackInfo {
        kind: TrackKind::Audio,
        codec: CodecConfig::Aac(AacConfig::parse(Bytes::from_static(&[0x11, 0x90])).unwrap()),
    }
}

/// A frame of `role` whose bytes say which input sent it and its number.
fn frame(role: InputRole, track: TrackKind, n: u32, keyframe: bool) -> Frame {
    let mut data = vec![role.index() as u8];
    data.extend_from_slice(&n.to_be_bytes());
    Frame {
        track,
        dts: Timestamp::new(i64::from(n) * 40, Timescale::MILLIS),
        composition_offset: 0,
        keyframe: keyframe || track == TrackKind::Audio,
        data: Bytes::from(data),
    }
}

fn sender(f: &Frame) -> u8 {
    f.data[0]
}

const POLICY: FailoverPolicy = FailoverPolicy {
    failover_after: Duration::from_millis(1_000),
    failback_after: Duration::from_millis(5_000),
};

/// Drives a selector through time in ms from `t0`.
struct Bench {
    s: InputSelector,
    t0: Instant,
}

impl Bench {
    fn new() -> Bench {
        Bench {
            s: InputSelector::new(POLICY),
            t0: Instant::now(),
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    fn connect(&mut self, role: InputRole, ms: u64) -> Option<Switch> {
        let now = self.at(ms);
        let start = self.s.connect(role, now);
        self.s.track(role, video_info());
        self.s.track(role, audio_info());
        start
    }

    /// `role` sends 25 fps video (keyframe every `gop` frames, numbered from `from_frame`) with
    /// one audio frame per video frame, from `start` to `end` ms. Returns the routes.
    fn send(&mut self, role: InputRole, start: u64, end: u64, gop: u32) -> Vec<Route> {
        let mut routes = Vec::new();
        let mut ms = start;
        while ms < end {
            let n = (ms / 40) as u32;
            let now = self.at(ms);
            routes.push(
                self.s
                    .frame(role, frame(role, TrackKind::Video, n, n % gop == 0), now),
            );
            routes.push(
                self.s
                    .frame(role, frame(role, TrackKind::Audio, n, true), now),
            );
            ms += 40;
        }
        routes
    }
}

fn switches(routes: Vec<Route>) -> Vec<Switch> {
    routes
        .into_iter()
        .filter_map(|r| match r {
            Route::Switch(s) => Some(s),
            _ => None,
        })
        .collect()
}

#[test]
fn first_input_is_packaged_and_the_backup_waits() {
    let mut b = Bench::new();
    let start = b.connect(InputRole::Primary, 0).unwrap();
    assert_eq!(
        (start.from, start.to, start.reason),
        (None, InputRole::Primary, SwitchReason::Start)
    );
    assert!(b.connect(InputRole::Backup, 10).is_none());
    let routes = b.send(InputRole::Primary, 0, 400, 50);
    assert!(routes.iter().all(|r| matches!(r, Route::Forward(_))));
    let routes = b.send(InputRole::Backup, 20, 400, 50);
    assert!(routes.iter().all(|r| matches!(r, Route::Standby)));
    assert_eq!(b.s.active(), Some(InputRole::Primary));
    // The standby keeps its GOP from its keyframe on: 10 video and 10 audio frames.
    assert_eq!(b.s.standby_frames(), 20);
}

#[test]
fn a_stalled_primary_is_replaced_from_the_backups_newest_keyframe() {
    let mut b = Bench::new();
    b.connect(InputRole::Primary, 0);
    b.connect(InputRole::Backup, 0);
    b.send(InputRole::Primary, 0, 3_000, 50);
    // The backup runs on; the primary's last frame arrived at 2960 ms.
    let routes = b.send(InputRole::Backup, 0, 3_960, 50);
    assert!(
        switches(routes).is_empty(),
        "no switch before 1000 ms of silence"
    );
    let s = switches(b.send(InputRole::Backup, 3_960, 4_000, 50))
        .pop()
        .unwrap();
    assert_eq!(
        (s.from, s.to),
        (Some(InputRole::Primary), InputRole::Backup)
    );
    assert_eq!(
        s.reason,
        SwitchReason::Stalled(Duration::from_millis(1_000))
    );
    assert_eq!(s.tracks, vec![video_info(), audio_info()]);
    // Its newest keyframe is frame 50 (at 2000 ms); the GOP runs to the frame that switched.
    let (first, arrived) = &s.frames[0];
    assert!(first.keyframe && first.track == TrackKind::Video);
    assert_eq!(*arrived, b.at(2_000));
    assert!(s.frames.iter().all(|(f, _)| sender(f) == 1));
    // 50 video frames (2000..3960 ms) and the 49 audio frames between them.
    assert_eq!(s.frames.len(), 2 * 50 - 1);
    // From now on the backup's frames go through and the primary's are kept on standby.
    assert!(b
        .send(InputRole::Backup, 4_000, 4_100, 50)
        .iter()
        .all(|r| matches!(r, Route::Forward(_))));
    assert_eq!(b.s.standby_frames(), 0);
}

#[test]
fn a_disconnected_primary_is_replaced_at_once() {
    let mut b = Bench::new();
    b.connect(InputRole::Primary, 0);
    b.connect(InputRole::Backup, 0);
    b.send(InputRole::Primary, 0, 1_000, 10);
    b.send(InputRole::Backup, 0, 1_000, 10);
    let Departure::Switch(s) = b.s.disconnect(InputRole::Primary) else {
        panic!("the backup takes over");
    };
    assert_eq!(
        (s.to, s.reason),
        (InputRole::Backup, SwitchReason::Disconnected)
    );
    assert!(s.frames[0].0.keyframe && !s.frames.is_empty());
    assert!(matches!(
        b.s.disconnect(InputRole::Backup),
        Departure::Ended
    ));
    assert_eq!(b.s.active(), None);
    // The next publisher starts the event again.
    let start = b.connect(InputRole::Backup, 5_000).unwrap();
    assert_eq!(start.reason, SwitchReason::Start);
}

#[test]
fn a_standby_leaving_changes_nothing() {
    let mut b = Bench::new();
    b.connect(InputRole::Primary, 0);
    b.connect(InputRole::Backup, 0);
    assert!(matches!(
        b.s.disconnect(InputRole::Backup),
        Departure::Standby
    ));
    assert_eq!(b.s.active(), Some(InputRole::Primary));
    assert!(!b.s.is_connected(InputRole::Backup));
}

#[test]
fn the_primary_is_taken_back_after_healthy_time_at_a_keyframe() {
    let mut b = Bench::new();
    b.connect(InputRole::Backup, 0);
    b.send(InputRole::Backup, 0, 20_000, 50);
    assert!(b.connect(InputRole::Primary, 1_000).is_none());
    // 5 s of health counts from the primary's first frame at 1000 ms; its keyframes are every
    // 2 s (frames 0, 50, 100, ...: 0, 2000, 4000, 6000 ms).
    let mut got = Vec::new();
    let mut ms = 1_000;
    while ms < 9_000 {
        let n = (ms / 40) as u32;
        if let Route::Switch(s) = b.s.frame(
            InputRole::Primary,
            frame(InputRole::Primary, TrackKind::Video, n, n % 50 == 0),
            b.at(ms),
        ) {
            got.push((ms, s));
        }
        ms += 40;
    }
    assert_eq!(got.len(), 1);
    let (ms, s) = &got[0];
    assert_eq!(*ms, 6_000, "the first keyframe at or after 5 s of health");
    assert_eq!(
        (s.from, s.to, s.reason),
        (
            Some(InputRole::Backup),
            InputRole::Primary,
            SwitchReason::Failback
        )
    );
    assert_eq!(s.frames.len(), 1);
}

#[test]
fn a_break_restarts_the_healthy_time() {
    let mut b = Bench::new();
    b.connect(InputRole::Backup, 0);
    b.send(InputRole::Backup, 0, 30_000, 25);
    b.connect(InputRole::Primary, 1_000);
    // Healthy from 1000 to 3000, then silent for 1500 ms: health counts again from 4500.
    assert!(switches(b.send(InputRole::Primary, 1_000, 3_000, 25)).is_empty());
    let routes = b.send(InputRole::Primary, 4_500, 9_400, 25);
    assert!(switches(routes).is_empty(), "not healthy for 5 s yet");
    let s = switches(b.send(InputRole::Primary, 9_400, 10_500, 25))
        .pop()
        .unwrap();
    assert_eq!(s.reason, SwitchReason::Failback);
}

#[test]
fn no_failback_without_a_backup_to_leave() {
    let mut b = Bench::new();
    b.connect(InputRole::Primary, 0);
    b.connect(InputRole::Backup, 0);
    // A healthy backup on standby never takes over from a healthy primary.
    let mut routes = b.send(InputRole::Primary, 0, 20_000, 50);
    routes.extend(b.send(InputRole::Backup, 0, 20_000, 50));
    assert!(switches(routes).is_empty());
}

#[test]
fn a_standby_without_a_keyframe_cannot_take_over() {
    let mut b = Bench::new();
    b.connect(InputRole::Primary, 0);
    b.send(InputRole::Primary, 0, 1_000, 50);
    b.connect(InputRole::Backup, 1_000);
    // Backup GOPs are 4 s long and its first keyframe is at 4000 ms (frame 100).
    let routes = b.send(InputRole::Backup, 1_040, 4_000, 100);
    assert!(switches(routes).is_empty());
    let s = switches(b.send(InputRole::Backup, 4_000, 4_100, 100))
        .pop()
        .unwrap();
    assert_eq!(s.frames.len(), 1, "the keyframe itself");
    assert!(s.frames[0].0.keyframe);
}

#[test]
fn an_audio_only_standby_takes_over_at_any_frame() {
    let mut b = Bench::new();
    b.s.connect(InputRole::Primary, b.at(0));
    b.s.track(InputRole::Primary, audio_info());
    b.s.connect(InputRole::Backup, b.at(0));
    b.s.track(InputRole::Backup, audio_info());
    let a = |role, n| frame(role, TrackKind::Audio, n, true);
    assert!(matches!(
        b.s.frame(InputRole::Primary, a(InputRole::Primary, 0), b.at(0)),
        Route::Forward(_)
    ));
    assert!(matches!(
        b.s.frame(InputRole::Backup, a(InputRole::Backup, 0), b.at(500)),
        Route::Standby
    ));
    assert_eq!(b.s.standby_frames(), 1);
    let Route::Switch(s) =
        b.s.frame(InputRole::Backup, a(InputRole::Backup, 1), b.at(1_000))
    else {
        panic!("takes over");
    };
    assert_eq!(s.frames.len(), 1);
}

#[test]
fn the_standby_gop_is_bounded() {
    let mut b = Bench::new();
    b.connect(InputRole::Primary, 0);
    b.connect(InputRole::Backup, 0);
    // One keyframe, then never another: frames pile up to the bound, then the GOP is dropped.
    for n in 0..(MAX_STANDBY_FRAMES as u32 * 2) {
        let f = frame(InputRole::Backup, TrackKind::Video, n, n == 0);
        b.s.frame(InputRole::Backup, f, b.at(0));
        assert!(b.s.standby_frames() <= MAX_STANDBY_FRAMES);
    }
    assert_eq!(b.s.standby_frames(), 0);
    let mut big = frame(InputRole::Backup, TrackKind::Video, 0, true);
    big.data = Bytes::from(vec![1; MAX_STANDBY_BYTES / 2 + 1]);
    b.s.frame(InputRole::Backup, big.clone(), b.at(0));
    big.keyframe = false;
    b.s.frame(InputRole::Backup, big, b.at(0));
    assert_eq!(b.s.standby_frames(), 0, "over the byte bound");
}

#[derive(Clone, Debug)]
enum Op {
    Connect(InputRole),
    Disconnect(InputRole),
    Frame(InputRole, TrackKind, bool),
    Wait(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let role = prop_oneof![Just(InputRole::Primary), Just(InputRole::Backup)];
    let kind = prop_oneof![Just(TrackKind::Video), Just(TrackKind::Audio)];
    prop_oneof![
        1 => role.clone().prop_map(Op::Connect),
        1 => role.clone().prop_map(Op::Disconnect),
        12 => (role, kind, proptest::bool::weighted(0.1)).prop_map(|(r, k, key)| Op::Frame(r, k, key)),
        4 => (0u64..1_500).prop_map(Op::Wait),
    ]
}

proptest! {
    /// Over any sequence of connections, frames and silences: only the packaged input's
    /// frames go through, a switch hands over only the new input's frames beginning with a
    /// keyframe, a stall switch needs `failover_after` of silence, failback needs
    /// `failback_after` since the primary connected, a standby keyframe after the packaged
    /// input's silence always switches, and the standby buffer stays bounded.
    #[test]
    fn switching_rules_hold(ops in proptest::collection::vec(op(), 1..400)) {
        let mut b = Bench::new();
        let mut ms = 0u64;
        let mut connected_at = [None::<u64>; 2];
        // The primary connected just after a backup that started the event.
        let mut preempt = false;
        let mut started = [false; 2];
        let mut last_media = [None::<u64>; 2];
        let mut n = 0u32;
        for op in ops {
            match op {
                Op::Wait(d) => ms += d,
                Op::Connect(role) => {
                    if b.s.is_connected(role) {
                        continue;
                    }
                    let was_active = b.s.active();
                    let start = b.connect(role, ms);
                    prop_assert_eq!(start.is_some(), was_active.is_none());
                    if start.is_some() {
                        started[role.index()] = true;
                    } else {
                        let other = role.other().index();
                        preempt = role == InputRole::Primary
                            && started[other]
                            && ms - connected_at[other].unwrap() < 1_000;
                    }
                    connected_at[role.index()] = Some(ms);
                    last_media[role.index()] = None;
                }
                Op::Disconnect(role) => {
                    let was_active = b.s.active() == Some(role);
                    match b.s.disconnect(role) {
                        Departure::Standby => prop_assert!(!was_active),
                        Departure::Ended => prop_assert!(was_active && !b.s.is_connected(role.other())),
                        Departure::Switch(s) => {
                            prop_assert!(was_active);
                            prop_assert_eq!(s.to, role.other());
                            prop_assert!(s.frames.iter().all(|(f, _)| sender(f) == role.other().index() as u8));
                        }
                    }
                    connected_at[role.index()] = None;
                    started[role.index()] = false;
                    preempt = false;
                }
                Op::Frame(role, kind, key) => {
                    if !b.s.is_connected(role) {
                        continue;
                    }
                    n += 1;
                    let active = b.s.active();
                    let active_silent = active.map(|a| {
                        ms - last_media[a.index()].or(connected_at[a.index()]).unwrap()
                    });
                    let f = frame(role, kind, n, key);
                    let is_video_key = kind == TrackKind::Video && key;
                    match b.s.frame(role, f, b.at(ms)) {
                        Route::Forward(f) => {
                            prop_assert_eq!(active, Some(role));
                            prop_assert_eq!(sender(&f), role.index() as u8);
                        }
                        Route::Standby => {
                            prop_assert_ne!(active, Some(role));
                            // A standby keyframe after the packaged input's silence switches.
                            prop_assert!(!(is_video_key && active_silent.unwrap() >= 1_000));
                        }
                        Route::Switch(s) => {
                            prop_assert_ne!(active, Some(role));
                            let was_preempt = std::mem::take(&mut preempt);
                            prop_assert_eq!(s.to, role);
                            prop_assert_eq!(b.s.active(), Some(role));
                            let (first, _) = &s.frames[0];
                            prop_assert!(first.track == TrackKind::Video && first.keyframe);
                            prop_assert!(s.frames.iter().all(|(f, _)| sender(f) == role.index() as u8));
                            match s.reason {
                                SwitchReason::Stalled(d) => {
                                    prop_assert!(d >= POLICY.failover_after);
                                    prop_assert_eq!(d.as_millis() as u64, active_silent.unwrap());
                                }
                                SwitchReason::Failback => {
                                    prop_assert_eq!(role, InputRole::Primary);
                                    prop_assert!(was_preempt || ms - connected_at[0].unwrap() >= 5_000);
                                    prop_assert!(active_silent.unwrap() < 1_000);
                                }
                                other => prop_assert!(false, "unexpected {:?}", other),
                            }
                        }
                    }
                    last_media[role.index()] = Some(ms);
                }
            }
            prop_assert!(b.s.standby_frames() <= MAX_STANDBY_FRAMES);
        }
    }
}

#[test]
fn a_primary_that_loses_the_start_race_takes_over_at_its_first_keyframe() {
    let mut b = Bench::new();
    let start = b.connect(InputRole::Backup, 0).unwrap();
    assert_eq!(start.to, InputRole::Backup);
    assert!(b.connect(InputRole::Primary, 300).is_none());
    b.send(InputRole::Backup, 0, 2_000, 50);
    let routes = b.send(InputRole::Primary, 320, 2_100, 50);
    let s = switches(routes).pop().expect("the primary takes over");
    assert_eq!(
        (s.to, s.reason),
        (InputRole::Primary, SwitchReason::Failback)
    );
    assert_eq!(s.frames[0].1, b.at(2_000), "at its first keyframe");
}

#[test]
fn a_primary_that_connects_late_waits_for_its_healthy_time() {
    let mut b = Bench::new();
    b.connect(InputRole::Backup, 0);
    b.send(InputRole::Backup, 0, 8_000, 50);
    b.connect(InputRole::Primary, 1_500);
    let routes = b.send(InputRole::Primary, 1_520, 6_000, 50);
    assert!(switches(routes).is_empty(), "not healthy for 5 s yet");
}
