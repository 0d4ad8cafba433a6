//! Generates the C header from `src/` with cbindgen: `$OUT_DIR/endio.h`
//! always, and the committed `include/endio.h` when it differs, so that
//! `cargo build` keeps it current. Under CI (`CI` set) the committed header
//! is left alone, and the test `header_is_current` fails if it is stale.

use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=CI");
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml"))
        .expect("crates/endio-capi/cbindgen.toml is valid");
    let bindings = cbindgen::Builder::new()
        .with_crate(&dir)
        .with_config(config)
        .generate()
        .expect("cbindgen reads crates/endio-capi/src");
    let mut text = Vec::new();
    bindings.write(&mut text);
    std::fs::write(out.join("endio.h"), &text).expect("write $OUT_DIR/endio.h");
    let committed = dir.join("include/endio.h");
    let current = std::fs::read(&committed).ok();
    if std::env::var_os("CI").is_none() && current.as_deref() != Some(&text[..]) {
        std::fs::write(&committed, &text).expect("write include/endio.h");
    }
}
