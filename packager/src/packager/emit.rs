//! Emission: what the tracks complete becomes objects, playlist entries (parts, segments,
//! gaps) and master playlist updates.

use std::time::{Duration, SystemTime};

use weir_media::Timescale;

use super::{gap_entry, running_has, Packager, MAX_CUTS};
use crate::playlist::{PartEntry, SegmentEntry, SegmentHead};
use crate::publish::MasterEntry;
use crate::timeline::{track_duration, EventTime};
use crate::track::{Closed, ClosedPart, ClosedSegment};
use crate::{Artifact, MediaSequence, RenditionId, SessionId};

impl Packager {
    /// Publishes what track `index` completed: the parts of the segment it closed, that
    /// segment, then the parts of the next one.
    pub(super) fn publish(
        &mut self,
        index: usize,
        closed: Closed,
        now: SystemTime,
        out: &mut Vec<Artifact>,
    ) {
        let segment_msn = closed.segment.as_ref().map(|s| s.msn);
        let (before, after): (Vec<ClosedPart>, Vec<ClosedPart>) = closed
            .parts
            .into_iter()
            .partition(|p| segment_msn.is_none_or(|m| p.msn == m));
        // Parts its segment completes in the same call are listed with the segment.
        self.publish_parts(index, before, segment_msn.is_none(), out);
        if let Some(segment) = closed.segment {
            self.publish_segment(index, segment, now, out);
        }
        self.publish_parts(index, after, true, out);
    }

    /// The running session's ID, and track `index`'s rendition and timescale.
    fn track_names(&self, index: usize) -> Option<(SessionId, RenditionId, Timescale)> {
        let session = self.session.as_ref()?;
        let track = session.running.as_ref()?.tracks.get(index)?;
        Some((session.id.clone(), track.rendition.clone(), track.timescale))
    }

    pub(super) fn publish_parts(
        &mut self,
        index: usize,
        parts: Vec<ClosedPart>,
        render: bool,
        out: &mut Vec<Artifact>,
    ) {
        if !self.config.low_latency {
            return;
        }
        let Some((session_id, rendition, timescale)) = self.track_names(index) else {
            return;
        };
        let td = if render { self.target.get() } else { None };
        for part in parts {
            let head = self.head(part.msn);
            self.publish_key_init(index, &head, out);
            out.push(Artifact::Part {
                rendition: rendition.clone(),
                session: session_id.clone(),
                msn: part.msn,
                part: part.index,
                data: self.encrypted(&head, part.data),
            });
            let entry = PartEntry {
                duration: track_duration(part.duration, timescale),
                independent: part.independent,
            };
            self.publication.part(&rendition, head, entry, td, out);
        }
    }

    pub(super) fn publish_segment(
        &mut self,
        index: usize,
        segment: ClosedSegment,
        now: SystemTime,
        out: &mut Vec<Artifact>,
    ) {
        let Some((session_id, rendition, timescale)) = self.track_names(index) else {
            return;
        };
        let head = self.head(segment.msn);
        self.publish_key_init(index, &head, out);
        let duration = track_duration(segment.duration, timescale);
        let newly_chosen = index == 0 && self.target.get().is_none();
        let td = if index == 0 {
            Some(self.target.first_segment(duration, self.audio_margin))
        } else {
            self.target.get()
        };
        let data = self.encrypted(&head, segment.data);
        let bytes = data.len();
        out.push(Artifact::Segment {
            rendition: rendition.clone(),
            session: session_id,
            msn: segment.msn,
            data,
        });
        let entry = SegmentEntry {
            head,
            duration,
            bytes,
            independent: segment.independent,
            gap: false,
            parts: Vec::new(),
        };
        self.publication.segment(&rendition, entry, td, now, out);
        if newly_chosen {
            if let Some(td) = td {
                self.publication.render_all(td, out);
            }
        }
        if index == 0 {
            if let Some(r) = self.session.as_mut().and_then(|s| s.running.as_mut()) {
                r.lead_last = Some((segment.msn, duration));
            }
            self.lead_segment_closed(segment.msn, duration, now, out);
        }
        self.update_master(out);
    }

