//! Rendering a media playlist: the full text and its delta update (RFC 8216bis §4.4.3-4.4.5,
//! §6.2.5.1).

use std::fmt::Write;
use std::time::Duration;

use bytes::Bytes;

use super::{MediaPlaylist, PartEntry, SegmentHead};
use crate::{MediaSequence, PartIndex, RenditionId, SegmentKey, SessionId};

/// `EXT-X-VERSION` of a full playlist: `EXT-X-MAP` in a playlist that is not I-frame only
/// needs 6 (RFC 8216bis §8); the LL-HLS tags need nothing more.
const VERSION: u32 = 6;
/// `EXT-X-VERSION` of a playlist delta update: `EXT-X-SKIP` needs 9 (RFC 8216bis §8).
const VERSION_DELTA: u32 = 9;

/// Where a rendition's live edge is: its last listed (msn, part), or its last segment when it
/// lists no parts.
pub(crate) type Position = (MediaSequence, Option<PartIndex>);

/// How the playlist is rendered: what all the event's playlists share.
#[derive(Clone, Debug)]
pub(crate) struct RenderContext<'a> {
    /// `EXT-X-TARGETDURATION`, seconds.
    pub(crate) target_duration: u64,
    /// The part target when the event is low-latency (parts, hints and reports listed).
    pub(crate) part_target: Option<Duration>,
    /// The other renditions of the master playlist: name and last listed (msn, part).
    pub(crate) reports: &'a [(RenditionId, Option<Position>)],
    /// The event has ended: `EXT-X-ENDLIST`, no preload hint (RFC 8216 §4.3.3.4).
    pub(crate) ended: bool,
    /// How segments are encrypted, if they are (for the key of a hinted part's segment).
    pub(crate) encryption: Option<&'a dyn crate::SegmentEncryption>,
}

impl RenderContext<'_> {
    fn target(&self) -> Duration {
        Duration::from_secs(self.target_duration)
    }

    /// `CAN-SKIP-UNTIL`: six target durations (RFC 8216bis §4.4.3.8).
    pub(crate) fn skip_until(&self) -> Duration {
        self.target() * 6
    }
}

impl MediaPlaylist {
    /// How many segments a delta update skips: those that end more than `CAN-SKIP-UNTIL`
    /// before the end of the last segment (RFC 8216bis §6.2.5.1).
    fn skippable(&self, skip_until: Duration) -> usize {
        let mut from_end = Duration::ZERO;
        let mut keep = 0;
        for s in self.segments.iter().rev() {
            if from_end > skip_until {
                break;
            }
            keep += 1;
            from_end += s.duration;
        }
        self.segments.len() - keep
    }

    /// Whether a delta update would skip anything.
    pub(crate) fn has_skippable(&self, skip_until: Duration) -> bool {
        self.skippable(skip_until) > 0
    }

