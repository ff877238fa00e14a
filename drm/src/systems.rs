//! Key systems: how a `cbcs` event names its keys to players. Each system has a `pssh` box in
//! the init segments (ISO/IEC 23001-7 §8.1) and an `EXT-X-KEY` tag in the playlists
//! (RFC 8216bis §4.4.4.4); the licence exchange itself is the edge's.
//!
//! W3C ClearKey is always on: its `pssh` is the "cenc" initialization data format (version 1,
//! the KIDs, no data: W3C EME Initialization Data Format Registry, "cenc"), its tag names the
//! edge's licence endpoint `/licence/clearkey/{event}` and the KID (`KEYID`, as hls.js reads
//! it). FairPlay, Widevine and PlayReady take their licences from a key server reached
//! through SPEKE (a later step).

/// W3C ClearKey's system ID, `1077efec-c0b2-4d02-ace3-3c1e52e2fb4b`.
pub const CLEARKEY_SYSTEM_ID: [u8; 16] = [
    0x10, 0x77, 0xef, 0xec, 0xc0, 0xb2, 0x4d, 0x02, 0xac, 0xe3, 0x3c, 0x1e, 0x52, 0xe2, 0xfb, 0x4b,
];

/// The `KEYFORMAT` of W3C ClearKey in HLS (what hls.js and Shaka Player match).
pub const CLEARKEY_KEYFORMAT: &str = "org.w3.clearkey";

/// A version-1 `pssh` box (ISO/IEC 23001-7 §8.1.1) of `system_id` listing `kids`, with
/// `data` as its system-specific data.
pub fn pssh_box(system_id: &[u8; 16], kids: &[[u8; 16]], data: &[u8]) -> Vec<u8> {
    let size = 8 + 4 + 16 + 4 + 16 * kids.len() + 4 + data.len();
    let mut b = Vec::with_capacity(size);
    b.extend_from_slice(&(size as u32).to_be_bytes());
    b.extend_from_slice(b"pssh");
    b.extend_from_slice(&0x0100_0000u32.to_be_bytes()); // version 1, flags 0
    b.extend_from_slice(system_id);
    b.extend_from_slice(&(kids.len() as u32).to_be_bytes());
    kids.iter().for_each(|k| b.extend_from_slice(k));
    b.extend_from_slice(&(data.len() as u32).to_be_bytes());
    b.extend_from_slice(data);
    b
}

/// The ClearKey `EXT-X-KEY` attribute list for `kid` of `event`: `METHOD=SAMPLE-AES`, the
/// licence URL, `KEYFORMAT`, `KEYFORMATVERSIONS` and `KEYID` (hex). The URI names the KID too
/// (`?kid=`, which the licence endpoint ignores: the request body says which keys): players
/// such as hls.js tell keys apart by URI and would not ask for a rotated key under the same
/// one.
pub fn clearkey_tag(event: &str, kid: &[u8; 16]) -> String {
    let kid = hex::encode(kid);
    format!(
        "METHOD=SAMPLE-AES,URI=\"/licence/clearkey/{event}?kid={kid}\",\
         KEYFORMAT=\"{CLEARKEY_KEYFORMAT}\",KEYFORMATVERSIONS=\"1\",KEYID=0x{}",
        kid.to_uppercase()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clearkey_pssh_matches_shaka_packager() {
        // shaka-packager 3.4.2, --protection_systems CommonSystem, KID 00112233...eeff
        // (drm/testdata/shaka-cbcs: the last box of the moov).
        let kid: [u8; 16] = hex::decode("00112233445566778899aabbccddeeff")
            .unwrap()
            .try_into()
            .unwrap();
        assert_eq!(
            hex::encode(pssh_box(&CLEARKEY_SYSTEM_ID, &[kid], &[])),
            "0000003470737368010000001077efecc0b24d02ace33c1e52e2fb4b\
             0000000100112233445566778899aabbccddeeff00000000"
        );
        let tag = clearkey_tag("ev", &kid);
        assert!(tag.starts_with(
            "METHOD=SAMPLE-AES,URI=\"/licence/clearkey/ev?kid=00112233445566778899aabbccddeeff\""
        ));
        assert!(tag.ends_with("KEYID=0x00112233445566778899AABBCCDDEEFF"));
    }
}
