//! Viewer access: the server-wide `[access]` settings (token signing keys, trusted proxies,
//! the GeoIP database, the cluster secret) and one event's policy (`[events.access]`, or
//! `access` in the admin API): signed tokens required or not, the countries it may be watched
//! from, and how many viewers may share one token.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// The header that carries the cluster secret on an edge's internal requests to the origin
/// (`/internal/...`).
pub const CLUSTER_SECRET_HEADER: &str = "x-weir-cluster-secret";

/// Server-wide viewer access settings (`[access]`), used by the edge, the origin and
/// `weir token`.
#[derive(Clone, Debug, Default)]
pub struct AccessSettings {
    /// The keys tokens are signed with, by key id. Several may be valid at once, so a key is
    /// rotated by adding the new one, minting with it, and removing the old one once its
    /// tokens have expired.
    pub token_keys: Vec<TokenKey>,
    /// Peers whose `X-Forwarded-For`/`Forwarded` headers the edge believes (load balancers,
    /// a CDN in front): CIDR blocks, IPv4 or IPv6. Empty by default: the socket peer is the
    /// viewer.
    pub trusted_proxies: Vec<IpNet>,
    /// A MaxMind GeoIP2/GeoLite2 Country or City database (`.mmdb`), re-read when the file
    /// changes. None by default: every viewer's country is unknown.
    pub geoip_database: Option<PathBuf>,
    /// The secret edges send the origin (`X-Weir-Cluster-Secret`) on its internal paths
    /// (event access policies, edge reports, content keys); from `cluster_secret` or the
    /// `WEIR_CLUSTER_SECRET` environment variable. None by default: those paths are open
    /// (the origin listens on loopback by default) and content keys are only handed to the
    /// edge in the same process.
    pub cluster_secret: Option<ClusterSecret>,
    /// Wraps the content keys the key store writes to disk (AES-256-GCM); from
    /// `key_encryption_key` or the `WEIR_KEY_ENCRYPTION_KEY` environment variable, 64 hex
    /// digits. None by default: a random one per run (keys on disk are then unreadable after
    /// a restart, which only matters for segments kept past it).
    pub key_encryption_key: Option<crate::KeyEncryptionKeyBytes>,
}

impl AccessSettings {
    /// The signing key with id `id`, if configured.
    pub fn token_key(&self, id: &str) -> Option<&TokenKey> {
        self.token_keys.iter().find(|k| k.id == id)
    }
}

/// One token signing key: an id (in every token it signs) and its HMAC-SHA256 secret. The
/// secret's `Debug` prints nothing.
#[derive(Clone)]
pub struct TokenKey {
    /// 1-32 of `[A-Za-z0-9_-]`.
    pub id: String,
    secret: String,
}

impl TokenKey {
    /// A key `id` with `secret`.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] if the id is not 1-32 of `[A-Za-z0-9_-]` or the secret is
    /// shorter than 32 characters (e.g. `openssl rand -hex 32`).
    pub fn new(id: &str, secret: &str) -> Result<TokenKey, ConfigError> {
        let id_ok = !id.is_empty()
            && id.len() <= 32
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !id_ok {
            return Err(ConfigError::Invalid(format!(
                "access.token_keys: key id {id:?} must be 1-32 of [A-Za-z0-9_-]"
            )));
        }
        if secret.trim().len() < 32 {
            return Err(ConfigError::Invalid(format!(
                "access.token_keys.{id}: the secret must have at least 32 characters"
            )));
        }
        Ok(TokenKey {
            id: id.to_string(),
            secret: secret.trim().to_string(),
        })
    }

    /// The secret's bytes (the HMAC key).
    pub fn secret(&self) -> &[u8] {
        self.secret.as_bytes()
    }
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenKey({:?}, <redacted>)", self.id)
    }
}

/// The cluster secret (see [`AccessSettings::cluster_secret`]): 16-256 visible ASCII
/// characters; compared in constant time; its `Debug` prints nothing.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSecret(String);

