//! The admin API: events created, changed, re-keyed, kicked and deleted while weir runs,
//! persisted across a restart, and bad requests refused without changing anything.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

const TOKEN: &str = "it-admin-token-0123456789";

fn control_toml() -> String {
    format!("[control]\nadmin_tokens = [\"{TOKEN}\"]\n")
}

/// One admin request: (status, JSON body). `token` None sends no `Authorization`.
fn admin(
    weir: &Weir,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> (u16, Value) {
    let url = weir.origin_url(path);
    let agent = agent();
    let auth = token.map(|t| format!("Bearer {t}"));
    let response = match (method, body) {
        ("GET", _) => {
            let mut r = agent.get(&url);
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.call()
        }
        ("DELETE", _) => {
            let mut r = agent.delete(&url);
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.call()
        }
        (m, body) => {
            let mut r = match m {
                "POST" => agent.post(&url),
                "PATCH" => agent.patch(&url),
                other => panic!("method {other}"),
            };
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.header("Content-Type", "application/json")
                .send(body.unwrap_or("{}"))
        }
    };
    let mut response = response.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"))
    };
    (status, value)
}

fn api(weir: &Weir, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    admin(weir, method, path, body, Some(TOKEN))
}

fn event_ids(weir: &Weir) -> Vec<String> {
    let (status, list) = api(weir, "GET", "/admin/v1/events", None);
    assert_eq!(status, 200, "{list}");
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

/// Waits until `key` publishes to `event` (its status shows the publisher packaged and a
/// segment from it) and returns the publisher.
fn publish_live(weir: &Weir, event: &str, key: &str) -> std::process::Child {
    let child = publish(&flv(BBB, 9, true), &weir.publish_url(key), true);
    let path = format!("/admin/v1/events/{event}/status");
    wait_for("the publisher packaged", Duration::from_secs(30), || {
        let (_, s) = api(weir, "GET", &path, None);
        let since = s["inputs"][0]["connected_at_ms"].as_u64()?;
        let segment = s["last_segment_at_ms"].as_u64()?;
        (s["live"] == json!(true) && segment > since).then_some(())
    });
    child
}

/// Whether a publish with `key` is refused (ffmpeg exits with an error).
fn refused(weir: &Weir, key: &str) -> bool {
    let (ok, _) = finish(
        publish(&flv(BBB, 1, true), &weir.publish_url(key), true),
        Duration::from_secs(30),
    );
    !ok
}

#[test]
fn events_are_managed_over_the_admin_api_and_survive_a_restart() {
    let mut weir = Weir::serve(&control_toml());

    // The token is required; a wrong or missing one is 401 with a JSON error, and counted.
    for token in [None, Some("not-the-token-0123456789")] {
        let (status, body) = admin(&weir, "GET", "/admin/v1/events", None, token);
        assert_eq!(status, 401);
        assert!(body["error"].is_string(), "{body}");
    }
    let unauthorized: f64 = ["missing", "wrong"]
        .iter()
        .map(|r| {
            metric(
                &weir,
                "weir_admin_unauthorized_total",
                &format!("reason=\"{r}\""),
            )
        })
        .sum();
    assert_eq!(unauthorized, 2.0);
    assert!(
        !weir.log().contains("not-the-token"),
        "tokens are never logged"
    );

    // The configuration file's event was seeded into the database.
    assert_eq!(event_ids(&weir), ["it"]);

    // A new event, with generated keys shown once.
    let (status, created) = api(
        &weir,
        "POST",
        "/admin/v1/events",
        Some(r#"{"id":"api-ev","title":"Match day","ladder":"passthrough","backup":true}"#),
    );
    assert_eq!(status, 201, "{created}");
    let key = created["stream_key"].as_str().unwrap().to_string();
    let backup_key = created["backup_stream_key"].as_str().unwrap().to_string();
    assert_eq!(created["event"]["has_backup_stream_key"], json!(true));
    let (status, shown) = api(&weir, "GET", "/admin/v1/events/api-ev", None);
    assert_eq!(status, 200);
    assert_eq!(shown["title"], json!("Match day"));
    let text = shown.to_string();
    assert!(
        !text.contains(&key) && !text.contains(&backup_key),
        "keys are shown only once: {text}"
    );

    // It accepts a publisher at once; its status shows the publisher.
    let mut publisher = publish_live(&weir, "api-ev", &key);
    let status = wait_for(
        "a measured ingest bit rate",
        Duration::from_secs(20),
        || {
            let (_, s) = api(&weir, "GET", "/admin/v1/events/api-ev/status", None);
            s["inputs"][0]["ingest_kbps"].is_u64().then_some(s)
        },
    );
    assert_eq!(status["live"], json!(true));
    let input = &status["inputs"][0];
    assert_eq!(input["role"], json!("primary"));
    assert_eq!(input["packaged"], json!(true));
    assert!(
        input["video_codec"].as_str().unwrap().starts_with("avc1."),
        "{input}"
    );
    assert_eq!(input["resolution"], json!("1280x720"));
    assert!(input["ingest_kbps"].as_u64().unwrap() > 500, "{input}");
    assert!(input["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    let renditions: Vec<&str> = status["renditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(renditions, ["source", "audio"]);

    // A change of the playlists' form waits for the event to be idle; a title does not.
    let (status, body) = api(
        &weir,
        "PATCH",
        "/admin/v1/events/api-ev",
        Some(r#"{"low_latency":false}"#),
    );
    assert_eq!(status, 409, "{body}");
    let (status, body) = api(
        &weir,
        "PATCH",
        "/admin/v1/events/api-ev",
        Some(r#"{"window_segments":10}"#),
    );
    assert_eq!(status, 409, "{body}");
    let (status, body) = api(
        &weir,
        "PATCH",
        "/admin/v1/events/api-ev",
        Some(r#"{"title":"Final"}"#),
    );
    assert_eq!((status, body["title"].clone()), (200, json!("Final")));

    // Rotating the key disconnects its publisher and refuses the old key.
    let (status, rotated) = api(
        &weir,
        "POST",
        "/admin/v1/events/api-ev/stream-keys/rotate",
        Some("{}"),
    );
    assert_eq!(status, 200, "{rotated}");
    let new_key = rotated["stream_key"].as_str().unwrap().to_string();
    assert_ne!(new_key, key);
    let (exited, _) = finish(publisher, Duration::from_secs(20));
    assert!(!exited, "the publisher of a rotated key is disconnected");
    assert!(refused(&weir, &key), "the old key is refused");
    assert!(weir.log().contains("revoked by the operator"));

    // The new key publishes; kick disconnects it (the key stays valid).
    publisher = publish_live(&weir, "api-ev", &new_key);
    let (status, kicked) = api(&weir, "POST", "/admin/v1/events/api-ev/kick", None);
    assert_eq!((status, kicked["kicked"].clone()), (200, json!(1)));
    let (exited, _) = finish(publisher, Duration::from_secs(20));
    assert!(!exited);

    // Bad requests are 4xx with a JSON error, and change nothing.
    let before = event_ids(&weir);
    for (method, path, body, want) in [
        ("POST", "/admin/v1/events", "{not json", 400),
        (
            "POST",
            "/admin/v1/events",
            r#"{"id":"x1","colour":"red"}"#,
            400,
        ),
        ("POST", "/admin/v1/events", r#"{"id":"a..b"}"#, 400),
        (
            "POST",
            "/admin/v1/events",
            r#"{"id":"x2","ladder":"nope"}"#,
            400,
        ),
        (
            "POST",
            "/admin/v1/events",
            r#"{"id":"x3","max_ingest_kbps":1}"#,
            400,
        ),
        (
            "POST",
            "/admin/v1/events",
            r#"{"id":"x6","window_segments":2}"#,
            400,
        ),
        ("POST", "/admin/v1/events", r#"{"id":"api-ev"}"#, 409),
        (
            "POST",
            "/admin/v1/events",
            &format!(r#"{{"id":"x4","stream_key":"{STREAM_KEY}"}}"#),
            409,
        ),
        (
            "PATCH",
            "/admin/v1/events/api-ev",
            r#"{"stream_key":"abcdefghij"}"#,
            400,
        ),
        ("GET", "/admin/v1/events/a..b", "", 400),
        ("GET", "/admin/v1/events/nope", "", 404),
        ("POST", "/admin/v1/events/nope/kick", "", 404),
    ] {
        let body = (!body.is_empty()).then_some(body);
        let (status, answer) = api(&weir, method, path, body);
        assert_eq!(status, want, "{method} {path} {body:?}: {answer}");
        assert!(answer["error"].is_string(), "{method} {path}: {answer}");
    }
    let huge = format!(r#"{{"id":"x5","description":"{}"}}"#, "d".repeat(100_000));
    let (status, answer) = api(&weir, "POST", "/admin/v1/events", Some(&huge));
    assert_eq!(status, 413, "{answer}");
    assert_eq!(event_ids(&weir), before, "refused requests changed nothing");

    // Deleting an event refuses its publishers.
    let (status, _) = api(
        &weir,
        "POST",
        "/admin/v1/events",
        Some(r#"{"id":"doomed","stream_key":"doomed-key-0001","ladder":"passthrough"}"#),
    );
    assert_eq!(status, 201);
    let (ok, err) = finish(
        publish(
            &flv(BBB, 1, true),
            &weir.publish_url("doomed-key-0001"),
            false,
        ),
        Duration::from_secs(60),
    );
    assert!(ok, "{err}");
    let playlist = media_playlist(&weir.origin_url("/live/doomed/source/index.m3u8"));
    let segment = weir.origin_url(&format!("/live/doomed/source/{}", playlist.segments[0].uri));
    assert_eq!(get(&segment).status, 200);
    let doomed_series = |text: &str| {
        text.lines()
            .filter(|l| l.contains(r#"event="doomed""#))
            .count()
    };
    let metrics = || get(&weir.origin_url("/metrics")).text();
    assert!(doomed_series(&metrics()) > 0, "its publisher was counted");
    let (status, _) = api(&weir, "DELETE", "/admin/v1/events/doomed", None);
    assert_eq!(status, 204);
    assert!(refused(&weir, "doomed-key-0001"));
    // Its metrics' label sets went with it (a process outlives many events); the
    // exposition still gives each family once.
    let text = metrics();
    assert_eq!(doomed_series(&text), 0, "{text}");
    let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
    let unique: std::collections::HashSet<&&str> = types.iter().collect();
    assert_eq!(types.len(), unique.len(), "{text}");
    assert!(
        text.contains("weir_ingest_connections_total"),
        "the other metrics stay: {text}"
    );
    // What it served leaves the origin's store with it.
    for url in [
        segment,
        weir.origin_url("/live/doomed/master.m3u8"),
        weir.origin_url("/live/doomed/source/index.m3u8"),
    ] {
        assert_eq!(get(&url).status, 404, "{url}");
    }

    // A token made through the API works, is listed without its secret, and outlives a restart.
    let (status, made) = api(&weir, "POST", "/admin/v1/tokens", Some(r#"{"name":"ci"}"#));
    assert_eq!(status, 201, "{made}");
    let made_token = made["token"].as_str().unwrap().to_string();
    let made_id = made["id"].as_str().unwrap().to_string();
    let (status, _) = admin(&weir, "GET", "/admin/v1/events", None, Some(&made_token));
    assert_eq!(status, 200);
    let (_, tokens) = api(&weir, "GET", "/admin/v1/tokens", None);
    assert!(tokens.to_string().contains(&made_id) && !tokens.to_string().contains(&made_token));
    let (status, _) = api(&weir, "DELETE", "/admin/v1/tokens/config-1", None);
    assert_eq!(
        status, 409,
        "the configuration file's tokens are removed there"
    );

    // After a restart the API's events are still there, with their keys.
    weir.restart();
    let (status, _) = admin(&weir, "GET", "/admin/v1/events", None, Some(&made_token));
    assert_eq!(status, 200, "the made token outlives the restart");
    let (status, _) = admin(
        &weir,
        "DELETE",
        &format!("/admin/v1/tokens/{made_id}"),
        None,
        Some(&made_token),
    );
    assert_eq!(status, 204);
    let (status, _) = admin(&weir, "GET", "/admin/v1/events", None, Some(&made_token));
    assert_eq!(status, 401, "a revoked token is refused");
    assert_eq!(event_ids(&weir), ["api-ev", "it"]);
    let (_, shown) = api(&weir, "GET", "/admin/v1/events/api-ev", None);
    assert_eq!(shown["title"], json!("Final"));
    let mut publisher = publish_live(&weir, "api-ev", &new_key);
    let _ = publisher.kill();
    let _ = publisher.wait();
}

#[test]
fn the_openapi_document_describes_the_api() {
    let weir = Weir::serve(&control_toml());
    let (status, doc) = admin(&weir, "GET", "/admin/v1/openapi.json", None, None);
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/admin/v1/events",
        "/admin/v1/events/{id}",
        "/admin/v1/events/{id}/status",
        "/admin/v1/events/{id}/stream-keys/rotate",
        "/admin/v1/events/{id}/kick",
    ] {
        assert!(paths.contains_key(p), "{p} missing from {:?}", paths.keys());
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert!(doc["components"]["schemas"]["CreateEvent"].is_object());
}

#[test]
fn an_ended_event_plays_to_its_end_and_starts_again() {
    let weir = Weir::serve(&control_toml());
    let publisher = publish_live(&weir, "it", STREAM_KEY);
    let origin = weir.origin_url("/live/it/source/index.m3u8");
    wait_for("three segments", Duration::from_secs(30), || {
        (get(&origin).text().matches("#EXTINF").count() >= 3).then_some(())
    });
    let (status, ended) = api(&weir, "POST", "/admin/v1/events/it/end", None);
    assert_eq!(
        (status, ended["ended"].clone()),
        (200, json!(true)),
        "{ended}"
    );
    let (ok, _) = finish(publisher, Duration::from_secs(20));
    assert!(!ok, "the publisher of an ended event is disconnected");

    // Every playlist ends; the edge passes the end on.
    for rendition in ["source", "audio"] {
        let url = weir.edge_url(&format!("/live/it/{rendition}/index.m3u8"));
        let text = wait_for("EXT-X-ENDLIST at the edge", Duration::from_secs(10), || {
            let t = get(&url).text();
            t.contains("#EXT-X-ENDLIST").then_some(t)
        });
        assert!(text.trim_end().ends_with("#EXT-X-ENDLIST"), "{text}");
        assert!(!text.contains("PRELOAD-HINT"), "{text}");
    }
    // A blocking request beyond the end is answered at once.
    let last = media_playlist(&origin);
    let next = last.media_sequence + last.segments.len() as u64 + 1;
    let started = std::time::Instant::now();
    let f = get(&format!("{origin}?_HLS_msn={next}&_HLS_part=0"));
    assert_eq!(f.status, 200);
    assert!(started.elapsed() < Duration::from_secs(2), "not held");

    // A player plays the finished event from its first listed segment to the end, and exits 0.
    let player = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(weir.edge_url("/live/it/master.m3u8"))
        .args(["-f", "null", "-"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (ok, err) = finish(player, Duration::from_secs(60));
    assert!(ok, "ffmpeg plays the ended event to its end: {err}");

    // Ended, it refuses publishers; started again, it takes them, after a discontinuity.
    assert!(refused(&weir, STREAM_KEY));
    let (status, started) = api(&weir, "POST", "/admin/v1/events/it/start", None);
    assert_eq!((status, started["ended"].clone()), (200, json!(false)));
    let mut publisher = publish_live(&weir, "it", STREAM_KEY);
    let p = media_playlist(&origin);
    assert!(!get(&origin).text().contains("#EXT-X-ENDLIST"));
    assert_eq!(p.segments.iter().filter(|s| s.discontinuity).count(), 1);
    let _ = publisher.kill();
    let _ = publisher.wait();
}

#[test]
fn schemathesis_finds_no_violation_of_the_openapi_document() {
    let _slot = transcode_slot();
    let weir = Weir::serve(&control_toml());
    let out = std::process::Command::new("python3")
        .args([
            "-m",
            "schemathesis.cli",
            "run",
            &weir.origin_url("/admin/v1/openapi.json"),
            "--header",
            &format!("Authorization: Bearer {TOKEN}"),
            "--checks",
            "all",
            "--max-examples",
            "60",
            "--seed",
            "20261123",
            "--workers",
            "1",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("schemathesis (scripts/setup.sh installs it)");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("passed"), "{report}");
    assert!(!weir.log().contains("panicked"), "{}", weir.log());
}

#[test]
fn viewers_and_cache_hits_at_the_edge_reach_the_status() {
    let weir = Weir::serve(&control_toml());
    let mut publisher = publish_live(&weir, "it", STREAM_KEY);
    let playlist = media_playlist(&weir.edge_url("/live/it/source/index.m3u8"));
    let segment = weir.edge_url(&format!("/live/it/source/{}", playlist.segments[0].uri));
    // Two players on one address, told apart by their user agents; the segment is fetched
    // four times, three of them from the cache.
    for agent in ["player-a", "player-b", "player-a", "player-b"] {
        let (ok, err) = run("curl", &["-sf", "-A", agent, "-o", "/dev/null", &segment]);
        assert!(ok, "{err}");
    }
    let status = wait_for("the edge's report", Duration::from_secs(20), || {
        let (_, s) = api(&weir, "GET", "/admin/v1/events/it/status", None);
        (s["viewers_total"].as_u64()? >= 2).then_some(s)
    });
    let edges = status["viewers"].as_array().unwrap();
    assert_eq!(edges.len(), 1, "{status}");
    let ratio = status["cache_hit_ratio"].as_f64().unwrap();
    assert!(ratio > 0.0 && ratio <= 1.0, "{status}");
    assert!(metric(&weir, "weir_edge_viewers", "event=\"it\"") >= 2.0);
    // Every part and segment published had its publish delay observed.
    for kind in ["part", "segment"] {
        let labels = format!("kind=\"{kind}\"");
        let count = metric(&weir, "weir_packager_publish_delay_seconds_count", &labels);
        let sum = metric(&weir, "weir_packager_publish_delay_seconds_sum", &labels);
        assert!(
            count >= 1.0 && sum > 0.0,
            "{kind}: count {count}, sum {sum}"
        );
    }
    let _ = publisher.kill();
    let _ = publisher.wait();
}

/// A throwaway PostgreSQL server on loopback (Debian's `postgresql` binaries), in a scratch
/// directory, stopped when dropped.
struct Postgres {
    server: std::process::Child,
    port: u16,
    /// The scratch directory holding the data directory (about 46 MB), removed on drop.
    dir: std::path::PathBuf,
}

impl Postgres {
    fn start() -> Postgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL is installed (scripts/setup.sh)")
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .find(|p| p.join("initdb").exists())
            .expect("an initdb under /usr/lib/postgresql/*/bin");
        let dir = scratch_dir().join("pg");
        std::fs::create_dir_all(&dir).unwrap();
        let uid = std::process::Command::new("id").arg("-u").output().unwrap();
        let root = String::from_utf8_lossy(&uid.stdout).trim() == "0";
        // PostgreSQL refuses to run as root: as root, run it as the postgres user.
        let command = |program: &std::path::Path| {
            if root {
                let mut c = std::process::Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(program);
                c
            } else {
                std::process::Command::new(program)
            }
        };
        if root {
            let (ok, err) = run("chown", &["postgres:postgres", dir.to_str().unwrap()]);
            assert!(ok, "{err}");
        }
        let data = dir.join("data");
        let out = command(&bin.join("initdb"))
            .args(["-A", "trust", "-U", "weir", "--no-sync", "-D"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = command(&bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args([
                "-p",
                &port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-k",
            ])
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pg = Postgres { server, port, dir };
        wait_for(
            "PostgreSQL to accept connections",
            Duration::from_secs(30),
            || {
                let out = std::process::Command::new(bin.join("createdb"))
                    .args([
                        "-h",
                        "127.0.0.1",
                        "-p",
                        &port.to_string(),
                        "-U",
                        "weir",
                        "weir",
                    ])
                    .output()
                    .ok()?;
                out.status.success().then_some(())
            },
        );
        pg
    }

    fn url(&self) -> String {
        format!("postgres://weir@127.0.0.1:{}/weir", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // The server runs under runuser as another user: stop it by its process group's
        // child (runuser forwards SIGTERM).
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.server.id().to_string()])
            .status();
        let _ = self.server.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn events_persist_in_postgresql() {
    let _slot = transcode_slot();
    let pg = Postgres::start();
    let mut weir = Weir::serve(&format!(
        "[control]\nadmin_tokens = [\"{TOKEN}\"]\ndatabase_url = \"{}\"\n",
        pg.url()
    ));
    assert_eq!(event_ids(&weir), ["it"], "seeded into PostgreSQL");
    let (status, created) = api(
        &weir,
        "POST",
        "/admin/v1/events",
        Some(r#"{"id":"pg-ev","ladder":"passthrough"}"#),
    );
    assert_eq!(status, 201, "{created}");
    let key = created["stream_key"].as_str().unwrap().to_string();
    let mut publisher = publish_live(&weir, "pg-ev", &key);
    let (status, rotated) = api(
        &weir,
        "POST",
        "/admin/v1/events/pg-ev/stream-keys/rotate",
        Some(r#"{"input":"primary"}"#),
    );
    assert_eq!(status, 200, "{rotated}");
    let new_key = rotated["stream_key"].as_str().unwrap().to_string();
    let (ok, _) = finish(publisher, Duration::from_secs(20));
    assert!(!ok, "the publisher of a rotated key is disconnected");
    assert!(refused(&weir, &key));

    weir.restart();
    assert_eq!(event_ids(&weir), ["it", "pg-ev"]);
    publisher = publish_live(&weir, "pg-ev", &new_key);
    let _ = publisher.kill();
    let _ = publisher.wait();
    let (status, _) = api(&weir, "DELETE", "/admin/v1/events/pg-ev", None);
    assert_eq!(status, 204);
    weir.restart();
    assert_eq!(event_ids(&weir), ["it"]);
}

#[test]
fn a_purge_drops_the_events_objects_from_every_edge_it_knows() {
    // The edge of `weir serve`, and a listed edge that is not there (port 9 refuses).
    let weir = Weir::serve(&format!(
        "{}edges = [\"http://127.0.0.1:9\"]\n",
        control_toml()
    ));
    let segment = publish_once_first_segment(&weir);
    let master = weir.edge_url("/live/it/master.m3u8");
    for url in [&segment, &master] {
        get(url);
        assert_eq!(get(url).header("x-cache"), Some("HIT"), "{url}");
    }
    let before = get(&segment).body;

    let (status, body) = api(&weir, "POST", "/admin/v1/events/it/purge", None);
    assert_eq!(status, 200, "{body}");
    let edges = body["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 2, "{body}");
    assert_eq!(edges[0]["edge"], "http://127.0.0.1:9");
    assert!(edges[0]["error"].is_string(), "{body}");
    let local = &edges[1];
    assert_eq!(local["edge"], format!("http://{}", weir.edge));
    assert!(local["purged"].as_u64().unwrap() >= 2, "{body}");

    // The next requests go to the origin again, and get the same objects.
    let again = get(&segment);
    assert_eq!(again.header("x-cache"), Some("MISS"));
    assert!(again.body == before);
    assert_eq!(get(&master).header("x-cache"), Some("MISS"));

    // An unknown event is 404; the edge's purge path wants the secret.
    assert_eq!(
        api(&weir, "POST", "/admin/v1/events/nosuch/purge", None).0,
        404
    );
    let direct = agent()
        .post(&weir.edge_url("/internal/v1/purge/it"))
        .send_empty()
        .unwrap();
    assert_eq!(direct.status().as_u16(), 404);
}

/// A purge reaches edges over HTTPS (`[control] ca_file` names the authority their
/// certificates chain to), and the TLS edge of `weir serve` itself in-process.
#[test]
fn a_purge_reaches_https_edges_and_the_tls_edge_of_weir_serve() {
    const CLUSTER: &str = "purge-over-tls-cluster-secret-42";
    let dir = scratch_dir();
    let (cert, key) = certificate(&dir, "edge.example");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let remote_url = format!("https://127.0.0.1:{port}");
    let tls = format!(
        "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let weir = Weir::serve(&format!(
        "{}edges = [\"{remote_url}\"]\nca_file = \"{}\"\n[access]\ncluster_secret = \"{CLUSTER}\"\n[edge.http]\n{tls}",
        control_toml(),
        cert.display()
    ));
    let edge_toml = dir.join("edge.toml");
    std::fs::write(
        &edge_toml,
        format!("[access]\ncluster_secret = \"{CLUSTER}\"\n[edge.http]\n{tls}"),
    )
    .unwrap();
    let remote = spawn(&[
        "edge".into(),
        "--config".into(),
        edge_toml.display().to_string(),
        "--upstream".into(),
        format!("http://{}", weir.origin.unwrap()),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
    ]);
    let (ok, err) = finish(
        publish(&flv(BBB, 1, true), &weir.publish_url(STREAM_KEY), false),
        Duration::from_secs(60),
    );
    assert!(ok, "{err}");
    // Both edges cache the master (over HTTPS, checked against the test CA).
    let local_url = format!("https://{}", weir.edge);
    for base in [&remote_url, &local_url] {
        let out = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(&cert)
            .arg(format!("{base}/live/it/master.m3u8"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{base}");
    }
    let (status, body) = api(&weir, "POST", "/admin/v1/events/it/purge", None);
    assert_eq!(status, 200, "{body}");
    let edges = body["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 2, "{body}");
    assert_eq!(edges[0]["edge"], remote_url.as_str());
    assert!(
        edges[0]["purged"].as_u64().unwrap() >= 1,
        "{body}\n{}",
        remote.log()
    );
    assert_eq!(edges[1]["edge"], local_url.as_str());
    assert!(edges[1]["purged"].as_u64().unwrap() >= 1, "{body}");
}