    /// The lead closed segment `msn`: renditions with no track in the session, and tracks
    /// that have not started, list a gap for it.
    pub(super) fn lead_segment_closed(
        &mut self,
        msn: MediaSequence,
        duration: Duration,
        now: SystemTime,
        out: &mut Vec<Artifact>,
    ) {
        let Some(running) = self.session.as_mut().and_then(|s| s.running.as_mut()) else {
            return;
        };
        let index = (msn.0 - running.first_msn.0) as usize;
        let mut waiting = Vec::new();
        for (i, t) in running.tracks.iter_mut().enumerate().skip(1) {
            if t.segmenter.is_none() && t.cursor <= index {
                t.cursor = index + 1;
                waiting.push(i);
            }
        }
        for i in waiting {
            self.publish_gap(i, index, Some(duration), now, out);
        }
        let absent: Vec<RenditionId> = self
            .publication
            .renditions()
            .filter(|r| !running_has(self.session.as_ref(), r))
            .cloned()
            .collect();
        for rendition in absent {
            if self
                .publication
                .last_msn(&rendition)
                .is_some_and(|m| m >= msn)
            {
                continue;
            }
            let head = self.head(msn);
            let init = self.publication.playlist(&rendition).last_init().cloned();
            let head = SegmentHead {
                init: init.unwrap_or_else(|| head.init.clone()),
                ..head
            };
            let entry = gap_entry(head, duration);
            self.publication
                .segment(&rendition, entry, self.target.get(), now, out);
        }
    }

    /// Lists the segment of cut `cut` as a gap in track `index`'s playlist.
    pub(super) fn publish_gap(
        &mut self,
        index: usize,
        cut: usize,
        duration: Option<Duration>,
        now: SystemTime,
        out: &mut Vec<Artifact>,
    ) {
        let Some(running) = self.session.as_ref().and_then(|s| s.running.as_ref()) else {
            return;
        };
        let Some(c) = running.plan.get(cut) else {
            return;
        };
        let Some(duration) = duration.or_else(|| running.plan.span(cut)) else {
            return;
        };
        let rendition = running.tracks[index].rendition.clone();
        let head = self.head(c.msn);
        self.publication.segment(
            &rendition,
            gap_entry(head, duration),
            self.target.get(),
            now,
            out,
        );
    }

    /// `data` (a whole segment or part of segment `head`) as served: encrypted with its key
    /// when the event encrypts whole segments (`SAMPLE-AES` encrypted its samples already).
    fn encrypted(&self, head: &SegmentHead, data: bytes::Bytes) -> bytes::Bytes {
        match (&self.config.encryption, &head.key) {
            (Some(e), Some(key)) if e.method() == crate::EncryptionMethod::Aes128 => {
                e.encrypt(key, &data)
            }
            _ => data,
        }
    }

    /// The playlist head of segment `msn` of the running session.
    pub(super) fn head(&self, msn: MediaSequence) -> SegmentHead {
        let session = self.session.as_ref();
        let running = session.and_then(|s| s.running.as_ref());
        let (id, pdt, first) = match (session, running) {
            (Some(s), Some(r)) => {
                let i = msn.0.saturating_sub(r.first_msn.0) as usize;
                let cut = r.plan.get(i).unwrap_or(r.plan.last());
                (s.id.clone(), cut.program_date_time, r.first_msn)
            }
            _ => (
                SessionId::parse("0").unwrap_or_else(|| unreachable!()),
                SystemTime::UNIX_EPOCH,
                msn,
            ),
        };
        let key = self.config.encryption.as_ref().map(|e| e.key(msn));
        let default_kid = running.and_then(|r| r.default_kid);
        let init = match (&key, default_kid) {
            (Some(k), Some(d)) if *k.kid() != d => key_period_init(&id, k.kid()),
            _ => id.clone(),
        };
        SegmentHead {
            msn,
            session: id,
            init,
            program_date_time: pdt,
            discontinuity: msn == first && self.sessions_run > 1,
            key,
        }
    }

