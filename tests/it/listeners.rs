//! The HTTP listeners at CDN strength: slowloris connections closed at the header timeout
//! while viewers are served, connection caps (total and per address) answered with 503, and
//! the edge over HTTPS with HTTP/2 (ALPN) and over h2c, its certificate replaced on disk while
//! a viewer plays; `weir serve` with its origin over TLS for edges elsewhere.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::support::*;

/// A TCP connection to `to` from local address `from` (any 127.0.0.x: the loopback
/// network is all ours).
fn connect_from(from: IpAddr, to: SocketAddr) -> TcpStream {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let s = tokio::net::TcpSocket::new_v4().unwrap();
            s.bind(SocketAddr::new(from, 0)).unwrap();
            s.connect(to).await.unwrap().into_std().unwrap()
        })
}

/// What the server answers on `s` (up to its close, or 20 s).
fn answer(s: &mut TcpStream) -> String {
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
        if out.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn raise_file_limit() {
    rlimit::increase_nofile_limit(8_192).expect("raise the open-file limit");
}

#[test]
fn slowloris_connections_are_closed_at_the_header_timeout_while_viewers_are_served() {
    // 2,000 connections at once keep both cores busy for a moment: not beside a timed test.
    let _slot = transcode_slot();
    raise_file_limit();
    let weir = Weir::serve(
        "[edge.http]\nheader_read_timeout_ms = 2000\nmax_connections = 5000\nmax_connections_per_ip = 0\n",
    );
    let (ok, err) = finish(
        publish(&flv(BBB, 1, true), &weir.publish_url(STREAM_KEY), false),
        Duration::from_secs(60),
    );
    assert!(ok, "{err}");
    let media = weir.edge_url("/live/it/source/index.m3u8");
    let playlist = media_playlist(&media);
    let started = Instant::now();
    let mut slow: Vec<TcpStream> = (0..2_000)
        .map(|_| {
            let mut s = TcpStream::connect(weir.edge).unwrap();
            s.write_all(b"GET /live/it/master.m3u8 HTTP/1.1\r\nHost: edge\r\nX-Slow: 1")
                .unwrap();
            s
        })
        .collect();
    // A viewer is served while 2,000 connections hold half a request each.
    for s in &playlist.segments {
        let f = get(&weir.edge_url(&format!("/live/it/source/{}", s.uri)));
        assert_eq!(f.status, 200);
    }
    let still = slow.iter_mut().map(closed_by_peer).filter(|c| !c).count();
    assert_eq!(still, 0, "half-sent requests still open after 20 s");
    assert!(
        started.elapsed() >= Duration::from_millis(1_500),
        "closed before the header timeout ({:?})",
        started.elapsed()
    );
    assert_eq!(get(&media).status, 200, "the edge serves on");
}

#[test]
fn connection_caps_answer_503_at_their_limit() {
    let weir = Weir::serve(
        "[edge.http]\nheader_read_timeout_ms = 60000\nmax_connections = 40\nmax_connections_per_ip = 20\n",
    );
    let here: IpAddr = "127.0.0.1".parse().unwrap();
    let other: IpAddr = "127.0.0.2".parse().unwrap();
    let third: IpAddr = "127.0.0.3".parse().unwrap();
    let request = b"GET /live/nope/master.m3u8 HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n";
    let idle: Vec<TcpStream> = (0..20).map(|_| connect_from(here, weir.edge)).collect();
    // The 21st from one address: 503.
    let mut over = connect_from(here, weir.edge);
    let a = answer(&mut over);
    assert!(a.starts_with("HTTP/1.1 503"), "{a:?}");
    // Another address is served.
    let mut s = connect_from(other, weir.edge);
    s.write_all(request).unwrap();
    let a = answer(&mut s);
    assert!(a.starts_with("HTTP/1.1 404"), "{a:?}");
    drop(s);
    // The total cap: 20 + 20, then a third address gets 503.
    let more: Vec<TcpStream> = (0..20).map(|_| connect_from(other, weir.edge)).collect();
    let a = wait_for("the total cap", Duration::from_secs(10), || {
        let a = answer(&mut connect_from(third, weir.edge));
        a.starts_with("HTTP/1.1 503").then_some(a)
    });
    assert!(a.contains("Retry-After"), "{a:?}");
    // Slots come back when connections close.
    drop(idle);
    let a = wait_for("a freed slot", Duration::from_secs(10), || {
        let mut s = connect_from(here, weir.edge);
        s.write_all(request).ok()?;
        let a = answer(&mut s);
        a.starts_with("HTTP/1.1 404").then_some(a)
    });
    assert!(a.contains("not found") || a.contains("404"));
    drop(more);
    assert!(
        metric(
            &weir,
            "weir_http_connections_refused_total",
            "listener=\"edge\""
        ) >= 2.0
    );
}

/// curl `args` on `url`: (HTTP version, status, the certificate subject from -v).
fn curl(args: &[&str], url: &str) -> (String, u16, String) {
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-k",
            "-v",
            "-o",
            "/dev/null",
            "-m",
            "20",
            "-w",
            "%{http_version} %{http_code}",
        ])
        .args(args)
        .arg(url)
        .output()
        .expect("run curl");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (version, code) = stdout.split_once(' ').unwrap_or(("", "0"));
    let subject = String::from_utf8_lossy(&out.stderr)
        .lines()
        .find_map(|l| l.trim().strip_prefix("*  subject: ").map(String::from))
        .unwrap_or_default();
    (
        version.to_string(),
        code.trim().parse().unwrap_or(0),
        subject,
    )
}

