//! The identifiers that make up weir's URLs: event, rendition, publisher session, media
//! sequence number, part index. Each parses from a URL path component or refuses it.

use std::fmt;
use std::sync::Arc;

/// An event's ID in URLs: 1-64 of `[A-Za-z0-9_-]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(Box<str>);

impl EventId {
    /// Parses an event ID; `None` if it has other characters or lengths.
    pub fn parse(s: &str) -> Option<EventId> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| EventId(s.into()))
    }

    /// The ID as it appears in URLs.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A media sequence number (RFC 8216 §4.3.3.2): the position of a segment in an event's
/// timeline. Grows by one per segment, across publisher sessions, and never goes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MediaSequence(pub u64);

impl fmt::Display for MediaSequence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The index of a partial segment (an LL-HLS part, one CMAF chunk) within its parent
/// segment, from 0 (RFC 8216bis §4.4.4.9, §6.2.5.2 `_HLS_part`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartIndex(pub u32);

impl fmt::Display for PartIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl MediaSequence {
    /// The first media sequence number of an event packaged by a process started at
    /// `unix_millis` (milliseconds since the Unix epoch): a restarted process starts above
    /// every number the previous one used, as long as the event averaged fewer than 1 000
    /// segments a second (segments are at least 500 ms, so it does), and the clock did not
    /// step back. About 1.8e12 today: exact in a JavaScript number (hls.js), far from
    /// `u64::MAX`.
    pub fn from_unix_millis(unix_millis: u64) -> MediaSequence {
        MediaSequence(unix_millis)
    }

    /// The next number.
    pub fn next(self) -> MediaSequence {
        MediaSequence(self.0 + 1)
    }
}

/// The name of a rendition (one media playlist of an event), used as its URL path component:
/// `source` for the passthrough video, `audio` for the audio group, or a ladder rung's name
/// such as `720p`. 1 to 32 of `[A-Za-z0-9_-]`.
///
/// Cloning never allocates (it is cloned per frame on the ingest path).
#[derive(Clone, Debug)]
pub struct RenditionId(Name);

#[derive(Clone, Debug)]
enum Name {
    Static(&'static str),
    Shared(Arc<str>),
}

impl PartialEq for RenditionId {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for RenditionId {}

impl std::hash::Hash for RenditionId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for RenditionId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for RenditionId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl RenditionId {
    /// The passthrough video rendition.
    pub const SOURCE: RenditionId = RenditionId(Name::Static("source"));
    /// The audio rendition (`EXT-X-MEDIA TYPE=AUDIO`, group `audio`).
    pub const AUDIO: RenditionId = RenditionId(Name::Static("audio"));

    /// Parses a rendition name (from configuration or a URL path component); `None` unless
    /// it is 1 to 32 of `[A-Za-z0-9_-]`.
    pub fn from_name(name: &str) -> Option<RenditionId> {
        let ok = !name.is_empty()
            && name.len() <= 32
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| match name {
            "source" => RenditionId::SOURCE,
            "audio" => RenditionId::AUDIO,
            _ => RenditionId(Name::Shared(name.into())),
        })
    }

    /// The URL path component.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Name::Static(s) => s,
            Name::Shared(s) => s,
        }
    }
}

impl fmt::Display for RenditionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identifies one publisher session of an event: the per-session URL component of init
/// segments and segments (`{session}/init.mp4`, `{session}/{msn}.m4s`), so that a cache can
/// never serve one session's object for another's (HLS-RULES, OvenMediaEngine #769).
///
/// 1 to 32 characters of `[0-9a-z]`. Make it unique across restarts, e.g. with
/// [`SessionId::from_unix_millis`].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(Box<str>);

impl SessionId {
    /// A session ID from a wall-clock time in milliseconds since the Unix epoch and a counter
    /// that separates sessions started in the same millisecond: base-36, e.g. `mi8k2v1c0`.
    pub fn from_unix_millis(millis: u64, counter: u32) -> SessionId {
        let mut s = base36(millis);
        s.push_str(&base36(u64::from(counter)));
        SessionId(s.into())
    }

    /// Parses a session ID from a URL path component.
    pub fn parse(s: &str) -> Option<SessionId> {
        let ok = !s.is_empty()
            && s.len() <= 32
            && s.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase());
        ok.then(|| SessionId(s.into()))
    }

    /// The URL path component.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_round_trip_and_reject_junk() {
        let id = SessionId::from_unix_millis(1_763_716_172_123, 0);
        assert_eq!(SessionId::parse(id.as_str()), Some(id.clone()));
        assert_ne!(id, SessionId::from_unix_millis(1_763_716_172_123, 1));
        for bad in ["", "..", "a/b", "ABC", &"a".repeat(33)] {
            assert_eq!(SessionId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn rendition_names_are_url_safe() {
        assert_eq!(RenditionId::from_name("source"), Some(RenditionId::SOURCE));
        assert_eq!(RenditionId::from_name("720p").unwrap().as_str(), "720p");
        for bad in ["", "..", "a/b", "a b", "%2e", &"a".repeat(33)] {
            assert_eq!(RenditionId::from_name(bad), None, "{bad}");
        }
    }
}
