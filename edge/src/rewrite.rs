//! Token propagation for players that know nothing of tokens: on the way out (never in the
//! cache, whose copy stays shared by every viewer), each URI of a master or media playlist
//! gets the viewer's `token` parameter: variant and rendition playlists, segments, parts,
//! init segments (`EXT-X-MAP`), preload hints, rendition reports and key URIs; the URI lines
//! and every `URI="..."` attribute (RFC 8216bis §4.2). Absolute URLs of other hosts, `data:`
//! and `skd:` URIs are left alone (a token is never sent elsewhere).

/// Whether `uri` is one of ours (relative or path-absolute).
fn ours(uri: &str) -> bool {
    !uri.is_empty() && !uri.contains("://") && !uri.starts_with("data:") && !uri.starts_with("skd:")
}

fn push_uri(out: &mut String, uri: &str, token: &str) {
    out.push_str(uri);
    let has = uri
        .split_once('?')
        .is_some_and(|(_, q)| q.split('&').any(|p| p.starts_with("token=")));
    if ours(uri) && !has {
        out.push(if uri.contains('?') { '&' } else { '?' });
        out.push_str("token=");
        out.push_str(token);
    }
}

/// `playlist` with `token` (URL-safe, as [`crate::token`] makes them) added to every URI.
pub(crate) fn with_token(playlist: &str, token: &str) -> String {
    let mut out = String::with_capacity(playlist.len() + playlist.len() / 4);
    for line in playlist.split_inclusive('\n') {
        let (body, end) = match line.strip_suffix('\n') {
            Some(b) => match b.strip_suffix('\r') {
                Some(b) => (b, "\r\n"),
                None => (b, "\n"),
            },
            None => (line, ""),
        };
        if body.starts_with('#') {
            let mut rest = body;
            while let Some(at) = find_uri_attribute(rest) {
                let value_start = at + "URI=\"".len();
                let Some(len) = rest[value_start..].find('"') else {
                    break;
                };
                out.push_str(&rest[..value_start]);
                push_uri(&mut out, &rest[value_start..value_start + len], token);
                rest = &rest[value_start + len..];
            }
            out.push_str(rest);
        } else if body.trim().is_empty() {
            out.push_str(body);
        } else {
            push_uri(&mut out, body, token);
        }
        out.push_str(end);
    }
    out
}

/// Where the next `URI="` attribute (not `SERVER-URI=` or the like) starts in a tag line.
fn find_uri_attribute(s: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = s[from..].find("URI=\"") {
        let at = from + i;
        if at > 0 && matches!(s.as_bytes()[at - 1], b':' | b',') {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T: &str = "kid=k1~exp=9~ev=e~sig=ab";

    #[test]
    fn every_uri_of_ours_carries_the_token() {
        let media = "#EXTM3U\n#EXT-X-MAP:URI=\"s1/init.mp4\"\n\
            #EXT-X-KEY:METHOD=AES-128,URI=\"/keys/e/7\",IV=0x01\n\
            #EXT-X-PART:DURATION=0.3,URI=\"s1/5.0.m4s\",INDEPENDENT=YES\n#EXTINF:2.0,\ns1/5.m4s\n\
            #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"s1/6.0.m4s\"\n\
            #EXT-X-RENDITION-REPORT:URI=\"../480p/index.m3u8\",LAST-MSN=5,LAST-PART=0\n\
            #EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"skd://k\",KEYFORMAT=\"com.apple.streamingkeydelivery\"\n\
            #EXT-X-CONTENT-STEERING:SERVER-URI=\"/steer\"\nhttps://elsewhere.example/x.m4s\n";
        let out = with_token(media, T);
        for want in [
            "URI=\"s1/init.mp4?token=kid=k1~exp=9~ev=e~sig=ab\"",
            "URI=\"/keys/e/7?token=",
            "URI=\"s1/5.0.m4s?token=",
            "\ns1/5.m4s?token=kid=k1~exp=9~ev=e~sig=ab\n",
            "URI=\"s1/6.0.m4s?token=",
            "URI=\"../480p/index.m3u8?token=",
            "URI=\"skd://k\"",
            "SERVER-URI=\"/steer\"",
            "\nhttps://elsewhere.example/x.m4s\n",
        ] {
            assert!(out.contains(want), "{want} in\n{out}");
        }
        let master = "#EXTM3U\r\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"en\",URI=\"audio/index.m3u8\"\r\n\
            #EXT-X-STREAM-INF:BANDWIDTH=1,AUDIO=\"a\"\r\n720p/index.m3u8?x=1\r\n\r\n720p/index.m3u8?token=old";
        assert_eq!(
            with_token(master, "t"),
            "#EXTM3U\r\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"en\",URI=\"audio/index.m3u8?token=t\"\r\n\
            #EXT-X-STREAM-INF:BANDWIDTH=1,AUDIO=\"a\"\r\n720p/index.m3u8?x=1&token=t\r\n\r\n720p/index.m3u8?token=old"
        );
    }

    proptest! {
        #[test]
        fn adds_exactly_the_token(
            lines in proptest::collection::vec(
                prop_oneof![
                    "[a-z0-9/._]{1,20}".prop_map(|u| u),
                    "[a-z0-9/._]{1,20}".prop_map(|u| format!("#EXT-X-PART:DURATION=0.3,URI=\"{u}\"")),
                    "[a-z0-9/._]{1,20}".prop_map(|u| format!("#EXT-X-MAP:URI=\"{u}\",BYTERANGE=\"1@0\"")),
                    Just("#EXTINF:2.0,".to_string()),
                    Just(String::new()),
                ],
                0..30,
            ),
            token in "[a-zA-Z0-9=~._-]{1,80}",
        ) {
            let playlist = lines.join("\n");
            let out = with_token(&playlist, &token);
            // Removing what was added gives the original back.
            prop_assert_eq!(out.replace(&format!("?token={token}"), ""), playlist.clone());
            // One token per URI.
            let uris = lines.iter().filter(|l| !l.is_empty() && !l.starts_with("#EXTINF")).count();
            prop_assert_eq!(out.matches(&format!("?token={token}")).count(), uris);
        }
    }
}
