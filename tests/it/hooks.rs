//! Webhooks: `on_publish` can refuse a publisher, notifications are signed, and a hook server
//! that never answers does not hold packaging back.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::support::*;

const SECRET: &str = "it-hook-secret-0123456789";

/// One request a hook server received.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    signature: Option<String>,
    body: String,
}

/// A hook server on loopback. `answer(path, n)` gives the status for the n-th request (from 0)
/// or `None` to never answer.
struct HookServer {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
}

impl HookServer {
    fn start(answer: impl Fn(&str, usize) -> Option<u16> + Send + Sync + 'static) -> HookServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let answer = Arc::new(answer);
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let (log, answer) = (log.clone(), answer.clone());
                std::thread::spawn(move || serve_one(stream, &log, &*answer));
            }
        });
        HookServer { addr, received }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

fn serve_one(
    stream: TcpStream,
    log: &Mutex<Vec<Received>>,
    answer: &dyn Fn(&str, usize) -> Option<u16>,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let (mut length, mut signature) = (0, None);
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        let (name, value) = h.split_once(':').unwrap_or(("", ""));
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().unwrap_or(0),
            "x-weir-signature" => signature = Some(value.trim().to_string()),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    let n = {
        let mut log = log.lock().unwrap();
        log.push(Received {
            path: path.clone(),
            signature,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        log.iter().filter(|r| r.path == path).count() - 1
    };
    match answer(&path, n) {
        Some(status) => {
            let mut s = stream;
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
        // Never answers: holds the connection open until the test process ends.
        None => std::thread::sleep(Duration::from_secs(3_600)),
    }
}

fn verify(r: &Received) -> bool {
    let Some(sig) = &r.signature else {
        return false;
    };
    let Some((t, v1)) = sig
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.{}", r.body).as_bytes());
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    expected == v1
}

#[test]
fn an_on_publish_hook_refuses_and_notifications_are_signed() {
    // The first publish is refused (403), later ones accepted.
    let hooks = HookServer::start(|path, n| {
        Some(if path == "/publish" && n == 0 {
            403
        } else {
            200
        })
    });
    let weir = Weir::serve(&format!(
        "[control.hooks]\non_publish = \"{}\"\non_unpublish = \"{}\"\non_segment = \"{}\"\nsecret = \"{SECRET}\"\n",
        hooks.url("/publish"),
        hooks.url("/unpublish"),
        hooks.url("/segment"),
    ));
    let file = flv(BBB, 1, true);
    let (ok, _) = finish(
        publish(&file, &weir.publish_url(STREAM_KEY), true),
        Duration::from_secs(30),
    );
    assert!(!ok, "refused by the hook");
    assert!(
        weir.log().contains("refused by the on_publish hook"),
        "{}",
        weir.log()
    );
    assert!(
        !weir.log().contains("packaging input"),
        "nothing was packaged"
    );

    let (ok, err) = finish(
        publish(&file, &weir.publish_url(STREAM_KEY), false),
        Duration::from_secs(60),
    );
    assert!(ok, "accepted the second time: {err}");
    let got = wait_for("on_unpublish", Duration::from_secs(20), || {
        let r = hooks.received();
        r.iter().any(|r| r.path == "/unpublish").then_some(r)
    });
    for r in &got {
        assert!(verify(r), "signed: {r:?}");
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["event"], "it", "{r:?}");
    }
    let publishes: Vec<_> = got.iter().filter(|r| r.path == "/publish").collect();
    assert_eq!(publishes.len(), 2);
    let first: Value = serde_json::from_str(&publishes[0].body).unwrap();
    assert_eq!(
        (first["action"].as_str(), first["input"].as_str()),
        (Some("on_publish"), Some("primary"))
    );
    assert!(first["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    let segments: Vec<Value> = got
        .iter()
        .filter(|r| r.path == "/segment")
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect();
    assert!(!segments.is_empty());
    // Each notified segment is fetchable at the URI the hook was given.
    for s in &segments {
        let uri = s["uri"].as_str().unwrap();
        assert_eq!(get(&weir.origin_url(uri)).status, 200, "{s}");
    }
}

#[test]
fn a_hook_server_that_never_answers_does_not_hold_segments_back() {
    let _slot = transcode_slot();
    let hooks = HookServer::start(|_, _| None);
    let weir = Weir::serve(&format!(
        "[packager]\nwindow_segments = 60\n[control.hooks]\non_unpublish = \"{}\"\non_segment = \"{}\"\ntimeout_ms = 30000\nmax_attempts = 10\nqueue = 2\n",
        hooks.url("/unpublish"),
        hooks.url("/segment"),
    ));
    let url = weir.origin_url("/live/it/source/index.m3u8");
    let (ok, err) = finish(
        publish(&flv(BBB, 4, true), &weir.publish_url(STREAM_KEY), false),
        Duration::from_secs(60),
    );
    assert!(ok, "{err}");
    // Everything was packaged although the first notification is still waiting for its
    // answer: the queue filled and later notifications were dropped and counted.
    let p = wait_for("the session's segments", Duration::from_secs(20), || {
        let p = media_playlist(&url);
        let ended = weir.log().contains("publisher session ended");
        (p.segments.len() >= 8 && ended).then_some(p)
    });
    assert!(p.segments.len() >= 8);
    let dropped = metric(
        &weir,
        "weir_hooks_deliveries_total",
        "hook=\"on_segment\",result=\"dropped\"",
    );
    assert!(dropped >= 1.0, "dropped notifications are counted");
    assert_eq!(
        hooks
            .received()
            .iter()
            .filter(|r| r.path == "/segment")
            .count(),
        1,
        "one delivery in flight"
    );
}
