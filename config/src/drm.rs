//! DRM settings (`[drm]`) for events with `encryption = "cbcs"`: which key systems name their
//! keys, and the commercial DRM key provider (SPEKE v2.0) the keys come from.
//!
//! ```toml
//! [drm]
//! clearkey = false            # default: true without a key provider, false with one
//! [drm.speke]
//! url = "https://keys.example.com/speke/v2.0/copyProtection"
//! systems = ["widevine", "playready", "fairplay"]
//! headers = { "X-Api-Key" = "..." }   # sent with every request, never logged
//! timeout_ms = 5000
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::ConfigError;

/// The DRM systems a key provider can be asked for, by their configuration names.
pub const DRM_SYSTEMS: [&str; 3] = ["widevine", "playready", "fairplay"];

/// DRM settings (`[drm]`).
#[derive(Clone, Debug, Default)]
pub struct DrmSettings {
    /// Whether `cbcs` keys are also named for W3C ClearKey (`EXT-X-KEY` with
    /// `KEYFORMAT="org.w3.clearkey"`, a ClearKey `pssh`) and licensed by the edge's
    /// `/licence/clearkey/{event}` to admitted viewers. Default: on without a key provider,
    /// off with one (the key then reaches only the DRMs' licence servers).
    pub clearkey: bool,
    /// The DRM key provider, if `cbcs` keys come from one (`[drm.speke]`).
    pub speke: Option<SpekeSettings>,
}

/// A SPEKE v2.0 key provider (`[drm.speke]`).
#[derive(Clone, Debug)]
pub struct SpekeSettings {
    /// Its endpoint: an `https://` URL (or `http://` on loopback, for tests).
    pub url: String,
    /// The DRM systems asked for, by name ([`DRM_SYSTEMS`]): at least one, no repeats.
    pub systems: Vec<String>,
    /// Headers sent with every request (authentication: `Authorization`, `X-Api-Key`).
    pub headers: Vec<(String, HeaderSecret)>,
    /// Longest an exchange may take. Default 5 000 ms, 100..=60 000.
    pub timeout: Duration,
}

/// A header value that authenticates weir to the key provider. Its `Debug` prints nothing.
#[derive(Clone)]
pub struct HeaderSecret(String);

impl HeaderSecret {
    /// The value.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for HeaderSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HeaderSecret(<redacted>)")
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawDrm {
    clearkey: Option<bool>,
    speke: Option<RawSpeke>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpeke {
    url: String,
    systems: Vec<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    timeout_ms: Option<u64>,
}

impl RawDrm {
    pub(crate) fn validate(self) -> Result<DrmSettings, ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        let speke = match self.speke {
            None => None,
            Some(s) => {
                let loopback = ["http://127.", "http://localhost", "http://[::1]"];
                if !s.url.starts_with("https://") && !loopback.iter().any(|p| s.url.starts_with(p))
                {
                    return invalid(format!(
                        "drm.speke.url {:?}: an https:// URL (keys come back in the clear)",
                        s.url
                    ));
                }
                let mut systems: Vec<String> = Vec::new();
                for name in s.systems {
                    let name = name.to_ascii_lowercase();
                    if !DRM_SYSTEMS.contains(&name.as_str()) || systems.contains(&name) {
                        return invalid(format!(
                            "drm.speke.systems: {name:?} is not one of {DRM_SYSTEMS:?}, or repeated"
                        ));
                    }
                    systems.push(name);
                }
                if systems.is_empty() {
                    return invalid("drm.speke.systems: at least one".into());
                }
                for (name, value) in &s.headers {
                    if http_header_bad(name, value) {
                        return invalid(format!(
                            "drm.speke.headers: {name:?} is not a valid header"
                        ));
                    }
                }
                let timeout = s.timeout_ms.unwrap_or(5_000);
                if !(100..=60_000).contains(&timeout) {
                    return invalid("drm.speke.timeout_ms: 100..=60000".into());
                }
                Some(SpekeSettings {
                    url: s.url,
                    systems,
                    headers: s
                        .headers
                        .into_iter()
                        .map(|(n, v)| (n, HeaderSecret(v)))
                        .collect(),
                    timeout: Duration::from_millis(timeout),
                })
            }
        };
        Ok(DrmSettings {
            clearkey: self.clearkey.unwrap_or(speke.is_none()),
            speke,
        })
    }
}

/// Whether `name: value` cannot be an HTTP header (RFC 9110 §5.1 token name, visible ASCII
/// value).
fn http_header_bad(name: &str, value: &str) -> bool {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    name.is_empty()
        || !name.chars().all(token)
        || !value
            .chars()
            .all(|c| c == ' ' || c == '\t' || c.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<DrmSettings, ConfigError> {
        let raw: RawDrm = toml::from_str(toml_text).unwrap();
        raw.validate()
    }

    #[test]
    fn a_key_provider_turns_clearkey_off_unless_asked() {
        let none = parse("").unwrap();
        assert!(none.clearkey && none.speke.is_none());
        let speke = parse(
            "[speke]\nurl = \"https://k.example/speke\"\nsystems = [\"Widevine\", \"fairplay\"]\n\
             headers = { \"X-Api-Key\" = \"s3cret\" }",
        )
        .unwrap();
        assert!(!speke.clearkey);
        let s = speke.speke.unwrap();
        assert_eq!(s.systems, ["widevine", "fairplay"]);
        assert_eq!(s.timeout, Duration::from_secs(5));
        assert_eq!(s.headers[0].1.expose(), "s3cret");
        assert!(!format!("{s:?}").contains("s3cret"));
        let both = parse(
            "clearkey = true\n[speke]\nurl = \"http://127.0.0.1:9/\"\nsystems = [\"playready\"]",
        );
        assert!(both.unwrap().clearkey);
    }

    #[test]
    fn bad_key_provider_settings_are_refused_by_name() {
        for (text, field) in [
            ("[speke]\nurl = \"http://keys.example/\"\nsystems = [\"widevine\"]", "drm.speke.url"),
            ("[speke]\nurl = \"https://k/\"\nsystems = []", "drm.speke.systems"),
            ("[speke]\nurl = \"https://k/\"\nsystems = [\"primetime\"]", "drm.speke.systems"),
            ("[speke]\nurl = \"https://k/\"\nsystems = [\"widevine\", \"widevine\"]", "drm.speke.systems"),
            ("[speke]\nurl = \"https://k/\"\nsystems = [\"widevine\"]\nheaders = { \"a b\" = \"x\" }", "drm.speke.headers"),
            ("[speke]\nurl = \"https://k/\"\nsystems = [\"widevine\"]\ntimeout_ms = 0", "drm.speke.timeout_ms"),
        ] {
            match parse(text) {
                Err(ConfigError::Invalid(m)) => assert!(m.starts_with(field), "{m}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }
}
