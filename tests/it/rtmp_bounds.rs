//! The RTMP listener's bounds: peers that complete the handshake and then trickle bytes are
//! dropped at the authorization deadline, a message declared larger than allowed before the
//! publish is refused before any of it is held, and one address cannot take every slot;
//! a real publisher keeps producing segments throughout.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn trickling_peers_are_dropped_at_the_auth_deadline_while_a_publisher_works() {
    // 200 handshakes at once keep the cores busy for a moment: not beside a timed test.
    let _slot = transcode_slot();
    let weir = Weir::serve("[rtmp]\nauth_timeout_ms = 3000\nmax_connections_per_ip = 300\n");
    let addr = weir.rtmp.unwrap();
    let mut publisher = publish(&flv(BBB, 4, true), &weir.publish_url(STREAM_KEY), true);
    let started = Instant::now();
    // 200 peers complete the handshake, then send a byte now and then (a chunk header that
    // never ends): each keeps its socket busy, none gets anywhere.
    let mut peers: Vec<TcpStream> = (0..200).map(|_| rtmp_handshake(addr).0).collect();
    let trickle = Instant::now();
    while trickle.elapsed() < Duration::from_millis(1_500) {
        for p in &mut peers {
            let _ = p.write_all(&[0x03]);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    // Meanwhile the real publisher's segments keep coming.
    let media = weir.edge_url("/live/it/source/index.m3u8");
    wait_for(
        "segments from the publisher",
        Duration::from_secs(30),
        || (try_get(&media).ok()?.status == 200).then_some(()),
    );
    let still = peers.iter_mut().map(closed_by_peer).filter(|c| !c).count();
    assert_eq!(
        still, 0,
        "trickling peers still connected 20 s after the deadline"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(2_500),
        "dropped before the auth deadline: {:?}",
        started.elapsed()
    );
    let before = media_playlist(&media)
        .segments
        .last()
        .map(|s| s.uri.clone());
    wait_for("a newer segment", Duration::from_secs(20), || {
        let now = media_playlist(&media)
            .segments
            .last()
            .map(|s| s.uri.clone());
        (now != before).then_some(())
    });
    assert!(weir.log().contains("publish not authorized in time"));
    let _ = publisher.kill();
    let _ = publisher.wait();
}

#[test]
fn an_oversized_message_before_the_publish_is_refused_and_one_address_cannot_take_every_slot() {
    let weir = Weir::serve("[rtmp]\nmax_connections_per_ip = 4\n");
    let addr = weir.rtmp.unwrap();
    // A 12-byte chunk header declaring a 16 MiB message: refused at once.
    let (mut s, _) = rtmp_handshake(addr);
    s.write_all(&[0x03, 0, 0, 0, 0xff, 0xff, 0xff, 0x14, 0, 0, 0, 0])
        .unwrap();
    assert!(closed_by_peer(&mut s));
    wait_for("the log line", Duration::from_secs(10), || {
        weir.log().contains("over the limit").then_some(())
    });
    // Four connections from one address hold every slot it may have; a fifth is closed.
    let held: Vec<TcpStream> = (0..4).map(|_| rtmp_handshake(addr).0).collect();
    let mut fifth = TcpStream::connect(addr).unwrap();
    let _ = fifth.write_all(&[3u8; 1537]);
    assert!(
        closed_by_peer(&mut fifth),
        "a fifth connection from one address"
    );
    drop(held);
    // With the slots back, a real publisher is accepted and packaged.
    let (ok, err) = finish(
        publish(&flv(BBB, 1, true), &weir.publish_url(STREAM_KEY), false),
        Duration::from_secs(60),
    );
    assert!(ok, "{err}");
    assert_eq!(get(&weir.edge_url("/live/it/master.m3u8")).status, 200);
}
