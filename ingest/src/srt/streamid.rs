//! The SRT `streamid` a caller sends in its handshake, read as a publish request: the access
//! control syntax of the SRT reference implementation (`#!::r=live/KEY,m=publish`, SRT
//! docs/features/access-control.md) or a plain `KEY` / `live/KEY`.

/// What a `streamid` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamIdRequest<'a> {
    /// The application (`live` in `live/KEY`), when the id names one.
    pub(crate) app: Option<&'a str>,
    /// The stream key. A secret: never log it.
    pub(crate) stream_key: &'a str,
}

/// Why a `streamid` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamIdError {
    /// No stream id, an empty resource, or `#!::` syntax that does not parse.
    Malformed,
    /// A mode other than `publish` (`m=request`, `m=bidirectional`): weir only takes
    /// publishers over SRT.
    NotPublish,
}

/// Reads a `streamid`. In the `#!::` form, the key is the last path segment of `r` and the
/// app the segments before it; `m` must be `publish` when present (weir plays nothing over
/// SRT, so a caller that names no mode can only mean to publish); other keys (`u`, `h`, `s`,
/// `t`, custom ones) are ignored. Any other id is the key itself, or `app/KEY`.
pub(crate) fn parse(id: &str) -> Result<StreamIdRequest<'_>, StreamIdError> {
    let resource = match id.strip_prefix("#!::") {
        Some(pairs) => {
            let mut resource = None;
            for pair in pairs.split(',') {
                let (key, value) = pair.split_once('=').ok_or(StreamIdError::Malformed)?;
                match key.trim() {
                    "r" => resource = Some(value.trim()),
                    "m" if value.trim() != "publish" => return Err(StreamIdError::NotPublish),
                    _ => {}
                }
            }
            resource.ok_or(StreamIdError::Malformed)?
        }
        None => id.trim(),
    };
    let resource = resource.trim_start_matches('/');
    let (app, stream_key) = match resource.rsplit_once('/') {
        Some((app, key)) => (Some(app), key),
        None => (None, resource),
    };
    if stream_key.is_empty() || app.is_some_and(str::is_empty) {
        return Err(StreamIdError::Malformed);
    }
    Ok(StreamIdRequest { app, stream_key })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_control_and_plain_forms() {
        let ok = |app, stream_key| Ok(StreamIdRequest { app, stream_key });
        let table: &[(&str, Result<StreamIdRequest<'_>, StreamIdError>)] = &[
            ("#!::r=live/abc123,m=publish", ok(Some("live"), "abc123")),
            (
                "#!::m=publish,r=live/abc123,u=alice",
                ok(Some("live"), "abc123"),
            ),
            ("#!::r=abc123", ok(None, "abc123")),
            (
                "#!:: r = live/abc123 , m = publish ",
                ok(Some("live"), "abc123"),
            ),
            ("#!::r=a/b/abc123,m=publish", ok(Some("a/b"), "abc123")),
            ("abc123", ok(None, "abc123")),
            ("live/abc123", ok(Some("live"), "abc123")),
            ("/live/abc123", ok(Some("live"), "abc123")),
            ("live/abc123/", Err(StreamIdError::Malformed)),
            (
                "#!::r=live/abc123,m=request",
                Err(StreamIdError::NotPublish),
            ),
            (
                "#!::r=live/abc123,m=bidirectional",
                Err(StreamIdError::NotPublish),
            ),
            ("#!::m=publish", Err(StreamIdError::Malformed)),
            ("#!::r=live/abc,garbage", Err(StreamIdError::Malformed)),
            ("#!::r=live/", Err(StreamIdError::Malformed)),
            ("", Err(StreamIdError::Malformed)),
            ("//", Err(StreamIdError::Malformed)),
        ];
        for (id, want) in table {
            assert_eq!(&parse(id), want, "streamid {id:?}");
        }
    }
}
