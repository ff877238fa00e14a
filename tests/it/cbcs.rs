//! `cbcs` DRM packaging (`METHOD=SAMPLE-AES` over CMAF): a token-protected event with key
//! rotation; the edge's ClearKey licence endpoint hands the keys to token holders only;
//! shaka-packager decrypts weir's segments with those keys (across a rotation, each key
//! period with its own init segment) and the result is frame-exact against the published
//! input; ffmpeg decrypts a segment on its own; raw segments do not decode.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::support::*;
use crate::tokens::{hand_token, unix_now, with_token};

const SECRET: &str = "it-cbcs-token-secret-0123456789abcdef";
const KEK: &str = "6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a";

/// `enc` (an init segment and its segments, video) decrypted by shaka-packager into `dec`
/// with the key `key` of KID `kid` (hex).
pub(crate) fn shaka_decrypt(enc: &Path, dec: &Path, kid: &str, key: &str) {
    let (ok, err) = run(
        shaka_packager().to_str().unwrap(),
        &[
            &format!("in={},stream=video,output={}", enc.display(), dec.display()),
            "--enable_raw_key_decryption",
            "--keys",
            &format!("label=a:key_id={kid}:key={key}"),
        ],
    );
    assert!(
        ok,
        "shaka-packager could not decrypt {}: {err}",
        enc.display()
    );
}

pub(crate) fn shaka_packager() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/player/node_modules/shaka-packager/bin/packager-linux-x64")
}

/// One listed segment: its URI (no query), the KID in force (hex, lowercase) and the
/// `EXT-X-MAP` URI in force (no query).
struct Listed {
    uri: String,
    kid: String,
    map: String,
}

/// The segments of a media playlist with their keys and init segments, each `EXT-X-KEY`
/// checked to be a ClearKey `SAMPLE-AES` tag naming the licence URL with the viewer's token.
fn listed(playlist: &str, token: &str) -> Vec<Listed> {
    let (mut kid, mut map) = (None, None);
    let mut out = Vec::new();
    let unquoted = |l: &str| {
        l.split("URI=\"")
            .nth(1)
            .unwrap()
            .split(['"', '?'])
            .next()
            .unwrap()
            .to_string()
    };
    for line in playlist.lines() {
        if let Some(attrs) = line.strip_prefix("#EXT-X-KEY:") {
            let hex = attrs.rsplit("KEYID=0x").next().unwrap().to_lowercase();
            assert_eq!(hex.len(), 32, "{attrs}");
            assert!(
                attrs.starts_with(&format!(
                    "METHOD=SAMPLE-AES,URI=\"/licence/clearkey/it?kid={hex}&token={token}\",\
                     KEYFORMAT=\"org.w3.clearkey\",KEYFORMATVERSIONS=\"1\",KEYID=0x"
                )),
                "{attrs}"
            );
            kid = Some(hex);
        } else if line.starts_with("#EXT-X-MAP:") {
            map = Some(unquoted(line));
        } else if !line.starts_with('#') && !line.is_empty() {
            out.push(Listed {
                uri: line.split('?').next().unwrap().to_string(),
                kid: kid.clone().expect("a key before every segment"),
                map: map.clone().expect("an init segment before every segment"),
            });
        }
    }
    out
}

fn post(url: &str, body: &str) -> (u16, String, Option<String>) {
    let mut r = agent()
        .post(url)
        .header("content-type", "application/json")
        .send(body)
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let cache = r
        .headers()
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let status = r.status().as_u16();
    (
        status,
        r.body_mut().read_to_string().unwrap_or_default(),
        cache,
    )
}

/// The md5 column of `ffmpeg -f framemd5` over `input`'s stream `map`, decoded or (with
/// `copy`) as packets; empty when ffmpeg fails.
pub(crate) fn frame_md5s(input: &Path, map: &str, copy: bool, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<&str> = vec!["-nostdin", "-v", "error"];
    args.extend_from_slice(extra);
    let input = input.to_str().unwrap();
    args.extend_from_slice(&["-i", input, "-map", map]);
    if copy {
        args.extend_from_slice(&["-c", "copy"]);
    }
    args.extend_from_slice(&["-f", "framemd5", "-"]);
    let out = std::process::Command::new("ffmpeg")
        .args(&args)
        .output()
        .expect("run ffmpeg");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit(',').next().map(|m| m.trim().to_string()))
        .collect()
}

