//! The media playlist window: what it lists, what leaves it, and when objects may go.

use super::*;

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn session(s: &str) -> SessionId {
    SessionId::parse(s).unwrap()
}

fn head(msn: u64, s: &str, discontinuity: bool) -> SegmentHead {
    SegmentHead {
        msn: MediaSequence(msn),
        session: session(s),
        init: session(s),
        program_date_time: t0() + Duration::from_secs(msn * 2),
        discontinuity,
        key: None,
    }
}

fn entry(msn: u64, s: &str, secs: f64, discontinuity: bool) -> SegmentEntry {
    SegmentEntry {
        head: head(msn, s, discontinuity),
        duration: Duration::from_secs_f64(secs),
        bytes: 250_000,
        independent: true,
        gap: false,
        parts: Vec::new(),
    }
}

fn render(p: &MediaPlaylist, td: u64) -> String {
    let ctx = RenderContext {
        encryption: None,
        target_duration: td,
        part_target: None,
        reports: &[],
        ended: false,
    };
    String::from_utf8(p.render(&ctx, false).to_vec()).unwrap()
}

#[test]
fn window_slides_counts_discontinuities_and_expires_in_order() {
    let td = Duration::from_secs(2);
    let mut p = MediaPlaylist::new(RenditionId::SOURCE, 3);
    for msn in 0..3 {
        assert!(p.push(entry(msn, "a", 2.0, false), td, t0()).is_empty());
    }
    p.push(entry(3, "b", 2.0, true), td, t0());
    p.push(entry(4, "b", 2.0, false), td, t0());
    let text = render(&p, 2);
    assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:2\n"), "{text}");
    assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:0\n"));
    assert!(text.contains("#EXT-X-MAP:URI=\"a/init.mp4\"\n"));
    assert!(text.contains("#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"b/init.mp4\"\n"));
    assert!(text.contains("#EXTINF:2.000,\na/2.m4s\n"));
    assert!(text.contains("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,HOLD-BACK=6.0\n"));
    assert!(
        !text.contains("PART"),
        "no LL-HLS tags without parts: {text}"
    );
    // Removed segments live for their duration plus the playlist's (6 s) after removal.
    let later = p.push(entry(5, "b", 2.0, false), td, t0() + Duration::from_secs(8));
    assert_eq!(
        later,
        vec![
            (session("a"), Expired::Segment(MediaSequence(0))),
            (session("a"), Expired::Segment(MediaSequence(1))),
        ]
    );
    // The discontinuity tag left with segment 3: the sequence counts it.
    p.push(entry(6, "b", 2.0, false), td, t0() + Duration::from_secs(9));
    let text = render(&p, 2);
    assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"), "{text}");
    assert!(!text.contains("#EXT-X-DISCONTINUITY\n"));
    let gone = p.push(
        entry(7, "b", 2.0, false),
        td,
        t0() + Duration::from_secs(30),
    );
    assert!(gone.contains(&(session("a"), Expired::Init)), "{gone:?}");
}

#[test]
fn never_shorter_than_three_target_durations() {
    let td = Duration::from_secs(2);
    let mut p = MediaPlaylist::new(RenditionId::SOURCE, 3);
    // Short segments (a publisher reconnecting): the window keeps 6 s however many it takes.
    for msn in 0..10 {
        p.push(entry(msn, "a", 0.5, false), td, t0());
    }
    let text = render(&p, 2);
    assert_eq!(text.matches("#EXTINF").count(), 10, "{text}");
    for msn in 10..30 {
        p.push(entry(msn, "a", 0.5, false), td, t0());
    }
    assert_eq!(render(&p, 2).matches("#EXTINF").count(), 12);
}

#[test]
fn parts_are_listed_near_the_live_edge_then_expire() {
    let td = Duration::from_secs(2);
    let mut p = MediaPlaylist::new(RenditionId::SOURCE, 10);
    let part = |independent| PartEntry {
        duration: Duration::from_millis(500),
        independent,
    };
    let mut expired = Vec::new();
    for msn in 0..8u64 {
        for i in 0..4 {
            p.part(head(msn, "a", false), part(i == 0));
            assert_eq!(
                p.hint(),
                Some(&PartRef {
                    session: session("a"),
                    msn: MediaSequence(msn),
                    part: PartIndex(i + 1)
                })
            );
        }
        let now = t0() + Duration::from_secs(msn * 2);
        expired.extend(p.push(entry(msn, "a", 2.0, false), td, now));
        assert_eq!(
            p.last_position(),
            Some((MediaSequence(msn), Some(PartIndex(3))))
        );
    }
    let ctx = RenderContext {
        encryption: None,
        target_duration: 2,
        part_target: Some(Duration::from_millis(500)),
        reports: &[(
            RenditionId::AUDIO,
            Some((MediaSequence(7), Some(PartIndex(2)))),
        )],
        ended: false,
    };
    let text = String::from_utf8(p.render(&ctx, false).to_vec()).unwrap();
    // Segments ending within 6 s of the edge list their parts: the last four.
    assert_eq!(text.matches("#EXT-X-PART:").count(), 16, "{text}");
    assert!(!text.contains("a/3.0.m4s"));
    assert!(text.contains("#EXT-X-PART:DURATION=0.50000,URI=\"a/5.0.m4s\",INDEPENDENT=YES\n"));
    assert!(
        text.contains("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"a/8.0.m4s\"\n"),
        "{text}"
    );
    assert!(text
        .contains("#EXT-X-RENDITION-REPORT:URI=\"../audio/index.m3u8\",LAST-MSN=7,LAST-PART=2\n"));
    // Parts that left the listing stay fetchable for three target durations: segment 0's
    // left at 8 s (when segment 4 came) and went at 14 s; segment 4's are still listed.
    let parts_of = |e: &[(SessionId, Expired)], msn: u64| {
        e.iter()
            .filter(|(_, x)| matches!(x, Expired::Parts { msn: m, count: 4 } if m.0 == msn))
            .count()
    };
    assert_eq!(parts_of(&expired, 0), 1);
    assert_eq!(
        parts_of(&expired, 1),
        0,
        "segment 1's left at 10 s: still fetchable at 14 s"
    );
    let later = p.push(
        entry(8, "a", 2.0, false),
        td,
        t0() + Duration::from_secs(40),
    );
    assert_eq!(parts_of(&later, 1), 1);
    assert_eq!(parts_of(&later, 7), 0);
    p.end_session();
    assert_eq!(p.hint(), None);
}

