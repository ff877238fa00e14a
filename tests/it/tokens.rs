//! Viewer tokens made by hand, as a paywall would make them, for the tests that play or fetch
//! a token-protected event.

use std::time::SystemTime;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Seconds since the Unix epoch, now.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token made by hand, as the format in weir_edge::token documents it (what a paywall
/// would do): `kid=..~exp=..~ev=..[~ip=..][~path=..]~sig=HMAC-SHA256 hex`.
pub(crate) fn hand_token(kid: &str, secret: &str, exp: u64, event: &str, extra: &str) -> String {
    let message = format!("kid={kid}~exp={exp}~ev={event}{extra}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(message.as_bytes());
    let sig: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{message}~sig={sig}")
}

/// `url` with `token` as its `token=` query parameter.
pub(crate) fn with_token(url: &str, token: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}token={token}")
}