pub(crate) fn contains_run(haystack: &[String], needle: &[String]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_cbcs_event_decrypts_frame_exact_with_the_keys_its_licences_issue() {
    let weir = Weir::serve_event(
        &format!(
            "[packager]\nwindow_segments = 40\n\
             [access]\ntoken_keys = {{ k1 = \"{SECRET}\" }}\nkey_encryption_key = \"{KEK}\"\n"
        ),
        "passthrough",
        "encryption = \"cbcs\"\nkey_rotation_segments = 2\naccess = { require_token = true }",
    );
    // 16 s with 2 s GOPs: 8 segments, a key every 2.
    let file = flv(BBB, 3, true);
    let (ok, err) = finish(
        publish(&file, &weir.publish_url(STREAM_KEY), false),
        Duration::from_secs(60),
    );
    assert!(ok, "{err}");
    let token = hand_token("k1", SECRET, unix_now() + 600, "it", "");
    let tokened = |path: &str| with_token(&weir.edge_url(path), &token);
    let playlist = wait_for("the whole session listed", Duration::from_secs(30), || {
        let text = get(&tokened("/live/it/source/index.m3u8")).text();
        (text.matches("#EXTINF").count() >= 7).then_some(text)
    });
    let master = get(&tokened("/live/it/master.m3u8")).text();
    assert!(
        master.contains("#EXT-X-SESSION-KEY:METHOD=SAMPLE-AES,URI=\"/licence/clearkey/it"),
        "{master}"
    );
    let video = listed(&playlist, &token);
    let mut kids: Vec<&String> = video.iter().map(|l| &l.kid).collect();
    kids.dedup();
    assert!(kids.len() >= 3, "a key every 2 segments: {playlist}");
    // Every key period has its init segment: EXT-X-MAP changes with EXT-X-KEY.
    for w in video.windows(2) {
        assert_eq!(w[0].kid == w[1].kid, w[0].map == w[1].map, "{playlist}");
    }
    let audio = listed(&get(&tokened("/live/it/audio/index.m3u8")).text(), &token);

    // The licence: a JSON Web Key set for token holders only, never cached.
    let ask = |kids: &[&String]| {
        let b64: Vec<String> = kids
            .iter()
            .map(|k| format!("\"{}\"", URL_SAFE_NO_PAD.encode(hex_bytes(k))))
            .collect();
        format!("{{\"kids\":[{}],\"type\":\"temporary\"}}", b64.join(","))
    };
    let licence = weir.edge_url("/licence/clearkey/it");
    assert_eq!(post(&licence, &ask(&kids)).0, 403, "no token, no licence");
    let (status, body, cache) = post(&with_token(&licence, &token), &ask(&kids));
    assert_eq!(status, 200, "{body}");
    assert_eq!(cache.as_deref(), Some("private, no-store"));
    let set: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(set["type"], "temporary");
    let mut keys: BTreeMap<String, String> = BTreeMap::new();
    for k in set["keys"].as_array().unwrap() {
        assert_eq!(k["kty"], "oct");
        let kid = hex_of(&URL_SAFE_NO_PAD.decode(k["kid"].as_str().unwrap()).unwrap());
        let key = hex_of(&URL_SAFE_NO_PAD.decode(k["k"].as_str().unwrap()).unwrap());
        assert_eq!(key.len(), 32);
        keys.insert(kid, key);
    }
    assert_eq!(keys.len(), kids.len(), "a key for every KID asked");
    let unknown = "0123456789abcdef0123456789abcdef".to_string();
    assert_eq!(
        post(&with_token(&licence, &token), &ask(&[&unknown])).0,
        404
    );
    assert_eq!(
        post(&with_token(&licence, &token), "{\"kids\":[\"AAAA\"]}").0,
        400
    );
    assert_eq!(get(&with_token(&licence, &token)).status, 405);

    // Video: each of the first two key periods (its init segment and its two segments),
    // decrypted by shaka-packager with the licensed keys; the decoded frames of both, in
    // order, are a run of the published input's frames.
    let dir = scratch_dir();
    let key_args: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, (kid, key))| format!("label=k{i}:key_id={kid}:key={key}"))
        .collect();
    let decrypt = |segments: &[&Listed], base: &str, stream: &str, name: &str| {
        let mut encrypted = get(&tokened(&format!("{base}/{}", segments[0].map))).body;
        for s in segments {
            assert_eq!(s.map, segments[0].map);
            encrypted.extend(get(&tokened(&format!("{base}/{}", s.uri))).body);
        }
        let (enc, dec) = (
            dir.join(format!("{name}.mp4")),
            dir.join(format!("{name}-clear.mp4")),
        );
        std::fs::write(&enc, &encrypted).unwrap();
        let (ok, err) = run(
            shaka_packager().to_str().unwrap(),
            &[
                &format!(
                    "in={},stream={stream},output={}",
                    enc.display(),
                    dec.display()
                ),
                "--enable_raw_key_decryption",
                "--keys",
                &key_args.join(","),
            ],
        );
        assert!(ok, "shaka-packager could not decrypt {name}: {err}");
        (enc, dec)
    };
    let reference = frame_md5s(&file, "0:v", false, &[]);
    let base = "/live/it/source";
    let mut both = Vec::new();
    for (period, kid) in kids.iter().take(2).enumerate() {
        let segments: Vec<&Listed> = video.iter().filter(|l| &&l.kid == kid).collect();
        let (enc, dec) = decrypt(&segments, base, "video", &format!("video{period}"));
        assert_decodes(&dec, "a decrypted cbcs key period");
        let frames = frame_md5s(&dec, "0:v", false, &[]);
        assert!(frames.len() >= 50, "two 2 s segments: {}", frames.len());
        assert!(
            contains_run(&reference, &frames),
            "period {period}: the published frames"
        );
        both.extend(frames);
        // The raw segments decode to other pictures, or not at all.
        let raw = frame_md5s(&enc, "0:v", false, &[]);
        assert!(
            !contains_run(&reference, &raw),
            "raw cbcs frames decoded as the source"
        );
        // ffmpeg decrypts the period's first segment with its key alone (FFmpeg 5.1 reads
        // one fragment's encryption boxes right, not several).
        if period == 0 {
            let first = dir.join("first.mp4");
            let init = get(&tokened(&format!("{base}/{}", segments[0].map))).body;
            let fragment = get(&tokened(&format!("{base}/{}", segments[0].uri))).body;
            let moof = first_fragment(&fragment);
            std::fs::write(&first, [init.as_slice(), moof].concat()).unwrap();
            let by_ffmpeg = frame_md5s(&first, "0:v", false, &["-decryption_key", &keys[*kid]]);
            // A fragment cut mid-GOP: the pictures before its last B-frames' gap are whole.
            assert!(by_ffmpeg.len() >= 4, "{by_ffmpeg:?}");
            assert!(
                contains_run(&reference, &by_ffmpeg[..4]),
                "ffmpeg's decryption"
            );
        }
    }
    assert!(
        contains_run(&reference, &both),
        "continuous across the key rotation"
    );

    // Audio: whole samples; the decrypted packets are the published ones, byte for byte.
    let reference = frame_md5s(&file, "0:a", true, &[]);
    let segments: Vec<&Listed> = audio.iter().filter(|l| l.kid == audio[0].kid).collect();
    let (enc, dec) = decrypt(&segments, "/live/it/audio", "audio", "audio");
    let decrypted = frame_md5s(&dec, "0:a", true, &[]);
    assert!(decrypted.len() > 50, "{}", decrypted.len());
    assert!(
        contains_run(&reference, &decrypted),
        "the published AAC frames"
    );
    assert!(!contains_run(
        &reference,
        &frame_md5s(&enc, "0:a", true, &[])
    ));

    // No content key in the log.
    for key in keys.values() {
        assert!(!weir.log().to_lowercase().contains(key), "a key in the log");
    }
}