use crate::SegmentEncryption as _;

/// Keys named `/k/{period}` with period = msn / 2, IV = msn / 2 in every byte.
#[derive(Debug)]
struct EveryTwo;

impl crate::SegmentEncryption for EveryTwo {
    fn key(&self, msn: MediaSequence) -> crate::SegmentKey {
        let p = msn.0 / 2;
        crate::SegmentKey::new(format!("/k/{p}").into(), [p as u8; 16], [0; 16])
    }
    fn encrypt(&self, _: &crate::SegmentKey, plain: &[u8]) -> bytes::Bytes {
        bytes::Bytes::copy_from_slice(plain)
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
    fn release_through(&self, _: MediaSequence) {}
}

#[test]
fn keys_are_declared_where_they_change_and_never_over_an_init_segment() {
    let td = Duration::from_secs(2);
    let mut p = MediaPlaylist::new(RenditionId::SOURCE, 10);
    for (msn, s, disc) in [
        (1, "a", false),
        (2, "a", false),
        (3, "a", false),
        (4, "b", true),
    ] {
        let mut e = entry(msn, s, 2.0, disc);
        e.head.key = Some(EveryTwo.key(MediaSequence(msn)));
        p.push(e, td, t0());
    }
    let ctx = RenderContext {
        encryption: Some(&EveryTwo),
        target_duration: 2,
        part_target: Some(Duration::from_millis(500)),
        reports: &[],
        ended: false,
    };
    let text = String::from_utf8(p.render(&ctx, false).to_vec()).unwrap();
    let tags: Vec<String> = text
        .lines()
        .filter(|l| {
            ["#EXT-X-KEY", "#EXT-X-MAP", "#EXT-X-PRELOAD-HINT"]
                .iter()
                .any(|t| l.starts_with(t))
                || l.ends_with(".m4s")
        })
        .map(String::from)
        .collect();
    let iv = |p: u8| format!("0x{}", format!("{p:02X}").repeat(16));
    assert_eq!(
        tags,
        [
            "#EXT-X-MAP:URI=\"a/init.mp4\"".to_string(),
            format!("#EXT-X-KEY:METHOD=AES-128,URI=\"/k/0\",IV={}", iv(0)),
            "a/1.m4s".into(),
            format!("#EXT-X-KEY:METHOD=AES-128,URI=\"/k/1\",IV={}", iv(1)),
            "a/2.m4s".into(),
            "a/3.m4s".into(),
            // A new init segment while a key is in force: the key is lifted first.
            "#EXT-X-KEY:METHOD=NONE".into(),
            "#EXT-X-MAP:URI=\"b/init.mp4\"".into(),
            format!("#EXT-X-KEY:METHOD=AES-128,URI=\"/k/2\",IV={}", iv(2)),
            "b/4.m4s".into(),
            // The hinted part of segment 5 takes segment 5's key, declared before the hint
            // (the same key here: nothing new).
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"b/5.0.m4s\"".into(),
        ]
    );
    let mut e = entry(5, "b", 2.0, false);
    e.head.key = Some(EveryTwo.key(MediaSequence(5)));
    p.push(e, td, t0());
    let text = String::from_utf8(p.render(&ctx, false).to_vec()).unwrap();
    let tail: Vec<String> = text.lines().rev().take(2).map(String::from).collect();
    assert_eq!(
        tail,
        [
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"b/6.0.m4s\"".to_string(),
            format!("#EXT-X-KEY:METHOD=AES-128,URI=\"/k/3\",IV={}", iv(3)),
        ],
        "segment 6 takes a new key: declared before its hinted part\n{text}"
    );
}

/// With no new segment (the publisher left), what left the window still goes at its deadline,
/// with the init segment of a session no listed segment uses any more; nothing goes early.
#[test]
fn expiry_runs_on_time_without_new_segments() {
    let td = Duration::from_secs(2);
    let mut p = MediaPlaylist::new(RenditionId::SOURCE, 3);
    for msn in 0..3 {
        p.push(entry(msn, "a", 2.0, false), td, t0());
    }
    for msn in 3..6 {
        p.push(entry(msn, "b", 2.0, msn == 3), td, t0());
    }
    // Session a's segments left the window at t0: available for 2 s + the playlist's 6 s.
    assert!(p.expire_due(t0() + Duration::from_secs(7)).is_empty());
    let gone = p.expire_due(t0() + Duration::from_secs(8));
    assert_eq!(
        gone,
        vec![
            (session("a"), Expired::Segment(MediaSequence(0))),
            (session("a"), Expired::Segment(MediaSequence(2))),
            (session("a"), Expired::Segment(MediaSequence(1))),
            (session("a"), Expired::Init),
        ]
    );
    assert!(p.expire_due(t0() + Duration::from_secs(60)).is_empty());
    // Still listed: session b's segments and init stay.
    let text = render(&p, 2);
    assert!(text.contains("b/5.m4s"), "{text}");
}
