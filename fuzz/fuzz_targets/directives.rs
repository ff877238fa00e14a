//! LL-HLS delivery directives in a playlist request's query (RFC 8216bis §6.2.5.2): any
//! query parses or is refused with a reason, never panics; what parses has one canonical
//! form that parses back to the same directives (a cache keys on it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_url::Directives;

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(directives) = Directives::parse(Some(query)) else {
        return;
    };
    let canonical = directives.canonical_query();
    assert_eq!(
        Directives::parse(Some(&canonical)),
        Ok(directives),
        "{query} -> {canonical}"
    );
});
