//! The CPIX codec against documents shaped as the SPEKE v2 specification's examples, and the
//! HTTP exchange against a local fake key provider speaking them.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use proptest::prelude::*;
use quick_xml::events::Event;
use quick_xml::reader::Reader;

use super::cpix::{parse_uuid, uuid};
use super::*;
use crate::pssh_box;

/// What the fake key provider gives for `kid`: a key and IV derived from it, so a test can
/// tell that the answer was for its KID.
fn key_of(kid: &[u8; 16]) -> ([u8; 16], [u8; 16]) {
    let mut key = *kid;
    key.iter_mut().for_each(|b| *b ^= 0x5a);
    let mut iv = *kid;
    iv.reverse();
    (key, iv)
}

fn media_line(system: DrmSystem, kid: &[u8; 16]) -> String {
    match system {
        DrmSystem::FairPlay => format!(
            "#EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"skd://{}\",KEYFORMAT=\"com.apple.streamingkeydelivery\",KEYFORMATVERSIONS=\"1\"",
            hex::encode(kid)
        ),
        s => format!(
            "#EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"data:text/plain;base64,{}\",KEYID=0x{},KEYFORMAT=\"urn:uuid:{}\",KEYFORMATVERSIONS=\"1\"",
            BASE64.encode(pssh_box(&s.system_id(), &[*kid], b"provider data")),
            hex::encode_upper(kid),
            uuid(&s.system_id())
        ),
    }
}

/// A key provider's answer for `kid` and `systems`, as the SPEKE v2 examples write it: the
/// CPIX elements under prefix `cpix` (or another, `p`), PSKC's as the default namespace
/// inside the key, the key in the clear, per system a `PSSH` and both playlists' signalling.
fn answer(content_id: &str, kid: &[u8; 16], systems: &[DrmSystem], p: &str) -> String {
    let (key, iv) = key_of(kid);
    let k = uuid(kid);
    let mut x = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n\
         <{p}:CPIX xmlns:{p}=\"urn:dashif:org:cpix\" contentId=\"{}\" version=\"2.3\">\
         <{p}:ContentKeyList><{p}:ContentKey kid=\"{k}\" explicitIV=\"{}\" commonEncryptionScheme=\"cbcs\">\
         <{p}:Data><Secret xmlns=\"urn:ietf:params:xml:ns:keyprov:pskc\"><PlainValue>{}</PlainValue></Secret></{p}:Data>\
         </{p}:ContentKey></{p}:ContentKeyList><{p}:DRMSystemList>",
        quick_xml::escape::escape(content_id),
        BASE64.encode(iv),
        BASE64.encode(key)
    );
    for s in systems {
        x += &format!(
            "<{p}:DRMSystem kid=\"{k}\" systemId=\"{}\">",
            uuid(&s.system_id()).to_uppercase()
        );
        if s.has_pssh() {
            x += &format!(
                "<{p}:PSSH>{}</{p}:PSSH>",
                BASE64.encode(pssh_box(&s.system_id(), &[*kid], b"provider data"))
            );
        }
        let media = media_line(*s, kid);
        let master = media.replace("#EXT-X-KEY:", "#EXT-X-SESSION-KEY:");
        x += &format!(
            "<{p}:HLSSignalingData playlist=\"media\">{}</{p}:HLSSignalingData>\
             <{p}:HLSSignalingData playlist=\"master\">{}</{p}:HLSSignalingData></{p}:DRMSystem>",
            BASE64.encode(media),
            BASE64.encode(master)
        );
    }
    x + &format!("</{p}:DRMSystemList></{p}:CPIX>")
}

fn request(systems: &[DrmSystem]) -> KeyRequest {
    KeyRequest {
        content_id: "event-1".into(),
        kid: parse_uuid("7d4a2c11-0b9e-4f3a-8c55-1f2e3d4c5b6a").unwrap(),
        period: 42,
        systems: systems.to_vec(),
    }
}

