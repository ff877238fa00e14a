//! Signed viewer tokens (sans-I/O): minted by an operator (`weir token`) or a paywall with a
//! shared secret, checked by the edge on every viewer URL of an event that requires them.
//!
//! A token is the value of the `token` query parameter: named fields joined by `~` (all
//! URL-safe, in this order; `ip` and `path` optional), then the signature:
//!
//! ```text
//! kid=k1~exp=1764000000~ev=final~ip=203.0.113.0/24~path=/live/final/~sig=<64 hex digits>
//! ```
//!
//! - `kid`: the signing key's id (`[access] token_keys`); several keys may be valid at once.
//! - `exp`: expiry, Unix seconds; the token is refused from that second on.
//! - `ev`: the event it admits to.
//! - `ip`: the viewer's address or CIDR block (IPv4 or IPv6), as the edge's client address
//!   phase sees it.
//! - `path`: a path prefix the token is limited to (`/live/...` URLs; key URLs are admitted by
//!   event).
//! - `sig`: HMAC-SHA256 (RFC 2104, FIPS 180-4) with the key's secret over every byte before
//!   `~sig=`, lowercase hex; compared in constant time.

use std::net::IpAddr;

use hmac::{Hmac, Mac};
use ipnet::IpNet;
use sha2::Sha256;
use weir_config::{parse_cidr, TokenKey};

type HmacSha256 = Hmac<Sha256>;

/// The query parameter that carries a token.
pub const QUERY_PARAMETER: &str = "token";

/// The latest expiry a token can carry (12 decimal digits), Unix seconds.
pub const MAX_EXPIRY_UNIX_S: u64 = 999_999_999_999;

/// What a token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// The signing key's id.
    pub key_id: String,
    /// Expiry, Unix seconds.
    pub expires_unix_s: u64,
    /// The event it admits to.
    pub event: String,
    /// The viewer address or block it is bound to, if any.
    pub ip: Option<IpNet>,
    /// The path prefix it is limited to, if any: `/` then `[A-Za-z0-9_./-]`.
    pub path: Option<String>,
}

/// Why a token was refused: each is a 403, named (but no more) in the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// No `token` query parameter.
    #[error("token missing")]
    Missing,
    /// Not the format above, or the signature does not match (tampered, or signed with
    /// another secret).
    #[error("token invalid")]
    Invalid,
    /// Signed with a key id this edge does not know (removed, or never configured).
    #[error("token key unknown")]
    UnknownKey,
    /// Past its expiry.
    #[error("token expired")]
    Expired,
    /// For another event.
    #[error("token for another event")]
    OtherEvent,
    /// Bound to another address.
    #[error("token bound to another address")]
    WrongAddress,
    /// Limited to paths that do not include this one.
    #[error("token not valid for this path")]
    OutOfScope,
}

impl TokenError {
    /// A short label for metrics (`weir_edge_access_denied_total{reason}`).
    pub fn label(&self) -> &'static str {
        match self {
            TokenError::Missing => "token_missing",
            TokenError::Invalid => "token_invalid",
            TokenError::UnknownKey => "token_unknown_key",
            TokenError::Expired => "token_expired",
            TokenError::OtherEvent => "token_other_event",
            TokenError::WrongAddress => "token_wrong_address",
            TokenError::OutOfScope => "token_out_of_scope",
        }
    }
}

fn path_ok(p: &str) -> bool {
    p.starts_with('/')
        && p.len() <= 256
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-'))
}

fn id_ok(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn sign(key: &TokenKey, message: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key.secret()).expect("HMAC takes keys of any length");
    mac.update(message.as_bytes());
    mac
}

/// Mints the token for `claims` with `key` (whose id must be `claims.key_id`).
///
/// # Panics
/// If `claims` holds a field the format cannot carry (an event or key id outside
/// `[A-Za-z0-9_-]`, a path outside `[A-Za-z0-9_./-]`, an expiry past
/// [`MAX_EXPIRY_UNIX_S`]): callers validate them first.
pub fn mint(claims: &Claims, key: &TokenKey) -> String {
    assert!(id_ok(&claims.key_id, 32) && claims.key_id == key.id);
    assert!(id_ok(&claims.event, 64));
    assert!(claims.expires_unix_s <= MAX_EXPIRY_UNIX_S);
    let mut t = format!(
        "kid={}~exp={}~ev={}",
        claims.key_id, claims.expires_unix_s, claims.event
    );
    if let Some(ip) = claims.ip {
        t.push_str(&format!("~ip={ip}"));
    }
    if let Some(p) = &claims.path {
        assert!(path_ok(p), "token path scope {p:?}");
        t.push_str(&format!("~path={p}"));
    }
    let sig = hex::encode(sign(key, &t).finalize().into_bytes());
    t.push_str("~sig=");
    t.push_str(&sig);
    t
}

