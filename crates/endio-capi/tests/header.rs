//! The committed header is the one cbindgen makes from `src/` now: a
//! change of the API without `cargo build -p endio-capi` (which rewrites
//! `include/endio.h`) and a commit of the header fails here.

#[test]
fn header_is_current() {
    let generated = include_str!(concat!(env!("OUT_DIR"), "/endio.h"));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/include/endio.h");
    let committed = std::fs::read_to_string(path).expect("include/endio.h is there");
    assert!(
        committed == generated,
        "{path} is stale: run `cargo build -p endio-capi` outside CI (it rewrites the header) and commit include/endio.h"
    );
}
