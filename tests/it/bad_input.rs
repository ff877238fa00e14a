//! Bad input gets a clear refusal and costs nobody else anything.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::*;

fn segment_count(weir: &Weir) -> usize {
    try_get(&weir.origin_url("/live/it/source/index.m3u8"))
        .map(|f| {
            if f.status == 200 {
                f.text().matches("#EXTINF").count()
            } else {
                0
            }
        })
        .unwrap_or(0)
}

/// Reads until the server closes the connection; `true` if it did within `limit`.
fn closed_by_server(stream: &mut TcpStream, limit: Duration) -> bool {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 65536];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

fn raw_status(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.lines().next().unwrap_or("").to_string()
}

#[test]
fn bad_publishers_and_requests_are_refused_while_a_good_publisher_keeps_going() {
    let weir = Weir::serve("[rtmp]\nhandshake_timeout_ms = 1000\n");
    let file = flv(BBB, 3, true);
    let mut good = publish(&file, &weir.publish_url(STREAM_KEY), true);
    wait_for(
        "the good publisher's first segment",
        Duration::from_secs(30),
        || (segment_count(&weir) >= 1).then_some(()),
    );

    // An unknown stream key is refused, and the key is not logged.
    let wrong = "not-the-key-7f3a9c";
    let (ok, _) = finish(
        publish(&file, &weir.publish_url(wrong), false),
        Duration::from_secs(30),
    );
    assert!(!ok, "a publish with an unknown key must fail");
    wait_for("the refusal log line", Duration::from_secs(5), || {
        weir.log().contains("unknown stream key").then_some(())
    });
    assert!(
        !weir.log().contains(wrong),
        "the log prints a rejected stream key"
    );
    assert_eq!(
        get(&weir.origin_url("/live/not-the-key-7f3a9c/master.m3u8")).status,
        404
    );

    // A second publisher on a live key is refused.
    let (ok, _) = finish(
        publish(&file, &weir.publish_url(STREAM_KEY), false),
        Duration::from_secs(30),
    );
    assert!(!ok, "a second publisher on a live key must be refused");
    assert!(weir.log().contains("already publishing"));

    // 1 MB of random bytes on the RTMP port: that connection is closed.
    let mut garbage = TcpStream::connect(weir.rtmp.unwrap()).unwrap();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let junk: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8 | 0x80 // never a valid C0 version byte (3)
        })
        .collect();
    let _ = garbage.write_all(&junk);
    assert!(
        closed_by_server(&mut garbage, Duration::from_secs(10)),
        "garbage connection left open"
    );

    // A truncated handshake (C0 and half of C1): closed at the handshake timeout.
    let mut truncated = TcpStream::connect(weir.rtmp.unwrap()).unwrap();
    truncated.write_all(&[3u8; 700]).unwrap();
    assert!(
        closed_by_server(&mut truncated, Duration::from_secs(10)),
        "truncated handshake left open"
    );

    // An empty AMF0 command after the handshake (12 bytes; rml_rtmp panics on it, found by
    // cargo fuzz): a protocol error for that connection, which is closed.
    let (mut amf, _) = rtmp_handshake(weir.rtmp.unwrap());
    amf.write_all(&[0x06, 0, 0, 0x58, 0, 0, 0, 0x14, 0, 0, 0, 0])
        .unwrap();
    assert!(
        closed_by_server(&mut amf, Duration::from_secs(10)),
        "a malformed AMF0 command left the connection open"
    );
    wait_for(
        "the protocol error in the log",
        Duration::from_secs(5),
        || weir.log().contains("malformed RTMP").then_some(()),
    );

    // The good publisher kept producing segments through all of it.
    let n = segment_count(&weir);
    wait_for(
        "a new segment from the good publisher",
        Duration::from_secs(15),
        || (segment_count(&weir) > n).then_some(()),
    );

    // Malformed or unknown paths are 404s, at the origin and the edge.
    for addr in [weir.origin.unwrap(), weir.edge] {
        for path in [
            "/live/../../etc/passwd",
            "/live/it/../../../etc/passwd",
            "/live/nosuch/master.m3u8",
            "/live/it/source/zz/1.m4s",
        ] {
            let status = raw_status(addr, path);
            assert!(status.contains(" 404 "), "{addr}{path}: {status}");
        }
    }
    let _ = good.kill();
    let _ = good.wait();
}

#[test]
fn a_publisher_above_the_events_max_ingest_bitrate_is_dropped() {
    // The clip re-encoded at 2 500 kbit/s, published in real time to an event that allows
    // 1 000 kbit/s: dropped once 5 s have been measured, well before the 10.6 s clip ends.
    let weir = Weir::serve(
        "[[events]]\nid = \"small\"\nstream_key = \"small-key-0001\"\nladder = \"passthrough\"\nmax_ingest_kbps = 1000\n",
    );
    let file = flv(BBB, 2, true);
    let (ok, _) = finish(
        publish(&file, &weir.publish_url("small-key-0001"), true),
        Duration::from_secs(60),
    );
    assert!(!ok, "ffmpeg published the whole clip");
    wait_for("the drop to be logged", Duration::from_secs(10), || {
        weir.log().contains("above the event's limit").then_some(())
    });
    let dropped = metric(&weir, "weir_ingest_dropped_total", r#"reason="bitrate""#);
    assert_eq!(dropped, 1.0);
    // What was published before the drop stays listed and playable.
    let p = media_playlist(&weir.origin_url("/live/small/source/index.m3u8"));
    assert!(!p.segments.is_empty());
    // The event at the default limit takes the same feed.
    let (ok, err) = finish(
        publish(&file, &weir.publish_url(STREAM_KEY), false),
        Duration::from_secs(60),
    );
    assert!(ok, "{err}");
}
