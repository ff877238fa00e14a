//! The packager against generated sources: the timeline rules, table-driven and
//! property-based.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroUsize;

use proptest::prelude::*;

use super::*;
use crate::testing::*;
use crate::TargetDurationPolicy;

fn config() -> PackagerConfig {
    PackagerConfig {
        window_segments: NonZeroUsize::new(20).unwrap(),
        ..PackagerConfig::default()
    }
}

fn msn_of(uri: &str) -> u64 {
    let file = uri.rsplit('/').next().unwrap();
    file.trim_end_matches(".m4s")
        .split('.')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// The rules every run must keep, whatever the source.
fn check_invariants(h: &Harness) {
    let mut tds = Vec::new();
    for (rendition, versions) in &h.playlists {
        let mut last_sequence = 0;
        for p in versions {
            tds.push(p.target_duration);
            assert!(
                p.media_sequence >= last_sequence,
                "{rendition}: MEDIA-SEQUENCE went back"
            );
            last_sequence = p.media_sequence;
            for (i, s) in p.segments.iter().enumerate() {
                assert!(
                    s.duration.round() as u64 <= p.target_duration,
                    "{rendition}: EXTINF {} rounds above {}",
                    s.duration,
                    p.target_duration
                );
                assert_eq!(
                    msn_of(&s.uri),
                    p.media_sequence + p.skipped + i as u64,
                    "{rendition}: URI vs position"
                );
                assert!(s.pdt.is_some(), "{rendition}: PDT on every segment");
            }
            if let Some(target) = p.part_target {
                let all = p.segments.iter().flat_map(|s| {
                    let n = s.parts.len();
                    s.parts
                        .iter()
                        .enumerate()
                        .map(move |(i, part)| (part, i + 1 == n))
                });
                let open = p.open_parts.iter().map(|part| (part, false));
                for (part, last_of_segment) in all.chain(open) {
                    assert!(
                        part.duration <= target + 1e-6,
                        "{rendition}: part {part:?} above {target}"
                    );
                    // At least 85% of the target, but for independent parts and a segment's
                    // last (RFC 8216bis §4.4.4.9); a part of the open segment can be last too.
                    let short_ok = part.independent || last_of_segment;
                    assert!(
                        short_ok || part.duration >= 0.85 * target - 0.035,
                        "{rendition}: part {part:?} too short"
                    );
                }
            }
        }
    }
    tds.dedup();
    assert!(tds.len() <= 1, "EXT-X-TARGETDURATION changed: {tds:?}");
    // tfdt continuous from segment to segment of a session; parts sum to their segment.
    for rendition in h.playlists.keys() {
        let mut mine: Vec<&(String, u64, bytes::Bytes)> = h
            .segments
            .iter()
            .filter(|(r, _, _)| r == rendition)
            .collect();
        mine.sort_by_key(|s| s.1);
        let discontinuous: Vec<u64> = h.playlists[rendition]
            .iter()
            .flat_map(|p| {
                p.segments
                    .iter()
                    .filter(|s| s.discontinuity)
                    .map(|s| msn_of(&s.uri))
            })
            .collect();
        for w in mine.windows(2) {
            let (a, b) = (timing(&w[0].2), timing(&w[1].2));
            assert!(w[1].1 > w[0].1, "{rendition}: MSN repeated");
            if w[1].1 == w[0].1 + 1 && !discontinuous.contains(&w[1].1) {
                assert_eq!(b.0, a.0 + a.1, "{rendition}: tfdt jumps at {}", w[1].1);
            }
        }
    }
    // One MSN, one span of the event: the same date in every rendition.
    let mut dates: HashMap<u64, Vec<(String, String)>> = HashMap::new();
    for (rendition, versions) in &h.playlists {
        for s in &versions.last().unwrap().segments {
            dates
                .entry(msn_of(&s.uri))
                .or_default()
                .push((rendition.clone(), s.pdt.clone().unwrap()));
        }
    }
    for (msn, d) in dates {
        assert!(
            d.windows(2).all(|w| w[0].1 == w[1].1),
            "msn {msn}: dates differ {d:?}"
        );
    }
}

fn ladder() -> Vec<RenditionId> {
    ["720p", "480p", "360p"]
        .iter()
        .map(|n| RenditionId::from_name(n).unwrap())
        .collect()
}

#[test]
fn ntsc_two_second_gops_get_target_duration_two() {
    let mut h = Harness::new(config());
    let source = Source {
        frame_ticks: 3_003,
        gops: vec![60],
        ..Source::default()
    };
    source.run(&mut h, "a", 30.0, 0);
    check_invariants(&h);
    let video = h.last("source");
    assert_eq!(video.target_duration, 2, "2.002 s segments round to 2");
    assert!(video.segments.len() >= 14);
    assert!(
        (video.segments[3].duration - 2.002).abs() < 0.001,
        "{:?}",
        video.segments[3]
    );
    assert_eq!(h.last("audio").target_duration, 2);
    assert_eq!(h.packager.stats(), PackagerStats::default());
}

#[test]
fn a_longer_gop_than_the_target_duration_is_split() {
    let mut h = Harness::new(config());
    // 2 s first, then 4 s GOPs: TD stays 2, the long GOPs are split.
    let source = Source {
        gops: vec![50, 100, 100],
        ..Source::default()
    };
    source.run(&mut h, "a", 30.0, 0);
    check_invariants(&h);
    assert_eq!(h.last("source").target_duration, 2);
    assert!(
        h.packager.stats().segments_split >= 4,
        "{:?}",
        h.packager.stats()
    );
    let listed = h.last("source");
    assert!(
        !listed.independent_segments,
        "a split segment does not start with a keyframe"
    );
    // Every split segment still decodes from the previous one: it starts with a non-sync
    // sample, and its parts say so.
    let split = listed
        .segments
        .iter()
        .find(|s| !s.parts.is_empty() && !s.parts[0].independent);
    assert!(split.is_some() || listed.segments.iter().all(|s| s.parts.is_empty()));
}

#[test]
fn an_audio_gap_resyncs_and_keeps_lip_sync() {
    let mut h = Harness::new(config());
    let source = Source {
        audio_gaps: vec![(5_000, 500)],
        ..Source::default()
    };
    source.run(&mut h, "a", 20.0, 0);
    check_invariants(&h);
    assert_eq!(
        h.packager.stats().audio_resyncs,
        1,
        "{:?}",
        h.packager.stats()
    );
    // After the gap, every audio segment starts within one audio frame of the video's.
    let starts = |r: &str, timescale: f64| -> BTreeMap<u64, f64> {
        h.segments
            .iter()
            .filter(|s| s.0 == r)
            .map(|s| (s.1, timing(&s.2).0 as f64 / timescale))
            .collect()
    };
    let (video, audio) = (starts("source", 90_000.0), starts("audio", 48_000.0));
    assert!(audio.len() >= 9);
    for (msn, a) in &audio {
        let v = video[msn];
        assert!(
            (a - v).abs() <= 1_024.0 / 48_000.0,
            "msn {msn}: audio {a} video {v}"
        );
    }
}

#[test]
fn ladder_renditions_and_audio_share_cuts_numbers_and_dates() {
    let mut h = Harness::new(config());
    // Audio comes out of the transcoder 600 ms before the video.
    let source = Source {
        videos: ladder(),
        audio_ahead_ms: 600,
        cto: 7_200,
        ..Source::default()
    };
    source.run(&mut h, "a", 20.0, 0);
    check_invariants(&h);
    let msns =
        |r: &str| -> Vec<u64> { h.last(r).segments.iter().map(|s| msn_of(&s.uri)).collect() };
    for r in ["480p", "360p", "audio"] {
        assert_eq!(msns(r), msns("720p"), "{r}");
        assert!(h.last(r).segments.iter().all(|s| !s.gap), "{r}");
    }
    for (r, msn, data) in &h.segments {
        if r != "720p" && r != "audio" {
            let lead = h
                .segments
                .iter()
                .find(|s| s.0 == "720p" && s.1 == *msn)
                .unwrap();
            assert_eq!(timing(data).0, timing(&lead.2).0, "{r} {msn} starts apart");
        }
    }
    // Rendition reports name every sibling.
    let p = &h.playlists["720p"][h.playlists["720p"].len() / 2];
    assert_eq!(p.reports.len(), 3, "{:?}", p.reports);
    assert!(p
        .reports
        .iter()
        .any(|r| r.contains("../audio/index.m3u8") && r.contains("LAST-PART=")));
    assert!(h.masters.last().unwrap().contains("AUDIO=\"audio\""));
}

#[test]
fn a_new_session_continues_numbers_after_a_discontinuity() {
    let mut h = Harness::new(config());
    Source::default().run(&mut h, "a", 9.1, 0);
    let first = h.last("source").clone();
    // The publisher comes back 3 s later, its timestamps from 0 again.
    Source::default().run(&mut h, "b", 9.0, 12_100);
    check_invariants(&h);
    for r in ["source", "audio"] {
        let p = h.last(r);
        let joins: Vec<usize> = p
            .segments
            .iter()
            .enumerate()
            .filter(|(_, s)| s.discontinuity)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(joins, vec![first.segments.len()], "{r}");
        assert!(p.segments[joins[0]].uri.starts_with("b/"), "{r}");
        assert_eq!(p.segments[joins[0]].map.as_deref(), Some("b/init.mp4"));
        assert!(
            p.hint.is_none(),
            "nothing is hinted after the publisher left"
        );
    }
}

#[test]
fn an_ended_event_lists_endlist_refuses_sessions_and_reopens() {
    let mut h = Harness::new(config());
    Source::default().run(&mut h, "a", 9.1, 0);
    h.end_event(9_200);
    check_invariants(&h);
    let ended = h.last("source").clone();
    for r in ["source", "audio"] {
        let p = h.last(r);
        assert!(p.ended, "{r} ends with EXT-X-ENDLIST");
        assert!(
            p.hint.is_none(),
            "{r}: nothing is hinted in an ended playlist"
        );
        assert_eq!(
            p.segments.len(),
            ended.segments.len(),
            "{r} keeps its window"
        );
    }
    // A session while ended is refused: nothing changes.
    let versions = h.playlists["source"].len();
    Source::default().run(&mut h, "b", 4.0, 10_000);
    assert_eq!(h.playlists["source"].len(), versions);
    // Reopened, the next session continues after a discontinuity, without ENDLIST.
    h.reopen();
    assert!(!h.last("source").ended);
    Source::default().run(&mut h, "c", 4.1, 20_000);
    check_invariants(&h);
    let p = h.last("source");
    assert!(!p.ended);
    let joined = p
        .segments
        .iter()
        .position(|s| s.uri.starts_with("c/"))
        .unwrap();
    assert!(p.segments[joined].discontinuity);
    assert_eq!(
        msn_of(&p.segments[joined].uri),
        msn_of(&ended.segments.last().unwrap().uri) + 1
    );
}

#[test]
fn a_restarted_process_starts_above_every_number_used() {
    let t = 1_763_716_172_123;
    let mut h = Harness::new(PackagerConfig {
        first_msn: MediaSequence::from_unix_millis(t),
        ..config()
    });
    Source::default().run(&mut h, "a", 30.0, 0);
    let used = msn_of(&h.last("source").segments.last().unwrap().uri);
    // 30 s later the process restarts.
    let mut h = Harness::new(PackagerConfig {
        first_msn: MediaSequence::from_unix_millis(t + 30_000),
        ..config()
    });
    Source::default().run(&mut h, "b", 4.0, 0);
    assert!(h.last("source").media_sequence > used);
}

#[test]
fn a_timestamp_jump_becomes_a_discontinuity() {
    let mut h = Harness::new(config());
    h.begin("a", 0);
    h.track(&RenditionId::SOURCE, video_info(), 0);
    h.track(&RenditionId::AUDIO, audio_info(), 0);
    // 8 s of media, then the encoder restarts its clock at 0 without reconnecting.
    let mut events = Source::default().events(8.0);
    let later = Source {
        start_ms: 0,
        ..Source::default()
    }
    .events(8.0);
    let offset = events.last().unwrap().0 + 40;
    events.extend(later.into_iter().map(|(ms, r, f)| (ms + offset, r, f)));
    for (ms, r, f) in events {
        h.frame(&r, f, ms);
    }
    h.end(16_100);
    check_invariants(&h);
    assert!(h.packager.stats().timestamp_jumps >= 1);
    for r in ["source", "audio"] {
        let discontinuities = h
            .last(r)
            .segments
            .iter()
            .filter(|s| s.discontinuity)
            .count();
        assert_eq!(discontinuities, 1, "{r}: {:?}", h.last(r));
    }
}

#[test]
fn low_latency_playlists_list_parts_hints_and_deltas() {
    let mut h = Harness::new(config());
    Source::default().run(&mut h, "a", 30.0, 0);
    check_invariants(&h);
    let versions = &h.playlists["source"];
    let live = &versions[versions.len() - 10];
    assert_eq!(live.version, 6);
    assert_eq!(live.part_target, Some(0.333));
    assert!(
        live.server_control.contains("CAN-BLOCK-RELOAD=YES"),
        "{}",
        live.server_control
    );
    assert!(
        live.server_control.contains("PART-HOLD-BACK=0.999"),
        "{}",
        live.server_control
    );
    assert!(
        live.server_control.contains("CAN-SKIP-UNTIL=12.0"),
        "{}",
        live.server_control
    );
    assert!(live.hint.is_some());
    // Parts are listed for the last three target durations only.
    let with_parts: f64 = live
        .segments
        .iter()
        .filter(|s| !s.parts.is_empty())
        .map(|s| s.duration)
        .sum();
    assert!(with_parts <= 6.0 + 2.0, "{with_parts}");
    assert!(live
        .segments
        .iter()
        .rev()
        .take(2)
        .all(|s| !s.parts.is_empty()));
    // The first part of every segment starts with a keyframe.
    assert!(live
        .segments
        .iter()
        .filter(|s| !s.parts.is_empty())
        .all(|s| s.parts[0].independent));
    // A delta update skips what is more than CAN-SKIP-UNTIL from the end, at version 9.
    let delta = h.deltas["source"].last().unwrap();
    assert_eq!(delta.version, 9);
    assert!(delta.skipped > 0);
    assert_eq!(
        delta.segments.last().unwrap().uri,
        h.last("source").segments.last().unwrap().uri
    );
    assert!(
        delta.segments.first().unwrap().map.is_some(),
        "the map stays in force"
    );
}

#[test]
fn without_low_latency_no_part_is_listed_or_stored() {
    let mut h = Harness::new(PackagerConfig {
        low_latency: false,
        ..config()
    });
    Source::default().run(&mut h, "a", 10.0, 0);
    check_invariants(&h);
    let p = h.last("source");
    assert_eq!(p.part_target, None);
    assert!(
        p.segments.iter().all(|s| s.parts.is_empty()) && p.hint.is_none() && p.reports.is_empty()
    );
    assert!(
        !h.store.keys().any(|k| k.matches('.').count() == 2),
        "no part objects"
    );
    assert!(h.deltas.is_empty());
}

#[test]
fn configured_policy_publishes_from_the_first_part() {
    let mut h = Harness::new(PackagerConfig {
        target_duration_policy: TargetDurationPolicy::Configured,
        ..config()
    });
    h.begin("a", 0);
    h.track(&RenditionId::SOURCE, video_info(), 0);
    for (ms, r, f) in (Source {
        audio: false,
        ..Source::default()
    })
    .events(1.0)
    {
        h.frame(&r, f, ms);
    }
    let p = h.last("source");
    assert_eq!(p.target_duration, 2);
    assert!(
        p.segments.is_empty() && !p.open_parts.is_empty(),
        "parts of the first segment are listed"
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48),
        ..ProptestConfig::default()
    })]

    /// Any GOP structure, frame rate, B-frame delay, audio gaps and transcoder delay: the
    /// invariants hold, and every rendition lists the same segments.
    #[test]
    fn timeline_invariants_hold(
        gops in prop::collection::vec(10usize..150, 1..6),
        frame_ticks in prop::sample::select(vec![1_500i64, 3_000, 3_003, 3_600, 3_750]),
        cto in prop::sample::select(vec![0i64, 3_000, 6_006]),
        renditions in 1usize..=3,
        audio in any::<bool>(),
        gaps in prop::collection::vec((1_000i64..14_000, 30i64..900), 0..3),
        audio_ahead_ms in 0i64..700,
        low_latency in any::<bool>(),
    ) {
        let mut h = Harness::new(PackagerConfig { low_latency, ..config() });
        let source = Source {
            frame_ticks,
            gops,
            cto,
            videos: ladder().into_iter().take(renditions).collect(),
            audio,
            audio_gaps: gaps,
            audio_ahead_ms,
            start_ms: 0,
        };
        source.run(&mut h, "a", 16.0, 0);
        check_invariants(&h);
        let lead = h.last("720p");
        for r in h.playlists.keys() {
            let p = h.last(r);
            prop_assert_eq!(p.media_sequence, lead.media_sequence, "{}", r);
            prop_assert_eq!(p.segments.len(), lead.segments.len(), "{}", r);
        }
    }
}