impl ClusterSecret {
    /// The secret `s`.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] if it is not 16-256 visible ASCII characters (it travels in
    /// an HTTP header).
    pub fn new(s: &str) -> Result<ClusterSecret, ConfigError> {
        if (16..=256).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic()) {
            Ok(ClusterSecret(s.to_string()))
        } else {
            Err(ConfigError::Invalid(
                "access.cluster_secret: 16-256 visible ASCII characters".into(),
            ))
        }
    }

    /// The secret, to send.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` is the secret, in time that does not depend on where they differ.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        self.0.len() == candidate.len() && bool::from(self.0.as_bytes().ct_eq(candidate))
    }
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(<redacted>)")
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawAccess {
    token_keys: BTreeMap<String, String>,
    trusted_proxies: Vec<String>,
    geoip_database: Option<String>,
    cluster_secret: Option<String>,
    key_encryption_key: Option<String>,
}

impl RawAccess {
    pub(crate) fn validate(self) -> Result<AccessSettings, ConfigError> {
        let token_keys = self
            .token_keys
            .iter()
            .map(|(id, secret)| TokenKey::new(id, secret))
            .collect::<Result<_, _>>()?;
        let trusted_proxies = self
            .trusted_proxies
            .iter()
            .map(|p| parse_cidr(p).ok_or_else(|| ConfigError::Invalid(format!(
                "access.trusted_proxies: {p:?} is not an address or CIDR block like 10.0.0.0/8 or 2001:db8::/32"
            ))))
            .collect::<Result<_, _>>()?;
        let cluster_secret = self
            .cluster_secret
            .or_else(|| std::env::var("WEIR_CLUSTER_SECRET").ok())
            .filter(|s| !s.is_empty())
            .map(|s| ClusterSecret::new(&s))
            .transpose()?;
        let key_encryption_key = self
            .key_encryption_key
            .or_else(|| std::env::var("WEIR_KEY_ENCRYPTION_KEY").ok())
            .filter(|s| !s.is_empty())
            .map(|s| crate::KeyEncryptionKeyBytes::from_hex(&s))
            .transpose()?;
        Ok(AccessSettings {
            token_keys,
            trusted_proxies,
            geoip_database: self.geoip_database.map(PathBuf::from),
            cluster_secret,
            key_encryption_key,
        })
    }
}

/// Parses `10.0.0.0/8`, `2001:db8::/32`, or a single address (a /32 or /128 block).
pub fn parse_cidr(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
        .map(|n| n.trunc())
}

/// What to do with a viewer whose country the GeoIP database does not know (a private
/// address, a new block, no database configured).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GeoUnknown {
    /// Admit them.
    Allow,
    /// Refuse them (403).
    Deny,
}

/// An event's access options as written (every field optional): `[events.access]` in the
/// file, `access` in the admin API, and what the origin tells edges
/// (`GET /internal/v1/events/{id}/access`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessOptions {
    /// Require a signed token on every viewer URL of the event (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_token: Option<bool>,
    /// Only viewers in these countries (ISO 3166-1 alpha-2 codes) may watch. An empty list
    /// is no list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geo_allow: Option<Vec<String>>,
    /// Viewers in these countries may not watch (with `geo_allow` too: those it lists but
    /// this does not). An empty list is no list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geo_deny: Option<Vec<String>>,
    /// Viewers of unknown country: default `deny` with `geo_allow`, `allow` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geo_unknown: Option<GeoUnknown>,
    /// How many viewers (address + user agent) may use one token at once, 1..=10 000; a
    /// viewer is one seen fetching within the last 30 s. No limit by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_viewers_per_token: Option<u32>,
}

/// An ISO 3166-1 alpha-2 country code, upper case.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    /// Parses two ASCII letters, either case.
    pub fn parse(s: &str) -> Option<CountryCode> {
        match s.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => Some(CountryCode([
                a.to_ascii_uppercase(),
                b.to_ascii_uppercase(),
            ])),
            _ => None,
        }
    }

    /// The code, e.g. `"GB"`.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl fmt::Debug for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an event may be watched from: a viewer in a known country is admitted when the
