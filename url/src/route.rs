//! Request paths parsed into typed routes. No path is ever joined from request text: a path
//! either parses into a [`Route`] made of validated IDs, or it is not found.

use crate::{EventId, MediaSequence, PartIndex, RenditionId, SessionId};

/// What a viewer-side URL names (DESIGN.md "URLs"), with the per-session component of init
/// segments and segments.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    /// `/live/{event}/master.m3u8`
    Master(EventId),
    /// `/live/{event}/{rendition}/index.m3u8`
    MediaPlaylist(EventId, RenditionId),
    /// `/live/{event}/{rendition}/{session}/init.mp4`
    InitSegment(EventId, RenditionId, SessionId),
    /// `/live/{event}/{rendition}/{session}/{msn}.m4s`
    Segment(EventId, RenditionId, SessionId, MediaSequence),
    /// `/live/{event}/{rendition}/{session}/{msn}.{part}.m4s`: an LL-HLS partial segment.
    Part(EventId, RenditionId, SessionId, MediaSequence, PartIndex),
    /// `/keys/{event}/{key_id}`: an AES-128 content key (key id: 1-32 of `[0-9a-z]`),
    /// served by edges to authorized viewers only, never by the origin's public paths.
    Key(EventId, Box<str>),
}

/// A decimal number of at most `max_digits` digits, no sign, and no leading zero: one object
/// has one path (`042.m4s` would be a second cache key for `42.m4s`, a way around an edge's
/// cache; cargo-fuzz's `route` target found it).
fn number(s: &str, max_digits: usize) -> Option<u64> {
    if s.is_empty()
        || s.len() > max_digits
        || !s.bytes().all(|b| b.is_ascii_digit())
        || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

impl Route {
    /// Parses a request path (without query). `None` for anything else, including any path
    /// with `..`, empty or encoded components.
    pub fn parse(path: &str) -> Option<Route> {
        if let Some(rest) = path.strip_prefix("/keys/") {
            let (event, id) = rest.split_once('/')?;
            let id_ok = !id.is_empty()
                && id.len() <= 32
                && id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase());
            return id_ok
                .then(|| Some(Route::Key(EventId::parse(event)?, id.into())))
                .flatten();
        }
        let rest = path.strip_prefix("/live/")?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            [event, "master.m3u8"] => Some(Route::Master(EventId::parse(event)?)),
            [event, rendition, "index.m3u8"] => Some(Route::MediaPlaylist(
                EventId::parse(event)?,
                RenditionId::from_name(rendition)?,
            )),
            [event, rendition, session, "init.mp4"] => Some(Route::InitSegment(
                EventId::parse(event)?,
                RenditionId::from_name(rendition)?,
                SessionId::parse(session)?,
            )),
            [event, rendition, session, file] => {
                let name = file.strip_suffix(".m4s")?;
                let (event, rendition, session) = (
                    EventId::parse(event)?,
                    RenditionId::from_name(rendition)?,
                    SessionId::parse(session)?,
                );
                match name.split_once('.') {
                    None => Some(Route::Segment(
                        event,
                        rendition,
                        session,
                        MediaSequence(number(name, 19)?),
                    )),
                    Some((msn, part)) => Some(Route::Part(
                        event,
                        rendition,
                        session,
                        MediaSequence(number(msn, 19)?),
                        PartIndex(u32::try_from(number(part, 6)?).ok()?),
                    )),
                }
            }
            _ => None,
        }
    }

    /// The request path naming this route: `Route::parse(&r.path()) == Some(r)`.
    pub fn path(&self) -> String {
        match self {
            Route::Master(e) => format!("/live/{e}/master.m3u8"),
            Route::MediaPlaylist(e, r) => format!("/live/{e}/{r}/index.m3u8"),
            Route::InitSegment(e, r, s) => format!("/live/{e}/{r}/{s}/init.mp4"),
            Route::Segment(e, r, s, msn) => format!("/live/{e}/{r}/{s}/{msn}.m4s"),
            Route::Part(e, r, s, msn, part) => format!("/live/{e}/{r}/{s}/{msn}.{part}.m4s"),
            Route::Key(e, id) => format!("/keys/{e}/{id}"),
        }
    }

    /// The object's kind, for metrics labels and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Route::Master(_) => "master",
            Route::MediaPlaylist(..) => "playlist",
            Route::InitSegment(..) => "init",
            Route::Segment(..) => "segment",
            Route::Part(..) => "part",
            Route::Key(..) => "key",
        }
    }

    /// The event the route belongs to.
    pub fn event(&self) -> &EventId {
        match self {
            Route::Master(e)
            | Route::MediaPlaylist(e, _)
            | Route::InitSegment(e, ..)
            | Route::Segment(e, ..)
            | Route::Part(e, ..)
            | Route::Key(e, _) => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Identifiers of every allowed length and alphabet.
    fn ident(alphabet: &'static str, max: usize) -> impl Strategy<Value = String> {
        proptest::string::string_regex(&format!("[{alphabet}]{{1,{max}}}")).unwrap()
    }

    fn any_route() -> impl Strategy<Value = Route> {
        let event = ident("A-Za-z0-9_-", 64).prop_map(|e| EventId::parse(&e).unwrap());
        let rendition = ident("A-Za-z0-9_-", 32).prop_map(|r| RenditionId::from_name(&r).unwrap());
        let session = ident("0-9a-z", 32).prop_map(|s| SessionId::parse(&s).unwrap());
        let msn = (0u64..=9_999_999_999_999_999_999u64).prop_map(MediaSequence);
        let part = (0u32..=999_999).prop_map(PartIndex);
        (
            event,
            rendition,
            session,
            msn,
            part,
            ident("0-9a-z", 32),
            0..6u8,
        )
            .prop_map(|(e, r, s, msn, part, key, kind)| match kind {
                0 => Route::Master(e),
                1 => Route::MediaPlaylist(e, r),
                2 => Route::InitSegment(e, r, s),
                3 => Route::Segment(e, r, s, msn),
                4 => Route::Part(e, r, s, msn, part),
                _ => Route::Key(e, key.into()),
            })
    }

    proptest! {
        #[test]
        fn every_route_prints_as_a_path_that_parses_back(route in any_route()) {
            prop_assert_eq!(Route::parse(&route.path()), Some(route));
        }

        #[test]
        fn any_path_parses_to_a_route_that_prints_it_back(path in "/(live|keys)/[a-z0-9./%_-]{0,40}") {
            if let Some(route) = Route::parse(&path) {
                prop_assert_eq!(route.path(), path);
            }
        }
    }

    #[test]
    fn parses_the_url_scheme_and_nothing_else() {
        assert!(matches!(
            Route::parse("/live/demo/master.m3u8"),
            Some(Route::Master(_))
        ));
        assert!(matches!(
            Route::parse("/live/demo/source/index.m3u8"),
            Some(Route::MediaPlaylist(..))
        ));
        assert!(matches!(
            Route::parse("/live/demo/720p/index.m3u8"),
            Some(Route::MediaPlaylist(..))
        ));
        assert_eq!(
            Route::parse("/live/demo/source/abc1/0.0.m4s").map(|r| r.path()),
            Some("/live/demo/source/abc1/0.0.m4s".to_string())
        );
        assert!(matches!(
            Route::parse("/live/demo/audio/abc1/init.mp4"),
            Some(Route::InitSegment(..))
        ));
        assert_eq!(
            Route::parse("/live/demo/source/abc1/42.m4s").map(|r| r.kind()),
            Some("segment")
        );
        assert_eq!(
            Route::parse("/live/demo/source/abc1/42.3.m4s"),
            Some(Route::Part(
                EventId::parse("demo").unwrap(),
                RenditionId::SOURCE,
                SessionId::parse("abc1").unwrap(),
                MediaSequence(42),
                PartIndex(3)
            ))
        );
        assert_eq!(
            Route::parse("/keys/demo/0a1b2c3d4e5f6789"),
            Some(Route::Key(
                EventId::parse("demo").unwrap(),
                "0a1b2c3d4e5f6789".into()
            ))
        );
        for bad in [
            "/keys/demo/",
            "/keys/demo/A1",
            "/keys/demo/a/b",
            "/keys/../x",
            "/live/../../etc/passwd",
            "/live/demo/../../etc/passwd",
            "/live/demo/source/abc1/..m4s",
            "/live/demo/source/abc1/-1.m4s",
            "/live/demo/vi.deo/index.m3u8",
            "/live/demo/a%20b/index.m3u8",
            "/live/demo/source/ABC/1.m4s",
            "/live/demo/source/abc1/99999999999999999999.m4s",
            "/live/demo/source/abc1/1.2.3.m4s",
            "/live/demo/source/abc1/1..m4s",
            "/live/demo/source/abc1/1.-2.m4s",
            "/live/demo/source/abc1/1.9999999.m4s",
            "/live//master.m3u8",
            "/etc/passwd",
            "/live/demo%2F..%2F/master.m3u8",
            // Found by cargo fuzz (route): a leading zero names 881858086061's part twice.
            "/live/demo/source/mi8k2v1c0/0881858086061.3.m4s",
            "/live/demo/source/abc1/1.03.m4s",
            "/live/demo/source/abc1/00.m4s",
        ] {
            assert_eq!(Route::parse(bad), None, "{bad}");
        }
    }
}
