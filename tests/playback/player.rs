//! hls.js in Debian's headless Chromium (driven by playwright-core) plays live through the
//! edge: the default ladder with forced level switches, and, in low-latency mode, a
//! token-protected passthrough event (the token given in the master URL only) and the
//! ladder, using parts and blocking playlist reloads.

use std::process::Command;
use std::time::Duration;

use crate::support::*;

/// Seconds the ladder-switching player plays: long enough for a switch down and back up.
const SWITCH_SECS: u32 = 14;
/// Seconds each low-latency player plays.
const LL_SECS: u32 = 30;

/// Runs tests/player/play.mjs on `master_url` and returns its report, which must show no
/// error and no stall.
fn play(master_url: &str, seconds: u32, mode: &str) -> serde_json::Value {
    let report = play_through(master_url, seconds, mode);
    assert_eq!(report["stalls"], 0, "a stall: {report}");
    report
}

/// Runs tests/player/play.mjs on `master_url` and returns its report, which must show no
/// fatal error (stalls are the caller's to judge).
fn play_through(master_url: &str, seconds: u32, mode: &str) -> serde_json::Value {
    let report = run_player(master_url, seconds, mode, None);
    assert!(report["errors"].as_array().unwrap().is_empty(), "{report}");
    report
}

/// Runs tests/player/play.mjs on `master_url` (with EME and ClearKey licences from
/// `licence_url`, if any) and returns its report, errors included.
fn run_player(
    master_url: &str,
    seconds: u32,
    mode: &str,
    licence_url: Option<&str>,
) -> serde_json::Value {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/player/play.mjs");
    let mut node = Command::new("node");
    if let Some(l) = licence_url {
        node.env("CLEARKEY_LICENCE_URL", l);
    }
    let out = node
        .arg(&script)
        .arg(master_url)
        .arg(seconds.to_string())
        .arg(mode)
        .output()
        .expect(
            "run node (scripts/setup.sh installs it, with chromium and the player's npm packages)",
        );
    let stdout = String::from_utf8_lossy(&out.stdout);
    if std::env::var_os("PLAYER_DEBUG").is_some() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(
        out.status.success(),
        "the player failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON report");
    assert_eq!(
        report["supported"], true,
        "Chromium has no MSE/H.264: {report}"
    );
    report
}

fn wait_for_master(weir: &Weir) -> String {
    let master_url = weir.edge_url("/live/it/master.m3u8");
    wait_for("the master playlist", Duration::from_secs(30), || {
        try_get(&master_url)
            .ok()
            .filter(|f| f.status == 200)
            .map(|_| ())
    });
    master_url
}