/// allow list (if any) has it and the deny list does not; a viewer of unknown country as
/// `unknown_admitted` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeoRule {
    /// Only these countries (sorted), or `None`: any country.
    pub allow: Option<Vec<CountryCode>>,
    /// Never these countries (sorted).
    pub deny: Vec<CountryCode>,
    /// Whether a viewer of unknown country is admitted.
    pub unknown_admitted: bool,
}

impl GeoRule {
    /// No rule: everyone admitted.
    pub const ANYWHERE: GeoRule = GeoRule {
        allow: None,
        deny: Vec::new(),
        unknown_admitted: true,
    };

    /// Whether a viewer in `country` (`None`: unknown) is admitted.
    pub fn admits(&self, country: Option<CountryCode>) -> bool {
        match country {
            None => self.unknown_admitted,
            Some(c) => {
                self.allow
                    .as_ref()
                    .is_none_or(|a| a.binary_search(&c).is_ok())
                    && self.deny.binary_search(&c).is_err()
            }
        }
    }

    /// Whether the rule needs the viewer's country.
    pub fn needs_country(&self) -> bool {
        *self != GeoRule::ANYWHERE
    }
}

/// An event's validated access policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessPolicy {
    /// Every viewer URL needs a valid token for the event.
    pub require_token: bool,
    /// Where it may be watched from.
    pub geo: GeoRule,
    /// Viewers per token at once, if limited.
    pub max_viewers_per_token: Option<NonZeroU32>,
}

impl Default for AccessPolicy {
    fn default() -> Self {
        AccessPolicy {
            require_token: false,
            geo: GeoRule::ANYWHERE,
            max_viewers_per_token: None,
        }
    }
}

