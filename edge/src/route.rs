//! The route phase: is this a path the edge serves. Default (and only) scheme: weir's viewer
//! URLs ([`weir_url::Route`]: master and media playlists, init segments, segments, parts,
//! content keys) and, for an edge in front of this one (a shield tier), the access policy
//! path `/internal/v1/events/{event}/access` and the content key path
//! `/internal/v1/keys/{event}/{key_id}` (both only with the cluster secret), and the purge
//! path `POST /internal/v1/purge/{event}` for the control plane; and the W3C ClearKey
//! licence path `POST /licence/clearkey/{event}` for viewers of `cbcs` events. Anything else is
//! answered 404 here, before the access phases and without an upstream request, so junk
//! costs the upstream nothing.

use weir_url::{EventId, Route};

/// What a request path asks the edge for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Served {
    /// A viewer's object, playlist or key.
    Viewer(Route),
    /// An event's access policy, for an edge in front of this one.
    PolicyForEdge(EventId),
    /// A content key (event, key id), for an edge in front of this one.
    KeyForEdge(EventId, Box<str>),
    /// `POST /internal/v1/purge/{event}`: drop the event's cached objects.
    Purge(EventId),
    /// `POST /licence/clearkey/{event}`: a W3C ClearKey licence for a viewer.
    Licence(EventId),
}

/// Parses a request path (without query); `None`: not served (404).
pub(crate) fn served(path: &str) -> Option<Served> {
    if let Some(event) = path
        .strip_prefix("/internal/v1/events/")
        .and_then(|rest| rest.strip_suffix("/access"))
    {
        return EventId::parse(event).map(Served::PolicyForEdge);
    }
    if let Some(event) = path.strip_prefix("/internal/v1/purge/") {
        return EventId::parse(event).map(Served::Purge);
    }
    if let Some(event) = path.strip_prefix("/licence/clearkey/") {
        return EventId::parse(event).map(Served::Licence);
    }
    if let Some(rest) = path.strip_prefix("/internal/v1/keys/") {
        return match Route::parse(&format!("/keys/{rest}")) {
            Some(Route::Key(event, id)) => Some(Served::KeyForEdge(event, id)),
            _ => None,
        };
    }
    Route::parse(path).map(Served::Viewer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_the_viewer_scheme_and_the_policy_path_only() {
        let event = |s| EventId::parse(s).unwrap();
        for (path, expected) in [
            (
                "/internal/v1/events/demo/access",
                Some(Served::PolicyForEdge(event("demo"))),
            ),
            (
                "/live/demo/master.m3u8",
                Some(Served::Viewer(Route::Master(event("demo")))),
            ),
            ("/internal/v1/events/../access", None),
            ("/internal/v1/events//access", None),
            (
                "/internal/v1/keys/demo/0a1b",
                Some(Served::KeyForEdge(event("demo"), "0a1b".into())),
            ),
            ("/internal/v1/keys/demo/0A1B", None),
            (
                "/internal/v1/purge/demo",
                Some(Served::Purge(event("demo"))),
            ),
            ("/internal/v1/purge/demo/x", None),
            (
                "/licence/clearkey/demo",
                Some(Served::Licence(event("demo"))),
            ),
            ("/licence/clearkey/demo/x", None),
            ("/licence/widevine/demo", None),
            ("/internal/v1/keys/../0a1b", None),
            ("/internal/v1/events/demo", None),
            ("/metrics", None),
            ("/", None),
            ("/live/demo/../../etc/passwd", None),
        ] {
            assert_eq!(served(path), expected, "{path}");
        }
    }
}
