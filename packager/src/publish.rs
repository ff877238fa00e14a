//! Publication: the event's media playlists and master playlist, updated as parts and
//! segments complete and rendered once the target duration is known.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use weir_media::{CodecConfig, TrackInfo};

use crate::artifact::PlaylistUpdate;
use crate::master::{render_master, AudioGroup, VariantInfo};
use crate::playlist::Expired;
use crate::playlist::{MediaPlaylist, PartEntry, RenderContext, SegmentEntry, SegmentHead};
use crate::{Artifact, MediaSequence, RenditionId, SegmentEncryption, SessionId};

/// Every playlist of one event.
#[derive(Debug)]
pub(crate) struct Publication {
    /// Every rendition the event has had, in the order it first appeared.
    playlists: Vec<MediaPlaylist>,
    window: usize,
    /// The part target when parts are listed (LL-HLS).
    part_target: Option<Duration>,
    /// The renditions of the newest session (the rendition reports' siblings).
    siblings: Vec<RenditionId>,
    master: Option<Bytes>,
    /// The event has ended: playlists carry `EXT-X-ENDLIST`.
    ended: bool,
    /// How segments are encrypted, if they are.
    encryption: Option<Arc<dyn SegmentEncryption>>,
    /// The newest segment each rendition has let go of for good.
    expired_through: HashMap<RenditionId, MediaSequence>,
}

/// A rendition of the running session, as the master playlist describes it.
#[derive(Debug)]
pub(crate) struct MasterEntry<'a> {
    pub(crate) rendition: &'a RenditionId,
    pub(crate) info: &'a TrackInfo,
    pub(crate) frame_rate: Option<f64>,
}

impl Publication {
    pub(crate) fn new(
        window: usize,
        part_target: Option<Duration>,
        encryption: Option<Arc<dyn SegmentEncryption>>,
    ) -> Publication {
        Publication {
            playlists: Vec::new(),
            window,
            part_target,
            siblings: Vec::new(),
            master: None,
            ended: false,
            encryption,
            expired_through: HashMap::new(),
        }
    }

    /// `rendition` let go of segment `msn` for good: keys no rendition needs any more are
    /// released (a key goes when every rendition has let go of its segments).
    fn segment_expired(&mut self, rendition: &RenditionId, msn: MediaSequence) {
        let Some(e) = &self.encryption else {
            return;
        };
        let through = self.expired_through.entry(rendition.clone()).or_insert(msn);
        *through = (*through).max(msn);
        if self.expired_through.len() < self.playlists.len() {
            return;
        }
        if let Some(min) = self.expired_through.values().min() {
            e.release_through(*min);
        }
    }

    /// A session started with these renditions: each playlist reports on the others
    /// (`EXT-X-RENDITION-REPORT`).
    pub(crate) fn set_siblings(&mut self, renditions: Vec<RenditionId>) {
        self.siblings = renditions;
    }

    /// Every rendition the event has a playlist for.
    pub(crate) fn renditions(&self) -> impl Iterator<Item = &RenditionId> {
        self.playlists.iter().map(MediaPlaylist::rendition)
    }

    /// Whether a master playlist has been published.
    pub(crate) fn has_master(&self) -> bool {
        self.master.is_some()
    }

    /// Every rendition with its average bit rate so far, bits/s.
    pub(crate) fn bitrates(&self) -> Vec<(RenditionId, u64)> {
        self.playlists
            .iter()
            .map(|p| (p.rendition().clone(), p.average_bps()))
            .collect()
    }

    /// The playlist of `rendition`, made if it is new.
    pub(crate) fn playlist(&mut self, rendition: &RenditionId) -> &mut MediaPlaylist {
        let i = match self
            .playlists
            .iter()
            .position(|p| p.rendition() == rendition)
        {
            Some(i) => i,
            None => {
                self.playlists
                    .push(MediaPlaylist::new(rendition.clone(), self.window));
                self.playlists.len() - 1
            }
        };
        &mut self.playlists[i]
    }

    fn find(&self, rendition: &RenditionId) -> Option<&MediaPlaylist> {
        self.playlists.iter().find(|p| p.rendition() == rendition)
    }

    /// A part of `rendition` was emitted; with a known target duration `td` (seconds) and
    /// parts listed, the playlist is re-rendered.
    pub(crate) fn part(
        &mut self,
        rendition: &RenditionId,
        head: SegmentHead,
        part: PartEntry,
        td: Option<u64>,
        out: &mut Vec<Artifact>,
    ) {
        self.playlist(rendition).part(head, part);
        if let (Some(td), Some(_)) = (td, self.part_target) {
            self.render(rendition, td, out);
        }
    }

    /// A segment (or a gap) of `rendition` is complete: listed, the window slid, the
    /// expiries emitted and, with a known target duration, the playlist re-rendered.
    pub(crate) fn segment(
        &mut self,
        rendition: &RenditionId,
        entry: SegmentEntry,
        td: Option<u64>,
        now: SystemTime,
        out: &mut Vec<Artifact>,
    ) {
        // Before the target duration is chosen, the window is sized with the configured one.
        let target = Duration::from_secs(td.unwrap_or(1));
        let expired = self.playlist(rendition).push(entry, target, now);
        if let Some(td) = td {
            self.render(rendition, td, out);
        }
        self.emit_expired(rendition, expired, out);
    }

    /// Emits `expired` objects of `rendition` (and releases keys no longer needed).
    fn emit_expired(
        &mut self,
        rendition: &RenditionId,
        expired: Vec<(SessionId, Expired)>,
        out: &mut Vec<Artifact>,
    ) {
        for (session, what) in expired {
            if let Expired::Segment(msn) = what {
                self.segment_expired(rendition, msn);
            }
            out.push(Artifact::Expired {
                rendition: rendition.clone(),
                session,
                what,
            });
        }
    }

