//! hls.js in Debian's headless Chromium (driven by playwright-core) plays the default ladder
//! live through the edge, and forced level switches happen without a stall.

use std::process::Command;
use std::time::Duration;

use crate::support::*;

/// Seconds the player plays: long enough for a switch down and a switch back up.
const PLAY_SECS: u32 = 14;

#[test]
fn hls_js_plays_the_ladder_and_switches_levels_without_stalling() {
    let _slot = transcode_slot();
    let weir = Weir::serve_ladder("", "default");
    // 4 plays of the clip in real time: the stream stays live while the player runs.
    let file = flv(BBB, 4, false);
    let mut publisher = publish(&file, &weir.publish_url(STREAM_KEY), true);
    let master_url = weir.edge_url("/live/it/master.m3u8");
    wait_for("the master playlist", Duration::from_secs(20), || {
        try_get(&master_url)
            .ok()
            .filter(|f| f.status == 200)
            .map(|_| ())
    });

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/player/play.mjs");
    let out = Command::new("node")
        .arg(&script)
        .arg(&master_url)
        .arg(PLAY_SECS.to_string())
        .output()
        .expect(
            "run node (scripts/setup.sh installs it, with chromium and the player's npm packages)",
        );
    let _ = publisher.kill();
    let _ = publisher.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
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
    let heights: Vec<u64> = report["levels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["height"].as_u64().unwrap())
        .collect();
    assert_eq!(heights, [360, 480, 720], "{report}");
    assert!(report["errors"].as_array().unwrap().is_empty(), "{report}");
    assert_eq!(report["stalls"], 0, "a stall: {report}");
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
        played >= f64::from(PLAY_SECS) - 5.0,
        "played only {played} s: {report}"
    );
}