/// Reads a token's fields without checking its signature.
///
/// # Errors
/// [`TokenError::Invalid`] if it is not in the format above.
pub fn parse(token: &str) -> Result<(Claims, &str, [u8; 32]), TokenError> {
    let (message, sig_hex) = token.rsplit_once("~sig=").ok_or(TokenError::Invalid)?;
    let mut sig = [0u8; 32];
    // Lowercase only: one signature has one spelling.
    let lower = sig_hex
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if sig_hex.len() != 64 || !lower || hex::decode_to_slice(sig_hex, &mut sig).is_err() {
        return Err(TokenError::Invalid);
    }
    let mut fields = message.split('~');
    let mut field = |name: &str| {
        fields
            .next()
            .and_then(|f| f.strip_prefix(name))
            .and_then(|f| f.strip_prefix('='))
            .ok_or(TokenError::Invalid)
    };
    let key_id = field("kid")?.to_string();
    let exp = field("exp")?;
    let event = field("ev")?.to_string();
    if !id_ok(&key_id, 32) || !id_ok(&event, 64) || exp.len() > 12 {
        return Err(TokenError::Invalid);
    }
    let expires_unix_s = exp.parse::<u64>().map_err(|_| TokenError::Invalid)?;
    let (mut ip, mut path) = (None, None);
    for f in message.split('~').skip(3) {
        match f.split_once('=') {
            Some(("ip", v)) if ip.is_none() && path.is_none() => {
                ip = Some(parse_cidr(v).ok_or(TokenError::Invalid)?);
            }
            Some(("path", v)) if path.is_none() && path_ok(v) => path = Some(v.to_string()),
            _ => return Err(TokenError::Invalid),
        }
    }
    let claims = Claims {
        key_id,
        expires_unix_s,
        event,
        ip,
        path,
    };
    Ok((claims, message, sig))
}

/// Checks `token` for a request of `path` of event `event` by `client` at `now_unix_s`,
/// with the signing keys `keys`. The signature is checked before any claim, so a tampered
/// token says nothing about which field was wrong.
///
/// # Errors
/// The first [`TokenError`] that applies.
pub fn verify(
    token: &str,
    keys: &[TokenKey],
    event: &str,
    path: &str,
    client: IpAddr,
    now_unix_s: u64,
) -> Result<Claims, TokenError> {
    let (claims, message, sig) = parse(token)?;
    let key = keys
        .iter()
        .find(|k| k.id == claims.key_id)
        .ok_or(TokenError::UnknownKey)?;
    sign(key, message)
        .verify_slice(&sig)
        .map_err(|_| TokenError::Invalid)?;
    if now_unix_s >= claims.expires_unix_s {
        return Err(TokenError::Expired);
    }
    if claims.event != event {
        return Err(TokenError::OtherEvent);
    }
    if let Some(net) = claims.ip {
        // An IPv4 viewer reached over IPv6 (::ffff:a.b.c.d) is the IPv4 viewer.
        if !net.contains(&crate::client_addr::canonical(client)) {
            return Err(TokenError::WrongAddress);
        }
    }
    if let Some(scope) = &claims.path {
        if path.starts_with("/live/") && !path.starts_with(scope.as_str()) {
            return Err(TokenError::OutOfScope);
        }
    }
    Ok(claims)
}