    /// Emits every object whose availability ended by `now`, without a new segment: what an
    /// event keeps after its publisher left goes at its deadline, not at the next segment.
    pub(crate) fn expire(&mut self, now: SystemTime, out: &mut Vec<Artifact>) {
        for i in 0..self.playlists.len() {
            let expired = self.playlists[i].expire_due(now);
            if !expired.is_empty() {
                let rendition = self.playlists[i].rendition().clone();
                self.emit_expired(&rendition, expired, out);
            }
        }
    }

    /// The session ended: no part is hinted any more.
    pub(crate) fn end_session(&mut self, td: Option<u64>, out: &mut Vec<Artifact>) {
        for p in &mut self.playlists {
            p.end_session();
        }
        if let Some(td) = td {
            self.render_all(td, out);
        }
    }

    /// The event ended (`ended`) or runs again: every playlist is re-rendered with (without)
    /// `EXT-X-ENDLIST` once the target duration `td` is known.
    pub(crate) fn set_ended(&mut self, ended: bool, td: Option<u64>, out: &mut Vec<Artifact>) {
        self.ended = ended;
        if let Some(td) = td {
            self.render_all(td, out);
        }
    }

    /// Renders every playlist that lists something (after the target duration is chosen).
    pub(crate) fn render_all(&self, td: u64, out: &mut Vec<Artifact>) {
        for p in &self.playlists {
            if !p.is_empty() || p.last_position().is_some() {
                self.render(p.rendition(), td, out);
            }
        }
    }

    fn render(&self, rendition: &RenditionId, td: u64, out: &mut Vec<Artifact>) {
        let Some(playlist) = self.find(rendition) else {
            return;
        };
        if playlist.last_position().is_none() {
            return;
        }
        let reports: Vec<_> = self
            .siblings
            .iter()
            .filter(|r| *r != rendition)
            .map(|r| {
                (
                    r.clone(),
                    self.find(r).and_then(MediaPlaylist::last_position),
                )
            })
            .collect();
        let ctx = RenderContext {
            target_duration: td,
            part_target: self.part_target,
            reports: &reports,
            ended: self.ended,
            encryption: self.encryption.as_deref(),
        };
        let last_part = self
            .part_target
            .and(playlist.last_position())
            .and_then(|(msn, part)| Some((msn, part?)));
        let update = PlaylistUpdate {
            full: playlist.render(&ctx, false),
            delta: self.part_target.filter(|_| !self.ended).and_then(|_| {
                playlist
                    .has_skippable(ctx.skip_until())
                    .then(|| playlist.render(&ctx, true))
            }),
            target_duration: Duration::from_secs(td),
            part_target: self.part_target,
            last_msn: playlist.last_msn(),
            last_part,
            preload_hint: self
                .part_target
                .filter(|_| !self.ended)
                .and(playlist.hint().cloned()),
            ended: self.ended,
        };
        out.push(Artifact::MediaPlaylist {
            rendition: rendition.clone(),
            playlist: update,
        });
    }

    /// Re-renders the master playlist for the session's renditions, once every one of them
    /// lists a segment; emitted when it changed. One variant stream per video rendition,
    /// ordered by bandwidth, sharing the audio rendition as a group (RFC 8216 §4.3.4.1.1), or
    /// one audio-only variant.
    pub(crate) fn update_master(&mut self, entries: &[MasterEntry<'_>], out: &mut Vec<Artifact>) {
        let mut audio = None;
        let mut videos = Vec::new();
        for e in entries {
            let Some(playlist) = self.find(e.rendition) else {
                return;
            };
            if playlist.is_empty() {
                return;
            }
            let bandwidth = playlist.peak_bps.max(playlist.average_bps());
            match &e.info.codec {
                CodecConfig::Aac(aac) => {
                    audio.get_or_insert(AudioGroup {
                        rendition: e.rendition.clone(),
                        channels: aac.channels.max(1),
                        codecs: e.info.codec.codec_string(),
                        bandwidth,
                        average_bandwidth: playlist.average_bps(),
                    });
                }
                CodecConfig::H264(_) | CodecConfig::H265(_) | CodecConfig::Av1(_) => {
                    videos.push(VariantInfo {
                        bandwidth,
                        average_bandwidth: playlist.average_bps(),
                        codecs: e.info.codec.codec_string(),
                        resolution: e.info.codec.picture_size(),
                        frame_rate: e.frame_rate.or(e.info.codec.declared_frame_rate()),
                        rendition: e.rendition.clone(),
                    })
                }
            }
        }
        videos.sort_by_key(|v| v.bandwidth);
        // SAMPLE-AES: the key of the newest segment, so a player can fetch its licence early
        // (RFC 8216bis §4.4.6.5).
        let session_key = match (&self.encryption, entries.first()) {
            (Some(e), Some(first)) => self.last_msn(first.rendition).map(|msn| e.key(msn)),
            _ => None,
        };
        let session_keys = session_key.as_ref().map_or(&[][..], |k| k.tags());
        let data = render_master(&videos, audio.as_ref(), session_keys);
        if self.master.as_ref() != Some(&data) {
            self.master = Some(data.clone());
            out.push(Artifact::MasterPlaylist { data });
        }
    }

    /// The last segment `rendition` lists, if any.
    pub(crate) fn last_msn(&self, rendition: &RenditionId) -> Option<MediaSequence> {
        self.find(rendition).and_then(MediaPlaylist::last_msn)
    }
}