impl AccessPolicy {
    /// Validates `o` for event `event` (named in errors).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the field: a code that is not two letters, more than
    /// 300 codes, or `max_viewers_per_token` outside 1..=10 000.
    pub fn validate(event: &str, o: &AccessOptions) -> Result<AccessPolicy, ConfigError> {
        let list = |field: &str, codes: &[String]| -> Result<Vec<CountryCode>, ConfigError> {
            if codes.len() > 300 {
                return Err(ConfigError::Invalid(format!(
                    "events.access.{field} of {event:?}: at most 300 countries"
                )));
            }
            let mut out = codes
                .iter()
                .map(|c| {
                    CountryCode::parse(c).ok_or_else(|| {
                        ConfigError::Invalid(format!(
                            "events.access.{field} of {event:?}: {c:?} is not an ISO 3166-1 alpha-2 code like \"GB\""
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            out.sort();
            out.dedup();
            Ok(out)
        };
        // An empty list is no list.
        let allow = match o.geo_allow.as_deref() {
            Some(a) if !a.is_empty() => Some(list("geo_allow", a)?),
            _ => None,
        };
        let deny = list("geo_deny", o.geo_deny.as_deref().unwrap_or_default())?;
        let unknown_admitted = match o.geo_unknown {
            Some(u) => u == GeoUnknown::Allow,
            None => allow.is_none(),
        };
        let geo = GeoRule {
            allow,
            deny,
            unknown_admitted,
        };
        let max_viewers_per_token = match o.max_viewers_per_token {
            None => None,
            Some(n) if (1..=10_000).contains(&n) => NonZeroU32::new(n),
            Some(_) => {
                return Err(ConfigError::Invalid(format!(
                    "events.access.max_viewers_per_token of {event:?}: 1..=10000"
                )))
            }
        };
        Ok(AccessPolicy {
            require_token: o.require_token.unwrap_or(false),
            geo,
            max_viewers_per_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cc(s: &str) -> Option<CountryCode> {
        CountryCode::parse(s)
    }

    #[test]
    fn geo_rules_admit_as_documented() {
        let opts = |allow: Option<&[&str]>, deny: Option<&[&str]>, unknown| AccessOptions {
            geo_allow: allow.map(|a| a.iter().map(|s| s.to_string()).collect()),
            geo_deny: deny.map(|a| a.iter().map(|s| s.to_string()).collect()),
            geo_unknown: unknown,
            ..AccessOptions::default()
        };
        // (options, country, admitted)
        let cases: &[(AccessOptions, Option<&str>, bool)] = &[
            (opts(None, None, None), None, true),
            (opts(None, None, None), Some("GB"), true),
            (opts(Some(&["gb", "SE"]), None, None), Some("GB"), true),
            (opts(Some(&["gb", "SE"]), None, None), Some("se"), true),
            (opts(Some(&["gb", "SE"]), None, None), Some("US"), false),
            (opts(Some(&["gb", "SE"]), None, None), None, false),
            (
                opts(Some(&["GB"]), None, Some(GeoUnknown::Allow)),
                None,
                true,
            ),
            (opts(None, Some(&["US"]), None), Some("US"), false),
            (opts(None, Some(&["US"]), None), Some("GB"), true),
            (opts(None, Some(&["US"]), None), None, true),
            (
                opts(None, Some(&["US"]), Some(GeoUnknown::Deny)),
                None,
                false,
            ),
            (opts(None, None, Some(GeoUnknown::Deny)), None, false),
            (opts(None, None, Some(GeoUnknown::Deny)), Some("JP"), true),
        ];
        for (o, country, admitted) in cases {
            let p = AccessPolicy::validate("e", o).unwrap();
            assert_eq!(
                p.geo.admits(country.and_then(cc)),
                *admitted,
                "{o:?} {country:?}"
            );
        }
    }

    #[test]
    fn refuses_bad_policies() {
        for (o, field) in [
            (
                AccessOptions {
                    geo_allow: Some(vec!["GBR".into()]),
                    ..Default::default()
                },
                "geo_allow",
            ),
            (
                AccessOptions {
                    geo_deny: Some(vec!["G1".into()]),
                    ..Default::default()
                },
                "geo_deny",
            ),
            (
                AccessOptions {
                    max_viewers_per_token: Some(0),
                    ..Default::default()
                },
                "max_viewers_per_token",
            ),
        ] {
            let e = AccessPolicy::validate("e", &o).unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        }
    }

    #[test]
    fn settings_parse_and_hide_secrets() {
        let raw: RawAccess = toml::from_str(
            "token_keys = { k1 = \"0123456789abcdef0123456789abcdef\" }\n\
             trusted_proxies = [\"10.0.0.0/8\", \"2001:db8::/32\", \"192.0.2.7\"]\n\
             cluster_secret = \"cluster-secret-0001\"\n",
        )
        .unwrap();
        let s = raw.validate().unwrap();
        assert_eq!(s.token_keys.len(), 1);
        assert_eq!(s.token_key("k1").unwrap().secret().len(), 32);
        assert!(s.token_key("k2").is_none());
        assert_eq!(s.trusted_proxies.len(), 3);
        assert!(s.trusted_proxies[2].contains(&"192.0.2.7".parse::<IpAddr>().unwrap()));
        let shown = format!("{s:?}");
        assert!(!shown.contains("0123456789abcdef") && !shown.contains("cluster-secret"));
        assert!(s
            .cluster_secret
            .as_ref()
            .unwrap()
            .matches(b"cluster-secret-0001"));
        assert!(!s.cluster_secret.unwrap().matches(b"cluster-secret-0002"));
        for bad in [
            "token_keys = { k1 = \"short\" }",
            "token_keys = { \"k/1\" = \"0123456789abcdef0123456789abcdef\" }",
            "trusted_proxies = [\"10.0.0.0/33\"]",
            "cluster_secret = \"short\"",
        ] {
            let raw: RawAccess = toml::from_str(bad).unwrap();
            assert!(raw.validate().is_err(), "{bad}");
        }
    }
}