/// A fake cipher: appends `|k{period}` (period = msn / 2) to what it encrypts, and records
/// what it was told to release.
#[derive(Debug, Default)]
struct Marking {
    released: std::sync::Mutex<Vec<u64>>,
}

impl crate::SegmentEncryption for Marking {
    fn key(&self, msn: MediaSequence) -> crate::SegmentKey {
        crate::SegmentKey::new(format!("/k/{}", msn.0 / 2).into(), [0; 16], [0; 16])
    }
    fn encrypt(&self, key: &crate::SegmentKey, plain: &[u8]) -> bytes::Bytes {
        let period = key.uri().rsplit('/').next().unwrap();
        [plain, format!("|k{period}").as_bytes()].concat().into()
    }
    fn encrypt_runs(
        &self,
        _: &crate::SegmentKey,
        _: &mut [u8],
        _: &[std::ops::Range<usize>],
        _: crate::Pattern,
    ) {
        unreachable!("an AES-128 event encrypts no samples")
    }
    fn release_through(&self, msn: MediaSequence) {
        self.released.lock().unwrap().push(msn.0);
    }
}

#[test]
fn encrypted_segments_and_parts_name_their_key_and_keys_go_with_their_segments() {
    let marking = std::sync::Arc::new(Marking::default());
    let mut h = Harness::new(PackagerConfig {
        window_segments: NonZeroUsize::new(3).unwrap(),
        encryption: Some(marking.clone()),
        ..PackagerConfig::default()
    });
    Source::default().run(&mut h, "a", 40.0, 0);
    // Every segment and part is encrypted on its own with its segment's key.
    let objects: Vec<(&String, &bytes::Bytes)> = h
        .store
        .iter()
        .filter(|(k, _)| k.ends_with(".m4s"))
        .collect();
    assert!(objects.len() > 20);
    for (name, data) in objects {
        let msn = msn_of(name);
        let mark = format!("|k{}", msn / 2);
        assert!(data.ends_with(mark.as_bytes()), "{name}");
    }
    // Every playlist names each segment's key (and none over an init segment: parse checks).
    for versions in h.playlists.values() {
        for p in versions {
            for s in &p.segments {
                let want = format!("/k/{}", msn_of(&s.uri) / 2);
                assert_eq!(s.key.as_deref(), Some(want.as_str()), "{}", s.uri);
            }
        }
    }
    // Keys leave only once every rendition has let go of their segments, never while one is
    // listed.
    let released = marking.released.lock().unwrap().clone();
    assert!(
        !released.is_empty(),
        "keys are released as the window slides"
    );
    assert!(released.windows(2).all(|w| w[0] <= w[1]));
    for rendition in ["source", "audio"] {
        let first = h.last(rendition).media_sequence;
        assert!(
            *released.last().unwrap() < first,
            "{rendition}: {released:?} vs {first}"
        );
    }
}