#[test]
fn the_edge_speaks_http2_over_tls_and_h2c_and_reloads_its_certificate() {
    let dir = scratch_dir();
    let (cert, key) = certificate(&dir, "first.example");
    let live = dir.join("live.crt");
    let live_key = dir.join("live.key");
    std::fs::copy(&cert, &live).unwrap();
    std::fs::copy(&key, &live_key).unwrap();
    let weir = Weir::serve(&format!(
        "[edge.http]\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
        live.display(),
        live_key.display()
    ));
    let mut publisher = publish(&flv(BBB, 6, true), &weir.publish_url(STREAM_KEY), true);
    let https = format!("https://{}", weir.edge);
    let master = format!("{https}/live/it/master.m3u8");
    wait_for("the master over HTTPS", Duration::from_secs(30), || {
        (curl(&["--http2"], &master).1 == 200).then_some(())
    });
    // HTTP/2 by ALPN for every kind of object; HTTP/1.1 when the client asks for it.
    let text = std::process::Command::new("curl")
        .args([
            "-s",
            "-k",
            "--http2",
            &format!("{https}/live/it/source/index.m3u8"),
        ])
        .output()
        .unwrap()
        .stdout;
    let text = String::from_utf8_lossy(&text).into_owned();
    let segment = text
        .lines()
        .find(|l| !l.starts_with('#') && !l.is_empty())
        .expect("a segment listed");
    for path in [
        "/live/it/master.m3u8",
        "/live/it/source/index.m3u8",
        &format!("/live/it/source/{segment}"),
    ] {
        let (version, status, subject) = curl(&["--http2"], &format!("{https}{path}"));
        assert_eq!((version.as_str(), status), ("2", 200), "{path}");
        assert!(subject.contains("first.example"), "{subject}");
    }
    assert_eq!(curl(&["--http1.1"], &master).0, "1.1");
    // h2c (prior knowledge) on a plain listener: the origin's.
    let (version, status, _) = curl(
        &["--http2-prior-knowledge"],
        &weir.origin_url("/live/it/master.m3u8"),
    );
    assert_eq!((version.as_str(), status), ("2", 200));

    // A viewer plays over HTTPS while the certificate is replaced on disk.
    let viewer = std::thread::spawn({
        let master = master.clone();
        move || play_live(&master, 8.0)
    });
    let (cert2, key2) = certificate(&dir, "second.example");
    let tmp = dir.join("swap.tmp");
    std::fs::copy(&key2, &tmp).unwrap();
    std::fs::rename(&tmp, &live_key).unwrap();
    std::fs::copy(&cert2, &tmp).unwrap();
    std::fs::rename(&tmp, &live).unwrap();
    wait_for("the new certificate", Duration::from_secs(20), || {
        curl(&["--http2"], &master)
            .2
            .contains("second.example")
            .then_some(())
    });
    let (played, err) = viewer.join().unwrap();
    assert!(
        played,
        "the viewer over HTTPS failed across the reload: {err}"
    );
    assert!(weir.log().contains("TLS certificate reloaded"));
    let _ = publisher.kill();
    let _ = publisher.wait();
}