/// Every (element local name, attributes) of `xml`, in order.
fn elements(xml: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut r = Reader::from_str(xml);
    let mut out = Vec::new();
    loop {
        match r.read_event().unwrap() {
            Event::Start(e) | Event::Empty(e) => {
                let attrs = e
                    .attributes()
                    .map(|a| {
                        let a = a.unwrap();
                        let key = a.key.as_ref().to_string();
                        (
                            key,
                            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                                .unwrap()
                                .into_owned(),
                        )
                    })
                    .collect();
                let name = e.local_name().as_ref().to_string();
                out.push((name, attrs));
            }
            Event::Eof => return out,
            _ => {}
        }
    }
}

#[test]
fn the_request_asks_for_one_cbcs_key_per_period_and_each_systems_signalling() {
    let mut req = request(&DrmSystem::ALL);
    req.content_id = "a&b<\"c\">".into();
    let doc = request_document(&req);
    let els = elements(&doc);
    let find = |name: &str| -> Vec<&Vec<(String, String)>> {
        els.iter()
            .filter(|(n, _)| n == name)
            .map(|(_, a)| a)
            .collect()
    };
    let get = |attrs: &Vec<(String, String)>, k: &str| {
        attrs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    };
    let root = find("CPIX")[0];
    assert_eq!(
        get(root, "contentId").as_deref(),
        Some("a&b<\"c\">"),
        "{doc}"
    );
    assert_eq!(get(root, "version").as_deref(), Some("2.3"));
    let keys = find("ContentKey");
    assert_eq!(keys.len(), 1);
    assert_eq!(
        get(keys[0], "kid").as_deref(),
        Some("7d4a2c11-0b9e-4f3a-8c55-1f2e3d4c5b6a")
    );
    assert_eq!(
        get(keys[0], "commonEncryptionScheme").as_deref(),
        Some("cbcs")
    );
    let systems: Vec<String> = find("DRMSystem")
        .iter()
        .map(|a| get(a, "systemId").unwrap())
        .collect();
    assert_eq!(
        systems,
        [
            "edef8ba9-79d6-4ace-a3c8-27dcd51d21ed",
            "9a04f079-9840-4286-ab92-e65be0885f95",
            "94ce86fb-07ff-4f43-adb8-93d2fa968ca2"
        ]
    );
    // A PSSH for Widevine and PlayReady, none for FairPlay; both playlists for all three.
    assert_eq!(find("PSSH").len(), 2);
    let playlists: Vec<String> = find("HLSSignalingData")
        .iter()
        .map(|a| get(a, "playlist").unwrap())
        .collect();
    assert_eq!(
        playlists,
        ["media", "master", "media", "master", "media", "master"]
    );
    let period = find("ContentKeyPeriod")[0];
    assert_eq!(get(period, "index").as_deref(), Some("42"));
    let filter = find("KeyPeriodFilter")[0];
    assert_eq!(get(filter, "periodId"), get(period, "id"));
    let rule = find("ContentKeyUsageRule")[0];
    assert_eq!(get(rule, "intendedTrackType").as_deref(), Some("ALL"));
}

#[test]
fn an_answer_gives_the_key_iv_pssh_and_tags_of_every_system() {
    let req = request(&DrmSystem::ALL);
    for prefix in ["cpix", "c"] {
        let got =
            parse_response(&answer("event-1", &req.kid, &DrmSystem::ALL, prefix), &req).unwrap();
        let (key, iv) = key_of(&req.kid);
        assert_eq!((got.kid, got.key, got.iv), (req.kid, key, Some(iv)));
        assert_eq!(got.systems.len(), 3);
        for (s, want) in got.systems.iter().zip(DrmSystem::ALL) {
            assert_eq!(s.system, want);
            assert_eq!(s.pssh.is_some(), want.has_pssh());
            assert_eq!(
                format!("#EXT-X-KEY:{}", s.media_key_tag),
                media_line(want, &req.kid)
            );
            assert!(s
                .session_key_tag
                .as_deref()
                .unwrap()
                .starts_with("METHOD=SAMPLE-AES,"));
        }
        assert!(got.systems[2].media_key_tag.contains("skd://"));
        assert!(
            !format!("{got:?}").contains(&hex::encode(key)),
            "the key is never printed"
        );
    }
}