/// A fake `cbcs` cipher: keys named by period (msn / 2), KID = the period in every byte; it
/// flips every protected byte.
#[derive(Debug, Default)]
struct Flipping;

impl crate::SegmentEncryption for Flipping {
    fn method(&self) -> crate::EncryptionMethod {
        crate::EncryptionMethod::SampleAes
    }
    fn key(&self, msn: MediaSequence) -> crate::SegmentKey {
        let p = msn.0 / 2;
        crate::SegmentKey::sample_aes(
            [p as u8; 16],
            [7; 16],
            [0; 16],
            vec![format!(
                "METHOD=SAMPLE-AES,URI=\"/l/ev\",KEYFORMAT=\"org.w3.clearkey\",KEYID=0x{p:032X}"
            )],
            bytes::Bytes::from_static(b"\0\0\0\x0cpsshDATA"),
        )
    }
    fn encrypt(&self, _: &crate::SegmentKey, _: &[u8]) -> bytes::Bytes {
        unreachable!("a SAMPLE-AES event encrypts no whole segment")
    }
    fn encrypt_runs(
        &self,
        _: &crate::SegmentKey,
        data: &mut [u8],
        runs: &[std::ops::Range<usize>],
        _: crate::Pattern,
    ) {
        for run in runs {
            data[run.clone()].iter_mut().for_each(|b| *b ^= 0xff);
        }
    }
    fn release_through(&self, _: MediaSequence) {}
}