/// `weir serve` with TLS on the origin listener: edges elsewhere reach it over HTTPS with
/// HTTP/2 and the certificate checked (`[edge] upstream_ca_file`), while the in-process edge
/// keeps serving (it reaches the origin on a plain loopback listener of its own).
#[test]
fn weir_serve_runs_its_origin_over_tls_for_edges_elsewhere() {
    let dir = scratch_dir();
    let (cert, key) = certificate(&dir, "origin.example");
    let weir = Weir::serve(&format!(
        "[origin.http]\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
        cert.display(),
        key.display()
    ));
    let mut publisher = publish(&flv(BBB, 8, true), &weir.publish_url(STREAM_KEY), true);
    // The in-process edge, over plain HTTP.
    let local_master = weir.edge_url("/live/it/master.m3u8");
    wait_for(
        "the master at the in-process edge",
        Duration::from_secs(30),
        || {
            let r = get(&local_master);
            (r.status == 200).then_some(r)
        },
    );
    assert!(
        !weir.log().contains("origin listener failed"),
        "{}",
        weir.log()
    );
    // The origin itself: HTTPS with HTTP/2 by ALPN, its certificate the configured one.
    let origin = format!("https://{}", weir.origin.unwrap());
    let (version, status, subject) = curl(&["--http2"], &format!("{origin}/live/it/master.m3u8"));
    assert_eq!((version.as_str(), status), ("2", 200));
    assert!(subject.contains("origin.example"), "{subject}");
    // Plain HTTP on the TLS port gets no playlist.
    assert_ne!(
        curl(&[], &weir.origin_url("/live/it/master.m3u8")).1,
        200,
        "plain HTTP answered on the TLS origin port"
    );
    // An edge elsewhere that trusts the origin's certificate: ffmpeg plays through it.
    let remote = crate::fake_upstream::edge_with_sections(
        &origin,
        &format!("upstream_ca_file = \"{}\"", cert.display()),
        "",
    );
    let remote_master = remote.edge_url("/live/it/master.m3u8");
    let master = get(&remote_master);
    assert_eq!(master.status, 200, "{}", remote.log());
    assert_eq!(master.body, get(&local_master).body);
    let (played, err) = play_live(&remote_master, 3.0);
    assert!(played, "ffmpeg through an edge of the TLS origin: {err}");
    // One that does not trust it gets no content.
    let untrusting = crate::fake_upstream::edge_with_sections(&origin, "", "");
    assert_eq!(
        get(&untrusting.edge_url("/live/it/master.m3u8")).status,
        502,
        "an edge must not accept an origin certificate it does not trust"
    );
    let _ = publisher.kill();
    let _ = publisher.wait();
}

#[test]
fn sigterm_lets_an_in_flight_download_finish_and_refuses_new_connections() {
    let mut weir = Weir::serve("");
    let url = publish_once_first_segment(&weir);
    let size = get(&url).body.len();
    assert!(
        size > 200_000,
        "a segment big enough to take a while: {size}"
    );
    // A slow viewer: about 2 s for the segment.
    let rate = (size / 2).to_string();
    let download = std::process::Command::new("curl")
        .args([
            "-s",
            "--limit-rate",
            &rate,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download}",
            &url,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once its response is under way (counted when it starts), stop weir.
    let sent = |w: &Weir| metric(w, "weir_edge_bytes_sent_total", "kind=\"segment\"");
    wait_for("the download under way", Duration::from_secs(10), || {
        (sent(&weir) >= 2.0 * size as f64).then_some(())
    });
    weir.terminate();
    let out = download.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        text,
        format!("200 {size}"),
        "the in-flight response finished whole"
    );
    let status = weir
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("weir did not exit by itself:\n{}", weir.log()));
    assert!(status.success(), "{status:?}\n{}", weir.log());
    assert!(
        TcpStream::connect(weir.edge).is_err(),
        "no new connections after the stop"
    );
}

#[test]
fn an_idle_http2_connection_is_closed_at_the_idle_timeout() {
    let weir = Weir::serve("[edge.http]\nidle_timeout_ms = 1000\n");
    // An h2c client (prior knowledge) that opens the connection and asks for nothing.
    let mut s = TcpStream::connect(weir.edge).unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).unwrap(); // an empty SETTINGS frame
                                                        // Without the idle timeout nothing would come for 20 s (the first keep-alive ping), and
                                                        // the connection would live on; with it, weir closes the connection after a second.
    let started = Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 4096];
    let mut settings_seen = false;
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => settings_seen |= n >= 9 && buf[3] == 4,
            Err(e) => {
                break !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )
            }
        }
        if started.elapsed() > Duration::from_secs(10) {
            break false;
        }
    };
    assert!(settings_seen, "weir spoke HTTP/2");
    assert!(
        closed,
        "an idle HTTP/2 connection was still open after 10 s"
    );
    assert!(metric(&weir, "weir_http_idle_closed_total", "") >= 1.0);
}
