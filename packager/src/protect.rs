//! One track's `cbcs` protection (`METHOD=SAMPLE-AES`): the subsample map of each sample,
//! its encryption with the key of the sample's segment, and the boxes that declare both.

use std::sync::Arc;

use bytes::Bytes;
use weir_media::{MediaError, ProtectedRanges, Subsample, TrackInfo, TrackKind};

use crate::fmp4::{self, FragmentProtection, InitProtection, Sample};
use crate::{MediaSequence, Pattern, SegmentEncryption, SegmentKey};

/// The protection of one track of a session.
pub(crate) struct TrackProtection {
    encryption: Arc<dyn SegmentEncryption>,
    ranges: ProtectedRanges,
    pattern: Pattern,
    /// The key the session's first init segment names (`tenc`): that of its first segment.
    /// A segment under another key has an init segment of its own ([`init_protection`]).
    default: SegmentKey,
    maps: Vec<Subsample>,
    counts: Vec<u16>,
    scratch: Vec<Subsample>,
}

impl std::fmt::Debug for TrackProtection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackProtection")
            .field("ranges", &self.ranges)
            .field("pattern", &self.pattern)
            .field("default", &self.default)
            .finish()
    }
}

impl TrackProtection {
    /// Protection of a track like `info` whose first segment is `first`.
    ///
    /// # Errors
    /// [`MediaError::Unsupported`] for a codec whose samples cannot be mapped yet (HEVC,
    /// AV1), or the record's error when its parameter sets do not parse.
    pub(crate) fn new(
        encryption: Arc<dyn SegmentEncryption>,
        info: &TrackInfo,
        first: MediaSequence,
    ) -> Result<TrackProtection, MediaError> {
        let ranges = ProtectedRanges::new(&info.codec)?;
        let pattern = pattern_of(info.kind);
        let default = encryption.key(first);
        Ok(TrackProtection {
            encryption,
            ranges,
            pattern,
            default,
            maps: Vec::new(),
            counts: Vec::new(),
            scratch: Vec::new(),
        })
    }

    /// What the session's first init segment declares.
    pub(crate) fn init(&self) -> InitProtection<'_> {
        declared(&self.default, self.pattern)
    }

    /// The key ID of the session's first init segment.
    pub(crate) fn default_kid(&self) -> [u8; 16] {
        *self.default.kid()
    }

    /// The fragment of `samples` (of segment `msn`), encrypted with that segment's key.
    pub(crate) fn fragment(
        &mut self,
        msn: MediaSequence,
        sequence_number: u32,
        base_decode_time: u64,
        samples: &[Sample],
    ) -> Bytes {
        let key = self.encryption.key(msn);
        self.maps.clear();
        self.counts.clear();
        if !self.ranges.whole_samples() {
            for s in samples {
                if let Err(e) = self.ranges.map(&s.data, &mut self.scratch) {
                    // Never clear: everything after the first NAL unit's length and header is
                    // protected (the sample may not decode; it does not leak).
                    tracing::warn!(error = %e, bytes = s.data.len(), "sample protected without a slice map");
                    self.scratch.clear();
                    let clear = s.data.len().min(5);
                    self.scratch.push(Subsample {
                        clear: clear as u16,
                        protected: (s.data.len() - clear) as u32,
                    });
                }
                self.counts.push(self.scratch.len() as u16);
                self.maps.extend_from_slice(&self.scratch);
            }
        }
        let encryption = &self.encryption;
        let pattern = self.pattern;
        let encrypt = |payload: &mut [u8], runs: &[std::ops::Range<usize>]| {
            encryption.encrypt_runs(&key, payload, runs, pattern)
        };
        let protection = FragmentProtection {
            maps: &self.maps,
            counts: &self.counts,
            encrypt: &encrypt,
        };
        fmp4::fragment(
            sequence_number,
            base_decode_time,
            samples,
            Some(&protection),
        )
    }
}

/// What the init segment of segments under `key` declares, for a track of `kind`: every key
/// period has its own init segment (`EXT-X-MAP` changes with `EXT-X-KEY`), so a fragment's
/// key is always its init segment's default KID and constant IV. (ISO/IEC 23001-7 also allows
/// a `seig` sample group in each fragment instead; Chromium reads it, but shaka-packager and
/// FFmpeg use the `tenc` of the init segment only.)
pub(crate) fn init_protection(key: &SegmentKey, kind: TrackKind) -> InitProtection<'_> {
    declared(key, pattern_of(kind))
}

/// What an init segment declares for `key` with `pattern`.
fn declared(key: &SegmentKey, pattern: Pattern) -> InitProtection<'_> {
    InitProtection {
        kid: *key.kid(),
        iv: *key.iv(),
        pattern,
        pssh: key.pssh(),
    }
}

fn pattern_of(kind: TrackKind) -> Pattern {
    match kind {
        TrackKind::Video => Pattern::VIDEO,
        TrackKind::Audio => Pattern::AUDIO,
    }
}
