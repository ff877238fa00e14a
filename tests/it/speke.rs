//! A `cbcs` event whose keys come from a commercial DRM key provider over SPEKE v2.0: a fake
//! key provider on loopback answers as the SPEKE v2 examples do (a Widevine `pssh` and
//! `data:` URI, a FairPlay `skd://` URI); weir's playlists and init segments carry what it
//! gave, one key per rotation period asked for ahead; its key decrypts weir's segments
//! frame-exact (shaka-packager); no ClearKey licence is issued for those keys.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::cbcs::{contains_run, frame_md5s, shaka_decrypt};
use crate::support::*;

const WIDEVINE: &str = "edef8ba9-79d6-4ace-a3c8-27dcd51d21ed";
const FAIRPLAY: &str = "94ce86fb-07ff-4f43-adb8-93d2fa968ca2";
const API_KEY: &str = "it-speke-api-key-0123";

/// One key the fake key provider issued.
#[derive(Clone, Debug)]
struct Issued {
    content_id: String,
    period: u64,
    kid: String,
    key: String,
    pssh: Vec<u8>,
    headers: Vec<String>,
}

/// The value of attribute `name` of the first element starting `<{element} ` in `xml`.
fn attribute(xml: &str, element: &str, name: &str) -> String {
    let at = xml.find(&format!("<{element} ")).expect(element);
    let rest = &xml[at..];
    let v = &rest[rest.find(&format!(" {name}=\"")).expect(name) + name.len() + 3..];
    v[..v.find('"').unwrap()].to_string()
}