#[test]
fn unusable_answers_are_refused_with_what_is_wrong() {
    let req = request(&[DrmSystem::Widevine, DrmSystem::FairPlay]);
    let good = answer("event-1", &req.kid, &req.systems, "cpix");
    let (key, _) = key_of(&req.kid);
    let key_b64 = BASE64.encode(key);
    let other = parse_uuid("00000000-0000-0000-0000-000000000001").unwrap();
    let pssh_b64 = BASE64.encode(pssh_box(
        &DrmSystem::Widevine.system_id(),
        &[req.kid],
        b"provider data",
    ));
    let cases: Vec<(&str, String, CpixError)> = vec![
        (
            "not XML",
            "<cpix:CPIX".into(),
            CpixError::Xml(String::new()),
        ),
        (
            "a key for another KID",
            answer("event-1", &other, &req.systems, "cpix"),
            CpixError::MissingKey(uuid(&req.kid)),
        ),
        (
            "an encrypted key",
            good.replace(
                &format!("<PlainValue>{key_b64}</PlainValue>"),
                "<EncryptedValue><CipherData>AAAA</CipherData></EncryptedValue>",
            ),
            CpixError::EncryptedKey,
        ),
        (
            "a key that is not base64",
            good.replace(&key_b64, "not*base64"),
            CpixError::Base64("key"),
        ),
        (
            "a short key",
            good.replace(&key_b64, &BASE64.encode([1u8; 8])),
            CpixError::Length {
                what: "key",
                len: 8,
            },
        ),
        (
            "no Widevine entry",
            answer("event-1", &req.kid, &[DrmSystem::FairPlay], "cpix"),
            CpixError::MissingSystem {
                system: DrmSystem::Widevine,
                what: "PSSH",
            },
        ),
        (
            "another system's pssh",
            good.replace(
                &pssh_b64,
                &BASE64.encode(pssh_box(
                    &DrmSystem::PlayReady.system_id(),
                    &[req.kid],
                    b"provider data",
                )),
            ),
            CpixError::Pssh(DrmSystem::Widevine),
        ),
        (
            "signalling that is not a key tag",
            good.replace(
                &BASE64.encode(media_line(DrmSystem::FairPlay, &req.kid)),
                &BASE64.encode("#EXT-X-MAP:URI=\"init.mp4\""),
            ),
            CpixError::Signalling(DrmSystem::FairPlay),
        ),
    ];
    for (what, xml, want) in cases {
        let got = parse_response(&xml, &req).expect_err(what);
        match (&got, &want) {
            (CpixError::Xml(_), CpixError::Xml(_)) => {}
            _ => assert_eq!(got, want, "{what}"),
        }
    }
}

proptest! {
    #[test]
    fn any_answer_for_the_kid_parses_to_its_key(
        kid in any::<[u8; 16]>(),
        content_id in "[ -~]{1,40}",
        systems in proptest::sample::subsequence(DrmSystem::ALL.to_vec(), 1..=3),
    ) {
        let req = KeyRequest { content_id: content_id.clone(), kid, period: 7, systems: systems.clone() };
        // The request is well-formed XML that names the KID.
        let doc = request_document(&req);
        let kids: Vec<_> = elements(&doc).into_iter().filter(|(n, _)| n == "ContentKey").collect();
        prop_assert_eq!(kids.len(), 1);
        let got = parse_response(&answer(&content_id, &kid, &systems, "cpix"), &req).unwrap();
        prop_assert_eq!(got.key, key_of(&kid).0);
        prop_assert_eq!(got.systems.iter().map(|s| s.system).collect::<Vec<_>>(), systems);
    }
}

mod exchange;
