//! Phase 4, the cache key: what makes two requests the same object. Default: the path; for
//! a media playlist, plus its normalized LL-HLS delivery directives (`_HLS_msn`, `_HLS_part`,
//! `_HLS_skip`, RFC 8216bis §6.2.5). Every other query parameter, the viewer's token among
//! them, is dropped: the cached copy is shared by every viewer, and what is personal (the
//! token in a playlist's URIs) is added on the way out.

use std::borrow::Cow;

use http::Uri;
use weir_url::{Directives, Route};

use crate::EdgeError;

/// The cache key of `uri` (whose path parsed as `route`), with the playlist's directives;
/// the path itself (not a copy) when nothing is added to it.
///
/// # Errors
/// [`EdgeError::BadRequest`] for malformed directives (400 without asking upstream).
pub(crate) fn cache_key<'u>(
    route: &Route,
    uri: &'u Uri,
) -> Result<(Cow<'u, str>, Option<Directives>), EdgeError> {
    Ok(match route {
        Route::MediaPlaylist(..) => {
            let d = Directives::parse(uri.query()).map_err(|_| EdgeError::BadRequest)?;
            let q = d.canonical_query();
            let key = if q.is_empty() {
                Cow::Borrowed(uri.path())
            } else {
                Cow::Owned(format!("{}?{q}", uri.path()))
            };
            (key, Some(d))
        }
        _ => (Cow::Borrowed(uri.path()), None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_junk_never_split_the_cache() {
        let key = |u: &str| {
            let uri: Uri = u.parse().unwrap();
            cache_key(&Route::parse(uri.path()).unwrap(), &uri).map(|k| k.0.into_owned())
        };
        let p = "/live/e/720p/index.m3u8";
        assert_eq!(key(&format!("{p}?token=a~b")).unwrap(), p);
        assert_eq!(
            key(&format!("{p}?token=x&_HLS_part=1&_HLS_msn=5")).unwrap(),
            format!("{p}?_HLS_msn=5&_HLS_part=1")
        );
        assert_eq!(
            key("/live/e/720p/s1/5.m4s?token=t&x=1").unwrap(),
            "/live/e/720p/s1/5.m4s"
        );
        assert!(key(&format!("{p}?_HLS_part=1")).is_err());
    }
}