#[test]
fn hls_js_plays_the_ladder_and_switches_levels_without_stalling() {
    let _slot = transcode_slot();
    let weir = Weir::serve_ladder("", "default");
    // 4 plays of the clip in real time: the stream stays live while the player runs.
    let file = flv(BBB, 4, false);
    let mut publisher = publish(&file, &weir.publish_url(STREAM_KEY), true);
    let master_url = wait_for_master(&weir);
    let report = play(&master_url, SWITCH_SECS, "switch");
    let _ = publisher.kill();
    let _ = publisher.wait();
    let heights: Vec<u64> = report["levels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["height"].as_u64().unwrap())
        .collect();
    assert_eq!(heights, [360, 480, 720], "{report}");
    // The forced switches: down to the lowest level, then up to the highest, in that order.
    let switches: Vec<u64> = report["switches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_u64().unwrap())
        .collect();
    let down = switches.iter().rposition(|l| *l == 0);
    let up = switches.iter().rposition(|l| *l == 2);
    assert!(
        matches!((down, up), (Some(d), Some(u)) if d < u),
        "no switch down and back up: {report}"
    );
    let played = report["played"].as_f64().unwrap();
    assert!(
        played >= f64::from(SWITCH_SECS) - 5.0,
        "played only {played} s: {report}"
    );
}

/// hls.js in low-latency mode plays `ladder` for [`LL_SECS`] through the edge without a
/// stall, loading parts and reloading playlists with blocking requests the origin saw. With
/// `token`, the event requires a signed token and is encrypted (AES-128, a new key every 3
/// segments), and the edge speaks HTTPS (HTTP/2 by ALPN, a self-signed certificate): the
/// player is given the token in the master URL only, and must carry it on every request (the
/// edge's playlist rewriting), keys included, over HTTP/2.
fn plays_low_latency(ladder: &str, file: &std::path::Path, token: bool) {
    let secret = "it-player-token-secret-0123456789abcdef";
    let (extra, event) = if token {
        let dir = scratch_dir();
        let tls = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        let (cert, key) = (dir.join("edge.crt"), dir.join("edge.key"));
        std::fs::write(&cert, tls.cert.pem()).unwrap();
        std::fs::write(&key, tls.signing_key.serialize_pem()).unwrap();
        (
            format!(
                "[access]\ntoken_keys = {{ p1 = \"{secret}\" }}\n\
                 [edge.http]\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
                cert.display(),
                key.display()
            ),
            "access = { require_token = true }\nencryption = \"aes-128\"\nkey_rotation_segments = 3",
        )
    } else {
        (String::new(), "")
    };
    let weir = Weir::serve_event(&extra, ladder, event);
    let mut publisher = publish(file, &weir.publish_url(STREAM_KEY), true);
    let master_url = if token {
        let base = format!("https://{}", weir.edge);
        let status = |url: &str| {
            let out = Command::new("curl")
                .args(["-s", "-k", "-o", "/dev/null", "-w", "%{http_code}", url])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        wait_for("no token, no playlist", Duration::from_secs(30), || {
            (status(&format!("{base}/live/it/master.m3u8")) == "403").then_some(())
        });
        let out = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["token", "--config"])
            .arg(weir.config_path())
            .args(["--event", "it", "--ttl", "10m", "--base-url", &base])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8(out.stdout).unwrap().trim().to_string();
        wait_for("the master playlist", Duration::from_secs(30), || {
            (status(&url) == "200").then_some(())
        });
        url
    } else {
        wait_for_master(&weir)
    };
    let blocking = r#"directives="blocking""#;
    let before = metric(&weir, "weir_origin_playlist_requests_total", blocking);
    let report = play(&master_url, LL_SECS, "ll");
    let at_origin = metric(&weir, "weir_origin_playlist_requests_total", blocking) - before;
    let _ = publisher.kill();
    let _ = publisher.wait();
    let requests = &report["requests"];
    if token {
        assert_eq!(
            requests["tokened"], requests["all"],
            "a request without the token: {report}"
        );
        assert_eq!(
            metric(
                &weir,
                "weir_edge_access_denied_total",
                r#"event="it",reason="token_missing""#
            ),
            1.0,
            "only the test's own tokenless request was refused: {report}"
        );
        assert!(
            requests["keys"].as_u64().unwrap() >= 2,
            "key rotations: {report}"
        );
        let protocols = report["protocols"].as_object().unwrap();
        assert!(
            !protocols.is_empty() && protocols.keys().all(|p| p == "h2"),
            "every request over HTTP/2: {report}"
        );
    }
    assert!(requests["blocking"].as_u64().unwrap() >= 10, "{report}");
    assert!(requests["parts"].as_u64().unwrap() >= 10, "{report}");
    assert!(
        at_origin >= 10.0,
        "the origin saw {at_origin} blocking reloads: {report}"
    );
    let played = report["played"].as_f64().unwrap();
    assert!(
        played >= f64::from(LL_SECS) - 8.0,
        "played only {played} s: {report}"
    );
    assert!(
        report["latency"]["samples"].as_u64().unwrap() > 0,
        "{report}"
    );
    eprintln!("{ladder}: hls.js low-latency report {report}");
}

#[test]
fn hls_js_plays_low_latency_passthrough_encrypted_with_a_token_over_https_h2() {
    // Chromium decoding needs the cores as much as a ladder does: one at a time.
    let _slot = transcode_slot();
    plays_low_latency("passthrough", &flv(BBB, 9, true), true);
}

#[test]
fn hls_js_plays_the_low_latency_ladder_through_the_edge() {
    let _slot = transcode_slot();
    plays_low_latency("default", &flv(BBB, 9, false), false);
}

/// Sends `signal` (e.g. `STOP`, `CONT`) to process `pid`.
fn signal(pid: u32, signal: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{signal} {pid}");
}

#[test]
fn hls_js_plays_on_through_a_3_s_origin_outage_on_stale_copies() {
    let _slot = transcode_slot();
    let origin = Weir::serve("[packager]\nwindow_segments = 10\n");
    let mut publisher = publish(&flv(BBB, 9, true), &origin.publish_url(STREAM_KEY), true);
    let edge = spawn(&[
        "edge".into(),
        "--upstream".into(),
        origin.origin_url(""),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--upstream-timeout-ms".into(),
        "1000".into(),
        "--metrics-listen".into(),
        "127.0.0.1:0".into(),
    ]);
    let master = wait_for_master(&edge);
    let player = std::thread::spawn(move || play_through(&master, 24, "plain"));
    // Once the player is fetching segments, the origin stops answering for 3 s (frozen, as
    // a hung origin is), then comes back.
    let metrics = format!("http://{}/metrics", edge.metrics.unwrap());
    let sample = |name: &str, label: &str| {
        get(&metrics)
            .text()
            .lines()
            .filter(|l| l.starts_with(name) && l.contains(label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    wait_for(
        "the player fetching segments",
        Duration::from_secs(30),
        || (sample("weir_edge_requests_total", "kind=\"segment\"") >= 2.0).then_some(()),
    );
    let pid = origin.pid();
    let outage = std::time::Instant::now();
    signal(pid, "STOP");
    // Meanwhile, once the cached master playlist expires, a request for it gets the last
    // good copy after the upstream timeout (1 s).
    let master = edge.edge_url("/live/it/master.m3u8");
    wait_for(
        "a stale master playlist",
        Duration::from_millis(2_500),
        || {
            let f = get(&master);
            assert_eq!(f.status, 200);
            (f.header("x-cache") == Some("STALE")).then_some(())
        },
    );
    std::thread::sleep(Duration::from_secs(3).saturating_sub(outage.elapsed()));
    signal(pid, "CONT");
    let report = player.join().unwrap();
    let _ = publisher.kill();
    let _ = publisher.wait();
    assert!(
        sample("weir_edge_stale_served_total", "") >= 1.0,
        "the edge served no stale copy: {report}"
    );
    // It played on (a stall or two while the origin was gone is allowed, a fatal error not)
    // and recovered: most of the 24 s were played.
    let played = report["played"].as_f64().unwrap();
    assert!(played >= 16.0, "played only {played} s: {report}");
    eprintln!("origin outage: hls.js report {report}");
}

/// hls.js with EME plays a `cbcs` event (W3C ClearKey, licences from the edge for the viewer's
/// token) in low-latency mode across key rotations, without a stall; with a licence URL
/// that carries no token, the licence is refused (403) and hls.js reports a key-system error
/// instead of hanging.
#[test]
fn hls_js_plays_a_cbcs_event_with_clearkey_licences_across_key_rotations() {
    let _slot = transcode_slot();
    let secret = "it-player-cbcs-secret-0123456789abcdef";
    let weir = Weir::serve_event(
        &format!("[access]\ntoken_keys = {{ c1 = \"{secret}\" }}\n"),
        "passthrough",
        "access = { require_token = true }\nencryption = \"cbcs\"\nkey_rotation_segments = 3",
    );
    let mut publisher = publish(&flv(BBB, 9, true), &weir.publish_url(STREAM_KEY), true);
    let token = crate::tokens::hand_token("c1", secret, crate::tokens::unix_now() + 600, "it", "");
    let master = crate::tokens::with_token(&weir.edge_url("/live/it/master.m3u8"), &token);
    wait_for("the master playlist", Duration::from_secs(30), || {
        (get(&master).status == 200).then_some(())
    });
    let licence = weir.edge_url("/licence/clearkey/it");
    let report = run_player(
        &master,
        LL_SECS,
        "ll",
        Some(&crate::tokens::with_token(&licence, &token)),
    );
    assert!(report["errors"].as_array().unwrap().is_empty(), "{report}");
    assert_eq!(report["stalls"], 0, "a stall: {report}");
    let played = report["played"].as_f64().unwrap();
    assert!(
        played >= f64::from(LL_SECS) - 8.0,
        "played only {played} s: {report}"
    );
    let issued = metric(
        &weir,
        "weir_edge_licences_total",
        r#"system="clearkey",outcome="issued""#,
    );
    assert!(
        issued >= 2.0 && report["requests"]["licences"].as_u64().unwrap() >= 2,
        "a licence per key period played ({issued} issued): {report}"
    );
    assert!(
        report["requests"]["parts"].as_u64().unwrap() >= 10,
        "{report}"
    );

    // No token on the licence URL: refused, and the player says so.
    let refused = run_player(&master, 12, "ll", Some(&licence));
    let errors = refused["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e.as_str().unwrap().starts_with("keySystemError/")),
        "{refused}"
    );
    assert!(refused["played"].as_f64().unwrap() < 1.0, "{refused}");
    assert!(
        metric(
            &weir,
            "weir_edge_access_denied_total",
            r#"event="it",reason="token_missing""#
        ) >= 1.0
    );
    let _ = publisher.kill();
    let _ = publisher.wait();
}
