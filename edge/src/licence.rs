//! The W3C ClearKey licence endpoint, `POST /licence/clearkey/{event}`: a player's CDM asks
//! for the keys of the KIDs it met (W3C Encrypted Media Extensions §9.1.3, "License Request
//! Format": `{"kids":["<base64url KID>",...],"type":"temporary"}`) and gets back a JSON Web
//! Key set (§9.1.4: `{"keys":[{"kty":"oct","kid":"...","k":"..."}],"type":"temporary"}`) of
//! those of the event's keys that exist. The viewer has passed the event's geo, token and
//! concurrency checks before this runs; the keys come from the origin's internal key path
//! with the cluster secret, like AES-128 keys, and no answer is ever cached.

use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};

use crate::internal::fetch_key;
use crate::server::EdgeState;
use crate::EdgeError;

/// The most bytes a licence request may have (a few KIDs need a few hundred).
pub(crate) const MAX_REQUEST_BYTES: usize = 16 * 1024;

/// The most KIDs one request may ask for.
const MAX_KIDS: usize = 32;

/// A ClearKey licence request (EME §9.1.3).
#[derive(Debug, Deserialize)]
struct LicenceRequest {
    kids: Vec<String>,
    #[serde(default, rename = "type")]
    session_type: Option<String>,
}

/// One JSON Web Key (RFC 7517 §4, EME §9.1.4): a symmetric key and its id, base64url.
#[derive(Debug, Serialize)]
struct Jwk {
    kty: &'static str,
    kid: String,
    k: String,
}

#[derive(Debug, Serialize)]
struct JwkSet {
    keys: Vec<Jwk>,
    #[serde(rename = "type")]
    session_type: String,
}

/// The KIDs a request body asks for, as 16-byte arrays.
///
/// # Errors
/// [`EdgeError::BadRequest`] for a body that is not a ClearKey licence request: not JSON, no
/// `kids`, more than 32, or a KID that is not 16 bytes of base64url.
fn parse(body: &[u8]) -> Result<(Vec<[u8; 16]>, String), EdgeError> {
    let request: LicenceRequest =
        serde_json::from_slice(body).map_err(|_| EdgeError::BadRequest)?;
    if request.kids.is_empty() || request.kids.len() > MAX_KIDS {
        return Err(EdgeError::BadRequest);
    }
    let kids = request
        .kids
        .iter()
        .map(|k| {
            URL_SAFE_NO_PAD
                .decode(k.trim_end_matches('='))
                .ok()
                .and_then(|b| <[u8; 16]>::try_from(b).ok())
                .ok_or(EdgeError::BadRequest)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let session_type = match request.session_type.as_deref() {
        Some("persistent-license") => "persistent-license",
        _ => "temporary",
    };
    Ok((kids, session_type.to_string()))
}

/// Answers a licence request of `event` for an admitted viewer: the JWK set of the KIDs the
/// event has (200), 404 when it has none of them, 400 for a malformed body.
pub(crate) async fn clearkey(
    state: &EdgeState,
    event: &str,
    body: Option<&Bytes>,
) -> Result<Response, EdgeError> {
    let (kids, session_type) = parse(body.ok_or(EdgeError::BadRequest)?)?;
    let mut keys = Vec::with_capacity(kids.len());
    for kid in kids {
        match fetch_key(state, event, &hex::encode(kid)).await {
            Ok(k) => keys.push(Jwk {
                kty: "oct",
                kid: URL_SAFE_NO_PAD.encode(kid),
                k: URL_SAFE_NO_PAD.encode(k),
            }),
            Err(EdgeError::NotFound) => {}
            Err(e) => return Err(e),
        }
    }
    metrics::counter!("weir_edge_licences_total", "system" => "clearkey",
        "outcome" => if keys.is_empty() { "unknown_kids" } else { "issued" })
    .increment(1);
    if keys.is_empty() {
        return Err(EdgeError::NotFound);
    }
    let json = serde_json::to_vec(&JwkSet { keys, session_type }).unwrap_or_default();
    let mut r = (StatusCode::OK, Bytes::from(json)).into_response();
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn licence_requests_of_the_eme_format_parse_and_others_do_not() {
        // EME §9.1.3's example request.
        let (kids, t) = parse(
            br#"{"kids":["LwVHf8JLtPrv2GUXFW2v_A","0DdtU9od-Bh5L3xbv0Xf_A"],"type":"temporary"}"#,
        )
        .unwrap();
        assert_eq!(kids.len(), 2);
        assert_eq!(hex::encode(kids[0]), "2f05477fc24bb4faefd86517156daffc");
        assert_eq!(t, "temporary");
        for bad in [
            &b"not json"[..],
            br#"{"kids":[]}"#,
            br#"{"type":"temporary"}"#,
            br#"{"kids":["AAAA"]}"#,
            br#"{"kids":["LwVHf8JLtPrv2GUXFW2v_A", 5]}"#,
        ] {
            assert!(
                matches!(parse(bad), Err(EdgeError::BadRequest)),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let many = format!(
            r#"{{"kids":[{}]}}"#,
            vec!["\"LwVHf8JLtPrv2GUXFW2v_A\""; 33].join(",")
        );
        assert!(parse(many.as_bytes()).is_err());
    }
}
