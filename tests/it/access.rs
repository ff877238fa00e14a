//! Viewer access at the edge: signed tokens on every viewer URL (minted by `weir token`, and
//! by hand here from the documented format), playlists rewritten so token-unaware players
//! work, geo from the MaxMind test databases through trusted proxies only, the database
//! replaced on disk, the per-token viewer limit changed through the admin API, and the
//! cluster secret between a standalone edge and the origin.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::*;
use crate::tokens::{hand_token, unix_now, with_token};

const SECRET_1: &str = "it-token-secret-one-0123456789abcdef";
const SECRET_2: &str = "it-token-secret-two-0123456789abcdef";
const ADMIN: &str = "it-admin-token-0123456789";
const CLUSTER: &str = "it-cluster-secret-0123456789";

fn geo_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/geo")
        .join(name)
}

/// `weir token` with `args`: its stdout line.
fn weir_token(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("token")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "weir token {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A GET with curl from local address `from` (127.0.0.x) with extra headers: (status, body).
fn curl_from(from: &str, url: &str, headers: &[&str]) -> (u16, String) {
    let mut args = vec![
        "-s",
        "--interface",
        from,
        "-m",
        "20",
        "-w",
        "\n%{http_code}",
        url,
    ];
    for h in headers {
        args.extend(["-H", h]);
    }
    let out = std::process::Command::new("curl")
        .args(&args)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// Every URI of a playlist (URI lines and URI="..." attributes).
fn uris(playlist: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in playlist.lines() {
        if line.starts_with('#') {
            for part in line.split("URI=\"").skip(1) {
                out.push(part.split('"').next().unwrap().to_string());
            }
        } else if !line.trim().is_empty() {
            out.push(line.to_string());
        }
    }
    out
}

#[test]
fn tokens_and_geo_guard_every_viewer_url_and_playlists_carry_the_token() {
    let dir = scratch_dir();
    let geo_db = dir.join("geo.mmdb");
    std::fs::copy(geo_fixture("GeoIP2-Country-Test.mmdb"), &geo_db).unwrap();
    let config = format!(
        "[control]\nadmin_tokens = [\"{ADMIN}\"]\n\
         [access]\ntoken_keys = {{ k1 = \"{SECRET_1}\", k2 = \"{SECRET_2}\" }}\n\
         trusted_proxies = [\"127.0.0.2\"]\ngeoip_database = \"{}\"\n",
        geo_db.display()
    );
    let weir = Weir::serve_event(
        &config,
        "passthrough",
        "access = { require_token = true, geo_allow = [\"GB\", \"SE\", \"CN\"], geo_unknown = \"allow\" }",
    );
    let (ok, err) = finish(
        publish(&flv(BBB, 1, true), &weir.publish_url(STREAM_KEY), false),
        Duration::from_secs(60),
    );
    assert!(ok, "{err}");

    // `weir token` mints a token and prints the playable URL.
    let config_file = weir.config_path();
    let edge_base = weir.edge_url("");
    let url = weir_token(&[
        "--config",
        config_file.to_str().unwrap(),
        "--event",
        "it",
        "--ttl",
        "1h",
        "--key-id",
        "k1",
        "--base-url",
        &edge_base,
    ]);
    assert!(
        url.starts_with(&weir.edge_url("/live/it/master.m3u8?token=kid=k1~exp=")),
        "{url}"
    );
    let token = url.split_once("token=").unwrap().1.to_string();

    // The master and media playlists name every URI with the viewer's token.
    let master = get(&url);
    assert_eq!(master.status, 200, "{}", master.text());
    let master_text = master.text();
    let variants = uris(&master_text);
    assert!(!variants.is_empty());
    for u in &variants {
        assert!(u.ends_with(&format!("?token={token}")), "{u}");
    }
    let media_url = weir.edge_url(&format!("/live/it/{}", variants.last().unwrap()));
    let media = get(&media_url);
    assert_eq!(media.status, 200);
    let media_text = media.text();
    let objects = uris(&media_text);
    assert!(objects.len() > 3, "{media_text}");
    for u in &objects {
        assert!(u.ends_with(&format!("?token={token}")), "{u}");
    }
    // One shared cached copy: another viewer's token gets a HIT of the same playlist with
    // their token in it.
    let k2 = weir_token(&[
        "--config",
        config_file.to_str().unwrap(),
        "--event",
        "it",
        "--key-id",
        "k2",
        "--token-only",
    ]);
    let other = get(&weir.edge_url(&format!("/live/it/master.m3u8?token={k2}")));
    assert_eq!(other.status, 200);
    assert_eq!(other.header("x-cache"), Some("HIT"));
    assert_eq!(other.text().replace(&k2, &token), master_text);
    // Compressed for a viewer that accepts it, the token rewritten in before compression.
    let br = get_with(&url, &[("accept-encoding", "br")]);
    assert_eq!(br.header("content-encoding"), Some("br"));
    assert_eq!(decoded(&br), master_text.as_bytes());

    // ffmpeg, which knows nothing of tokens, plays the URL weir token printed.
    let (played, err) = play_live(&url, 4.0);
    assert!(played, "ffmpeg could not play with the token: {err}");

    // Every kind of viewer URL, without a valid token, is 403 with the reason.
    let base = media_url.rsplit_once('/').unwrap().0.to_string();
    let strip = |u: &str| u.split('?').next().unwrap().to_string();
    let attribute = |tag: &str| {
        media_text
            .lines()
            .filter(|l| l.starts_with(tag))
            .find_map(|l| l.split("URI=\"").nth(1))
            .map(|u| strip(u.split('"').next().unwrap()))
    };
    let segment = strip(
        media_text
            .lines()
            .find(|l| !l.starts_with('#') && !l.trim().is_empty())
            .unwrap(),
    );
    let init = attribute("#EXT-X-MAP:").unwrap();
    let part = attribute("#EXT-X-PART:");
    let mut urls = vec![
        weir.edge_url("/live/it/master.m3u8"),
        media_url.split('?').next().unwrap().to_string(),
        format!("{base}/{segment}"),
        format!("{base}/{init}"),
    ];
    urls.extend(part.map(|p| format!("{base}/{p}")));
    let now = unix_now();
    let tampered = token.replacen("exp=", "exp=9", 1);
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "token missing"),
        (
            hand_token("k1", SECRET_1, now - 1, "it", ""),
            "token expired",
        ),
        (
            hand_token("k1", SECRET_1, now + 600, "other", ""),
            "token for another event",
        ),
        (tampered, "token invalid"),
        (
            hand_token("k1", SECRET_1, now + 600, "it", "~ip=198.51.100.0/24"),
            "token bound to another address",
        ),
        (
            hand_token("k9", SECRET_1, now + 600, "it", ""),
            "token key unknown",
        ),
        (
            hand_token("k1", SECRET_2, now + 600, "it", ""),
            "token invalid",
        ),
    ];
    for u in &urls {
        for (t, reason) in &cases {
            let f = get(&if t.is_empty() {
                u.clone()
            } else {
                with_token(u, t)
            });
            assert_eq!(f.status, 403, "{u} with {t:?}");
            assert_eq!(f.text(), format!("forbidden: {reason}\n"), "{u}");
            assert_eq!(f.header("cache-control"), Some("no-store"));
        }
        // A hand-made token bound to the viewer's address, and the minted one, pass.
        let bound = hand_token("k2", SECRET_2, now + 600, "it", "~ip=127.0.0.1");
        assert_eq!(get(&with_token(u, &bound)).status, 200, "{u}");
        assert_eq!(get(&with_token(u, &token)).status, 200, "{u}");
    }
    assert!(
        metric(
            &weir,
            "weir_edge_access_denied_total",
            "event=\"it\",reason=\"token_missing\""
        ) >= urls.len() as f64
    );

    // Geo: the country of X-Forwarded-For, believed from the trusted proxy (127.0.0.2) only.
    let master_url = with_token(&weir.edge_url("/live/it/master.m3u8"), &token);
    let xff = |ip: &str| format!("X-Forwarded-For: {ip}");
    for (ip, from_proxy) in [
        ("81.2.69.142", 200),   // GB
        ("89.160.20.112", 200), // SE
        ("216.160.83.56", 403), // US
        ("2001:218::1", 403),   // JP, IPv6
        ("2001:480::1", 200),   // unknown in this database: geo_unknown = "allow"
        ("192.0.2.1", 200),     // unknown
    ] {
        let (status, body) = curl_from(
            "127.0.0.2",
            &master_url,
            &[&xff(&format!("10.9.9.9, {ip}"))],
        );
        assert_eq!(status, from_proxy, "{ip} via the proxy: {body}");
        if status == 403 {
            assert_eq!(body, "forbidden: not available in your region\n");
        }
        // The same header from an untrusted peer is ignored (127.0.0.1: unknown, admitted).
        let (status, _) = curl_from("127.0.0.1", &master_url, &[&xff(ip)]);
        assert_eq!(status, 200, "{ip} from an untrusted peer");
    }
    // The Forwarded header (RFC 7239) from the proxy, IPv6 in brackets.
    let (status, _) = curl_from(
        "127.0.0.2",
        &master_url,
        &["Forwarded: for=\"[2001:218::1]:443\""],
    );
    assert_eq!(status, 403);
    assert!(
        metric(
            &weir,
            "weir_edge_access_denied_total",
            "event=\"it\",reason=\"geo\""
        ) >= 3.0
    );

    // The database replaced on disk takes effect without a restart: GeoLite2's test database
    // places 2001:480::1 in the US.
    let tmp = dir.join("geo.mmdb.new");
    std::fs::copy(geo_fixture("GeoLite2-Country-Test.mmdb"), &tmp).unwrap();
    std::fs::rename(&tmp, &geo_db).unwrap();
    wait_for(
        "the replaced GeoIP database",
        Duration::from_secs(20),
        || {
            let (status, _) = curl_from("127.0.0.2", &master_url, &[&xff("2001:480::1")]);
            (status == 403).then_some(())
        },
    );
    assert!(weir.log().contains("GeoIP database reloaded"));
    let (status, _) = curl_from("127.0.0.2", &master_url, &[&xff("81.2.69.142")]);
    assert_eq!(status, 200, "GB is still admitted");

    // The admin API limits the token to one viewer: the next viewer with it gets 429 at
    // every edge within the policy's max-age.
    let patch = agent()
        .patch(&weir.origin_url("/admin/v1/events/it"))
        .header("Authorization", &format!("Bearer {ADMIN}"))
        .content_type("application/json")
        .send(r#"{"access": {"require_token": true, "max_viewers_per_token": 1}}"#)
        .unwrap();
    assert_eq!(patch.status(), 200);
    // A fresh token each try: the policy may change between the two viewers' requests.
    let mut fresh = 0;
    let shared_url = wait_for("the viewer limit applied", Duration::from_secs(20), || {
        fresh += 1;
        let shared = hand_token("k1", SECRET_1, now + 600 + fresh, "it", "");
        let url = with_token(&weir.edge_url("/live/it/master.m3u8"), &shared);
        assert_eq!(curl_from("127.0.0.1", &url, &[]).0, 200, "the first viewer");
        (curl_from("127.0.0.3", &url, &[]).0 == 429).then_some(url)
    });
    assert_eq!(
        curl_from("127.0.0.3", &shared_url, &[]).1,
        "forbidden: too many viewers for this token\n"
    );
    // The first viewer keeps watching; another token is not affected.
    assert_eq!(curl_from("127.0.0.1", &shared_url, &[]).0, 200);
    assert_eq!(curl_from("127.0.0.3", &master_url, &[]).0, 200);
    // An event the origin does not know is a 404, whatever the token.
    assert_eq!(
        get(&with_token(
            &weir.edge_url("/live/nope/master.m3u8"),
            &token
        ))
        .status,
        404
    );
}

#[test]
fn a_standalone_edge_reaches_internal_paths_only_with_the_cluster_secret() {
    let access = format!(
        "[access]\ncluster_secret = \"{CLUSTER}\"\ntoken_keys = {{ k1 = \"{SECRET_1}\" }}\n"
    );
    let origin = Weir::serve_event(&access, "passthrough", "access = { require_token = true }");
    let (ok, err) = finish(
        publish(&flv(BBB, 1, true), &origin.publish_url(STREAM_KEY), false),
        Duration::from_secs(60),
    );
    assert!(ok, "{err}");
    // Without the secret the origin refuses the internal paths.
    let policy = origin.origin_url("/internal/v1/events/it/access");
    assert_eq!(get(&policy).status, 401);
    let with_secret = agent()
        .get(&policy)
        .header("x-weir-cluster-secret", CLUSTER)
        .call()
        .unwrap();
    assert_eq!(with_secret.status().as_u16(), 200);

    let upstream = origin.origin_url("");
    let edge_with = |toml: &str| {
        let file = scratch_dir().join("edge.toml");
        std::fs::write(&file, toml).unwrap();
        spawn(&[
            "edge".into(),
            "--config".into(),
            file.display().to_string(),
            "--upstream".into(),
            upstream.clone(),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ])
    };
    let token = hand_token("k1", SECRET_1, unix_now() + 600, "it", "");
    let good = edge_with(&access);
    let master = get(&with_token(&good.edge_url("/live/it/master.m3u8"), &token));
    assert_eq!(master.status, 200, "{}", master.text());
    assert_eq!(get(&good.edge_url("/live/it/master.m3u8")).status, 403);
    // An edge without the secret cannot learn the policy: it serves nothing (502), never
    // the content unchecked.
    let bad = edge_with(&format!(
        "[access]\ntoken_keys = {{ k1 = \"{SECRET_1}\" }}\n"
    ));
    let f = get(&with_token(&bad.edge_url("/live/it/master.m3u8"), &token));
    assert_eq!(f.status, 502, "{}", f.text());
    wait_for("the edge's log line", Duration::from_secs(10), || {
        bad.log().contains("cluster_secret").then_some(())
    });
}
