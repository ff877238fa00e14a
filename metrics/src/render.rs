//! Merging Prometheus text expositions into one (text format 0.0.4): a metric family's
//! `# HELP` and `# TYPE` once, then all of its samples from every exposition together, as the
//! format requires (a family's lines may not be split).

use std::collections::HashMap;

/// One family's lines.
#[derive(Default)]
struct Family<'a> {
    help: Option<&'a str>,
    kind: Option<&'a str>,
    samples: Vec<&'a str>,
}

/// The family a sample line belongs to when no `# TYPE` came before it: its metric name.
fn sample_name(line: &str) -> &str {
    let end = line.find(['{', ' ']).unwrap_or(line.len());
    &line[..end]
}

/// `texts` (each a whole exposition, as metrics-exporter-prometheus renders one) as one
/// exposition: families in the order they first appear, each followed by a blank line.
pub(crate) fn merge(texts: &[String]) -> String {
    if let [one] = texts {
        return one.clone();
    }
    let mut order: Vec<&str> = Vec::new();
    let mut families: HashMap<&str, Family<'_>> = HashMap::new();
    for text in texts {
        let mut current: Option<&str> = None;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (name, slot) = if let Some(rest) = line.strip_prefix("# HELP ") {
                (rest.split(' ').next().unwrap_or(rest), Slot::Help)
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                (rest.split(' ').next().unwrap_or(rest), Slot::Kind)
            } else if line.starts_with('#') {
                continue;
            } else {
                (current.unwrap_or_else(|| sample_name(line)), Slot::Sample)
            };
            if slot != Slot::Sample {
                current = Some(name);
            }
            let f = families.entry(name).or_insert_with(|| {
                order.push(name);
                Family::default()
            });
            match slot {
                Slot::Help => {
                    f.help.get_or_insert(line);
                }
                Slot::Kind => {
                    f.kind.get_or_insert(line);
                }
                Slot::Sample => f.samples.push(line),
            }
        }
    }
    let mut out = String::new();
    for name in order {
        let f = &families[name];
        for line in f.help.iter().chain(&f.kind).chain(&f.samples) {
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

#[derive(PartialEq, Eq)]
enum Slot {
    Help,
    Kind,
    Sample,
}
