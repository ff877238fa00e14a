//! The dashboard in headless Chromium: sign in, create an event, publish to it with the URL and
//! key the page shows, preview it; a screenshot, and no console error.

use std::process::Command;

use crate::support::*;

#[test]
fn an_operator_creates_publishes_and_previews_an_event_in_the_dashboard() {
    let _slot = transcode_slot();
    let token = "it-dashboard-token-0123456789";
    let weir = Weir::serve(&format!("[control]\nadmin_tokens = [\"{token}\"]\n"));
    let screenshot = scratch_dir().join("dashboard.png");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/player/dashboard.mjs");
    let out = Command::new("node")
        .arg(&script)
        .arg(weir.origin_url(""))
        .arg(token)
        .arg(flv(BBB, 1, true))
        .arg(&screenshot)
        .output()
        .expect("run node (scripts/setup.sh installs it, with chromium and playwright-core)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON report");
    assert!(report["errors"].as_array().unwrap().is_empty(), "{report}");
    let server = report["created"]["server"].as_str().unwrap();
    assert_eq!(
        server,
        format!("rtmp://127.0.0.1:{}/live", weir.rtmp.unwrap().port())
    );
    assert_eq!(report["live"], true, "{report}");
    assert!(report["played"].as_f64().unwrap() > 2.0, "{report}");
    let png = std::fs::read(&screenshot).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
    assert!(
        weir.log().contains("event created"),
        "the page created it through the API"
    );
}