#[test]
fn sample_aes_events_encrypt_samples_and_name_every_key_system() {
    let mut h = Harness::new(PackagerConfig {
        window_segments: NonZeroUsize::new(4).unwrap(),
        encryption: Some(std::sync::Arc::new(Flipping)),
        ..PackagerConfig::default()
    });
    Source::default().run(&mut h, "a", 20.0, 0);
    let has = |data: &[u8], what: &[u8]| data.windows(what.len()).any(|w| w == what);
    for (name, data) in h.store.iter().filter(|(k, _)| k.ends_with("init.mp4")) {
        assert!(has(data, b"sinf") && has(data, b"psshDATA"), "{name}");
    }
    for (name, data) in h.store.iter().filter(|(k, _)| k.ends_with(".m4s")) {
        assert!(has(data, b"senc") && !has(data, b"sbgp"), "{name}");
        let mdat = data.windows(4).rposition(|w| w == b"mdat").unwrap() + 4;
        if name.starts_with("source/") {
            // The test's video samples (00000002 6588) do not parse as slices: only their
            // length and NAL header stay clear, never the whole sample.
            assert!(has(data, b"saio") && has(data, b"saiz"), "{name}");
            assert_eq!(&data[mdat..mdat + 6], &[0, 0, 0, 2, 0x65, 0x77], "{name}");
        } else {
            assert!(!has(data, b"saio"), "audio has no subsamples: {name}");
        }
    }
    // Every key period has its own init segments, whose tenc names the period's key; the
    // window's segments point at them (EXT-X-MAP changes with EXT-X-KEY), and init segments
    // of periods that left the window are gone.
    for rendition in ["source", "audio"] {
        let last = h.last(rendition);
        for seg in &last.segments {
            let map = seg.map.as_ref().unwrap();
            let init = &h.store[&format!("{rendition}/{map}")];
            let tenc = init.windows(4).position(|w| w == b"tenc").unwrap();
            let period = (msn_of(&seg.uri) / 2) as u8;
            assert_eq!(
                &init[tenc + 12..tenc + 28],
                &[period; 16],
                "{rendition} {}",
                seg.uri
            );
        }
        let inits = h
            .store
            .keys()
            .filter(|k| k.starts_with(rendition) && k.ends_with("init.mp4"))
            .count();
        assert!(
            (2..=5).contains(&inits),
            "{rendition}: {inits} init segments"
        );
    }
    // Playlists name each segment's key (per key system, with its KID).
    for versions in h.playlists.values() {
        for p in versions {
            for s in &p.segments {
                let want = format!("/l/ev#0x{:032X}", msn_of(&s.uri) / 2);
                assert_eq!(s.key.as_deref(), Some(want.as_str()), "{}", s.uri);
            }
        }
    }
    let master = h.masters.last().unwrap();
    assert!(
        master.contains("#EXT-X-SESSION-KEY:METHOD=SAMPLE-AES,URI=\"/l/ev\""),
        "{master}"
    );
}