/// A version-0 Widevine `pssh` box the way a key provider makes one: its own data naming the
/// KID.
fn widevine_pssh(kid: &[u8]) -> Vec<u8> {
    let data = [b"fake widevine header ".as_slice(), kid].concat();
    let size = 32 + data.len();
    let mut b = (size as u32).to_be_bytes().to_vec();
    b.extend_from_slice(b"pssh\0\0\0\0");
    b.extend(hex_bytes(&WIDEVINE.replace('-', "")));
    b.extend((data.len() as u32).to_be_bytes());
    b.extend(data);
    b
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// The CPIX answer to a request for `kid`: the key in the clear, an explicit IV, Widevine's
/// PSSH and both playlists' signalling, FairPlay's `skd://` signalling.
fn answer(content_id: &str, kid_uuid: &str, key: &[u8], pssh: &[u8]) -> String {
    let kid_hex = kid_uuid.replace('-', "");
    let widevine = format!(
        "#EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"data:text/plain;base64,{}\",KEYID=0x{},\
         KEYFORMAT=\"urn:uuid:{WIDEVINE}\",KEYFORMATVERSIONS=\"1\"",
        STANDARD.encode(pssh),
        kid_hex.to_uppercase()
    );
    let fairplay = format!(
        "#EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"skd://{kid_hex}\",\
         KEYFORMAT=\"com.apple.streamingkeydelivery\",KEYFORMATVERSIONS=\"1\""
    );
    let signalling = |line: &str| {
        format!(
            "<cpix:HLSSignalingData playlist=\"media\">{}</cpix:HLSSignalingData>\
             <cpix:HLSSignalingData playlist=\"master\">{}</cpix:HLSSignalingData>",
            STANDARD.encode(line),
            STANDARD.encode(line.replace("#EXT-X-KEY:", "#EXT-X-SESSION-KEY:"))
        )
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\
         <cpix:CPIX contentId=\"{content_id}\" version=\"2.3\" xmlns:cpix=\"urn:dashif:org:cpix\" \
         xmlns:pskc=\"urn:ietf:params:xml:ns:keyprov:pskc\"><cpix:ContentKeyList>\
         <cpix:ContentKey kid=\"{kid_uuid}\" explicitIV=\"{}\" commonEncryptionScheme=\"cbcs\">\
         <cpix:Data><pskc:Secret><pskc:PlainValue>{}</pskc:PlainValue></pskc:Secret></cpix:Data>\
         </cpix:ContentKey></cpix:ContentKeyList><cpix:DRMSystemList>\
         <cpix:DRMSystem kid=\"{kid_uuid}\" systemId=\"{WIDEVINE}\"><cpix:PSSH>{}</cpix:PSSH>{}</cpix:DRMSystem>\
         <cpix:DRMSystem kid=\"{kid_uuid}\" systemId=\"{FAIRPLAY}\">{}</cpix:DRMSystem>\
         </cpix:DRMSystemList></cpix:CPIX>",
        STANDARD.encode([7u8; 16]),
        STANDARD.encode(key),
        STANDARD.encode(pssh),
        signalling(&widevine),
        signalling(&fairplay)
    )
}

/// A fake SPEKE v2.0 key provider on loopback (at most 100 exchanges): a key per request
/// derived from the KID, recorded with what was asked.
fn fake_key_provider() -> (String, Arc<Mutex<Vec<Issued>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/speke/v2.0/copyProtection",
        listener.local_addr().unwrap()
    );
    let issued = Arc::new(Mutex::new(Vec::new()));
    let log = issued.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(100) {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut headers = Vec::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                headers.push(line.trim().to_ascii_lowercase());
            }
            let length = headers
                .iter()
                .find_map(|h| {
                    h.strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let body = String::from_utf8_lossy(&body).to_string();
            let content_id = attribute(&body, "cpix:CPIX", "contentId");
            let kid_uuid = attribute(&body, "cpix:ContentKey", "kid");
            let kid = hex_bytes(&kid_uuid.replace('-', ""));
            let key: Vec<u8> = kid.iter().map(|b| b ^ 0xa5).collect();
            let pssh = widevine_pssh(&kid);
            let xml = answer(&content_id, &kid_uuid, &key, &pssh);
            log.lock().unwrap().push(Issued {
                content_id,
                period: attribute(&body, "cpix:ContentKeyPeriod", "index")
                    .parse()
                    .unwrap(),
                kid: hex_of(&kid),
                key: hex_of(&key),
                pssh,
                headers,
            });
            let mut out = stream;
            let _ = out.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nX-Speke-Version: 2.0\r\n\
                     X-Speke-User-Agent: weir-it-fake\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}",
                    xml.len()
                )
                .as_bytes(),
            );
        }
    });
    (url, issued)
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_cbcs_event_takes_its_keys_and_drm_signalling_from_a_speke_key_provider() {
    let (url, issued) = fake_key_provider();
    let weir = Weir::serve_event(
        &format!(
            "[packager]\nwindow_segments = 40\n\
             [drm.speke]\nurl = \"{url}\"\nsystems = [\"widevine\", \"fairplay\"]\n\
             headers = {{ \"X-Api-Key\" = \"{API_KEY}\" }}\n"
        ),
        "passthrough",
        "encryption = \"cbcs\"\nkey_rotation_segments = 2",
    );
    let file = flv(BBB, 3, true);
    let (ok, err) = finish(
        publish(&file, &weir.publish_url(STREAM_KEY), false),
        Duration::from_secs(60),
    );
    assert!(ok, "{err}");
    let playlist = wait_for("the whole session listed", Duration::from_secs(30), || {
        let text = get(&weir.edge_url("/live/it/source/index.m3u8")).text();
        (text.matches("#EXTINF").count() >= 7).then_some(text)
    });
    let issued = issued.lock().unwrap().clone();
    assert!(
        issued.len() >= 4,
        "a key per period of 2 segments: {issued:?}"
    );
    // Asked for ahead: period 0, 1, 2, ... each once, for the event, authenticated.
    let periods: Vec<u64> = issued.iter().map(|i| i.period).collect();
    assert_eq!(periods, (0..issued.len() as u64).collect::<Vec<_>>());
    for i in &issued {
        assert_eq!(i.content_id, "it");
        for h in ["x-speke-version: 2.0", "content-type: application/xml"] {
            assert!(i.headers.iter().any(|x| x == h), "{h}: {:?}", i.headers);
        }
        assert!(i
            .headers
            .contains(&format!("x-api-key: {}", API_KEY.to_lowercase())));
    }

    // The playlists name each key with the provider's signalling, and nothing else.
    let master = get(&weir.edge_url("/live/it/master.m3u8")).text();
    assert!(
        master.contains("#EXT-X-SESSION-KEY:METHOD=SAMPLE-AES,URI=\"skd://"),
        "{master}"
    );
    assert!(
        master.contains(&format!("KEYFORMAT=\"urn:uuid:{WIDEVINE}\"")),
        "{master}"
    );
    assert!(!master.contains("clearkey"), "{master}");
    let mut segments: Vec<(String, String, String)> = Vec::new(); // (uri, kid, map)
    let (mut kid, mut map) = (String::new(), String::new());
    for line in playlist.lines() {
        if let Some(attrs) = line.strip_prefix("#EXT-X-KEY:") {
            assert!(!attrs.contains("clearkey"), "{attrs}");
            if let Some(skd) = attrs.split("URI=\"skd://").nth(1) {
                kid = skd[..32].to_string();
            } else {
                let data = attrs
                    .split("URI=\"data:text/plain;base64,")
                    .nth(1)
                    .expect(attrs);
                let pssh = STANDARD.decode(&data[..data.find('"').unwrap()]).unwrap();
                let from = issued
                    .iter()
                    .find(|i| i.pssh == pssh)
                    .expect("the provider's pssh");
                assert!(attrs.contains(&format!("KEYID=0x{}", from.kid.to_uppercase())));
            }
        } else if let Some(m) = line.strip_prefix("#EXT-X-MAP:URI=\"") {
            map = m.split(['"', '?']).next().unwrap().to_string();
        } else if !line.starts_with('#') && !line.is_empty() {
            segments.push((line.to_string(), kid.clone(), map.clone()));
        }
    }
    let first_kid = segments[0].1.clone();
    let issued_for = |k: &str| {
        issued
            .iter()
            .find(|i| i.kid == k)
            .expect("an issued KID")
            .clone()
    };
    let first = issued_for(&first_kid);
    let period: Vec<&(String, String, String)> =
        segments.iter().filter(|s| s.1 == first_kid).collect();
    assert_eq!(period.len(), 2, "{playlist}");
    assert!(
        segments.iter().any(|s| s.1 != first_kid),
        "rotated: {playlist}"
    );

    // The init segment carries the provider's Widevine pssh and its KID as the default KID.
    let base = "/live/it/source";
    let init = get(&weir.edge_url(&format!("{base}/{}", period[0].2))).body;
    assert!(
        init.windows(first.pssh.len()).any(|w| w == first.pssh),
        "the provider's pssh in the moov"
    );
    assert!(
        init.windows(16).any(|w| w == hex_bytes(&first.kid)),
        "its KID in the tenc"
    );
    assert!(
        !init.windows(4).any(|w| w == [0x10, 0x77, 0xef, 0xec]),
        "no ClearKey pssh when the key provider names the keys"
    );

    // The provider's key decrypts the period frame-exact.
    let dir = scratch_dir();
    let mut encrypted = init;
    for s in &period {
        encrypted.extend(get(&weir.edge_url(&format!("{base}/{}", s.0))).body);
    }
    let (enc, dec) = (dir.join("speke.mp4"), dir.join("speke-clear.mp4"));
    std::fs::write(&enc, &encrypted).unwrap();
    shaka_decrypt(&enc, &dec, &first.kid, &first.key);
    let frames = frame_md5s(&dec, "0:v", false, &[]);
    assert!(frames.len() >= 50, "{}", frames.len());
    assert!(contains_run(&frame_md5s(&file, "0:v", false, &[]), &frames));

    // ClearKey is off: the edge licenses none of these keys.
    let kid_b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hex_bytes(&first.kid));
    let status = agent()
        .post(&weir.edge_url("/licence/clearkey/it"))
        .send(format!("{{\"kids\":[\"{kid_b64}\"]}}"))
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    assert_eq!(status, 404);
    // The API key is never logged.
    assert!(!weir.log().contains(API_KEY));
}