/// The `token` parameter of a query string, if present and non-empty.
pub fn from_query(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|p| p.strip_prefix("token="))
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(id: &str) -> TokenKey {
        TokenKey::new(id, &format!("{id}-secret-0123456789abcdef0123456789")).unwrap()
    }

    fn claims() -> Claims {
        Claims {
            key_id: "k1".into(),
            expires_unix_s: 2_000,
            event: "final".into(),
            ip: None,
            path: None,
        }
    }

    const V4: &str = "203.0.113.9";

    #[test]
    fn each_refusal_has_its_reason() {
        let keys = [key("k1"), key("k2")];
        let ip: IpAddr = V4.parse().unwrap();
        let good = mint(&claims(), &keys[0]);
        let path = "/live/final/master.m3u8";
        assert_eq!(verify(&good, &keys, "final", path, ip, 1_999), Ok(claims()));
        // (token, event, path, client, now, expected)
        let bound = mint(
            &Claims {
                ip: parse_cidr("203.0.113.0/24"),
                path: Some("/live/final/720p/".into()),
                ..claims()
            },
            &keys[0],
        );
        let by_k2 = mint(
            &Claims {
                key_id: "k2".into(),
                ..claims()
            },
            &keys[1],
        );
        let tampered = good.replace("exp=2000", "exp=9000");
        let unknown = mint(
            &Claims {
                key_id: "k9".into(),
                ..claims()
            },
            &key("k9"),
        );
        let other: IpAddr = "198.51.100.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:203.0.113.9".parse().unwrap();
        let seg = "/live/final/720p/s1/10.m4s";
        type Case<'a> = (
            &'a str,
            &'a str,
            &'a str,
            IpAddr,
            u64,
            Result<(), TokenError>,
        );
        let cases: Vec<Case<'_>> = vec![
            (&good, "final", path, ip, 2_000, Err(TokenError::Expired)),
            (&good, "other", path, ip, 1, Err(TokenError::OtherEvent)),
            (&tampered, "final", path, ip, 1, Err(TokenError::Invalid)),
            (&unknown, "final", path, ip, 1, Err(TokenError::UnknownKey)),
            (&by_k2, "final", path, ip, 1, Ok(())),
            (&bound, "final", seg, ip, 1, Ok(())),
            (&bound, "final", seg, mapped, 1, Ok(())),
            (
                &bound,
                "final",
                seg,
                other,
                1,
                Err(TokenError::WrongAddress),
            ),
            (&bound, "final", path, ip, 1, Err(TokenError::OutOfScope)),
            (&bound, "final", "/keys/final/3", ip, 1, Ok(())),
            (
                "kid=k1~exp=1~ev=final",
                "final",
                path,
                ip,
                1,
                Err(TokenError::Invalid),
            ),
            ("", "final", path, ip, 1, Err(TokenError::Invalid)),
        ];
        for (t, ev, p, client, now, want) in cases {
            assert_eq!(
                verify(t, &keys, ev, p, client, now).map(|_| ()),
                want,
                "{t} {ev} {p} {client} {now}"
            );
        }
        assert_eq!(
            from_query(Some("a=1&token=kid=k1~exp=2&_HLS_msn=3")),
            Some("kid=k1~exp=2")
        );
        assert_eq!(from_query(Some("token=")), None);
        assert_eq!(from_query(None), None);
    }

    proptest! {
        #[test]
        fn minted_tokens_verify_and_any_change_is_refused(
            exp in 1u64..=MAX_EXPIRY_UNIX_S,
            event in "[A-Za-z0-9_-]{1,64}",
            bits in 0u8..=32,
            addr in any::<[u8; 4]>(),
            path in proptest::option::of("/[a-z0-9/._-]{0,40}"),
            at in any::<prop::sample::Index>(),
            byte in 0x21u8..0x7f,
        ) {
            let k = key("k1");
            let ip = IpAddr::from(addr);
            let net = IpNet::new(ip, bits).unwrap().trunc();
            let c = Claims { key_id: "k1".into(), expires_unix_s: exp, event: event.clone(), ip: Some(net), path: path.clone() };
            let t = mint(&c, &k);
            let p = path.clone().unwrap_or_default() + "x.m4s";
            let p = if p.starts_with('/') { p } else { format!("/live/{p}") };
            prop_assert_eq!(verify(&t, std::slice::from_ref(&k), &event, &p, ip, exp - 1), Ok(c));
            // Any single-byte change is refused.
            let i = at.index(t.len());
            let mut changed = t.clone().into_bytes();
            prop_assume!(changed[i] != byte);
            changed[i] = byte;
            let changed = String::from_utf8(changed).unwrap();
            prop_assert!(verify(&changed, std::slice::from_ref(&k), &event, &p, ip, exp - 1).is_err());
        }
    }
}
