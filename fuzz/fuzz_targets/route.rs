//! Request paths (weir-url's `Route`): a path parses into validated identifiers or names
//! nothing; what parses never holds `..`, `/`, `%` or an empty component, and prints back
//! as the same path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_url::Route;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let Some(route) = Route::parse(path) else {
        return;
    };
    assert!(
        !path.contains("..") && !path.contains('%') && !path.contains("//"),
        "{path}"
    );
    assert_eq!(route.path(), path, "a route prints back as its path");
});