#[test]
fn a_cbcs_hevc_event_decrypts_frame_exact_with_its_licensed_key() {
    // HEVC (libx265, 2 s GOPs) over Enhanced RTMP from FFmpeg 9, as it was encoded.
    let flv = crate::ertmp::hevc_flv();
    let weir = Weir::serve_event("", "passthrough", "encryption = \"cbcs\"");
    crate::ertmp::publish_with_ffmpeg9(&weir, &flv);
    let playlist = get(&weir.edge_url("/live/it/source/index.m3u8")).text();
    let key_line = playlist
        .lines()
        .find(|l| l.starts_with("#EXT-X-KEY:"))
        .expect(&playlist);
    let kid = key_line.rsplit("KEYID=0x").next().unwrap().to_lowercase();
    let ask = format!(
        "{{\"kids\":[\"{}\"]}}",
        URL_SAFE_NO_PAD.encode(hex_bytes(&kid))
    );
    let (status, body, _) = post(&weir.edge_url("/licence/clearkey/it"), &ask);
    assert_eq!(status, 200, "{body}");
    let set: serde_json::Value = serde_json::from_str(&body).unwrap();
    let key = hex_of(
        &URL_SAFE_NO_PAD
            .decode(set["keys"][0]["k"].as_str().unwrap())
            .unwrap(),
    );

    // The init segment: encv, its original format hvc1 with the hvcC; then every segment.
    let uris: Vec<&str> = playlist
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let map = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MAP:URI=\""))
        .unwrap();
    let mut encrypted = get(&weir.edge_url(&format!(
        "/live/it/source/{}",
        &map[..map.find('"').unwrap()]
    )))
    .body;
    for marker in [b"encv", b"frma", b"hvc1", b"hvcC", b"tenc"] {
        assert!(
            encrypted.windows(4).any(|w| w == marker),
            "{}",
            String::from_utf8_lossy(marker)
        );
    }
    for uri in &uris {
        encrypted.extend(get(&weir.edge_url(&format!("/live/it/source/{uri}"))).body);
    }
    let dir = scratch_dir();
    let (enc, dec) = (dir.join("hevc-cbcs.mp4"), dir.join("hevc-clear.mp4"));
    std::fs::write(&enc, &encrypted).unwrap();
    shaka_decrypt(&enc, &dec, &kid, &key);
    // Every published frame, decrypted to the picture it was.
    // The reference: the published HEVC, copied into MP4 (Debian's FFmpeg reads no
    // enhanced FLV), decoded.
    let published = dir.join("hevc-published.mp4");
    let ff9 = crate::ertmp::ffmpeg9();
    let (ok, err) = run(
        ff9.to_str().unwrap(),
        &[
            "-v",
            "error",
            "-y",
            "-i",
            &flv,
            "-an",
            "-c",
            "copy",
            published.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    let reference = frame_md5s(&published, "0:v", false, &[]);
    let frames = frame_md5s(&dec, "0:v", false, &[]);
    assert_eq!(frames.len(), reference.len(), "every frame");
    assert_eq!(
        frames, reference,
        "decrypted HEVC frames are the published ones"
    );
    let raw = frame_md5s(&enc, "0:v", false, &[]);
    assert!(
        !contains_run(&reference, &raw),
        "raw cbcs HEVC decoded as the source"
    );
}

/// The first `moof` + `mdat` of a segment.
fn first_fragment(segment: &[u8]) -> &[u8] {
    let size = |at: usize| u32::from_be_bytes(segment[at..at + 4].try_into().unwrap()) as usize;
    let moof = size(0);
    assert_eq!(&segment[4..8], b"moof");
    &segment[..moof + size(moof)]
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
