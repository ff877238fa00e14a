//! AES-128 encryption (RFC 8216 §4.3.2.4): an encrypted, token-protected event played by
//! ffmpeg through the edge across key rotations and a publisher reconnect; keys issued only
//! to token holders, never cached; segments that do not decode without the key; a key store
//! on disk with no key in the clear.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::support::*;
use crate::tokens::{hand_token, unix_now, with_token};

const SECRET: &str = "it-enc-token-secret-0123456789abcdef";
const KEK: &str = "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e";

/// The `EXT-X-KEY` lines of a playlist: (URI without the token, IV hex).
fn keys(playlist: &str) -> Vec<(String, String)> {
    playlist
        .lines()
        .filter_map(|l| l.strip_prefix("#EXT-X-KEY:"))
        .filter(|attrs| *attrs != "METHOD=NONE")
        .map(|attrs| {
            assert!(attrs.starts_with("METHOD=AES-128,URI=\""), "{attrs}");
            let uri = attrs
                .split("URI=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            let iv = attrs.split("IV=0x").nth(1).unwrap().to_string();
            assert_eq!(iv.len(), 32, "{attrs}");
            assert!(iv.bytes().all(|b| b.is_ascii_hexdigit()));
            (uri.split('?').next().unwrap().to_string(), iv)
        })
        .collect()
}

fn hex16(s: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[i * 2..i * 2 + 2], 16).unwrap();
    }
    out
}

#[test]
fn an_encrypted_event_plays_across_key_rotations_and_a_reconnect() {
    let weir = Weir::serve_event(
        &format!(
            "[packager]\nwindow_segments = 40\n\
             [access]\ntoken_keys = {{ k1 = \"{SECRET}\" }}\nkey_encryption_key = \"{KEK}\"\n"
        ),
        "passthrough",
        "encryption = \"aes-128\"\nkey_rotation_segments = 2\naccess = { require_token = true }",
    );
    // Two publisher sessions of 16 s each (2 s GOPs): a reconnect, a rotation every 2 segments.
    let file = flv(BBB, 3, true);
    for round in 1..=2 {
        let (ok, err) = finish(
            publish(&file, &weir.publish_url(STREAM_KEY), false),
            Duration::from_secs(60),
        );
        assert!(ok, "{err}");
        // The next publisher comes once weir has seen this one go.
        wait_for(
            "the publisher session ended",
            Duration::from_secs(10),
            || (weir.log().matches("publisher session ended").count() >= round).then_some(()),
        );
    }
    let token = hand_token("k1", SECRET, unix_now() + 600, "it", "");
    let media_url = with_token(&weir.edge_url("/live/it/source/index.m3u8"), &token);
    let playlist = wait_for("both sessions listed", Duration::from_secs(30), || {
        let text = get(&media_url).text();
        (text.contains("#EXT-X-DISCONTINUITY") && text.matches("#EXTINF").count() >= 14)
            .then_some(text)
    });
    let listed = keys(&playlist);
    let distinct: BTreeSet<&String> = listed.iter().map(|(u, _)| u).collect();
    assert!(distinct.len() >= 5, "a key every 2 segments: {playlist}");
    for (uri, _) in &listed {
        assert!(uri.starts_with("/keys/it/"), "{uri}");
    }
    // Every key line carries the viewer's token, for players that know nothing of tokens.
    for l in playlist
        .lines()
        .filter(|l| l.starts_with("#EXT-X-KEY:METHOD=AES-128"))
    {
        assert!(l.contains(&format!("?token={token}\"")), "{l}");
    }

    // ffmpeg plays the whole window: through every key, across the discontinuity.
    let listed_secs: f64 = playlist
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .filter_map(|v| v.trim_end_matches(',').parse::<f64>().ok())
        .sum();
    let (played, err) = play_live(
        &with_token(&weir.edge_url("/live/it/master.m3u8"), &token),
        listed_secs - 2.0,
    );
    assert!(played, "ffmpeg could not play the encrypted event: {err}");

    // A key: 403 without a token, 16 bytes with one, never cached.
    let (key_uri, iv) = listed[listed.len() / 2].clone();
    let key_url = weir.edge_url(&key_uri);
    assert_eq!(get(&key_url).status, 403);
    let mut key = Vec::new();
    for _ in 0..2 {
        let f = get(&with_token(&key_url, &token));
        assert_eq!(f.status, 200);
        assert_eq!(f.body.len(), 16);
        assert_eq!(f.header("cache-control"), Some("private, no-store"));
        assert_ne!(
            f.header("x-cache"),
            Some("HIT"),
            "a key is never a cache hit"
        );
        key = f.body;
    }
    assert_eq!(
        get(&with_token(
            &weir.edge_url("/keys/it/0123456789abcdef"),
            &token
        ))
        .status,
        404
    );
    // The origin gives keys only to the edge (the cluster secret made for this run).
    assert_eq!(
        get(&weir.origin_url(&format!("/internal/v1{key_uri}"))).status,
        401
    );

    // A segment under that key: the raw bytes do not decode; decrypted with the key and the
    // playlist's IV, they do.
    let lines: Vec<&str> = playlist.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("#EXT-X-KEY:METHOD=AES-128") && l.contains(&key_uri))
        .unwrap();
    let segment_uri = lines[at..]
        .iter()
        .find(|l| !l.starts_with('#') && !l.is_empty())
        .unwrap()
        .split('?')
        .next()
        .unwrap();
    let session = segment_uri.split('/').next().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("#EXT-X-MAP:URI=\"{session}/init.mp4"))),
        "the segment's init segment is listed"
    );
    let base = weir.edge_url("/live/it/source");
    let init = get(&with_token(&format!("{base}/{session}/init.mp4"), &token)).body;
    let raw = get(&with_token(&format!("{base}/{segment_uri}"), &token)).body;
    let key16: [u8; 16] = key.as_slice().try_into().unwrap();
    let plain = weir_drm::decrypt(&key16, &hex16(&iv), &raw).expect("decrypts with the issued key");
    let dir = scratch_dir();
    let (raw_file, plain_file) = (dir.join("raw.mp4"), dir.join("plain.mp4"));
    std::fs::write(&raw_file, [init.as_slice(), &raw].concat()).unwrap();
    std::fs::write(&plain_file, [init.as_slice(), &plain].concat()).unwrap();
    assert_decodes(&plain_file, "a decrypted segment");
    let (ok, _) = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-count_frames",
            "-show_streams",
            raw_file.to_str().unwrap(),
        ],
    );
    let (decoded, err) = run(
        "ffmpeg",
        &[
            "-nostdin",
            "-v",
            "error",
            "-i",
            raw_file.to_str().unwrap(),
            "-f",
            "null",
            "-",
        ],
    );
    assert!(
        !(ok && decoded && err.trim().is_empty()),
        "a raw encrypted segment decoded cleanly"
    );

    // The key store on disk holds no key in the clear.
    let store = weir
        .config_path()
        .parent()
        .unwrap()
        .join("weir-data/keys/it.keys.json");
    let file = std::fs::read(&store).expect("the event's key file");
    assert!(!file.windows(16).any(|w| w == key16));
    let hex: String = key16.iter().map(|b| format!("{b:02x}")).collect();
    assert!(!String::from_utf8_lossy(&file).to_lowercase().contains(&hex));
    assert!(
        !weir.log().to_lowercase().contains(&hex),
        "a key in the log"
    );
}
