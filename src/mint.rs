//! `weir token`: mints a signed viewer token ([`weir_edge::token`]) for an operator, with a
//! signing key from the configuration's `[access] token_keys` or from a secret file.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use weir_config::{parse_cidr, Config, TokenKey};
use weir_edge::token::{self, Claims};

/// What `weir token` was asked for.
pub(crate) struct MintRequest {
    pub(crate) config: Option<Config>,
    pub(crate) secret_file: Option<PathBuf>,
    pub(crate) event: String,
    pub(crate) ttl: Duration,
    pub(crate) key_id: Option<String>,
    pub(crate) ip: Option<String>,
    pub(crate) path: Option<String>,
    pub(crate) base_url: Option<String>,
}

/// The token and the playable URL.
pub(crate) fn mint(r: MintRequest) -> anyhow::Result<(String, String)> {
    weir_config::check_event_id(&r.event)?;
    let key = match (&r.secret_file, &r.config) {
        (Some(file), _) => {
            let id = r
                .key_id
                .as_deref()
                .context("--secret-file needs --key-id (the id edges know the secret by)")?;
            let secret = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            TokenKey::new(id, secret.trim())?
        }
        (None, Some(c)) => {
            let keys = &c.access.token_keys;
            match (&r.key_id, keys.len()) {
                (Some(id), _) => c
                    .access
                    .token_key(id)
                    .cloned()
                    .with_context(|| format!("no key {id:?} in [access] token_keys"))?,
                (None, 1) => keys[0].clone(),
                (None, 0) => bail!("the configuration has no [access] token_keys"),
                (None, _) => bail!("several [access] token_keys: choose one with --key-id"),
            }
        }
        (None, None) => {
            bail!("weir token needs --config (with [access] token_keys) or --secret-file")
        }
    };
    let ip =
        r.ip.as_deref()
            .map(|s| parse_cidr(s).with_context(|| format!("--ip {s:?}: an address or CIDR block")))
            .transpose()?;
    if let Some(p) = &r.path {
        let ok = p.starts_with('/')
            && p.len() <= 256
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-'));
        if !ok {
            bail!("--path {p:?}: a path like /live/{}/720p/", r.event);
        }
    }
    if r.ttl.is_zero() {
        bail!("--ttl must be more than 0");
    }
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH)?;
    let expires_unix_s = (now + r.ttl).as_secs().min(token::MAX_EXPIRY_UNIX_S);
    let claims = Claims {
        key_id: key.id.clone(),
        expires_unix_s,
        event: r.event.clone(),
        ip,
        path: r.path.clone(),
    };
    let t = token::mint(&claims, &key);
    let base = match r.base_url {
        Some(b) => b.trim_end_matches('/').to_string(),
        None => {
            let listen = r
                .config
                .as_ref()
                .map(|c| c.edge.listen)
                .unwrap_or_else(|| Config::embedded().edge.listen);
            let host = if listen.ip().is_unspecified() {
                "127.0.0.1".to_string()
            } else if listen.is_ipv6() {
                format!("[{}]", listen.ip())
            } else {
                listen.ip().to_string()
            };
            format!("http://{host}:{}", listen.port())
        }
    };
    let url = format!(
        "{base}/live/{}/master.m3u8?{}={t}",
        r.event,
        token::QUERY_PARAMETER
    );
    let expiry = SystemTime::UNIX_EPOCH + Duration::from_secs(expires_unix_s);
    eprintln!(
        "token for event {:?}, key {:?}, expires {} (unix {expires_unix_s}){}{}",
        r.event,
        key.id,
        humantime::format_rfc3339_seconds(expiry),
        claims
            .ip
            .map(|n| format!(", bound to {n}"))
            .unwrap_or_default(),
        claims
            .path
            .as_ref()
            .map(|p| format!(", under {p}"))
            .unwrap_or_default(),
    );
    Ok((t, url))
}
