//! Finds libsrt with pkg-config (Debian: libsrt-openssl-dev) and generates its bindings.

fn main() {
    let lib = pkg_config::Config::new()
        .atleast_version("1.4")
        .probe("srt")
        .expect("libsrt with pkg-config (Debian: apt-get install libsrt-openssl-dev)");
    let mut builder = bindgen::Builder::default()
        .header_contents(
            "wrapper.h",
            "#include <srt/srt.h>\n#include <srt/access_control.h>\n",
        )
        .allowlist_function("srt_.*")
        .allowlist_type("SRT_.*|CBytePerfMon")
        .allowlist_var("SRT_.*")
        .blocklist_type("sockaddr.*")
        .raw_line("#[allow(unused_imports)] use libc::{sockaddr, sockaddr_storage};")
        .layout_tests(false)
        .generate_comments(false);
    for path in &lib.include_paths {
        builder = builder.clang_arg(format!("-I{}", path.display()));
    }
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("srt.rs");
    builder
        .generate()
        .expect("generating libsrt bindings")
        .write_to_file(out)
        .expect("writing libsrt bindings");
}
