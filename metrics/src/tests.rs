use proptest::prelude::*;

use super::*;

fn lines_of(text: &str, needle: &str) -> usize {
    text.lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn an_events_label_sets_go_when_it_is_forgotten_and_the_rest_stay() {
    let recorder = Recorder::new();
    let h = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        metrics::counter!("weir_rtmp_connections_total").increment(3);
        for e in ["a", "b"] {
            metrics::counter!("weir_ingest_bytes_total", "event" => e, "input" => "primary")
                .increment(100);
            metrics::gauge!("weir_edge_viewers", "event" => e).set(2.0);
        }
        metrics::histogram!("weir_packager_publish_delay_seconds", "kind" => "part").record(0.04);
    });
    let text = h.render();
    assert_eq!(h.event_registries(), 4, "a and b, edge and the rest each");
    assert_eq!(
        lines_of(&text, "# TYPE weir_ingest_bytes_total counter"),
        1,
        "{text}"
    );
    assert_eq!(
        lines_of(&text, "# TYPE weir_edge_viewers gauge"),
        1,
        "{text}"
    );
    assert!(text.contains("weir_rtmp_connections_total 3"), "{text}");
    assert!(text.contains(r#"weir_ingest_bytes_total{event="a",input="primary"} 100"#));
    assert!(text.contains(r#"weir_edge_viewers{event="b"} 2"#));

    h.forget_edge_event("a");
    let text = h.render();
    assert!(!text.contains(r#"weir_edge_viewers{event="a"}"#), "{text}");
    assert!(text.contains(r#"weir_ingest_bytes_total{event="a",input="primary"} 100"#));

    h.forget_event("a");
    let text = h.render();
    assert_eq!(lines_of(&text, r#"event="a""#), 0, "{text}");
    assert_eq!(lines_of(&text, r#"event="b""#), 2, "{text}");
    assert!(text.contains("weir_rtmp_connections_total 3"));
    assert!(text.contains(r#"weir_packager_publish_delay_seconds{kind="part",quantile="0.5"}"#));
    assert_eq!(h.event_registries(), 2);

    // A late counter of the deleted event's last session is not kept...
    metrics::with_local_recorder(&recorder, || {
        metrics::counter!("weir_packager_timestamp_jumps_total", "event" => "a").increment(1);
    });
    assert_eq!(lines_of(&h.render(), r#"event="a""#), 0);
    assert_eq!(h.event_registries(), 2);
    // ...until an event of that id is created again.
    h.revive_event("a");
    metrics::with_local_recorder(&recorder, || {
        metrics::counter!("weir_packager_timestamp_jumps_total", "event" => "a").increment(1);
    });
    let text = h.render();
    assert!(
        text.contains(r#"weir_packager_timestamp_jumps_total{event="a"} 1"#),
        "{text}"
    );
    assert_eq!(h.event_registries(), 3);
}

#[test]
fn registries_stay_bounded_by_the_events_that_exist() {
    let recorder = Recorder::new();
    let h = recorder.handle();
    for n in 0..500 {
        let event = format!("ev-{n}");
        h.revive_event(&event);
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!("weir_ingest_frames_total", "event" => event.clone()).increment(1);
            metrics::gauge!("weir_edge_viewers", "event" => event.clone()).set(1.0);
        });
        if n >= 3 {
            h.forget_event(&format!("ev-{}", n - 3));
        }
    }
    assert_eq!(
        h.event_registries(),
        6,
        "the last three events, two scopes each"
    );
    assert!(h.inner.lock_tombstones().len() <= 500);
}

/// A family in generated expositions: its name, kind and sample label values.
fn families() -> impl Strategy<Value = Vec<(String, &'static str, Vec<u8>)>> {
    prop::collection::vec(
        (
            "weir_[a-z]{1,8}",
            prop::sample::select(vec!["counter", "gauge"]),
            prop::collection::vec(any::<u8>(), 1..6),
        ),
        1..8,
    )
    .prop_map(|mut v| {
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.dedup_by(|a, b| a.0 == b.0);
        v
    })
}

proptest! {
    /// Whatever families are spread over however many expositions, the merge gives each
    /// family's TYPE once, followed by all of its samples and only them.
    #[test]
    fn merged_families_are_whole(fams in families(), sources in 1usize..5, seed in any::<u64>()) {
        let mut texts = vec![String::new(); sources];
        let mut all = Vec::new();
        for (i, (name, kind, labels)) in fams.iter().enumerate() {
            // Each sample goes to some exposition; each exposition with samples of the family
            // writes its HELP and TYPE lines before them.
            let mut per: Vec<Vec<String>> = vec![Vec::new(); sources];
            for (j, l) in labels.iter().enumerate() {
                let line = format!("{name}{{event=\"e{j}\",v=\"{l}\"}} {l}");
                per[((seed >> ((i + j) % 60)) as usize + j) % sources].push(line.clone());
                all.push(line);
            }
            for (t, samples) in texts.iter_mut().zip(per) {
                if samples.is_empty() { continue; }
                t.push_str(&format!("# HELP {name} about {name}\n# TYPE {name} {kind}\n"));
                for s in samples { t.push_str(&s); t.push('\n'); }
                t.push('\n');
            }
        }
        let merged = render::merge(&texts);
        let lines: Vec<&str> = merged.lines().filter(|l| !l.is_empty()).collect();
        for (name, kind, labels) in &fams {
            let type_line = format!("# TYPE {name} {kind}");
            let at: Vec<usize> = lines.iter().enumerate().filter(|(_, l)| **l == type_line).map(|(i, _)| i).collect();
            prop_assert_eq!(at.len(), 1, "{}", merged);
            prop_assert_eq!(lines.iter().filter(|l| l.starts_with("# HELP ") && l.split(' ').nth(2) == Some(name)).count(), 1);
            let prefix = format!("{name}{{");
            let after: Vec<&&str> = lines[at[0] + 1..].iter().take_while(|l| !l.starts_with('#')).collect();
            prop_assert_eq!(after.len(), labels.len(), "{}", merged);
            prop_assert!(after.iter().all(|l| l.starts_with(&prefix)));
        }
        let mut got: Vec<&str> = lines.iter().copied().filter(|l| !l.starts_with('#')).collect();
        let mut want: Vec<&str> = all.iter().map(String::as_str).collect();
        got.sort_unstable();
        want.sort_unstable();
        prop_assert_eq!(got, want);
    }
}