    /// Publishes the init segment of `head`'s key period for track `index`, unless it is the
    /// session's own or was published already: before any part or segment that uses it.
    pub(super) fn publish_key_init(
        &mut self,
        index: usize,
        head: &SegmentHead,
        out: &mut Vec<Artifact>,
    ) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let Some(key) = head.key.as_ref().filter(|_| head.init != session.id) else {
            return;
        };
        let Some(track) = session
            .running
            .as_mut()
            .and_then(|r| r.tracks.get_mut(index))
        else {
            return;
        };
        if track.key_inits.contains(&head.init) {
            return;
        }
        if track.key_inits.len() == KEY_INITS_KEPT {
            track.key_inits.remove(0);
        }
        track.key_inits.push(head.init.clone());
        let protection = crate::protect::init_protection(key, track.info.kind);
        out.push(Artifact::InitSegment {
            rendition: track.rendition.clone(),
            session: head.init.clone(),
            data: crate::fmp4::init_segment(&track.info, Some(&protection)),
        });
    }

    /// Forgets the cuts every track has passed; a track lagging more than [`MAX_CUTS`]
    /// behind is cut where it is.
    pub(super) fn trim_plan(&mut self, now: SystemTime, out: &mut Vec<Artifact>) {
        let Some(running) = self.session.as_mut().and_then(|s| s.running.as_mut()) else {
            return;
        };
        let last = running.plan.last_index();
        let laggards: Vec<usize> = running
            .tracks
            .iter()
            .enumerate()
            .filter(|(_, t)| last - t.cursor.min(last) >= MAX_CUTS && t.segmenter.is_some())
            .map(|(i, _)| i)
            .collect();
        for i in laggards {
            self.finish_track(i, now, out);
            let Some(running) = self.session.as_mut().and_then(|s| s.running.as_mut()) else {
                return;
            };
            let from = running.tracks[i].cursor + 1;
            running.tracks[i].cursor = last;
            for cut in from..last {
                self.publish_gap(i, cut, None, now, out);
            }
        }
        let Some(running) = self.session.as_mut().and_then(|s| s.running.as_mut()) else {
            return;
        };
        let oldest = running
            .tracks
            .iter()
            .map(|t| t.cursor)
            .min()
            .unwrap_or(last);
        running.plan.forget_before(oldest);
    }

    /// Closes what track `index` is building and publishes it.
    pub(super) fn finish_track(&mut self, index: usize, now: SystemTime, out: &mut Vec<Artifact>) {
        let Some(running) = self.session.as_mut().and_then(|s| s.running.as_mut()) else {
            return;
        };
        let Some(mut segmenter) = running.tracks[index].segmenter.take() else {
            return;
        };
        let closed = segmenter.finish();
        let end = EventTime::from_track(
            segmenter.next_decode_time() as i64,
            running.tracks[index].timescale,
        );
        self.timeline_end = self.timeline_end.max(end);
        self.publish(index, closed, now, out);
    }

    pub(super) fn update_master(&mut self, out: &mut Vec<Artifact>) {
        let Some(running) = self.session.as_ref().and_then(|s| s.running.as_ref()) else {
            return;
        };
        let entries: Vec<MasterEntry<'_>> = running
            .tracks
            .iter()
            .map(|t| MasterEntry {
                rendition: &t.rendition,
                info: &t.info,
                frame_rate: t.frame_rate,
            })
            .collect();
        self.publication.update_master(&entries, out);
    }

    /// At the end of a session: every track that stopped before the lead's last segment
    /// lists gaps up to it.
    pub(super) fn fill_to_lead(&mut self, now: SystemTime, out: &mut Vec<Artifact>) {
        let Some(running) = self.session.as_ref().and_then(|s| s.running.as_ref()) else {
            return;
        };
        let lead = running.tracks[0].rendition.clone();
        let Some(last) = self.publication.last_msn(&lead) else {
            return;
        };
        let first = running.first_msn;
        let last_duration = running.lead_last.map(|(_, d)| d);
        let renditions: Vec<(usize, RenditionId)> = running
            .tracks
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, t)| (i, t.rendition.clone()))
            .collect();
        for (i, rendition) in renditions {
            let from = self
                .publication
                .last_msn(&rendition)
                .map_or(first, |m| m.next().max(first));
            for msn in from.0..=last.0 {
                let duration = (msn == last.0).then_some(last_duration).flatten();
                self.publish_gap(i, (msn - first.0) as usize, duration, now, out);
            }
        }
    }
}

/// Key-period init segments remembered per track (only the newest period's is ever asked
/// for again).
const KEY_INITS_KEPT: usize = 4;

/// The name of the init segments of the key period of `kid` in session `session`:
/// `{session}k{first 4 bytes of the KID in hex}` (the playlists' `EXT-X-MAP` URI component).
fn key_period_init(session: &SessionId, kid: &[u8; 16]) -> SessionId {
    let hex: String = kid[..4].iter().map(|b| format!("{b:02x}")).collect();
    SessionId::parse(&format!("{session}k{hex}")).unwrap_or_else(|| session.clone())
}
