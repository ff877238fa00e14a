//! The HTTP exchange against a local fake key provider that answers as the SPEKE v2
//! specification's examples do.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use super::super::cpix::parse_uuid;
use super::super::*;
use super::{answer, elements, key_of, request};

/// What a fake key provider saw: each request's header lines and body.
type Seen = Vec<(Vec<String>, String)>;

/// A fake key provider on loopback for `answers` exchanges: each reads one request and answers
/// with `respond(headers, body)` (status, extra headers, body). The requests it saw come back
/// through the join handle.
fn fake_key_provider(
    answers: usize,
    respond: impl Fn(&[String], &str) -> (u16, Vec<String>, String) + Send + 'static,
) -> (String, std::thread::JoinHandle<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/speke/v2.0/copyProtection",
        listener.local_addr().unwrap()
    );
    let handle = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for _ in 0..answers {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut headers = Vec::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line.trim().is_empty() {
                    break;
                }
                headers.push(line.trim().to_string());
            }
            let length: usize = headers
                .iter()
                .find_map(|h| {
                    h.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let body = String::from_utf8(body).unwrap();
            let (status, extra, answer) = respond(&headers, &body);
            let mut out = stream;
            let mut head = format!("HTTP/1.1 {status} X\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n", answer.len());
            extra.iter().for_each(|h| head += &format!("{h}\r\n"));
            out.write_all(format!("{head}\r\n{answer}").as_bytes())
                .unwrap();
            seen.push((headers, body));
        }
        seen
    });
    (url, handle)
}

/// The KID and systems a request names, read the way a key provider would.
fn asked(body: &str) -> ([u8; 16], Vec<DrmSystem>) {
    let els = elements(body);
    let attr = |attrs: &Vec<(String, String)>, k: &str| {
        attrs
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let kid = els
        .iter()
        .find(|(n, _)| n == "ContentKey")
        .map(|(_, a)| parse_uuid(&attr(a, "kid")).unwrap())
        .unwrap();
    let systems = els
        .iter()
        .filter(|(n, _)| n == "DRMSystem")
        .map(|(_, a)| {
            DrmSystem::from_system_id(&parse_uuid(&attr(a, "systemId")).unwrap()).unwrap()
        })
        .collect();
    (kid, systems)
}

#[test]
fn a_key_comes_over_http_from_a_spec_speaking_key_provider() {
    let (url, server) = fake_key_provider(1, |_, body| {
        let (kid, systems) = asked(body);
        (
            200,
            vec![
                "X-Speke-Version: 2.0".into(),
                "X-Speke-User-Agent: fake".into(),
            ],
            answer("event-1", &kid, &systems, "cpix"),
        )
    });
    let client = SpekeClient::new(
        &url,
        vec![("X-Api-Key".into(), "secret-api-key".into())],
        Duration::from_secs(30),
    );
    let req = request(&[DrmSystem::Widevine, DrmSystem::FairPlay]);
    let got = client.fetch(&req).unwrap();
    assert_eq!(got.key, key_of(&req.kid).0);
    assert_eq!(got.systems.len(), 2);
    let seen = server.join().unwrap();
    let (headers, body) = &seen[0];
    assert!(
        headers[0].starts_with("POST /speke/v2.0/copyProtection "),
        "{headers:?}"
    );
    for h in [
        "x-speke-version: 2.0",
        "content-type: application/xml",
        "x-api-key: secret-api-key",
    ] {
        assert!(
            headers.iter().any(|x| x.to_ascii_lowercase() == h),
            "{h} in {headers:?}"
        );
    }
    assert_eq!(body, &request_document(&req));
    assert!(!format!("{client:?}").contains("secret-api-key"));
}

#[test]
fn refusals_and_other_versions_are_errors_that_say_so() {
    let (url, server) = fake_key_provider(2, |headers, _| {
        if headers
            .iter()
            .any(|h| h.eq_ignore_ascii_case("x-api-key: good"))
        {
            (
                200,
                vec!["X-Speke-Version: 1.0".into()],
                "<cpix:CPIX/>".into(),
            )
        } else {
            (403, vec![], "<error>no such API key</error>".into())
        }
    });
    let req = request(&[DrmSystem::Widevine]);
    let refused = SpekeClient::new(
        &url,
        vec![("X-Api-Key".into(), "bad".into())],
        Duration::from_secs(30),
    )
    .fetch(&req);
    match refused {
        Err(SpekeError::Status { status: 403, body }) => assert!(body.contains("no such API key")),
        other => panic!("{other:?}"),
    }
    let old = SpekeClient::new(
        &url,
        vec![("X-Api-Key".into(), "good".into())],
        Duration::from_secs(30),
    )
    .fetch(&req);
    assert!(
        matches!(old, Err(SpekeError::Version(Some(ref v))) if v == "1.0"),
        "{old:?}"
    );
    server.join().unwrap();
    // Nobody listening: an HTTP error, not a hang.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let gone = format!("http://{}/", closed.local_addr().unwrap());
    drop(closed);
    let err = SpekeClient::new(&gone, vec![], Duration::from_secs(30)).fetch(&req);
    assert!(matches!(err, Err(SpekeError::Http(_))), "{err:?}");
}

#[test]
fn a_key_provider_that_never_answers_is_given_up_on_at_the_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    // Accepts and reads, never answers; holds the connection until the client gives up.
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink);
    });
    let req = request(&[DrmSystem::FairPlay]);
    let err = SpekeClient::new(&url, vec![], Duration::from_millis(300)).fetch(&req);
    assert!(matches!(err, Err(SpekeError::Http(_))), "{err:?}");
    server.join().unwrap();
}