    /// Renders the playlist; with `delta`, as a playlist delta update (`EXT-X-SKIP`).
    pub(crate) fn render(&self, ctx: &RenderContext<'_>, delta: bool) -> Bytes {
        let mut out = String::with_capacity(512 + self.segments.len() * 160);
        let first = self.segments.front().map_or(0, |s| s.head.msn.0);
        let skipped = if delta {
            self.skippable(ctx.skip_until())
        } else {
            0
        };
        let version = if delta { VERSION_DELTA } else { VERSION };
        let td = ctx.target_duration;
        let _ = write!(
            out,
            "#EXTM3U\n#EXT-X-VERSION:{version}\n#EXT-X-TARGETDURATION:{td}\n\
             #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES"
        );
        if let Some(part_target) = ctx.part_target {
            let _ = write!(
                out,
                ",CAN-SKIP-UNTIL={:.1},PART-HOLD-BACK={:.3}",
                ctx.skip_until().as_secs_f64(),
                (part_target * 3).as_secs_f64()
            );
        }
        let _ = writeln!(out, ",HOLD-BACK={:.1}", (ctx.target() * 3).as_secs_f64());
        if let Some(part_target) = ctx.part_target {
            let _ = writeln!(
                out,
                "#EXT-X-PART-INF:PART-TARGET={:.3}",
                part_target.as_secs_f64()
            );
        }
        let _ = write!(
            out,
            "#EXT-X-MEDIA-SEQUENCE:{first}\n#EXT-X-DISCONTINUITY-SEQUENCE:{}\n",
            self.discontinuity_sequence
        );
        let independent = self.segments.iter().all(|s| s.independent || s.gap)
            && self
                .open
                .as_ref()
                .is_none_or(|(_, parts)| parts.first().is_none_or(|p| p.independent));
        if independent {
            out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
        }
        if skipped > 0 {
            let _ = writeln!(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
        }
        let mut map: Option<&SessionId> = None;
        let mut key: Option<SegmentKey> = None;
        let with_parts = ctx.part_target.is_some();
        for s in self.segments.iter().skip(skipped) {
            write_head(&mut out, &s.head, &mut map, &mut key);
            if with_parts {
                write_parts(&mut out, &s.head, &s.parts);
            }
            if s.gap {
                out.push_str("#EXT-X-GAP\n");
            }
            let _ = write!(
                out,
                "#EXTINF:{:.3},\n{}/{}.m4s\n",
                s.duration.as_secs_f64(),
                s.head.session,
                s.head.msn
            );
        }
        if with_parts {
            if let Some((head, parts)) = &self.open {
                if !parts.is_empty() {
                    write_head(&mut out, head, &mut map, &mut key);
                    write_parts(&mut out, head, parts);
                }
            }
            if let Some(h) = self.hint.as_ref().filter(|_| !ctx.ended) {
                // A hinted part of a segment not listed yet is encrypted with that segment's
                // key: a new one is declared before the hint (it applies to what follows).
                if let Some(e) = ctx.encryption {
                    write_key(&mut out, Some(&e.key(h.msn)), &mut key);
                }
                let _ = writeln!(
                    out,
                    "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}/{}.{}.m4s\"",
                    h.session, h.msn, h.part
                );
            }
            for (rendition, last) in ctx.reports {
                if rendition == &self.rendition {
                    continue;
                }
                let _ = write!(
                    out,
                    "#EXT-X-RENDITION-REPORT:URI=\"../{rendition}/index.m3u8\""
                );
                if let Some((msn, part)) = last {
                    let _ = write!(out, ",LAST-MSN={msn}");
                    if let Some(p) = part {
                        let _ = write!(out, ",LAST-PART={p}");
                    }
                }
                out.push('\n');
            }
        }
        if ctx.ended {
            out.push_str("#EXT-X-ENDLIST\n");
        }
        Bytes::from(out)
    }
}

/// The tags that come before a segment's first part or its `EXTINF`: discontinuity, map,
/// key, date (RFC 8216bis §4.4.4.9: they precede the first `EXT-X-PART` of the segment).
///
/// Init segments are never encrypted, and an `EXT-X-KEY` applies to every `EXT-X-MAP` after
/// it (RFC 8216 §4.3.2.4): so the map comes before the key, and a map written while a key is
/// in force is preceded by `EXT-X-KEY:METHOD=NONE`.
fn write_head<'a>(
    out: &mut String,
    head: &'a SegmentHead,
    map: &mut Option<&'a SessionId>,
    key: &mut Option<SegmentKey>,
) {
    if head.discontinuity {
        out.push_str("#EXT-X-DISCONTINUITY\n");
    }
    if *map != Some(&head.init) {
        // An init segment under an AES-128 key would be read as encrypted (RFC 8216 §4.3.2.5);
        // SAMPLE-AES leaves init segments clear, so its key stays declared.
        if key.take().is_some_and(|k| k.tags().is_empty()) {
            out.push_str("#EXT-X-KEY:METHOD=NONE\n");
        }
        let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}/init.mp4\"", head.init);
        *map = Some(&head.init);
    }
    write_key(out, head.key.as_ref(), key);
    let pdt = humantime::format_rfc3339_millis(head.program_date_time);
    let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{pdt}");
}

/// `EXT-X-KEY` (RFC 8216 §4.3.2.4) when `next` is not the key in force (`current`): the
/// first segment of a playlist (or of a delta update) and every key change.
fn write_key(out: &mut String, next: Option<&SegmentKey>, current: &mut Option<SegmentKey>) {
    let Some(next) = next else {
        return;
    };
    if current.as_ref().is_some_and(|c| c.same_as(next)) {
        return;
    }
    if !next.tags().is_empty() {
        // SAMPLE-AES: one tag per key system (RFC 8216bis §4.4.4.4).
        for tag in next.tags() {
            let _ = writeln!(out, "#EXT-X-KEY:{tag}");
        }
        *current = Some(next.clone());
        return;
    }
    let _ = write!(
        out,
        "#EXT-X-KEY:METHOD=AES-128,URI=\"{}\",IV=0x",
        next.uri()
    );
    for b in next.iv() {
        let _ = write!(out, "{b:02X}");
    }
    out.push('\n');
    *current = Some(next.clone());
}

fn write_parts(out: &mut String, head: &SegmentHead, parts: &[PartEntry]) {
    for (i, p) in parts.iter().enumerate() {
        let _ = write!(
            out,
            "#EXT-X-PART:DURATION={:.5},URI=\"{}/{}.{i}.m4s\"",
            p.duration.as_secs_f64(),
            head.session,
            head.msn
        );
        if p.independent {
            out.push_str(",INDEPENDENT=YES");
        }
        out.push('\n');
    }
}
